//! The Grafana dashboards and Prometheus alert rules in `dashboards/`.
//!
//! Without root, promtool checks and unit-tests the alert rules and parses
//! every panel and variable query after Grafana's macros are substituted, and
//! the dashboards are checked for what file provisioning and cAdvisor
//! compatibility need. As root, supervisord runs jobs that produce every kind
//! of data the panels show, a real Prometheus scrapes the real agent, and
//! every query of every panel must return at least one series.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use serde_json::Value;

use corral_tests::daemon::{Agent, Supervisor};
use corral_tests::prometheus::Prometheus;
use corral_tests::{require_root, serial, workspace_root};

const PROMTOOL: &str = "/usr/bin/promtool";

/// The dashboards' `schemaVersion`: Grafana 12's classic JSON model. Grafana
/// migrates a dashboard with an older version when it loads it.
const SCHEMA_VERSION: u64 = 41;

const DASHBOARD_FILES: [&str; 2] = ["corral-overview.json", "corral-job.json"];

/// The datasource of every panel and target: the dashboard's datasource
/// variable, so file provisioning needs no import-time `__inputs`.
const DATASOURCE_UID: &str = "${datasource}";

/// cAdvisor's names for the container metrics that the dashboards and alert
/// rules may use (cAdvisor `metrics/prometheus.go`). The agent keeps these
/// names, so the same queries work on either exporter.
const CADVISOR_METRICS: &[&str] = &[
    "container_cpu_usage_seconds_total",
    "container_cpu_user_seconds_total",
    "container_cpu_system_seconds_total",
    "container_cpu_cfs_periods_total",
    "container_cpu_cfs_throttled_periods_total",
    "container_cpu_cfs_throttled_seconds_total",
    "container_memory_usage_bytes",
    "container_memory_working_set_bytes",
    "container_memory_rss",
    "container_memory_cache",
    "container_memory_swap",
    "container_memory_failcnt",
    "container_memory_max_usage_bytes",
    "container_oom_events_total",
    "container_spec_memory_limit_bytes",
    "container_spec_cpu_quota",
    "container_spec_cpu_period",
    "container_spec_cpu_shares",
    "container_fs_reads_bytes_total",
    "container_fs_writes_bytes_total",
    "container_fs_reads_total",
    "container_fs_writes_total",
    "container_network_receive_bytes_total",
    "container_network_receive_packets_total",
    "container_network_receive_errors_total",
    "container_network_receive_packets_dropped_total",
    "container_network_transmit_bytes_total",
    "container_network_transmit_packets_total",
    "container_network_transmit_errors_total",
    "container_network_transmit_packets_dropped_total",
    "container_processes",
    "container_threads",
    "container_threads_max",
    "container_file_descriptors",
    "container_start_time_seconds",
    "container_last_seen",
    "container_pressure_cpu_waiting_seconds_total",
    "container_pressure_cpu_stalled_seconds_total",
    "container_pressure_memory_waiting_seconds_total",
    "container_pressure_memory_stalled_seconds_total",
    "container_pressure_io_waiting_seconds_total",
    "container_pressure_io_stalled_seconds_total",
];

/// Job state families, exported only by the agent (from the supervisor).
const JOB_METRICS: &[&str] = &[
    "corral_job_up",
    "corral_job_restarts_total",
    "corral_job_state",
];

/// Panel types whose series are drawn per job and so need the job name in
/// their legend.
const PER_JOB_PANEL_TYPES: [&str; 2] = ["timeseries", "state-timeline"];

// ---------------------------------------------------------------------------
// Reading dashboards and rule files

fn dashboards_dir() -> PathBuf {
    workspace_root().join("dashboards")
}

fn load_dashboards() -> Vec<(&'static str, Value)> {
    DASHBOARD_FILES
        .iter()
        .map(|file| {
            let path = dashboards_dir().join(file);
            let text = fs::read_to_string(&path)
                .unwrap_or_else(|error| panic!("read {}: {error}", path.display()));
            let dashboard = serde_json::from_str(&text)
                .unwrap_or_else(|error| panic!("parse {}: {error}", path.display()));
            (*file, dashboard)
        })
        .collect()
}

/// Collects every panel except rows, including the panels inside collapsed
/// rows.
fn panels(dashboard: &Value) -> Vec<&Value> {
    let mut found = Vec::new();
    for panel in dashboard["panels"].as_array().into_iter().flatten() {
        if panel["type"] == "row" {
            found.extend(panel["panels"].as_array().into_iter().flatten());
        } else {
            found.push(panel);
        }
    }
    found
}

/// A PromQL query of a dashboard or rule file, before macro substitution.
#[derive(Clone, Debug)]
struct Query {
    /// Where the query comes from (`corral-job.json: panel 20 "Memory" A`),
    /// for messages.
    origin: String,
    expr: String,
}

fn panel_queries(file: &str, dashboard: &Value) -> Vec<Query> {
    let mut queries = Vec::new();
    for panel in panels(dashboard) {
        let title = panel["title"].as_str().unwrap_or("untitled");
        let id = &panel["id"];
        for target in panel["targets"].as_array().into_iter().flatten() {
            let ref_id = target["refId"].as_str().unwrap_or("?");
            queries.push(Query {
                origin: format!("{file}: panel {id} {title:?} {ref_id}"),
                expr: target["expr"].as_str().unwrap_or_default().to_string(),
            });
        }
    }
    queries
}

/// The template variables of type `query`, each as a PromQL query that
/// returns one series per value of the variable.
fn variable_queries(file: &str, dashboard: &Value) -> Vec<(String, Query)> {
    let mut queries = Vec::new();
    for variable in dashboard["templating"]["list"]
        .as_array()
        .into_iter()
        .flatten()
    {
        if variable["type"] != "query" {
            continue;
        }
        let name = variable["name"].as_str().unwrap_or("?").to_string();
        let definition = variable["query"].as_str().unwrap_or_default();
        let (expr, label) = label_values_to_promql(definition)
            .unwrap_or_else(|error| panic!("{file}: variable {name}: {error}"));
        let query = Query {
            origin: format!("{file}: variable {name}"),
            expr,
        };
        queries.push((label, query));
    }
    queries
}

/// Converts Grafana's `label_values(SELECTOR, LABEL)` (or `label_values(LABEL)`)
/// into `count by (LABEL) (SELECTOR)` and the label name.
fn label_values_to_promql(definition: &str) -> Result<(String, String), String> {
    let arguments = definition
        .trim()
        .strip_prefix("label_values(")
        .and_then(|rest| rest.strip_suffix(')'))
        .ok_or_else(|| format!("not a label_values() query: {definition:?}"))?;
    let (selector, label) = match arguments.rsplit_once(',') {
        Some((selector, label)) => (selector.trim().to_string(), label.trim().to_string()),
        None => {
            let label = arguments.trim().to_string();
            (format!("{{{label}!=\"\"}}"), label)
        }
    };
    if label.is_empty() || !label.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
        return Err(format!("invalid label name {label:?} in {definition:?}"));
    }
    Ok((format!("count by ({label}) ({selector})"), label))
}

/// Reads the alerting rules of `alerts.yml` as (alert name, expression).
///
/// NOTE: this reads only the layout that alerts.yml uses: `- alert: NAME`,
/// then `expr: |` with an indented block or `expr: EXPR` on one line. An
/// alert whose expression it cannot find fails the tests that call it.
fn alert_rules() -> Vec<(String, String)> {
    let path = dashboards_dir().join("alerts.yml");
    let text = fs::read_to_string(&path)
        .unwrap_or_else(|error| panic!("read {}: {error}", path.display()));
    let lines: Vec<&str> = text.lines().collect();
    let mut rules = Vec::new();
    let mut index = 0;
    while index < lines.len() {
        let Some(name) = lines[index].trim().strip_prefix("- alert: ") else {
            index += 1;
            continue;
        };
        let name = name.trim().to_string();
        index += 1;
        let mut expr = None;
        while index < lines.len() && !lines[index].trim().starts_with("- alert: ") {
            let line = lines[index];
            if let Some(value) = line.trim().strip_prefix("expr:") {
                let key_indent = indentation(line);
                let value = value.trim();
                if value == "|" || value == "|-" {
                    let mut block = Vec::new();
                    while index + 1 < lines.len()
                        && (lines[index + 1].trim().is_empty()
                            || indentation(lines[index + 1]) > key_indent)
                    {
                        index += 1;
                        block.push(lines[index].trim());
                    }
                    expr = Some(block.join("\n").trim().to_string());
                } else {
                    expr = Some(value.to_string());
                }
            }
            index += 1;
        }
        let expr = expr.unwrap_or_else(|| panic!("alert {name} in alerts.yml has no expr"));
        rules.push((name, expr));
    }
    assert!(!rules.is_empty(), "no alert found in {}", path.display());
    rules
}

fn indentation(line: &str) -> usize {
    line.len() - line.trim_start().len()
}

/// Names of metrics that `expr` selects: identifiers outside string literals
/// that start with one of `prefixes`.
fn metric_names(expr: &str, prefixes: &[&str]) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let mut chars = expr.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '"' || c == '\'' || c == '`' {
            let quote = c;
            while let Some(inner) = chars.next() {
                if inner == '\\' && quote != '`' {
                    chars.next();
                } else if inner == quote {
                    break;
                }
            }
        } else if c.is_ascii_alphabetic() || c == '_' || c == ':' {
            let mut word = c.to_string();
            while let Some(&next) = chars.peek() {
                if !(next.is_ascii_alphanumeric() || next == '_' || next == ':') {
                    break;
                }
                word.push(next);
                chars.next();
            }
            if prefixes.iter().any(|prefix| word.starts_with(prefix)) {
                names.insert(word);
            }
        } else if c.is_ascii_digit() {
            // Skip numbers and durations such as `5m` or `1e3`.
            while chars
                .peek()
                .is_some_and(|next| next.is_ascii_alphanumeric())
            {
                chars.next();
            }
        }
    }
    names
}

// ---------------------------------------------------------------------------
// Grafana macros

/// Values for Grafana's macros and the dashboards' variables, as Grafana
/// writes them into a Prometheus query.
struct Macros(BTreeMap<&'static str, String>);

impl Macros {
    /// Grafana's values for a 1 hour range and a 15 s scrape interval, with
    /// every variable at its "All" value.
    fn grafana_defaults() -> Self {
        Macros::new("1m", "15s", "1h", ".+", ".+")
    }

    fn new(rate_interval: &str, interval: &str, range: &str, instance: &str, job: &str) -> Self {
        let values = [
            ("__rate_interval", rate_interval),
            ("__interval", interval),
            ("__range", range),
            ("instance", instance),
            ("job", job),
        ];
        Macros(
            values
                .into_iter()
                .map(|(name, value)| (name, value.to_string()))
                .collect(),
        )
    }

    /// Replaces `$name`, `${name}`, `${name:format}` and `[[name]]`. A name
    /// that is neither a macro nor a variable of the dashboards is an error.
    fn substitute(&self, expr: &str) -> Result<String, String> {
        let mut output = String::with_capacity(expr.len());
        let mut rest = expr;
        while let Some(start) = rest.find(['$', '[']) {
            output.push_str(&rest[..start]);
            let tail = &rest[start..];
            let (name, consumed) = if let Some(braced) = tail.strip_prefix("${") {
                let end = braced
                    .find('}')
                    .ok_or_else(|| format!("unclosed ${{ in {expr:?}"))?;
                let name = braced[..end].split(':').next().unwrap_or_default();
                (name, end + 3)
            } else if let Some(bracketed) = tail.strip_prefix("[[") {
                let end = bracketed
                    .find("]]")
                    .ok_or_else(|| format!("unclosed [[ in {expr:?}"))?;
                (&bracketed[..end], end + 4)
            } else if let Some(plain) = tail.strip_prefix('$') {
                let end = plain
                    .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                    .unwrap_or(plain.len());
                (&plain[..end], end + 1)
            } else {
                // A `[` that opens a range selector.
                output.push('[');
                rest = &tail[1..];
                continue;
            };
            let value = self
                .0
                .get(name)
                .ok_or_else(|| format!("unknown variable or macro {name:?} in {expr:?}"))?;
            output.push_str(value);
            rest = &tail[consumed..];
        }
        output.push_str(rest);
        Ok(output)
    }
}

/// Builds a regex that matches exactly `values`, escaped for a PromQL string
/// literal, as Grafana writes a multi-value variable: `(a|b)`.
fn regex_of(values: &[&str]) -> String {
    let escaped: Vec<String> = values
        .iter()
        .map(|value| {
            let mut regex = String::new();
            for c in value.chars() {
                if "\\.+*?()|[]{}^$".contains(c) {
                    // `\` once for the regex, doubled for the PromQL string.
                    regex.push_str("\\\\");
                }
                regex.push(c);
            }
            regex
        })
        .collect();
    format!("({})", escaped.join("|"))
}

// ---------------------------------------------------------------------------
// promtool

fn promtool_available(test: &str) -> bool {
    if Path::new(PROMTOOL).exists() {
        return true;
    }
    eprintln!("SKIP {test}: {PROMTOOL} is missing; install Debian's prometheus package");
    false
}

fn promtool(args: &[&str], dir: &Path) -> Output {
    Command::new(PROMTOOL)
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap_or_else(|error| panic!("run {PROMTOOL} {args:?}: {error}"))
}

fn output_text(output: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// Parses every query with `promtool check rules`, as one recording rule per
/// group so that an error names the group and with it the query's origin.
fn check_syntax(queries: &[Query]) -> Result<(), String> {
    let dir = tempfile::Builder::new()
        .prefix("corral-dashboard-queries-")
        .tempdir()
        .expect("create temp dir");
    let mut rules = String::from("groups:\n");
    for (index, query) in queries.iter().enumerate() {
        let group = serde_json::to_string(&query.origin).expect("encode group name");
        rules.push_str(&format!(
            "  - name: {group}\n    rules:\n      - record: dashboard_query_{index}\n        expr: |\n"
        ));
        for line in query.expr.lines() {
            rules.push_str(&format!("          {line}\n"));
        }
    }
    let path = dir.path().join("queries.yml");
    fs::write(&path, rules).expect("write rules file");
    let output = promtool(&["check", "rules", "queries.yml"], dir.path());
    if output.status.success() {
        Ok(())
    } else {
        Err(output_text(&output))
    }
}

fn all_dashboard_queries(macros: &Macros) -> Vec<Query> {
    let mut queries = Vec::new();
    for (file, dashboard) in load_dashboards() {
        let variables = variable_queries(file, &dashboard)
            .into_iter()
            .map(|(_, query)| query);
        for query in panel_queries(file, &dashboard).into_iter().chain(variables) {
            let expr = macros
                .substitute(&query.expr)
                .unwrap_or_else(|error| panic!("{}: {error}", query.origin));
            queries.push(Query { expr, ..query });
        }
    }
    queries
}

// ---------------------------------------------------------------------------
// Tests without root

#[test]
fn alert_rules_pass_promtool_check() {
    if !promtool_available("alert_rules_pass_promtool_check") {
        return;
    }
    let output = promtool(&["check", "rules", "alerts.yml"], &dashboards_dir());
    assert!(
        output.status.success(),
        "promtool check rules failed:\n{}",
        output_text(&output)
    );
}

#[test]
fn alert_rules_pass_unit_tests() {
    if !promtool_available("alert_rules_pass_unit_tests") {
        return;
    }
    let output = promtool(&["test", "rules", "alerts.test.yml"], &dashboards_dir());
    assert!(
        output.status.success(),
        "promtool test rules failed:\n{}",
        output_text(&output)
    );
}

#[test]
fn alert_unit_tests_cover_every_alert() {
    let path = dashboards_dir().join("alerts.test.yml");
    let text = fs::read_to_string(&path).expect("read alerts.test.yml");
    let lines: Vec<&str> = text.lines().map(str::trim).collect();
    // For each `alertname:` line, the next `exp_alerts:` line is `[]` when
    // the alert must stay quiet in that case, and a list when it must fire.
    let mut firing = BTreeSet::new();
    let mut quiet = BTreeSet::new();
    for (index, line) in lines.iter().enumerate() {
        let Some(name) = line.strip_prefix("alertname:") else {
            continue;
        };
        let expectation = lines[index + 1..]
            .iter()
            .find(|line| line.starts_with("exp_alerts:"))
            .unwrap_or_else(|| panic!("alertname {name} has no exp_alerts"));
        if expectation.ends_with("[]") {
            quiet.insert(name.trim().to_string());
        } else {
            firing.insert(name.trim().to_string());
        }
    }
    for (name, _) in alert_rules() {
        assert!(
            firing.contains(&name),
            "alerts.test.yml has no case in which {name} fires"
        );
        assert!(
            quiet.contains(&name),
            "alerts.test.yml has no case in which {name} stays quiet"
        );
    }
}

#[test]
fn example_prometheus_config_loads_alerts() {
    if !promtool_available("example_prometheus_config_loads_alerts") {
        return;
    }
    let output = promtool(&["check", "config", "prometheus.yml"], &dashboards_dir());
    assert!(
        output.status.success(),
        "promtool check config failed:\n{}",
        output_text(&output)
    );
    let text = output_text(&output);
    assert!(
        text.contains("alerts.yml") && text.contains("SUCCESS: 7 rules found"),
        "prometheus.yml does not load the 7 rules of alerts.yml:\n{text}"
    );
}

#[test]
fn panel_queries_parse_after_substitution() {
    if !promtool_available("panel_queries_parse_after_substitution") {
        return;
    }
    let queries = all_dashboard_queries(&Macros::grafana_defaults());
    assert!(queries.len() > 20, "only {} queries found", queries.len());
    if let Err(report) = check_syntax(&queries) {
        panic!("a dashboard query does not parse:\n{report}");
    }
}

#[test]
fn syntax_check_rejects_broken_query() {
    if !promtool_available("syntax_check_rejects_broken_query") {
        return;
    }
    let broken = Query {
        origin: "broken panel".to_string(),
        expr: "sum by (name) (rate(container_cpu_usage_seconds_total[1m])".to_string(),
    };
    let report = check_syntax(&[broken]).expect_err("an unclosed parenthesis parsed");
    assert!(
        report.contains("broken panel"),
        "the error does not name the query's origin:\n{report}"
    );
}

#[test]
fn macro_substitution_rejects_unknown_variable() {
    let macros = Macros::grafana_defaults();
    assert_eq!(
        macros
            .substitute(r#"rate(x{name=~"$job"}[$__rate_interval])"#)
            .unwrap(),
        r#"rate(x{name=~".+"}[1m])"#
    );
    assert_eq!(
        macros
            .substitute("${job:regex} [[instance]] x[5m]")
            .unwrap(),
        ".+ .+ x[5m]"
    );
    assert!(macros.substitute(r#"x{pod=~"$pod"}"#).is_err());
}

#[test]
fn dashboards_follow_grafana_conventions() {
    for (file, dashboard) in load_dashboards() {
        let stem = file.trim_end_matches(".json");
        assert_eq!(dashboard["uid"], stem, "{file}: uid");
        assert_eq!(
            dashboard["schemaVersion"], SCHEMA_VERSION,
            "{file}: schemaVersion"
        );
        assert!(
            dashboard.get("__inputs").is_none(),
            "{file}: __inputs placeholders break file provisioning"
        );
        assert!(
            dashboard["id"].is_null(),
            "{file}: a fixed id collides with dashboards of the Grafana instance"
        );
        check_variables(file, &dashboard);

        let mut ids = BTreeSet::new();
        for panel in dashboard["panels"].as_array().expect("panels array") {
            let id = panel["id"].as_u64().expect("numeric panel id");
            assert!(ids.insert(id), "{file}: panel id {id} used twice");
            let position = &panel["gridPos"];
            let right = position["x"].as_u64().unwrap_or(99) + position["w"].as_u64().unwrap_or(99);
            assert!(right <= 24, "{file}: panel {id} ends at column {right}");
        }
        let mut titles = BTreeSet::new();
        for panel in panels(&dashboard) {
            let title = panel["title"].as_str().unwrap_or_default();
            assert!(
                titles.insert(title),
                "{file}: two panels are titled {title:?}"
            );
            check_panel(file, panel);
        }
    }
}

fn check_variables(file: &str, dashboard: &Value) {
    let variables = dashboard["templating"]["list"]
        .as_array()
        .expect("templating.list");
    let find = |name: &str| {
        variables
            .iter()
            .find(|variable| variable["name"] == name)
            .unwrap_or_else(|| panic!("{file}: no {name} variable"))
    };
    let datasource = find("datasource");
    assert_eq!(datasource["type"], "datasource", "{file}: datasource type");
    assert_eq!(
        datasource["query"], "prometheus",
        "{file}: datasource query"
    );
    for name in ["instance", "job"] {
        let variable = find(name);
        assert_eq!(variable["type"], "query", "{file}: {name} type");
        assert_eq!(
            variable["datasource"]["uid"], DATASOURCE_UID,
            "{file}: {name} datasource"
        );
        let query = variable["query"].as_str().unwrap_or_default();
        assert!(
            query.starts_with("label_values("),
            "{file}: {name} is not from label_values(): {query:?}"
        );
        assert_eq!(
            variable["definition"], variable["query"],
            "{file}: {name} definition"
        );
    }
}

fn check_panel(file: &str, panel: &Value) {
    let title = panel["title"].as_str().unwrap_or("untitled");
    let kind = panel["type"].as_str().unwrap_or_default();
    assert_eq!(
        panel["datasource"]["uid"], DATASOURCE_UID,
        "{file}: {title:?} datasource"
    );
    let unit = panel["fieldConfig"]["defaults"]["unit"]
        .as_str()
        .unwrap_or_default();
    assert!(!unit.is_empty(), "{file}: {title:?} has no unit");
    let targets = panel["targets"].as_array().cloned().unwrap_or_default();
    assert!(!targets.is_empty(), "{file}: {title:?} has no query");
    for target in &targets {
        let ref_id = target["refId"].as_str().unwrap_or("?");
        assert_eq!(
            target["datasource"]["uid"], DATASOURCE_UID,
            "{file}: {title:?} {ref_id} datasource"
        );
        let expr = target["expr"].as_str().unwrap_or_default();
        assert!(
            !expr.trim().is_empty(),
            "{file}: {title:?} {ref_id} has an empty query"
        );
        let legend = target["legendFormat"].as_str().unwrap_or_default();
        assert!(
            !legend.is_empty(),
            "{file}: {title:?} {ref_id} has no legend"
        );
        if PER_JOB_PANEL_TYPES.contains(&kind) {
            assert!(
                legend.contains("{{name}}"),
                "{file}: {title:?} {ref_id} legend {legend:?} does not name the job"
            );
        }
    }
}

#[test]
fn queries_use_cadvisor_and_job_metric_names() {
    let mut queries = Vec::new();
    for (file, dashboard) in load_dashboards() {
        queries.extend(panel_queries(file, &dashboard));
        queries.extend(
            variable_queries(file, &dashboard)
                .into_iter()
                .map(|(_, query)| query),
        );
    }
    for (name, expr) in alert_rules() {
        queries.push(Query {
            origin: format!("alerts.yml: {name}"),
            expr,
        });
    }
    for query in &queries {
        for metric in metric_names(&query.expr, &["container_"]) {
            assert!(
                CADVISOR_METRICS.contains(&metric.as_str()),
                "{}: {metric} is not a cAdvisor metric name",
                query.origin
            );
        }
        for metric in metric_names(&query.expr, &["corral_"]) {
            assert!(
                JOB_METRICS.contains(&metric.as_str()),
                "{}: {metric} is not a job metric of the agent",
                query.origin
            );
        }
    }
}

#[test]
fn metric_name_scan_skips_labels_and_strings() {
    let names = metric_names(
        r#"sum by (name) (rate(container_cpu_usage_seconds_total{name=~"container_x"}[5m])) / container_spec_cpu_period"#,
        &["container_"],
    );
    let expected: BTreeSet<String> = [
        "container_cpu_usage_seconds_total",
        "container_spec_cpu_period",
    ]
    .into_iter()
    .map(str::to_string)
    .collect();
    assert_eq!(names, expected);
}

#[test]
fn provisioning_files_load_dashboards_from_disk() {
    let provisioning = dashboards_dir().join("provisioning");
    let dashboards = fs::read_to_string(provisioning.join("dashboards/corral.yml"))
        .expect("read provisioning/dashboards/corral.yml");
    assert!(
        dashboards.contains("type: file"),
        "the dashboard provider is not a file provider:\n{dashboards}"
    );
    assert!(
        dashboards.contains("path: /var/lib/grafana/dashboards/corral"),
        "the dashboard provider reads another directory than docs/dashboards.md names:\n{dashboards}"
    );
    let datasources = fs::read_to_string(provisioning.join("datasources/prometheus.yml"))
        .expect("read provisioning/datasources/prometheus.yml");
    assert!(
        datasources.contains("type: prometheus"),
        "the provisioned datasource is not Prometheus:\n{datasources}"
    );
}

// ---------------------------------------------------------------------------
// Live data: real jobs, the real agent and a real Prometheus

/// Jobs that together produce data for every panel. `io_dir` is a directory
/// on a block device, bind-mounted into the disk job.
fn live_jobs(io_dir: &Path) -> Vec<(&'static str, String)> {
    let io_dir = io_dir.display();
    vec![
        // CFS quota of 0.2 CPUs against a busy loop: throttled in most periods.
        (
            "throttled",
            r#"{"image": "host", "command": ["/bin/sh", "-c", "while :; do :; done"],
                "network": "none", "init": true,
                "resources": {"cpus": 0.2, "memory": "32M", "pids": 16},
                "stop": {"timeout": "2s"}}"#
                .to_string(),
        ),
        // About 62 MiB of its 64 MiB limit: above 90%, below the limit.
        (
            "memory-full",
            r#"{"image": "host",
                "command": ["/usr/bin/python3", "-c", "import time\ndata = b'x' * (55 << 20)\nwhile True:\n    time.sleep(1)\n"],
                "network": "none", "init": true,
                "resources": {"memory": "64M", "pids": 16},
                "stop": {"timeout": "2s"}}"#
                .to_string(),
        ),
        // A child that the OOM killer kills while the shell survives, so the
        // container lives on and a scrape reads the raised counter. Then the
        // shell exits 1 and the job restarts.
        (
            "oom-loop",
            r#"{"image": "host",
                "command": ["/bin/sh", "-c", "sleep 1; /usr/bin/python3 -c \"data = b'x' * (256 << 20)\"; sleep 4; exit 1"],
                "network": "none", "init": true,
                "resources": {"memory": "48M", "pids": 16},
                "restart": {"policy": "on-failure", "max_restarts": 1000, "window": "10m",
                            "backoff": {"initial": "500ms", "max": "1s"}},
                "stop": {"timeout": "2s"}}"#
                .to_string(),
        ),
        // 15 tasks (init, shell, 13 sleeps) of a pids limit of 16.
        (
            "pids-full",
            r#"{"image": "host",
                "command": ["/bin/sh", "-c", "for i in 1 2 3 4 5 6 7 8 9 10 11 12 13; do sleep 100000 & done; wait"],
                "network": "none", "init": true,
                "resources": {"pids": 16},
                "stop": {"timeout": "2s"}}"#
                .to_string(),
        ),
        // Direct I/O, because buffered writes reach the disk from the kernel's
        // writeback threads, which cgroup v1 does not charge to the job.
        (
            "disk-io",
            format!(
                r#"{{"image": "host",
                    "command": ["/bin/sh", "-c", "while :; do dd if=/dev/zero of=/data/blocks bs=1M count=4 oflag=direct 2>/dev/null; dd if=/data/blocks of=/dev/null bs=1M iflag=direct 2>/dev/null; sleep 0.5; done"],
                    "network": "none", "init": true,
                    "resources": {{"memory": "32M"}},
                    "mounts": [{{"type": "bind", "source": "{io_dir}", "target": "/data"}}],
                    "stop": {{"timeout": "2s"}}}}"#
            ),
        ),
        // UDP to the all-nodes multicast address on veth0, which the test adds
        // to the job's network namespace. A loopback-mode job has only lo,
        // and the agent leaves lo out.
        (
            "net",
            r#"{"image": "host",
                "command": ["/usr/bin/python3", "-c", "import socket, time\nsock = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)\nwhile True:\n    try:\n        sock.sendto(b'x' * 512, ('ff02::1%veth0', 9))\n    except OSError:\n        pass\n    time.sleep(0.2)\n"],
                "network": "loopback", "init": true,
                "resources": {"memory": "32M"},
                "stop": {"timeout": "2s"}}"#
                .to_string(),
        ),
        // Fails at once and is given up after one restart.
        (
            "fatal",
            r#"{"image": "host", "command": ["/bin/false"], "network": "none", "init": true,
                "start_seconds": 1,
                "restart": {"policy": "on-failure", "max_restarts": 1, "window": "1m",
                            "backoff": {"initial": "200ms", "max": "200ms"}}}"#
                .to_string(),
        ),
    ]
}

/// Data that the live jobs must produce, beyond "some series": each query
/// must return a series whose `name` label is the job.
const LIVE_EXPECTATIONS: [(&str, &str); 6] = [
    (
        "oom-loop",
        r#"increase(container_oom_events_total{name="oom-loop"}[1m]) > 0"#,
    ),
    (
        "oom-loop",
        r#"corral_job_restarts_total{name="oom-loop"} > 3"#,
    ),
    (
        "disk-io",
        r#"rate(container_fs_writes_bytes_total{name="disk-io"}[10s]) > 0"#,
    ),
    (
        "disk-io",
        r#"rate(container_fs_reads_bytes_total{name="disk-io"}[10s]) > 0"#,
    ),
    (
        "net",
        r#"rate(container_network_transmit_bytes_total{name="net"}[10s]) > 0"#,
    ),
    (
        "fatal",
        r#"corral_job_state{name="fatal", state="FATAL"} == 1"#,
    ),
];

/// The job each alert's expression (without its `for` duration) must select
/// while the live jobs run; None for an alert that must stay quiet.
const LIVE_ALERTS: [(&str, Option<&str>); 7] = [
    ("JobDown", Some("fatal")),
    ("JobRestartLoop", Some("oom-loop")),
    ("JobOOMKilled", Some("oom-loop")),
    ("CPUThrottlingHigh", Some("throttled")),
    ("MemoryNearLimit", Some("memory-full")),
    ("PidsNearLimit", Some("pids-full")),
    ("MetricsAgentDown", None),
];

/// Why a pressure (PSI) query may return nothing: mainline Linux keeps
/// per-cgroup pressure files only in the cgroup v2 hierarchy, and only when
/// built with PSI. On other hosts the agent exports no `container_pressure_*`
/// series at all, and the exception holds only while no such series exists.
const PRESSURE_EXCEPTION: &str = "the agent exports no container_pressure_* series, \
     as on cgroup v1 and hybrid hosts and on kernels without PSI";

fn is_pressure_query(expr: &str) -> bool {
    let metrics = metric_names(expr, &["container_", "corral_"]);
    !metrics.is_empty()
        && metrics
            .iter()
            .all(|metric| metric.starts_with("container_pressure_"))
}

/// Runs an instant query; the error is Prometheus' message or the transport
/// failure.
fn query_prometheus(address: &str, promql: &str) -> Result<Vec<Value>, String> {
    let encoded: String = promql
        .bytes()
        .map(|byte| match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (byte as char).to_string()
            }
            _ => format!("%{byte:02X}"),
        })
        .collect();

    let mut stream =
        TcpStream::connect(address).map_err(|error| format!("connect {address}: {error}"))?;
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .map_err(|error| format!("set timeout: {error}"))?;
    // HTTP/1.0, so the body ends at the end of the stream and is not chunked.
    let request = format!("GET /api/v1/query?query={encoded} HTTP/1.0\r\nHost: {address}\r\n\r\n");
    stream
        .write_all(request.as_bytes())
        .map_err(|error| format!("send query: {error}"))?;

    let mut response = String::new();
    stream
        .read_to_string(&mut response)
        .map_err(|error| format!("read response: {error}"))?;
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, body)| body)
        .ok_or_else(|| format!("response without body: {response:?}"))?;

    let value: Value =
        serde_json::from_str(body).map_err(|error| format!("invalid JSON {body:?}: {error}"))?;
    if value["status"] != "success" {
        return Err(format!("{}: {}", value["errorType"], value["error"]));
    }
    Ok(value["data"]["result"]
        .as_array()
        .cloned()
        .unwrap_or_default())
}

fn job_names(series: &[Value]) -> BTreeSet<String> {
    series
        .iter()
        .filter_map(|sample| sample["metric"]["name"].as_str())
        .map(str::to_string)
        .collect()
}

/// Creates a veth pair inside the network namespace of `pid`. Both ends stay
/// in that namespace, so its traffic never leaves it, and the kernel removes
/// the pair with the namespace when the job ends.
fn add_veth_pair(pid: &str) {
    let namespace = format!("--net=/proc/{pid}/ns/net");
    let steps: [&[&str]; 3] = [
        &[
            "link", "add", "veth0", "type", "veth", "peer", "name", "veth1",
        ],
        &["link", "set", "veth0", "up"],
        &["link", "set", "veth1", "up"],
    ];
    for step in steps {
        let output = Command::new("nsenter")
            .arg(&namespace)
            .arg("ip")
            .args(step)
            .output()
            .unwrap_or_else(|error| panic!("run nsenter and ip (util-linux, iproute2): {error}"));
        assert!(
            output.status.success(),
            "ip {step:?} in the namespace of PID {pid} failed: {}",
            output_text(&output)
        );
    }
}

/// Everything the live checks found missing, by kind, for one evaluation.
#[derive(Default)]
struct LiveReport {
    empty_panels: Vec<String>,
    failed_queries: Vec<String>,
    skipped_pressure: Vec<String>,
    variables: Vec<String>,
    expectations: Vec<String>,
    alerts: Vec<String>,
}

impl LiveReport {
    fn complete(&self) -> bool {
        self.empty_panels.is_empty()
            && self.failed_queries.is_empty()
            && self.variables.is_empty()
            && self.expectations.is_empty()
            && self.alerts.is_empty()
    }
}

fn evaluate_live(
    prometheus: &Prometheus,
    macros: &Macros,
    instance: &str,
    jobs: &[&str],
) -> LiveReport {
    let address = &prometheus.address;
    let mut report = LiveReport::default();
    let pressure_exported = !prometheus
        .query(r#"count({__name__=~"container_pressure_.+"})"#)
        .is_empty();

    for (file, dashboard) in load_dashboards() {
        for query in panel_queries(file, &dashboard) {
            let expr = macros.substitute(&query.expr).expect("substitute macros");
            match query_prometheus(address, &expr) {
                Err(error) => report
                    .failed_queries
                    .push(format!("{}: {error}\n    {expr}", query.origin)),
                Ok(series) if series.is_empty() => {
                    if is_pressure_query(&expr) && !pressure_exported {
                        report.skipped_pressure.push(query.origin);
                    } else {
                        report
                            .empty_panels
                            .push(format!("{}\n    {expr}", query.origin));
                    }
                }
                Ok(_) => {}
            }
        }
        for (label, query) in variable_queries(file, &dashboard) {
            let expr = macros.substitute(&query.expr).expect("substitute macros");
            let values: BTreeSet<String> = match query_prometheus(address, &expr) {
                Ok(series) => series
                    .iter()
                    .filter_map(|sample| sample["metric"][label.as_str()].as_str())
                    .map(str::to_string)
                    .collect(),
                Err(error) => {
                    report
                        .failed_queries
                        .push(format!("{}: {error}\n    {expr}", query.origin));
                    continue;
                }
            };
            let expected: Vec<&str> = if label == "instance" {
                vec![instance]
            } else {
                jobs.to_vec()
            };
            for value in expected {
                if !values.contains(value) {
                    report
                        .variables
                        .push(format!("{}: {value} missing from {values:?}", query.origin));
                }
            }
        }
    }

    for (job, expr) in LIVE_EXPECTATIONS {
        match query_prometheus(address, expr) {
            Ok(series) if job_names(&series).contains(job) => {}
            Ok(series) => report
                .expectations
                .push(format!("{expr}: no series of {job} in {series:?}")),
            Err(error) => report.expectations.push(format!("{expr}: {error}")),
        }
    }

    let rules = alert_rules();
    for (alert, expected_job) in LIVE_ALERTS {
        let Some((_, expr)) = rules.iter().find(|(name, _)| name == alert) else {
            report.alerts.push(format!("{alert} is not in alerts.yml"));
            continue;
        };
        match (query_prometheus(address, expr), expected_job) {
            (Err(error), _) => report.alerts.push(format!("{alert}: {error}")),
            (Ok(series), Some(job)) if !job_names(&series).contains(job) => report
                .alerts
                .push(format!("{alert} does not select {job}: {series:?}")),
            (Ok(series), None) if !series.is_empty() => report.alerts.push(format!(
                "{alert} selects series while it must not: {series:?}"
            )),
            _ => {}
        }
    }
    report
}

#[test]
fn panel_queries_return_live_data() {
    const TEST: &str = "panel_queries_return_live_data";
    if !require_root(TEST) || !promtool_available(TEST) {
        return;
    }
    let _serial = serial();
    // A directory on the disk that holds the build, because direct I/O
    // needs a block device below it, which /tmp may not have.
    let target = workspace_root().join("target");
    std::fs::create_dir_all(&target).expect("create target/");
    let io_dir = tempfile::Builder::new()
        .prefix("corral-dashboards-io-")
        .tempdir_in(&target)
        .expect("create I/O directory below target/");

    let mut supervisor = Supervisor::new("dashboards");
    let jobs = live_jobs(io_dir.path());
    for (name, body) in &jobs {
        supervisor.add_job(name, body);
    }
    supervisor.start();
    for (name, _) in &jobs {
        let state = if *name == "fatal" { "FATAL" } else { "RUNNING" };
        supervisor.wait_for_status(name, state, Duration::from_secs(30));
    }
    let pid = supervisor.ctl(&["pid", "net"]);
    add_veth_pair(String::from_utf8_lossy(&pid.stdout).trim());

    let agent = Agent::start(&supervisor.run_dir, Some(&supervisor.socket()));
    let Some(prometheus) = Prometheus::start(TEST, &agent.address) else {
        return;
    };

    let job_list: Vec<&str> = jobs.iter().map(|(name, _)| *name).collect();
    // Short windows, as a 1 s scrape interval allows: Grafana's
    // $__rate_interval is at least four scrape intervals, and increase()
    // over $__interval needs two samples in the window.
    let macros = Macros::new(
        "10s",
        "5s",
        "2m",
        &regex_of(&[&agent.address]),
        &regex_of(&job_list),
    );
    // Poll until every check holds, because rate() needs two scrapes and the
    // OOM and restart counters need a few cycles of oom-loop.
    let deadline = Instant::now() + Duration::from_secs(150);
    let report = loop {
        let report = evaluate_live(&prometheus, &macros, &agent.address, &job_list);
        if report.complete() || Instant::now() >= deadline {
            break report;
        }
        std::thread::sleep(Duration::from_secs(2));
    };

    let status = String::from_utf8_lossy(&supervisor.ctl(&["status"]).stdout).into_owned();
    // Every kind of problem at once, as the asserts below stop at the first.
    let sections = [
        ("rejected queries", &report.failed_queries),
        ("empty panel queries", &report.empty_panels),
        ("missing variable values", &report.variables),
        ("missing job data", &report.expectations),
        ("alert expressions", &report.alerts),
    ];
    for (title, problems) in sections {
        for problem in problems {
            eprintln!("{TEST}: {title}: {problem}");
        }
    }
    if !report.skipped_pressure.is_empty() {
        eprintln!(
            "NOTE {TEST}: {} pressure queries returned no series, allowed while {PRESSURE_EXCEPTION}:\n  {}",
            report.skipped_pressure.len(),
            report.skipped_pressure.join("\n  ")
        );
    }
    assert!(
        report.failed_queries.is_empty(),
        "queries that Prometheus rejected:\n{}",
        report.failed_queries.join("\n")
    );
    assert!(
        report.empty_panels.is_empty(),
        "panel queries that returned no series:\n{}\n\nsupervisorctl status:\n{status}",
        report.empty_panels.join("\n")
    );
    assert!(
        report.variables.is_empty(),
        "variable values missing:\n{}",
        report.variables.join("\n")
    );
    assert!(
        report.expectations.is_empty(),
        "data the jobs should have produced is missing:\n{}\n\nsupervisorctl status:\n{status}",
        report.expectations.join("\n")
    );
    assert!(
        report.alerts.is_empty(),
        "alert expressions against live data:\n{}",
        report.alerts.join("\n")
    );
}

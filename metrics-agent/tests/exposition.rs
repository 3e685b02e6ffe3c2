//! Exposition of the fixture trees in `tests/fixtures`: every value the agent
//! reads from v1 and v2 cgroup files and from `/proc`, asserted line by line.

mod common;

use std::fs;
use std::time::{SystemTime, UNIX_EPOCH};

use common::{assert_line, assert_no_sample, samples, scrape, state, Fixture};
use corral_config::convert::weight_to_shares;
use corral_metrics_agent::{families, ContainerLabels};
use corral_runtime::state::{CgroupPaths, Status};

/// The base labels of the fixture job `web`, in the agent's sorted order.
const WEB: &str = r#"id="/corral/web",image="busybox",name="web""#;

fn ticks_per_second() -> f64 {
    procfs::ticks_per_second() as f64
}

#[test]
fn v1_fixture_exposition() {
    let fixture = Fixture::new();
    fixture.add_container("web", "web", fixture.v1_paths());
    let text = scrape(fixture.settings());

    let expected = [
        format!(r#"container_cpu_usage_seconds_total{{cpu="total",{WEB}}} 2.5"#),
        format!(
            "container_cpu_user_seconds_total{{{WEB}}} {}",
            150.0 / ticks_per_second()
        ),
        format!(
            "container_cpu_system_seconds_total{{{WEB}}} {}",
            50.0 / ticks_per_second()
        ),
        format!("container_cpu_cfs_periods_total{{{WEB}}} 40"),
        format!("container_cpu_cfs_throttled_periods_total{{{WEB}}} 4"),
        format!("container_cpu_cfs_throttled_seconds_total{{{WEB}}} 0.25"),
        format!("container_spec_cpu_quota{{{WEB}}} 20000"),
        format!("container_spec_cpu_period{{{WEB}}} 100000"),
        format!("container_spec_cpu_shares{{{WEB}}} 512"),
        format!("container_memory_usage_bytes{{{WEB}}} 10485760"),
        format!("container_memory_working_set_bytes{{{WEB}}} 8388608"),
        format!("container_memory_rss{{{WEB}}} 6291456"),
        format!("container_memory_cache{{{WEB}}} 4194304"),
        format!("container_memory_swap{{{WEB}}} 1048576"),
        format!("container_memory_failcnt{{{WEB}}} 3"),
        format!("container_memory_max_usage_bytes{{{WEB}}} 12582912"),
        format!("container_oom_events_total{{{WEB}}} 1"),
        format!("container_spec_memory_limit_bytes{{{WEB}}} 67108864"),
        format!(r#"container_fs_reads_bytes_total{{device="/dev/vda",{WEB}}} 2097152"#),
        format!(r#"container_fs_writes_bytes_total{{device="/dev/vda",{WEB}}} 1048576"#),
        format!(r#"container_fs_reads_total{{device="/dev/vda",{WEB}}} 32"#),
        format!(r#"container_fs_writes_total{{device="/dev/vda",{WEB}}} 16"#),
        format!(r#"container_fs_reads_bytes_total{{device="259:7",{WEB}}} 4096"#),
        format!(r#"container_fs_reads_total{{device="259:7",{WEB}}} 1"#),
        format!("container_processes{{{WEB}}} 3"),
        // pids.current, which still counts PID 4244 that exited during the
        // scrape.
        format!("container_threads{{{WEB}}} 5"),
        format!("container_threads_max{{{WEB}}} 64"),
        format!("container_file_descriptors{{{WEB}}} 7"),
        format!("container_start_time_seconds{{{WEB}}} 1767225600"),
        "metrics_agent_containers 1".to_string(),
    ];
    for line in &expected {
        assert_line(&text, line);
    }
    assert_network_lines(&text);
    assert_last_seen_is_now(&text);
    assert_no_read_errors(&text);
    // Mainline kernels keep no per-cgroup pressure on v1, and the fixture's
    // cpuacct directory has no pressure files.
    assert_no_sample(&text, "container_pressure_");
}

#[test]
fn v2_fixture_exposition() {
    let fixture = Fixture::new();
    fixture.add_container("web", "web", fixture.v2_paths());
    let text = scrape(fixture.settings());

    let expected = [
        format!(r#"container_cpu_usage_seconds_total{{cpu="total",{WEB}}} 2.5"#),
        format!("container_cpu_user_seconds_total{{{WEB}}} 1.5"),
        format!("container_cpu_system_seconds_total{{{WEB}}} 1"),
        format!("container_cpu_cfs_periods_total{{{WEB}}} 40"),
        format!("container_cpu_cfs_throttled_periods_total{{{WEB}}} 4"),
        format!("container_cpu_cfs_throttled_seconds_total{{{WEB}}} 0.25"),
        format!("container_spec_cpu_quota{{{WEB}}} 20000"),
        format!("container_spec_cpu_period{{{WEB}}} 100000"),
        format!(
            "container_spec_cpu_shares{{{WEB}}} {}",
            weight_to_shares(100)
        ),
        format!("container_memory_usage_bytes{{{WEB}}} 10485760"),
        format!("container_memory_working_set_bytes{{{WEB}}} 8388608"),
        format!("container_memory_rss{{{WEB}}} 6291456"),
        format!("container_memory_cache{{{WEB}}} 4194304"),
        format!("container_memory_swap{{{WEB}}} 1048576"),
        format!("container_memory_failcnt{{{WEB}}} 3"),
        format!("container_memory_max_usage_bytes{{{WEB}}} 12582912"),
        format!("container_oom_events_total{{{WEB}}} 1"),
        // memory.max is "max": unlimited reads as 0, as in cAdvisor.
        format!("container_spec_memory_limit_bytes{{{WEB}}} 0"),
        format!(r#"container_fs_reads_bytes_total{{device="/dev/vda",{WEB}}} 2097152"#),
        format!(r#"container_fs_writes_bytes_total{{device="/dev/vda",{WEB}}} 1048576"#),
        format!(r#"container_fs_reads_total{{device="/dev/vda",{WEB}}} 32"#),
        format!(r#"container_fs_writes_total{{device="/dev/vda",{WEB}}} 16"#),
        format!(r#"container_fs_reads_bytes_total{{device="259:7",{WEB}}} 4096"#),
        format!("container_pressure_cpu_waiting_seconds_total{{{WEB}}} 1.5"),
        format!("container_pressure_cpu_stalled_seconds_total{{{WEB}}} 0.5"),
        format!("container_pressure_memory_waiting_seconds_total{{{WEB}}} 0.3"),
        format!("container_pressure_memory_stalled_seconds_total{{{WEB}}} 0.1"),
        format!("container_pressure_io_waiting_seconds_total{{{WEB}}} 2"),
        format!("container_pressure_io_stalled_seconds_total{{{WEB}}} 0.7"),
        format!("container_processes{{{WEB}}} 3"),
        format!("container_threads{{{WEB}}} 5"),
        // pids.max is "max": no limit reads as 0, as in cAdvisor.
        format!("container_threads_max{{{WEB}}} 0"),
        format!("container_file_descriptors{{{WEB}}} 7"),
        format!("container_start_time_seconds{{{WEB}}} 1767225600"),
        "metrics_agent_containers 1".to_string(),
    ];
    for line in &expected {
        assert_line(&text, line);
    }
    assert_network_lines(&text);
    assert_last_seen_is_now(&text);
    assert_no_read_errors(&text);
}

fn assert_network_lines(text: &str) {
    // The family's own label comes before the container's labels.
    let eth0 = r#"interface="eth0",id="/corral/web",image="busybox",name="web""#;
    let expected = [
        ("container_network_receive_bytes_total", 1000),
        ("container_network_receive_packets_total", 10),
        ("container_network_receive_errors_total", 1),
        ("container_network_receive_packets_dropped_total", 2),
        ("container_network_transmit_bytes_total", 2000),
        ("container_network_transmit_packets_total", 20),
        ("container_network_transmit_errors_total", 3),
        ("container_network_transmit_packets_dropped_total", 4),
    ];
    for (name, value) in expected {
        assert_line(text, &format!("{name}{{{eth0}}} {value}"));
    }
    assert!(
        !text.contains(r#"interface="lo""#),
        "loopback must not be exported:\n{text}"
    );
}

fn assert_last_seen_is_now(text: &str) {
    let lines = samples(text, "container_last_seen");
    assert_eq!(lines.len(), 1, "one container_last_seen sample:\n{text}");
    let value: f64 = lines[0].rsplit(' ').next().unwrap().parse().unwrap();
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    assert!(
        (now - value).abs() < 60.0,
        "container_last_seen {value} is not the scrape time {now}"
    );
}

fn assert_no_read_errors(text: &str) {
    for kind in ["state", "cgroup", "proc", "parse", "supervisor"] {
        assert_line(
            text,
            &format!(r#"metrics_agent_read_errors_total{{kind="{kind}"}} 0"#),
        );
    }
}

#[test]
fn v1_per_cpu_replaces_total() {
    let fixture = Fixture::new();
    fixture.add_container("web", "web", fixture.v1_paths());
    let text = scrape(corral_metrics_agent::Settings {
        per_cpu: true,
        ..fixture.settings()
    });

    assert_line(
        &text,
        &format!(r#"container_cpu_usage_seconds_total{{cpu="cpu00",{WEB}}} 1"#),
    );
    assert_line(
        &text,
        &format!(r#"container_cpu_usage_seconds_total{{cpu="cpu01",{WEB}}} 1.5"#),
    );
    assert!(
        !text.contains(r#"cpu="total""#),
        "per-CPU series replace the total:\n{text}"
    );
}

#[test]
fn v2_per_cpu_keeps_total() {
    let fixture = Fixture::new();
    fixture.add_container("web", "web", fixture.v2_paths());
    let text = scrape(corral_metrics_agent::Settings {
        per_cpu: true,
        ..fixture.settings()
    });

    assert_line(
        &text,
        &format!(r#"container_cpu_usage_seconds_total{{cpu="total",{WEB}}} 2.5"#),
    );
    assert_eq!(samples(&text, "container_cpu_usage_seconds_total").len(), 1);
}

#[test]
fn v1_working_set_floors_at_zero() {
    let fixture = Fixture::new();
    let stat = fs::read_to_string(fixture.path("v1/memory/job/memory.stat")).unwrap();
    let stat = stat.replace(
        "total_inactive_file 2097152",
        "total_inactive_file 20971520",
    );
    fixture.write("v1/memory/job/memory.stat", &stat);
    fixture.add_container("web", "web", fixture.v1_paths());
    let text = scrape(fixture.settings());

    assert_line(
        &text,
        &format!("container_memory_working_set_bytes{{{WEB}}} 0"),
    );
    assert_line(
        &text,
        &format!("container_memory_usage_bytes{{{WEB}}} 10485760"),
    );
}

#[test]
fn v2_working_set_floors_at_zero() {
    let fixture = Fixture::new();
    let stat = fs::read_to_string(fixture.path("v2/job/memory.stat")).unwrap();
    let stat = stat.replace("inactive_file 2097152", "inactive_file 20971520");
    fixture.write("v2/job/memory.stat", &stat);
    fixture.add_container("web", "web", fixture.v2_paths());
    let text = scrape(fixture.settings());

    assert_line(
        &text,
        &format!("container_memory_working_set_bytes{{{WEB}}} 0"),
    );
}

#[test]
fn unknown_device_keeps_number() {
    let fixture = Fixture::new();
    fixture.add_container("web", "web", fixture.v2_paths());
    let text = scrape(fixture.settings());

    let devices: Vec<&str> = samples(&text, "container_fs_writes_total")
        .into_iter()
        .map(|line| {
            let start = line.find("device=\"").unwrap() + "device=\"".len();
            let end = start + line[start..].find('"').unwrap();
            &line[start..end]
        })
        .collect();
    assert_eq!(devices, ["/dev/vda", "259:7"]);
}

#[test]
fn v1_no_quota_has_no_quota_sample() {
    let fixture = Fixture::new();
    fixture.write("v1/cpu/job/cpu.cfs_quota_us", "-1\n");
    fixture.add_container("web", "web", fixture.v1_paths());
    let text = scrape(fixture.settings());

    assert_no_sample(&text, "container_spec_cpu_quota");
    assert_line(&text, &format!("container_spec_cpu_period{{{WEB}}} 100000"));
}

#[test]
fn v2_no_quota_has_no_quota_sample() {
    let fixture = Fixture::new();
    fixture.write("v2/job/cpu.max", "max 100000\n");
    fixture.add_container("web", "web", fixture.v2_paths());
    let text = scrape(fixture.settings());

    assert_no_sample(&text, "container_spec_cpu_quota");
    assert_line(&text, &format!("container_spec_cpu_period{{{WEB}}} 100000"));
}

#[test]
fn v1_unlimited_memory_is_zero() {
    let fixture = Fixture::new();
    // PAGE_COUNTER_MAX pages of 4 KiB: what an unset v1 limit reads as.
    fixture.write(
        "v1/memory/job/memory.limit_in_bytes",
        "9223372036854771712\n",
    );
    fixture.add_container("web", "web", fixture.v1_paths());
    let text = scrape(fixture.settings());

    assert_line(
        &text,
        &format!("container_spec_memory_limit_bytes{{{WEB}}} 0"),
    );
}

#[test]
fn v1_unlimited_pids_is_zero() {
    let fixture = Fixture::new();
    fixture.write("v1/pids/job/pids.max", "max\n");
    fixture.add_container("web", "web", fixture.v1_paths());
    let text = scrape(fixture.settings());

    assert_line(&text, &format!("container_threads_max{{{WEB}}} 0"));
}

#[test]
fn v2_pids_limit_is_exported() {
    let fixture = Fixture::new();
    fixture.write("v2/job/pids.max", "32\n");
    fixture.add_container("web", "web", fixture.v2_paths());
    let text = scrape(fixture.settings());

    assert_line(&text, &format!("container_threads_max{{{WEB}}} 32"));
}

#[test]
fn threads_without_pids_controller() {
    let fixture = Fixture::new();
    // Without the pids controller the cgroup has neither file, and the
    // threads are summed over /proc: 3 of PID 4242 and 1 of PID 4243.
    fs::remove_file(fixture.path("v2/job/pids.current")).unwrap();
    fs::remove_file(fixture.path("v2/job/pids.max")).unwrap();
    fixture.add_container("web", "web", fixture.v2_paths());
    let text = scrape(fixture.settings());

    assert_line(&text, &format!("container_threads{{{WEB}}} 4"));
    assert_no_sample(&text, "container_threads_max");
    assert_no_read_errors(&text);
}

#[test]
fn vanished_cgroup_is_skipped() {
    let fixture = Fixture::new();
    fixture.add_container("web", "web", fixture.v2_paths());
    let removed_cgroup = CgroupPaths::V2 {
        path: fixture.path("v2/removed"),
    };
    fixture.add_container("old", "old", removed_cgroup);
    let text = scrape(fixture.settings());

    assert!(
        !text.contains(r#"name="old""#),
        "removed cgroup exported:\n{text}"
    );
    assert_line(
        &text,
        &format!("container_memory_usage_bytes{{{WEB}}} 10485760"),
    );
    assert_line(&text, "metrics_agent_containers 1");
    assert_no_read_errors(&text);
}

#[test]
fn exited_init_is_skipped() {
    let fixture = Fixture::new();
    fixture.add_container("web", "web", fixture.v1_paths());
    // PID 4299 has no /proc entry: the init exited before the state file
    // was updated.
    fixture.add_state(state(
        "late",
        Some("late"),
        fixture.v1_paths(),
        Status::Running,
        Some(4299),
    ));
    let text = scrape(fixture.settings());

    assert!(
        !text.contains(r#"name="late""#),
        "exited container exported:\n{text}"
    );
    assert_line(&text, "metrics_agent_containers 1");
    assert_no_read_errors(&text);
}

#[test]
fn stopped_container_is_not_exported() {
    let fixture = Fixture::new();
    fixture.add_state(state(
        "done",
        Some("done"),
        fixture.v2_paths(),
        Status::Stopped,
        Some(4242),
    ));
    fixture.add_state(state(
        "fresh",
        None,
        fixture.v2_paths(),
        Status::Creating,
        None,
    ));
    let text = scrape(fixture.settings());

    assert_no_sample(&text, "container_");
    assert_line(&text, "metrics_agent_containers 0");
}

#[test]
fn container_without_job_is_named_by_id() {
    let fixture = Fixture::new();
    fixture.add_state(state(
        "f00d",
        None,
        fixture.v2_paths(),
        Status::Created,
        Some(4242),
    ));
    let text = scrape(fixture.settings());

    assert_line(
        &text,
        r#"container_memory_usage_bytes{id="/corral/f00d",image="busybox",name="f00d"} 10485760"#,
    );
}

#[test]
fn bad_value_counts_parse_error() {
    let fixture = Fixture::new();
    let stat = fs::read_to_string(fixture.path("v2/job/memory.stat")).unwrap();
    fixture.write(
        "v2/job/memory.stat",
        &stat.replace("anon 6291456", "anon lots"),
    );
    fixture.add_container("web", "web", fixture.v2_paths());
    let text = scrape(fixture.settings());

    assert_line(&text, r#"metrics_agent_read_errors_total{kind="parse"} 1"#);
    assert_no_sample(&text, "container_memory_rss");
    assert_line(&text, &format!("container_memory_cache{{{WEB}}} 4194304"));
}

#[test]
fn invalid_state_file_counts_state_error() {
    let fixture = Fixture::new();
    fixture.add_container("web", "web", fixture.v2_paths());
    fs::create_dir_all(fixture.path("run/containers/broken")).unwrap();
    fixture.write("run/containers/broken/state.json", "{\"ociVersion\":");
    let text = scrape(fixture.settings());

    assert_line(&text, r#"metrics_agent_read_errors_total{kind="state"} 1"#);
    assert_line(&text, "metrics_agent_containers 1");
}

#[test]
fn host_network_namespace_is_skipped() {
    let fixture = Fixture::new();
    // The init shares the agent's namespace, as a job with `network: host`.
    fs::remove_file(fixture.path("proc/4242/ns/net")).unwrap();
    fs::hard_link(
        fixture.path("proc/self/ns/net"),
        fixture.path("proc/4242/ns/net"),
    )
    .unwrap();
    fixture.add_container("web", "web", fixture.v2_paths());
    let text = scrape(fixture.settings());

    assert_no_sample(&text, "container_network_");
    assert_line(
        &text,
        &format!("container_memory_usage_bytes{{{WEB}}} 10485760"),
    );
}

/// Writes a mount table with the fixture's v1 controllers and v2 tree as
/// cgroup mounts.
fn write_mount_table(fixture: &Fixture) {
    let mut table = String::new();
    let controllers = ["cpu", "cpuacct", "memory", "blkio", "pids"];
    for (index, name) in controllers.iter().enumerate() {
        table.push_str(&format!(
            "{} 20 0:{} / {} rw,relatime shared:{} - cgroup cgroup rw,{name}\n",
            30 + index,
            40 + index,
            fixture.path(&format!("v1/{name}")).display(),
            10 + index,
        ));
    }
    table.push_str(&format!(
        "40 20 0:50 / {} rw,relatime shared:20 - cgroup2 cgroup2 rw\n",
        fixture.path("v2").display()
    ));
    fixture.write("proc/self/mountinfo", &table);
}

#[test]
fn cgroup_root_v1_maps_controllers() {
    let fixture = Fixture::new();
    write_mount_table(&fixture);
    let text = scrape(corral_metrics_agent::Settings {
        cgroup_root: Some(fixture.path("v1/memory/job")),
        ..fixture.settings()
    });

    // Plain cgroups have no image, and an empty label is left out.
    let job = r#"id="/job",name="/job""#;
    assert_line(
        &text,
        &format!("container_memory_usage_bytes{{{job}}} 10485760"),
    );
    assert_line(
        &text,
        &format!(r#"container_cpu_usage_seconds_total{{cpu="total",{job}}} 2.5"#),
    );
    assert_line(&text, &format!("container_spec_cpu_quota{{{job}}} 20000"));
    assert_line(
        &text,
        &format!(r#"container_fs_reads_total{{device="/dev/vda",{job}}} 32"#),
    );
    // The processes come from the pids hierarchy, its child cgroup included.
    assert_line(&text, &format!("container_processes{{{job}}} 3"));
    // Without an init PID, the first listed process gives the network.
    assert_line(
        &text,
        r#"container_network_receive_bytes_total{interface="eth0",id="/job",name="/job"} 1000"#,
    );
    assert_no_sample(&text, "container_start_time_seconds");
    assert_line(&text, "metrics_agent_containers 1");
}

#[test]
fn cgroup_root_v2_exports_descendants() {
    let fixture = Fixture::new();
    write_mount_table(&fixture);
    let text = scrape(corral_metrics_agent::Settings {
        cgroup_root: Some(fixture.path("v2/job")),
        ..fixture.settings()
    });

    assert_line(
        &text,
        r#"container_memory_usage_bytes{id="/job",name="/job"} 10485760"#,
    );
    assert_line(
        &text,
        r#"container_memory_usage_bytes{id="/job/worker",name="/job/worker"} 1048576"#,
    );
    assert_line(
        &text,
        r#"container_cpu_usage_seconds_total{cpu="total",id="/job/worker",name="/job/worker"} 0.5"#,
    );
    assert_line(
        &text,
        r#"container_processes{id="/job/worker",name="/job/worker"} 1"#,
    );
    assert_line(&text, "metrics_agent_containers 2");
}

#[test]
fn cgroup_root_outside_cgroupfs_is_rejected() {
    let fixture = Fixture::new();
    write_mount_table(&fixture);
    let settings = corral_metrics_agent::Settings {
        cgroup_root: Some(fixture.path("sys")),
        ..fixture.settings()
    };
    let error = corral_metrics_agent::Agent::new(settings)
        .err()
        .expect("a path outside every cgroup mount is rejected");
    let message = format!("{:#}", anyhow::Error::new(error));
    assert!(
        message.contains("is not on a cgroup or cgroup2 mount"),
        "{message}"
    );
}

#[test]
fn every_family_is_documented() {
    let document = fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/metrics.md"),
    )
    .expect("read docs/metrics.md");
    for family in families::ALL {
        assert!(
            document.contains(&format!("`{}`", family.name)),
            "docs/metrics.md does not describe {}",
            family.name
        );
    }
}

/// A running v2 container `web` with `labels` in its state file.
fn labeled_fixture(labels: &[(&str, &str)]) -> Fixture {
    let fixture = Fixture::new();
    let mut container = state(
        "web",
        Some("web"),
        fixture.v2_paths(),
        Status::Running,
        Some(4242),
    );
    container.labels = labels
        .iter()
        .map(|(key, value)| (key.to_string(), value.to_string()))
        .collect();
    fixture.add_state(container);
    fixture
}

const LABELS: &[(&str, &str)] = &[
    ("team", "web"),
    ("app.kubernetes.io/name", "shop"),
    ("a-b", "first"),
    ("a.b", "second"),
    ("empty", ""),
];

#[test]
fn container_labels_are_exported() {
    let fixture = labeled_fixture(LABELS);
    let text = scrape(fixture.settings());

    // `a-b` and `a.b` give the same name, and `a-b` comes first in byte
    // order; `empty` has no value and is left out.
    let labels = concat!(
        r#"id="/corral/web",image="busybox",name="web","#,
        r#"container_label_a_b="first","#,
        r#"container_label_app_kubernetes_io_name="shop","#,
        r#"container_label_team="web""#
    );
    assert_line(
        &text,
        &format!("container_memory_usage_bytes{{{labels}}} 10485760"),
    );
    assert_line(
        &text,
        &format!(r#"container_cpu_usage_seconds_total{{cpu="total",{labels}}} 2.5"#),
    );
    assert!(!text.contains(r#""second""#), "{text}");
    assert!(!text.contains("container_label_empty"), "{text}");
    assert_no_read_errors(&text);
}

#[test]
fn container_labels_only_selected() {
    let fixture = labeled_fixture(LABELS);
    let text = scrape(corral_metrics_agent::Settings {
        container_labels: ContainerLabels::Only(["team".to_string()].into()),
        ..fixture.settings()
    });

    assert_line(
        &text,
        r#"container_memory_usage_bytes{id="/corral/web",image="busybox",name="web",container_label_team="web"} 10485760"#,
    );
    assert!(!text.contains("container_label_a"), "{text}");
}

#[test]
fn container_labels_turned_off() {
    let fixture = labeled_fixture(LABELS);
    let text = scrape(corral_metrics_agent::Settings {
        container_labels: ContainerLabels::None,
        ..fixture.settings()
    });

    assert_line(
        &text,
        &format!("container_memory_usage_bytes{{{WEB}}} 10485760"),
    );
    assert!(!text.contains("container_label_"), "{text}");
}

#[test]
fn paused_container_is_exported() {
    let fixture = Fixture::new();
    fixture.add_state(state(
        "web",
        Some("web"),
        fixture.v2_paths(),
        Status::Paused,
        Some(4242),
    ));
    let text = scrape(fixture.settings());

    assert_line(
        &text,
        &format!("container_memory_usage_bytes{{{WEB}}} 10485760"),
    );
    assert_line(&text, "metrics_agent_containers 1");
}

/// Returns the value of the agent's own gauge `name`.
fn own_value(text: &str, name: &str) -> f64 {
    samples(text, name)
        .first()
        .and_then(|line| line.rsplit(' ').next()?.parse().ok())
        .unwrap_or_else(|| panic!("no {name} sample:\n{text}"))
}

#[test]
fn kept_files_show_new_values() {
    let fixture = Fixture::new();
    fixture.add_container("web", "web", fixture.v1_paths());
    let agent = std::sync::Arc::new(
        corral_metrics_agent::Agent::new(fixture.settings()).expect("create the agent"),
    );
    let first = common::scrape_agent(&agent);
    assert_line(
        &first,
        &format!("container_memory_usage_bytes{{{WEB}}} 10485760"),
    );
    assert!(
        own_value(&first, "metrics_agent_kept_descriptors") > 0.0,
        "{first}"
    );

    // The write replaces the content of the same file, which the agent
    // keeps open.
    fixture.write("v1/memory/job/memory.usage_in_bytes", "20971520\n");
    let second = common::scrape_agent(&agent);
    assert_line(
        &second,
        &format!("container_memory_usage_bytes{{{WEB}}} 20971520"),
    );
}

/// Returns the lines of a scrape that do not change from one scrape to the
/// next on the fixture tree.
fn comparable(text: &str) -> Vec<String> {
    text.lines()
        .filter(|line| {
            !line.starts_with("container_last_seen")
                && !line.starts_with("metrics_agent_")
                && !line.starts_with("# HELP metrics_agent_")
                && !line.starts_with("# TYPE metrics_agent_")
        })
        .map(str::to_string)
        .collect()
}

#[test]
fn descriptor_budget_keeps_exposition() {
    let fixture = Fixture::new();
    fixture.add_container("web", "web", fixture.v1_paths());
    fixture.add_container("api", "api", fixture.v2_paths());
    let unlimited = scrape(fixture.settings());

    // 0 keeps nothing, and 7 runs out in the middle of the first container,
    // so some files are kept and the others opened on every scrape.
    for budget in [0, 7] {
        let agent = std::sync::Arc::new(
            corral_metrics_agent::Agent::new(corral_metrics_agent::Settings {
                kept_descriptors: budget,
                ..fixture.settings()
            })
            .expect("create the agent"),
        );
        for round in ["first", "second"] {
            let text = common::scrape_agent(&agent);
            assert_eq!(
                own_value(&text, "metrics_agent_kept_descriptors"),
                budget as f64,
                "{round} scrape with a budget of {budget}"
            );
            assert_eq!(
                comparable(&text),
                comparable(&unlimited),
                "{round} scrape with a budget of {budget}"
            );
        }
    }
}

#[test]
fn removed_container_closes_descriptors() {
    let fixture = Fixture::new();
    fixture.add_container("web", "web", fixture.v1_paths());
    fixture.add_container("api", "api", fixture.v2_paths());
    let agent = std::sync::Arc::new(
        corral_metrics_agent::Agent::new(fixture.settings()).expect("create the agent"),
    );
    let both = own_value(
        &common::scrape_agent(&agent),
        "metrics_agent_kept_descriptors",
    );

    fs::remove_dir_all(fixture.path("run/containers/api")).unwrap();
    let text = common::scrape_agent(&agent);
    let after = own_value(&text, "metrics_agent_kept_descriptors");
    assert!(after > 0.0, "kept {both}, then {after}:\n{text}");
    assert!(after < both, "kept {both}, then {after}:\n{text}");
    assert!(!text.contains(r#"name="api""#), "{text}");
}

//! Load tests that run real stress inside corral jobs and measure from
//! outside that every resource limit holds. The run prints a table of
//! requested against measured values and, when every group ran, writes it to
//! docs/limits.md.
//!
//! The groups run one after another in a single test, because CPU and I/O
//! measurements disturb each other. `CORRAL_LIMITS=memory,cpu-quota` runs
//! only the named groups and leaves docs/limits.md alone.

mod cpu;
mod io;
mod loop_device;
mod memory;
mod pids;
mod report;
mod supervised;
mod support;

use corral_tests::{require_root, workspace_root};

use report::{log, HostInfo, Report};

/// A group of checks that adds its rows to the report.
type Group = fn(&mut Report);

/// Every group, in run order, by the name that `CORRAL_LIMITS` selects.
const GROUPS: [(&str, Group); 9] = [
    ("memory", memory::check),
    ("cpu-quota", cpu::check_quota),
    ("cpu-weight", cpu::check_weight),
    ("cpuset", cpu::check_cpuset),
    ("pids", pids::check),
    ("io", io::check_throttles),
    ("io-weight", io::check_weight),
    ("oom-status", supervised::check_oom_reporting),
    ("many-jobs", supervised::check_many_jobs),
];

#[test]
fn limits_hold_under_load() {
    if !require_root("limits_hold_under_load") {
        return;
    }
    let selected: Option<Vec<String>> = std::env::var("CORRAL_LIMITS").ok().map(|list| {
        list.split(',')
            .map(|name| name.trim().to_string())
            .collect()
    });
    if let Some(names) = &selected {
        for name in names {
            assert!(
                GROUPS.iter().any(|(group, _)| group == name),
                "CORRAL_LIMITS names unknown group {name:?}; groups: {}",
                GROUPS.map(|(group, _)| group).join(", ")
            );
        }
    }

    let host = HostInfo::collect();
    log(&host.summary());
    let mut report = Report::default();
    for (name, group) in GROUPS {
        let is_selected = selected
            .as_ref()
            .is_none_or(|names| names.iter().any(|selected| selected == name));
        if is_selected {
            log(&format!("limits: running {name}"));
            report.run_group(name, group);
        }
    }

    log(&format!("\n{}", report.table()));
    if selected.is_none() {
        let path = workspace_root().join("docs").join("limits.md");
        report.write_markdown(&path, &host);
        log(&format!("limits: wrote {}", path.display()));
    }
    let failures = report.failures();
    assert!(
        failures.is_empty(),
        "{} limit checks failed:\n{}",
        failures.len(),
        failures
            .iter()
            .map(|row| format!(
                "- {}: requested {}, measured {}, tolerance {}",
                row.limit, row.requested, row.measured, row.tolerance
            ))
            .collect::<Vec<_>>()
            .join("\n")
    );
}

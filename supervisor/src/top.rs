//! The `supervisorctl top` table: per job CPU %, memory against its limit,
//! network and block I/O, and processes against their limit, in the
//! columns of `docker stats`.
//!
//! CPU % is the CPU time a container used between two samples over the
//! time between them, so 100 % is one full CPU and a job on four CPUs can
//! show up to 400 %.

use crate::api::{JobStats, StatsList};

/// Formats one table of `current`, with CPU % against `previous`. A job
/// whose container changed between the samples, or that has no earlier
/// sample, shows `-` for CPU %.
pub fn format_table(previous: Option<&StatsList>, current: &StatsList) -> String {
    let longest = current
        .jobs
        .iter()
        .map(|job| job.name.len())
        .max()
        .unwrap_or(0);
    let name_width = longest.max("NAME".len()) + 2;
    let mut table = format!(
        "{:<name_width$}{:<10}{:>7}  {:<22}{:>7}  {:<22}{:<22}{}\n",
        "NAME", "STATE", "CPU %", "MEM USAGE / LIMIT", "MEM %", "NET I/O", "BLOCK I/O", "PIDS"
    );
    for job in &current.jobs {
        let earlier = previous.and_then(|list| list.jobs.iter().find(|old| old.name == job.name));
        let line = format!(
            "{:<name_width$}{:<10}{:>7}  {:<22}{:>7}  {:<22}{:<22}{}",
            job.name,
            job.state.as_str(),
            cpu_percent(earlier, job).map_or_else(|| "-".to_string(), |cpu| format!("{cpu:.1}")),
            memory_column(job),
            memory_percent(job, current.host_memory_bytes)
                .map_or_else(|| "-".to_string(), |share| format!("{share:.1}")),
            pair_column(job.net_rx_bytes, job.net_tx_bytes),
            pair_column(job.io_read_bytes, job.io_write_bytes),
            pids_column(job),
        );
        table.push_str(line.trim_end());
        table.push('\n');
    }
    table
}

/// Returns the CPU time `current` used since `earlier` as a share of the
/// time between the samples, in percent of one CPU.
pub fn cpu_percent(earlier: Option<&JobStats>, current: &JobStats) -> Option<f64> {
    let earlier = earlier?;
    if earlier.container_id != current.container_id {
        return None;
    }
    let used = current.cpu_usage_ns?.checked_sub(earlier.cpu_usage_ns?)?;
    let elapsed = current.sampled_at_ns.checked_sub(earlier.sampled_at_ns)?;
    if elapsed == 0 {
        return None;
    }
    Some(used as f64 * 100.0 / elapsed as f64)
}

/// Returns the working set as a share of the memory limit, or of the
/// host's memory for a job without a limit (as `docker stats` does), in
/// percent.
pub fn memory_percent(job: &JobStats, host_memory_bytes: Option<u64>) -> Option<f64> {
    let limit = job
        .memory_limit_bytes
        .or(host_memory_bytes)
        .filter(|&limit| limit > 0)?;
    Some(job.memory_bytes? as f64 * 100.0 / limit as f64)
}

fn memory_column(job: &JobStats) -> String {
    match (job.memory_bytes, job.memory_limit_bytes) {
        (None, _) => "-".to_string(),
        (Some(used), Some(limit)) => format!("{} / {}", format_bytes(used), format_bytes(limit)),
        (Some(used), None) => format!("{} / unlimited", format_bytes(used)),
    }
}

fn pair_column(first: Option<u64>, second: Option<u64>) -> String {
    match (first, second) {
        (Some(first), Some(second)) => {
            format!("{} / {}", format_bytes(first), format_bytes(second))
        }
        _ => "-".to_string(),
    }
}

fn pids_column(job: &JobStats) -> String {
    match (job.pids, job.pids_limit) {
        (None, _) => "-".to_string(),
        (Some(pids), Some(limit)) => format!("{pids} / {limit}"),
        (Some(pids), None) => pids.to_string(),
    }
}

/// Formats a byte count with binary units: `512B`, `1.5KiB`, `64MiB`.
pub fn format_bytes(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["KiB", "MiB", "GiB", "TiB", "PiB"];
    if bytes < 1024 {
        return format!("{bytes}B");
    }
    let mut value = bytes as f64 / 1024.0;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    let text = format!("{value:.1}");
    let text = text.strip_suffix(".0").unwrap_or(&text);
    format!("{text}{}", UNITS[unit])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::machine::JobState;

    fn stats(name: &str, at_ms: u64, cpu_ms: u64) -> JobStats {
        JobStats {
            name: name.to_string(),
            state: JobState::Running,
            container_id: Some(format!("{name}-00000001")),
            pid: Some(100),
            sampled_at_ns: at_ms * 1_000_000,
            cpu_usage_ns: Some(cpu_ms * 1_000_000),
            memory_bytes: Some(16 * 1024 * 1024),
            memory_limit_bytes: Some(64 * 1024 * 1024),
            pids: Some(3),
            pids_limit: Some(64),
            io_read_bytes: Some(0),
            io_write_bytes: Some(1536),
            net_rx_bytes: Some(2048),
            net_tx_bytes: Some(100),
            error: None,
        }
    }

    #[test]
    fn cpu_percent_over_the_interval() {
        let earlier = stats("web", 1000, 500);
        let current = stats("web", 3000, 1500);
        assert_eq!(cpu_percent(Some(&earlier), &current), Some(50.0));
        let busy = stats("web", 3000, 4500);
        assert_eq!(cpu_percent(Some(&earlier), &busy), Some(200.0), "two CPUs");
        assert_eq!(cpu_percent(None, &current), None);
    }

    #[test]
    fn cpu_percent_needs_the_same_container() {
        let earlier = stats("web", 1000, 500);
        let mut restarted = stats("web", 3000, 100);
        restarted.container_id = Some("web-00000002".to_string());
        assert_eq!(cpu_percent(Some(&earlier), &restarted), None);
        let same_instant = stats("web", 1000, 600);
        assert_eq!(cpu_percent(Some(&earlier), &same_instant), None);
    }

    #[test]
    fn bytes_in_binary_units() {
        let cases = [
            (0, "0B"),
            (1023, "1023B"),
            (1024, "1KiB"),
            (1536, "1.5KiB"),
            (64 * 1024 * 1024, "64MiB"),
            (3 * 1024 * 1024 * 1024 / 2, "1.5GiB"),
        ];
        for (bytes, expected) in cases {
            assert_eq!(format_bytes(bytes), expected, "{bytes}");
        }
    }

    #[test]
    fn table_columns() {
        let previous = StatsList {
            jobs: vec![stats("web", 1000, 500)],
            host_memory_bytes: Some(256 * 1024 * 1024),
        };
        let mut stopped = stats("batch", 3000, 0);
        stopped.state = JobState::Stopped;
        stopped.container_id = None;
        stopped.cpu_usage_ns = None;
        stopped.memory_bytes = None;
        stopped.pids = None;
        stopped.io_read_bytes = None;
        stopped.net_rx_bytes = None;
        let mut unlimited = stats("free", 3000, 0);
        unlimited.memory_limit_bytes = None;
        unlimited.pids_limit = None;
        let current = StatsList {
            jobs: vec![stats("web", 3000, 1500), stopped, unlimited],
            host_memory_bytes: Some(256 * 1024 * 1024),
        };
        let table = format_table(Some(&previous), &current);
        let lines: Vec<&str> = table.lines().collect();
        assert_eq!(lines.len(), 4, "{table}");
        assert!(
            lines[0].starts_with("NAME   STATE       CPU %  MEM USAGE / LIMIT"),
            "{table}"
        );
        let web: Vec<&str> = lines[1]
            .split("  ")
            .filter(|cell| !cell.is_empty())
            .collect();
        assert_eq!(web[0].trim(), "web");
        assert!(lines[1].contains("RUNNING"), "{table}");
        assert!(lines[1].contains("50.0"), "{table}");
        assert!(lines[1].contains("16MiB / 64MiB"), "{table}");
        assert!(lines[1].contains("25.0"), "{table}");
        assert!(lines[1].contains("2KiB / 100B"), "{table}");
        assert!(lines[1].contains("0B / 1.5KiB"), "{table}");
        assert!(lines[1].ends_with("3 / 64"), "{table}");
        assert!(lines[2].starts_with("batch  STOPPED"), "{table}");
        assert!(lines[2].ends_with('-'), "{table}");
        assert!(lines[3].contains("16MiB / unlimited"), "{table}");
        // 16 MiB of the host's 256 MiB.
        assert!(lines[3].contains("  6.2  "), "{table}");
        assert!(lines[3].ends_with(" 3"), "{table}");
        assert!(!table.lines().any(|line| line.ends_with(' ')), "{table}");
    }
}

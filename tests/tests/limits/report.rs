//! The table of measured against requested limits: printed after the run and
//! written to docs/limits.md with the kernel, cgroup mode and machine.

use std::fmt::Write as _;
use std::fs;
use std::path::Path;
use std::process::Command;

use corral_tests::host;

/// The result of one row.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    Pass,
    Fail,
    /// The host lacks what the measurement needs, for the reason in the text.
    NotMeasurable(String),
}

/// One measured limit.
#[derive(Debug, Clone)]
pub struct Row {
    pub limit: String,
    pub requested: String,
    pub measured: String,
    pub tolerance: String,
    pub outcome: Outcome,
}

/// Rows in the order the checks produced them.
#[derive(Debug, Default)]
pub struct Report {
    rows: Vec<Row>,
}

impl Report {
    /// Adds a row that passes when `passed` is true.
    pub fn check(
        &mut self,
        limit: &str,
        requested: impl Into<String>,
        measured: impl Into<String>,
        tolerance: impl Into<String>,
        passed: bool,
    ) {
        self.rows.push(Row {
            limit: limit.to_string(),
            requested: requested.into(),
            measured: measured.into(),
            tolerance: tolerance.into(),
            outcome: if passed { Outcome::Pass } else { Outcome::Fail },
        });
    }

    /// Adds a row for a limit that this host cannot measure.
    pub fn not_measurable(&mut self, limit: &str, requested: impl Into<String>, reason: &str) {
        self.rows.push(Row {
            limit: limit.to_string(),
            requested: requested.into(),
            measured: "-".to_string(),
            tolerance: "-".to_string(),
            outcome: Outcome::NotMeasurable(reason.to_string()),
        });
    }

    /// Runs one group of checks. A panic inside it (a failed setup step)
    /// becomes a failed row with the panic message, and the remaining groups
    /// still run. Guards dropped while unwinding clean up what it created.
    pub fn run_group(&mut self, name: &str, group: fn(&mut Self)) {
        let started = std::time::Instant::now();
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| group(&mut *self)));
        if let Err(payload) = result {
            let message = payload
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| payload.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_else(|| "panic without a message".to_string());
            self.rows.push(Row {
                limit: name.to_string(),
                requested: "-".to_string(),
                measured: format!("check aborted: {}", one_line(&message)),
                tolerance: "-".to_string(),
                outcome: Outcome::Fail,
            });
        }
        log(&format!(
            "limits: {name} finished in {:.1} s",
            started.elapsed().as_secs_f64()
        ));
    }

    pub fn failures(&self) -> Vec<&Row> {
        self.rows
            .iter()
            .filter(|row| row.outcome == Outcome::Fail)
            .collect()
    }

    /// Renders the rows as a Markdown table.
    pub fn table(&self) -> String {
        let mut text = String::from(
            "| limit | requested | measured | tolerance | pass |\n|---|---|---|---|---|\n",
        );
        for row in &self.rows {
            let pass = match &row.outcome {
                Outcome::Pass => "yes".to_string(),
                Outcome::Fail => "**no**".to_string(),
                Outcome::NotMeasurable(reason) => format!("not measurable: {reason}"),
            };
            let cells = [
                &row.limit,
                &row.requested,
                &row.measured,
                &row.tolerance,
                &pass,
            ];
            let cells: Vec<String> = cells.iter().map(|cell| escape_cell(cell)).collect();
            let _ = writeln!(text, "| {} |", cells.join(" | "));
        }
        text
    }

    /// Writes the whole document: how it was made, the host, the table.
    pub fn write_markdown(&self, path: &Path, host: &HostInfo) {
        let mut text = String::new();
        text.push_str(INTRODUCTION);
        text.push_str("## Host\n\n");
        let _ = writeln!(text, "| | |\n|---|---|");
        for (key, value) in host.entries() {
            let _ = writeln!(text, "| {key} | {} |", escape_cell(&value));
        }
        text.push_str("\n## Results\n\n");
        text.push_str(&self.table());
        text.push_str("\n## How each limit is measured\n\n");
        text.push_str(METHOD);
        fs::write(path, text)
            .unwrap_or_else(|error| panic!("failed to write {}: {error}", path.display()));
    }
}

/// The head of docs/limits.md.
const INTRODUCTION: &str = r"# Limits measured under load

The load-test suite writes this file when it runs as root:
`cargo build --workspace --bins && cargo test -p corral-tests --test limits`.
Each job runs stress-ng, dd, a shell or `corral-probe` inside a corral
container with the `host` image, and the test measures from outside, through
the job's cgroup files, `/proc` and `/sys/block`. A row fails when the
measured value is outside the tolerance. A limit that the host cannot
exercise is listed as not measurable, with the reason.

";

/// The measuring method of each row group, as written to docs/limits.md.
const METHOD: &str = r"- **memory**: the 80% job runs `stress-ng --vm 1 --vm-keep --vm-method write64`
  for 6 s, sized so that the median of the cgroup's usage
  (`memory.usage_in_bytes` on v1, `memory.current` on v2), sampled every
  50 ms, is about 80% of the limit. The 200% job's limit is 1/16 of the host's
  memory, from 64 MiB to 1 GiB. The job idles for 2 s, then `stress-ng --vm`
  allocates twice the limit for 4 s, and last `corral-probe alloc` of twice
  the limit runs as the container's main process. The host's memory outside
  the job is the host's anonymous memory (`nr_anon_pages` in /proc/vmstat)
  minus the job's usage, sampled every 5 ms. Its growth is the mean under
  allocation minus the mean while idle, so other processes on the host move
  it too.
- **memory_swap**: needs swap on the host. With `memory_swap` equal to
  `memory`, a job that touches 150% of the limit must be OOM-killed with no
  swap charged.
- **CPU quota**: `stress-ng --cpu` with more workers than the quota. The CPU
  time is the difference of the cgroup's `cpuacct.usage` (v1) or `cpu.stat`
  `usage_usec` (v2) over 10 s, after 1 s of warm-up. The job's parent cgroup
  gets the maximum CPU weight, so that other load on the host competes with
  the job only through the quota. A metrics agent exports the same container,
  and its `container_cpu_cfs_throttled_periods_total` must lie between the
  cgroup's `nr_throttled` read before and after the scrape.
- **CPU weight**: two jobs in one parent cgroup, both held by cpuset to the
  last CPU, each with two `stress-ng --cpu` workers. The share is each job's
  CPU time over 10 s divided by the sum. It is compared with the requested
  weights and with the values in the cgroup files. On v1, corral converts a
  weight to `cpu.shares` on a curve (100 to 1024, 300 to 4058), so the two
  differ.
- **cpuset**: a job with two busy workers held to CPU 0. Every 10 ms the test
  reads field 39 (the CPU last run on) of `/proc/PID/task/TID/stat` and
  `Cpus_allowed_list` of every thread, and it compares
  `cpuacct.usage_percpu` before and after.
- **pids**: a shell fork bomb whose processes loop on fork. `pids.current` is
  sampled every 50 ms. The host command is `sh -c` starting `/bin/true` 20
  times, timed 5 times before and 5 times during the bomb. After
  `corral delete --force`, no process seen in the job may still exist, and
  its cgroups must be gone.
- **I/O**: a loop device on a file in a temporary directory, made available
  to the job through `linux.devices` in its OCI config. `dd` with `O_DIRECT`
  reads or writes it, because cgroup v1 throttles only I/O that bypasses the
  page cache. The rate is the difference of the device's
  `/sys/block/loopN/stat` counters over 10 s, after 1 s of warm-up.
- **I/O weight**: needs a proportional I/O scheduler on the device (BFQ, or
  CFQ before Linux 5.0).
- **many jobs**: supervisord starts 200 jobs from 200 job files at once. Each
  job has its own memory, CPU quota, CPU weight and pids values, and the test
  reads each value back from the cgroup files named in the container's state
  file. `supervisorctl stop all` must then end every container within its
  stop timeout and remove every cgroup.
- **OOM in status and metrics**: supervisord runs one job whose main process
  is OOM-killed and one whose child process is. `supervisorctl status` must
  describe the first as `exited 137 (OOM killed)`, and the agent's
  `container_oom_events_total` of the second must count the kill.
";

/// Facts about the machine that the numbers depend on.
#[derive(Debug, Clone)]
pub struct HostInfo {
    pub kernel: String,
    pub cgroup_mode: String,
    pub cpu_model: String,
    pub cpus: usize,
    pub memory: String,
    pub swap: String,
    pub load: String,
    pub stress_ng: String,
    pub date: String,
}

impl HostInfo {
    pub fn collect() -> Self {
        let cpuinfo = fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let cpu_model = cpuinfo
            .lines()
            .find_map(|line| line.strip_prefix("model name"))
            .map(|rest| rest.trim_start_matches([' ', '\t', ':']).to_string())
            .unwrap_or_else(|| "unknown".to_string());
        let cgroup_mode = if host::is_cgroup_v2() {
            "v2 (unified)".to_string()
        } else if Path::new("/sys/fs/cgroup/unified").exists() {
            "v1 hybrid: v1 controllers, cgroup2 mounted at /sys/fs/cgroup/unified".to_string()
        } else {
            "v1".to_string()
        };
        HostInfo {
            kernel: read_trimmed("/proc/sys/kernel/osrelease"),
            cgroup_mode,
            cpu_model,
            cpus: available_cpus(),
            memory: format!("{} MiB", meminfo_kib("MemTotal").unwrap_or(0) / 1024),
            swap: format!("{} MiB", meminfo_kib("SwapTotal").unwrap_or(0) / 1024),
            load: read_trimmed("/proc/loadavg"),
            stress_ng: command_output("stress-ng", &["--version"]),
            date: command_output("date", &["-u", "+%Y-%m-%d %H:%M UTC"]),
        }
    }

    fn entries(&self) -> Vec<(&'static str, String)> {
        vec![
            ("kernel", self.kernel.clone()),
            ("cgroup mode", self.cgroup_mode.clone()),
            ("CPU", format!("{} x {}", self.cpus, self.cpu_model)),
            ("memory", self.memory.clone()),
            ("swap", self.swap.clone()),
            ("load average at start", self.load.clone()),
            ("stress-ng", self.stress_ng.clone()),
            ("run at", self.date.clone()),
        ]
    }

    /// Formats the host facts as the lines printed above the table.
    pub fn summary(&self) -> String {
        self.entries()
            .into_iter()
            .map(|(key, value)| format!("{key}: {value}\n"))
            .collect()
    }
}

/// Counts the CPUs that this process may run on (sched_getaffinity).
pub fn available_cpus() -> usize {
    std::thread::available_parallelism()
        .map(usize::from)
        .unwrap_or(1)
}

/// Reads a value of /proc/meminfo in KiB.
pub fn meminfo_kib(key: &str) -> Option<u64> {
    let text = fs::read_to_string("/proc/meminfo").ok()?;
    text.lines().find_map(|line| {
        let rest = line.strip_prefix(key)?.strip_prefix(':')?;
        rest.split_whitespace().next()?.parse().ok()
    })
}

/// Writes a progress line straight to the test process's stderr. The test
/// harness captures only `print!` and `eprint!`, so these lines and the
/// table show up even when the test passes.
pub fn log(line: &str) {
    use std::io::Write;
    let _ = writeln!(std::io::stderr().lock(), "{line}");
}

fn read_trimmed(path: &str) -> String {
    fs::read_to_string(path)
        .map(|text| text.trim().to_string())
        .unwrap_or_else(|_| "unknown".to_string())
}

fn command_output(program: &str, args: &[&str]) -> String {
    Command::new(program)
        .args(args)
        .output()
        .ok()
        .filter(|output| output.status.success())
        .map(|output| String::from_utf8_lossy(&output.stdout).trim().to_string())
        .unwrap_or_else(|| format!("{program} not found"))
}

fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

fn escape_cell(text: &str) -> String {
    one_line(text).replace('|', "\\|")
}

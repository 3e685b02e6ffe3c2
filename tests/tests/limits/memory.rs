//! Memory limits: a load below the limit lives, a load above it is
//! OOM-killed without spilling onto the host, and swap stays unused when
//! `memory_swap` equals `memory`.

use std::thread::sleep;
use std::time::{Duration, Instant};

use corral_tests::sandbox::{probe, Sandbox};

use crate::report::{log, meminfo_kib, Report};
use crate::support::{cgroup_dir, is_v2, median, memory_peak, memory_usage, mib};
use crate::support::{read_keyed, try_read_u64, ForegroundRun};

const MIB: u64 = 1 << 20;

/// Limit of the job that runs at 80% of it.
const FITTING_LIMIT: u64 = 128 * MIB;

/// Memory that stress-ng's own processes charge to the job besides the
/// worker's mapping, about 4 MiB with stress-ng 0.15.06 from Debian 12 on
/// Linux 6.18. A different overhead moves the measured usage away from 80%,
/// which the usage row then reports.
const STRESS_NG_OVERHEAD: u64 = 4 * MIB;

/// Time the 200% job waits before it allocates, in which the host's memory
/// use is sampled as the baseline.
const QUIET_START: Duration = Duration::from_secs(1);

/// Limit of the job that tries to use twice as much.
const OOM_LIMIT: u64 = 64 * MIB;

pub fn check(report: &mut Report) {
    fits_at_80_percent(report);
    oom_killed_at_200_percent(report);
    swap_unused(report);
}

fn fits_at_80_percent(report: &mut Report) {
    let target = FITTING_LIMIT * 8 / 10;
    let vm_bytes = target - STRESS_NG_OVERHEAD;
    let job = format!(
        r#"{{"command": ["stress-ng", "--vm", "1", "--vm-bytes", "{vm_bytes}", "--vm-keep", "--vm-method", "write64",
                         "--timeout", "6s", "--quiet"],
            "resources": {{"memory": "{FITTING_LIMIT}"}}}}"#
    );
    let sandbox = Sandbox::new("memory-80", &job);
    let (mut run, state) = ForegroundRun::start(&sandbox);
    let mut peak = 0;
    let mut usage = Vec::new();
    while !run.has_ended() {
        if let Some(bytes) = memory_usage(&state) {
            usage.push(bytes as f64);
            peak = peak.max(bytes);
        }
        peak = peak.max(memory_peak(&state).unwrap_or(0));
        sleep(Duration::from_millis(50));
    }
    let record = run.wait(Duration::from_secs(20));
    // The median skips the seconds in which stress-ng maps its memory.
    let usage = median(&mut usage);
    let percent = |bytes: f64| bytes / FITTING_LIMIT as f64 * 100.0;
    log(&format!(
        "limits: memory 80%: usage {usage} bytes, peak {peak} bytes, {record:?}"
    ));

    let requested = format!(
        "limit {}, stress-ng --vm-bytes {}",
        mib(FITTING_LIMIT as f64),
        mib(vm_bytes as f64)
    );
    report.check(
        "memory, load at 80%: job lives",
        requested.clone(),
        format!("exit {}, {} OOM kills", record.status, record.oom_kills),
        "exit 0, no OOM kill",
        record.status == 0 && record.oom_kills == 0,
    );
    report.check(
        "memory, load at 80%: usage",
        requested,
        format!(
            "median {} ({:.1}%), peak {} ({:.1}%)",
            mib(usage),
            percent(usage),
            mib(peak as f64),
            percent(peak as f64)
        ),
        "median 75% to 85% of the limit",
        (75.0..=85.0).contains(&percent(usage)),
    );
}

fn oom_killed_at_200_percent(report: &mut Report) {
    // The shell waits before it becomes the allocating probe, so that the
    // baseline taken in that second includes the container's own setup.
    let script = format!(
        "sleep {}; exec {} alloc {}",
        QUIET_START.as_secs(),
        probe(),
        2 * OOM_LIMIT
    );
    let job = serde_json::json!({
        "command": ["/bin/sh", "-c", script],
        "resources": {"memory": OOM_LIMIT.to_string()},
    });
    let sandbox = Sandbox::new("memory-200", &job.to_string());
    let (mut run, state) = ForegroundRun::start(&sandbox);
    let started = Instant::now();

    let mut baseline = Vec::new();
    let mut outside_max = 0.0f64;
    let mut job_peak = 0;
    let mut samples = 0;
    while !run.has_ended() {
        let host = host_used_bytes() as f64;
        let job = memory_usage(&state).unwrap_or(0);
        let outside = host - job as f64;
        if started.elapsed() < QUIET_START * 4 / 5 {
            baseline.push(outside);
        } else {
            job_peak = job_peak.max(job).max(memory_peak(&state).unwrap_or(0));
            outside_max = outside_max.max(outside);
            samples += 1;
        }
        sleep(Duration::from_millis(5));
    }
    let record = run.wait(Duration::from_secs(20));
    assert!(
        !baseline.is_empty(),
        "the job ended before the baseline was sampled: {record:?}"
    );
    let baseline = median(&mut baseline);
    let growth = outside_max - baseline;
    log(&format!(
        "limits: memory 200%: {samples} samples, outside growth {growth:.0} bytes, job peak {job_peak}, {record:?}"
    ));

    let requested = format!(
        "limit {}, corral-probe alloc {}",
        mib(OOM_LIMIT as f64),
        mib((2 * OOM_LIMIT) as f64)
    );
    report.check(
        "memory, load at 200%: OOM-killed",
        requested.clone(),
        format!(
            "exit {} ({}), {} OOM kills",
            record.status,
            record.signal.as_deref().unwrap_or("no signal"),
            record.oom_kills
        ),
        "exit 137 by SIGKILL, at least 1 OOM kill",
        record.status == 137
            && record.signal.as_deref() == Some("SIGKILL")
            && record.oom_kills >= 1,
    );
    report.check(
        "memory, load at 200%: job peak",
        requested.clone(),
        mib(job_peak as f64),
        "at most the limit",
        job_peak <= OOM_LIMIT,
    );
    report.check(
        "memory, load at 200%: host outside the job",
        requested,
        format!("grew by {} ({samples} samples)", mib(growth)),
        format!("at most {}", mib(OOM_LIMIT as f64)),
        growth <= OOM_LIMIT as f64,
    );
}

fn swap_unused(report: &mut Report) {
    let requested = format!(
        "memory_swap = memory = {}, corral-probe alloc {}",
        mib(OOM_LIMIT as f64),
        mib((OOM_LIMIT * 3 / 2) as f64)
    );
    if meminfo_kib("SwapTotal").unwrap_or(0) == 0 {
        report.not_measurable(
            "memory_swap equal to memory: no swap used",
            requested,
            "no swap: SwapTotal is 0 kB in /proc/meminfo, so no job could swap",
        );
        return;
    }
    // NOTE: the development host has no swap, so this path has not run there.
    let job = format!(
        r#"{{"command": ["{}", "alloc", "{}"],
            "resources": {{"memory": "{OOM_LIMIT}", "memory_swap": "{OOM_LIMIT}"}}}}"#,
        probe(),
        OOM_LIMIT * 3 / 2
    );
    let sandbox = Sandbox::new("memory-swap", &job);
    let (mut run, state) = ForegroundRun::start(&sandbox);
    let mut swap_peak = 0;
    while !run.has_ended() {
        let dir = cgroup_dir(&state, "memory");
        let swap = if is_v2(&state) {
            try_read_u64(&dir.join("memory.swap.current"))
        } else {
            read_keyed(&dir.join("memory.stat"), "swap")
        };
        swap_peak = swap_peak.max(swap.unwrap_or(0));
        sleep(Duration::from_millis(5));
    }
    let record = run.wait(Duration::from_secs(20));
    report.check(
        "memory_swap equal to memory: no swap used",
        requested,
        format!(
            "swap peak {}, exit {}, {} OOM kills",
            mib(swap_peak as f64),
            record.status,
            record.oom_kills
        ),
        "0 bytes of swap, OOM-killed",
        swap_peak == 0 && record.status == 137 && record.oom_kills >= 1,
    );
}

/// Memory in use on the host: MemTotal minus MemAvailable, in bytes.
fn host_used_bytes() -> u64 {
    let total = meminfo_kib("MemTotal").expect("MemTotal in /proc/meminfo");
    let available = meminfo_kib("MemAvailable").expect("MemAvailable in /proc/meminfo");
    total.saturating_sub(available) * 1024
}

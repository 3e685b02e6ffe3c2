//! CPU limits: the CFS quota over 10 s, the weight between two jobs on one
//! CPU, and a cpuset that keeps every thread of a job on its CPU.

use std::collections::BTreeSet;
use std::fs;
use std::thread::sleep;
use std::time::{Duration, Instant};

use corral_config::convert;
use corral_tests::sandbox::{cgroup_cpu_seconds, Sandbox};

use crate::report::{available_cpus, log, Report};
use crate::support::{
    cgroup_dir, cgroup_pids, deviation_percent, is_v2, raise_parent_cpu_weight, read_u64,
    share_cgroup_parent, throttled_periods, SandboxAgent,
};

/// Time over which CPU use is measured.
const WINDOW: Duration = Duration::from_secs(10);

/// Time a job runs before the window opens, so that stress-ng's workers
/// have started.
const WARM_UP: Duration = Duration::from_secs(1);

/// Allowed deviation of the measured CPU time from the quota, in percent.
const QUOTA_TOLERANCE_PERCENT: f64 = 5.0;

/// Allowed deviation of a job's share from its expected share, in
/// percentage points.
const WEIGHT_TOLERANCE_POINTS: f64 = 5.0;

/// Returns a job file that runs stress-ng with `workers` busy processes for
/// at most `seconds`.
fn stress_job(workers: u32, seconds: u64, resources: &str) -> String {
    format!(
        r#"{{"command": ["stress-ng", "--cpu", "{workers}", "--cpu-method", "int64",
                         "--timeout", "{seconds}s", "--quiet"],
            "resources": {resources}}}"#
    )
}

pub fn check_quota(report: &mut Report) {
    for cpus in [0.25, 0.5, 1.0, 1.5] {
        quota(report, cpus);
    }
}

fn quota(report: &mut Report, cpus: f64) {
    // Two more workers than whole CPUs in the quota, so the quota and not the
    // number of workers limits the job.
    let workers = cpus.ceil() as u32 + 2;
    let bound = (WARM_UP + WINDOW).as_secs() + 10;
    let name = format!("cpu-quota-{}", (cpus * 100.0) as u32);
    let sandbox = Sandbox::new(
        &name,
        &stress_job(workers, bound, &format!(r#"{{"cpus": {cpus}}}"#)),
    );
    let agent = SandboxAgent::start(&sandbox);
    let state = sandbox.run_detached();
    raise_parent_cpu_weight(&state);
    sleep(WARM_UP);

    let started = Instant::now();
    let used_before = cgroup_cpu_seconds(&state);
    sleep(WINDOW);
    let used = cgroup_cpu_seconds(&state) - used_before;
    let elapsed = started.elapsed().as_secs_f64();

    let throttled_before = throttled_periods(&state);
    let counted = agent.sample("container_cpu_cfs_throttled_periods_total", &name);
    let throttled_after = throttled_periods(&state);
    let quota_us = read_quota_us(&state);
    sandbox.delete();

    let measured = used / elapsed;
    let deviation = deviation_percent(measured, cpus);
    log(&format!(
        "limits: quota {cpus}: {used:.3} s over {elapsed:.3} s, throttled {throttled_before}..{throttled_after}, agent {counted:?}"
    ));
    let (expected_quota, period) = convert::cpus_to_cfs(cpus);
    report.check(
        "CPU quota",
        format!("cpus {cpus} ({expected_quota} µs per {period} µs), {workers} busy workers"),
        format!(
            "{measured:.3} CPUs ({deviation:+.1}%), cfs_quota_us {}",
            quota_us.map_or("not set".to_string(), |q| q.to_string())
        ),
        format!("±{QUOTA_TOLERANCE_PERCENT}%"),
        deviation.abs() <= QUOTA_TOLERANCE_PERCENT,
    );
    let counted_ok = counted.is_some_and(|value| {
        value > 0.0 && value >= throttled_before as f64 && value <= throttled_after as f64
    });
    report.check(
        "CPU quota: throttled periods in the agent",
        format!("cpus {cpus}"),
        format!(
            "agent {}, cgroup {throttled_before} before and {throttled_after} after the scrape",
            counted.map_or("no sample".to_string(), |value| value.to_string())
        ),
        "above 0, between the cgroup's counts",
        counted_ok,
    );
}

/// Reads the quota in force, in microseconds per period.
fn read_quota_us(state: &corral_runtime::state::ContainerState) -> Option<i64> {
    let dir = cgroup_dir(state, "cpu");
    if is_v2(state) {
        let text = fs::read_to_string(dir.join("cpu.max")).ok()?;
        text.split_whitespace().next()?.parse().ok()
    } else {
        fs::read_to_string(dir.join("cpu.cfs_quota_us"))
            .ok()?
            .trim()
            .parse()
            .ok()
    }
}

pub fn check_weight(report: &mut Report) {
    let weights = [100u64, 300];
    let requested = format!("cpu_weight {} and {} on one CPU", weights[0], weights[1]);
    // The last CPU: with the usual contiguous CPU numbers, CPU 0 on a host
    // with one CPU.
    let cpu = available_cpus() - 1;
    let bound = (WARM_UP + WINDOW).as_secs() + 10;
    let sandboxes: Vec<Sandbox> = weights
        .iter()
        .map(|weight| {
            let resources = format!(r#"{{"cpu_weight": {weight}, "cpuset": "{cpu}"}}"#);
            Sandbox::new(
                &format!("cpu-weight-{weight}"),
                &stress_job(2, bound, &resources),
            )
        })
        .collect();
    share_cgroup_parent(&sandboxes[1], &sandboxes[0].cgroup_parent);
    let states: Vec<_> = sandboxes.iter().map(Sandbox::run_detached).collect();
    raise_parent_cpu_weight(&states[0]);
    sleep(WARM_UP);

    let before: Vec<f64> = states.iter().map(cgroup_cpu_seconds).collect();
    sleep(WINDOW);
    let used: Vec<f64> = states
        .iter()
        .zip(&before)
        .map(|(state, before)| cgroup_cpu_seconds(state) - before)
        .collect();
    let kernel_weights: Vec<(&str, u64)> = states.iter().map(read_weight).collect();
    for sandbox in &sandboxes {
        sandbox.delete();
    }

    let total = used[0] + used[1];
    let measured = used[0] / total * 100.0;
    let expected = weights[0] as f64 / (weights[0] + weights[1]) as f64 * 100.0;
    let (file, first) = kernel_weights[0];
    let second = kernel_weights[1].1;
    let kernel_expected = first as f64 / (first + second) as f64 * 100.0;
    let split = format!(
        "{measured:.1}/{:.1} of {total:.2} CPU seconds",
        100.0 - measured
    );
    log(&format!(
        "limits: weight: used {used:?}, {file} {first} and {second}, share {measured:.1}%"
    ));
    // On v1 the weights become cpu.shares in proportion (100 to 1024), so
    // weights 100 and 300 become shares 1024 and 3072, a 25/75 split.
    report.check(
        "CPU weight",
        format!(
            "{requested}, expected {expected:.0}/{:.0}",
            100.0 - expected
        ),
        split.clone(),
        format!("±{WEIGHT_TOLERANCE_POINTS} points"),
        (measured - expected).abs() <= WEIGHT_TOLERANCE_POINTS,
    );
    report.check(
        "CPU weight: split follows the cgroup values",
        format!(
            "{file} {first} and {second}, expected {kernel_expected:.1}/{:.1}",
            100.0 - kernel_expected
        ),
        split,
        format!("±{WEIGHT_TOLERANCE_POINTS} points"),
        (measured - kernel_expected).abs() <= WEIGHT_TOLERANCE_POINTS,
    );
}

/// Reads the weight in force and returns its file name and value:
/// `cpu.shares` on v1, `cpu.weight` on v2.
fn read_weight(state: &corral_runtime::state::ContainerState) -> (&'static str, u64) {
    let file = if is_v2(state) {
        "cpu.weight"
    } else {
        "cpu.shares"
    };
    (file, read_u64(&cgroup_dir(state, "cpu").join(file)))
}

pub fn check_cpuset(report: &mut Report) {
    if available_cpus() < 2 {
        report.not_measurable(
            "cpuset",
            "cpuset 0",
            "one CPU available, so no other CPU could be used",
        );
        return;
    }
    let sandbox = Sandbox::new("cpuset", &stress_job(2, 20, r#"{"cpuset": "0"}"#));
    let state = sandbox.run_detached();
    sleep(Duration::from_millis(500));

    let per_cpu_before = per_cpu_seconds(&state);
    let mut seen_cpus = BTreeSet::new();
    let mut affinities = BTreeSet::new();
    let mut samples = 0;
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline {
        for pid in cgroup_pids(&state, "cpuset") {
            for (cpu, allowed) in thread_cpus(pid) {
                seen_cpus.insert(cpu);
                affinities.insert(allowed);
                samples += 1;
            }
        }
        sleep(Duration::from_millis(10));
    }
    let per_cpu_after = per_cpu_seconds(&state);
    let cpuset_cpus = fs::read_to_string(cgroup_dir(&state, "cpuset").join(if is_v2(&state) {
        "cpuset.cpus.effective"
    } else {
        "cpuset.cpus"
    }))
    .unwrap_or_default();
    sandbox.delete();

    let other_cpu_seconds: Option<f64> = match (&per_cpu_before, &per_cpu_after) {
        (Some(before), Some(after)) => Some(
            after
                .iter()
                .zip(before)
                .skip(1)
                .map(|(after, before)| after - before)
                .sum(),
        ),
        _ => None,
    };
    let cpu0_seconds = per_cpu_before
        .as_ref()
        .zip(per_cpu_after.as_ref())
        .map(|(before, after)| after[0] - before[0]);
    log(&format!(
        "limits: cpuset: {samples} samples on {seen_cpus:?}, affinity {affinities:?}, cpu0 {cpu0_seconds:?} s, others {other_cpu_seconds:?} s"
    ));

    report.check(
        "cpuset: CPU of every thread, sampled every 10 ms",
        format!("cpuset 0 (cgroup cpuset {})", cpuset_cpus.trim()),
        format!(
            "{samples} samples on CPUs {seen_cpus:?}, affinity {}",
            affinities.iter().cloned().collect::<Vec<_>>().join(", ")
        ),
        "only CPU 0",
        samples > 0
            && seen_cpus.iter().all(|cpu| *cpu == 0)
            && affinities.iter().all(|allowed| allowed == "0"),
    );
    match other_cpu_seconds {
        Some(other) => report.check(
            "cpuset: CPU time on other CPUs",
            "cpuset 0",
            format!(
                "CPU 0: {:.2} s, others: {other:.3} s over 5 s",
                cpu0_seconds.unwrap_or(0.0)
            ),
            "0 s on other CPUs",
            other == 0.0 && cpu0_seconds.unwrap_or(0.0) > 0.0,
        ),
        None => report.not_measurable(
            "cpuset: CPU time on other CPUs",
            "cpuset 0",
            "no per-CPU usage file (cpuacct.usage_percpu is v1 only)",
        ),
    }
}

/// Reads `cpuacct.usage_percpu` in seconds, on v1 only.
fn per_cpu_seconds(state: &corral_runtime::state::ContainerState) -> Option<Vec<f64>> {
    if is_v2(state) {
        return None;
    }
    let text =
        fs::read_to_string(cgroup_dir(state, "cpuacct").join("cpuacct.usage_percpu")).ok()?;
    text.split_whitespace()
        .map(|ns| ns.parse::<f64>().ok().map(|ns| ns / 1e9))
        .collect()
}

/// Reads the CPU that each thread of `pid` last ran on (field 39 of its
/// `stat`) and its `Cpus_allowed_list`. Threads that exit meanwhile are skipped.
fn thread_cpus(pid: i32) -> Vec<(u32, String)> {
    let Ok(tasks) = fs::read_dir(format!("/proc/{pid}/task")) else {
        return Vec::new();
    };
    let mut found = Vec::new();
    for task in tasks.flatten() {
        let Ok(stat) = fs::read_to_string(task.path().join("stat")) else {
            continue;
        };
        let Ok(status) = fs::read_to_string(task.path().join("status")) else {
            continue;
        };
        // The command name in field 2 may contain spaces, so fields are
        // counted after its closing parenthesis, where field 3 starts.
        let Some((_, after_name)) = stat.rsplit_once(')') else {
            continue;
        };
        let Some(cpu) = after_name
            .split_whitespace()
            .nth(39 - 3)
            .and_then(|field| field.parse().ok())
        else {
            continue;
        };
        let allowed = status
            .lines()
            .find_map(|line| line.strip_prefix("Cpus_allowed_list:"))
            .map(|list| list.trim().to_string())
            .unwrap_or_default();
        found.push((cpu, allowed));
    }
    found
}

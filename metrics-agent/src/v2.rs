//! Metrics from a cgroup v2 directory.
//!
//! The CFS keys of `cpu.stat` and the `cpu.max`, `cpu.weight`, `memory.*` and
//! `io.stat` files exist only when the parent enables the controller in
//! `cgroup.subtree_control`. A missing file or key leaves its metric out
//! without counting an error.

use std::path::Path;

use corral_config::convert::weight_to_shares;

use crate::collect::{self, microseconds, DeviceIo, ScrapeContext};
use crate::exposition::Samples;
use crate::families;
use crate::files::TargetFiles;
use crate::parse;
use crate::read::{CgroupDir, Vanished};

/// Reads every metric the v2 directory provides, and returns the number of
/// tasks when the pids controller counts them.
pub(crate) fn collect(
    context: &ScrapeContext,
    files: &mut TargetFiles,
    path: &Path,
    samples: &mut Samples,
) -> Result<Option<u64>, Vanished> {
    let Some(dir) = files.dir(context, path, false)? else {
        return Ok(None);
    };
    cpu(context, dir, samples)?;
    memory(context, dir, samples)?;
    io(context, dir, samples)?;
    let tasks = collect::pids(context, dir, samples)?;
    collect::pressure(context, dir, samples)?;
    Ok(tasks)
}

fn cpu(context: &ScrapeContext, dir: &CgroupDir, samples: &mut Samples) -> Result<(), Vanished> {
    // v2 has no per-CPU usage, so --per-cpu still gives the total here.
    if let Some(stat) = context.keyed(dir, "cpu.stat")? {
        if let Some(usage) = stat.get(context, "usage_usec") {
            samples.push_labeled(
                &families::CPU_USAGE,
                ("cpu", "total".to_string()),
                microseconds(usage),
            );
        }
        if let Some(user) = stat.get(context, "user_usec") {
            samples.push(&families::CPU_USER, microseconds(user));
        }
        if let Some(system) = stat.get(context, "system_usec") {
            samples.push(&families::CPU_SYSTEM, microseconds(system));
        }
        if let Some(periods) = stat.get(context, "nr_periods") {
            samples.push(&families::CFS_PERIODS, periods as f64);
        }
        if let Some(throttled) = stat.get(context, "nr_throttled") {
            samples.push(&families::CFS_THROTTLED_PERIODS, throttled as f64);
        }
        if let Some(time) = stat.get(context, "throttled_usec") {
            samples.push(&families::CFS_THROTTLED_SECONDS, microseconds(time));
        }
    }

    // "max" as the quota means no limit: only the period is exported then,
    // as on v1 with a quota of -1.
    if let Some(text) = context.read(dir, "cpu.max")? {
        if let Some((quota, period)) = context.parsed_in(dir, "cpu.max", parse::cpu_max(&text)) {
            if let Some(quota) = quota {
                samples.push(&families::SPEC_CPU_QUOTA, quota as f64);
            }
            samples.push(&families::SPEC_CPU_PERIOD, period as f64);
        }
    }
    if let Some(weight) = context.value(dir, "cpu.weight")? {
        samples.push(&families::SPEC_CPU_SHARES, weight_to_shares(weight) as f64);
    }
    Ok(())
}

fn memory(context: &ScrapeContext, dir: &CgroupDir, samples: &mut Samples) -> Result<(), Vanished> {
    let usage = context.value(dir, "memory.current")?;
    if let Some(usage) = usage {
        samples.push(&families::MEMORY_USAGE, usage as f64);
    }

    if let Some(stat) = context.keyed(dir, "memory.stat")? {
        let inactive_file = stat.get(context, "inactive_file");
        if let (Some(usage), Some(inactive_file)) = (usage, inactive_file) {
            let working_set = collect::working_set(usage, inactive_file);
            samples.push(&families::MEMORY_WORKING_SET, working_set as f64);
        }
        if let Some(anon) = stat.get(context, "anon") {
            samples.push(&families::MEMORY_RSS, anon as f64);
        }
        if let Some(file) = stat.get(context, "file") {
            samples.push(&families::MEMORY_CACHE, file as f64);
        }
    }

    // Absent without swap accounting.
    if let Some(swap) = context.value(dir, "memory.swap.current")? {
        samples.push(&families::MEMORY_SWAP, swap as f64);
    }
    if let Some(events) = context.keyed(dir, "memory.events")? {
        if let Some(max) = events.get(context, "max") {
            samples.push(&families::MEMORY_FAILCNT, max as f64);
        }
        if let Some(kills) = events.get(context, "oom_kill") {
            samples.push(&families::OOM_EVENTS, kills as f64);
        }
    }
    // memory.peak appeared in Linux 5.19.
    if let Some(peak) = context.value(dir, "memory.peak")? {
        samples.push(&families::MEMORY_MAX_USAGE, peak as f64);
    }
    if let Some(text) = context.read(dir, "memory.max")? {
        let parsed = parse::single_value_or_max(&text);
        if let Some(limit) = context.parsed_in(dir, "memory.max", parsed) {
            samples.push(&families::SPEC_MEMORY_LIMIT, limit.unwrap_or(0) as f64);
        }
    }
    Ok(())
}

fn io(context: &ScrapeContext, dir: &CgroupDir, samples: &mut Samples) -> Result<(), Vanished> {
    let Some(text) = context.read(dir, "io.stat")? else {
        return Ok(());
    };
    let Some(devices) = context.parsed_in(dir, "io.stat", parse::io_stat(&text)) else {
        return Ok(());
    };
    for (device, values) in devices {
        let value = |key: &str| values.get(key).copied().unwrap_or(0);
        let io = DeviceIo {
            read_bytes: value("rbytes"),
            write_bytes: value("wbytes"),
            reads: value("rios"),
            writes: value("wios"),
        };
        collect::device_io(context, device, &io, samples);
    }
    Ok(())
}

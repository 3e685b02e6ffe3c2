//! Metrics from cgroup v1 controllers: `cpuacct`, `cpu`, `memory` and
//! `blkio`, each in its own directory.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::collect::{self, nanoseconds, DeviceIo, ScrapeContext};
use crate::exposition::Samples;
use crate::families;
use crate::files::TargetFiles;
use crate::parse::{self, V1_UNLIMITED_THRESHOLD};
use crate::read::{CgroupDir, Vanished};

/// Reads every v1 controller the container has a directory for, and
/// returns the container's number of tasks when the pids controller counts
/// them.
pub(crate) fn collect(
    context: &ScrapeContext,
    files: &mut TargetFiles,
    controllers: &BTreeMap<String, PathBuf>,
    samples: &mut Samples,
) -> Result<Option<u64>, Vanished> {
    if let Some(dir) = open(context, files, controllers, "cpuacct")? {
        cpuacct(context, dir, samples)?;
        // Mainline Linux keeps per-cgroup pressure only on the v2 hierarchy;
        // kernels that add it for v1 put the files in the cpuacct directory.
        if context.v1_has_pressure(dir)? {
            collect::pressure(context, dir, samples)?;
        }
    }
    if let Some(dir) = open(context, files, controllers, "cpu")? {
        cpu(context, dir, samples)?;
    }
    if let Some(dir) = open(context, files, controllers, "memory")? {
        memory(context, dir, samples)?;
    }
    if let Some(dir) = open(context, files, controllers, "blkio")? {
        blkio(context, dir, samples)?;
    }
    match open(context, files, controllers, "pids")? {
        Some(dir) => collect::pids(context, dir, samples),
        None => Ok(None),
    }
}

/// Returns the container's directory of `controller`, `Ok(None)` when it
/// has none or the directory cannot be opened.
fn open<'f>(
    context: &ScrapeContext,
    files: &'f mut TargetFiles,
    controllers: &BTreeMap<String, PathBuf>,
    controller: &str,
) -> Result<Option<&'f CgroupDir>, Vanished> {
    match controllers.get(controller) {
        Some(path) => files.dir(context, path, true),
        None => Ok(None),
    }
}

/// Returns the directory whose `cgroup.procs` files list the container's
/// processes. Every v1 hierarchy lists them, and `pids` comes first because
/// tracking processes is its purpose.
pub(crate) fn processes_dir(controllers: &BTreeMap<String, PathBuf>) -> Option<&Path> {
    ["pids", "memory", "cpuacct", "cpu"]
        .iter()
        .find_map(|name| controllers.get(*name))
        .or_else(|| controllers.values().next())
        .map(PathBuf::as_path)
}

fn cpuacct(
    context: &ScrapeContext,
    dir: &CgroupDir,
    samples: &mut Samples,
) -> Result<(), Vanished> {
    // With --per-cpu the per-CPU series replace the total, as in cAdvisor, so
    // that a sum over the `cpu` label counts every nanosecond once.
    let mut per_cpu_exported = false;
    if context.per_cpu {
        if let Some(text) = context.read(dir, "cpuacct.usage_percpu")? {
            let parsed = parse::per_cpu(&text);
            if let Some(values) = context.parsed_in(dir, "cpuacct.usage_percpu", parsed) {
                for (cpu, value) in values.into_iter().enumerate() {
                    samples.push_labeled(
                        &families::CPU_USAGE,
                        ("cpu", format!("cpu{cpu:02}")),
                        nanoseconds(value),
                    );
                }
                per_cpu_exported = true;
            }
        }
    }
    if !per_cpu_exported {
        if let Some(usage) = context.value(dir, "cpuacct.usage")? {
            samples.push_labeled(
                &families::CPU_USAGE,
                ("cpu", "total".to_string()),
                nanoseconds(usage),
            );
        }
    }

    if let Some(stat) = context.keyed(dir, "cpuacct.stat")? {
        if let Some(user) = stat.get(context, "user") {
            samples.push(&families::CPU_USER, user as f64 / context.ticks_per_second);
        }
        if let Some(system) = stat.get(context, "system") {
            samples.push(
                &families::CPU_SYSTEM,
                system as f64 / context.ticks_per_second,
            );
        }
    }
    Ok(())
}

fn cpu(context: &ScrapeContext, dir: &CgroupDir, samples: &mut Samples) -> Result<(), Vanished> {
    if let Some(stat) = context.keyed(dir, "cpu.stat")? {
        if let Some(periods) = stat.get(context, "nr_periods") {
            samples.push(&families::CFS_PERIODS, periods as f64);
        }
        if let Some(throttled) = stat.get(context, "nr_throttled") {
            samples.push(&families::CFS_THROTTLED_PERIODS, throttled as f64);
        }
        if let Some(time) = stat.get(context, "throttled_time") {
            samples.push(&families::CFS_THROTTLED_SECONDS, nanoseconds(time));
        }
    }

    // -1 means no quota. cAdvisor reads it as a quota of 0; the agent exports
    // no sample, so `quota / period` has no result instead of 0.
    if let Some(text) = context.read(dir, "cpu.cfs_quota_us")? {
        let parsed = parse::single_signed(&text);
        if let Some(quota) = context.parsed_in(dir, "cpu.cfs_quota_us", parsed) {
            if quota > 0 {
                samples.push(&families::SPEC_CPU_QUOTA, quota as f64);
            }
        }
    }
    if let Some(period) = context.value(dir, "cpu.cfs_period_us")? {
        samples.push(&families::SPEC_CPU_PERIOD, period as f64);
    }
    if let Some(shares) = context.value(dir, "cpu.shares")? {
        samples.push(&families::SPEC_CPU_SHARES, shares as f64);
    }
    Ok(())
}

fn memory(context: &ScrapeContext, dir: &CgroupDir, samples: &mut Samples) -> Result<(), Vanished> {
    let usage = context.value(dir, "memory.usage_in_bytes")?;
    if let Some(usage) = usage {
        samples.push(&families::MEMORY_USAGE, usage as f64);
    }

    // The total_ keys include descendant cgroups, like the usage does.
    if let Some(stat) = context.keyed(dir, "memory.stat")? {
        let inactive_file = stat.get(context, "total_inactive_file");
        if let (Some(usage), Some(inactive_file)) = (usage, inactive_file) {
            let working_set = collect::working_set(usage, inactive_file);
            samples.push(&families::MEMORY_WORKING_SET, working_set as f64);
        }
        if let Some(rss) = stat.get(context, "total_rss") {
            samples.push(&families::MEMORY_RSS, rss as f64);
        }
        if let Some(cache) = stat.get(context, "total_cache") {
            samples.push(&families::MEMORY_CACHE, cache as f64);
        }
        // Present only with swap accounting (CONFIG_MEMCG_SWAP).
        if let Some(swap) = stat.get(context, "total_swap") {
            samples.push(&families::MEMORY_SWAP, swap as f64);
        }
    }

    if let Some(failcnt) = context.value(dir, "memory.failcnt")? {
        samples.push(&families::MEMORY_FAILCNT, failcnt as f64);
    }
    if let Some(max_usage) = context.value(dir, "memory.max_usage_in_bytes")? {
        samples.push(&families::MEMORY_MAX_USAGE, max_usage as f64);
    }
    // `oom_kill` appeared in Linux 4.13; older kernels have no count.
    if let Some(oom_control) = context.keyed(dir, "memory.oom_control")? {
        if let Some(kills) = oom_control.get(context, "oom_kill") {
            samples.push(&families::OOM_EVENTS, kills as f64);
        }
    }
    if let Some(limit) = context.value(dir, "memory.limit_in_bytes")? {
        let limit = if limit >= V1_UNLIMITED_THRESHOLD {
            0
        } else {
            limit
        };
        samples.push(&families::SPEC_MEMORY_LIMIT, limit as f64);
    }
    Ok(())
}

fn blkio(context: &ScrapeContext, dir: &CgroupDir, samples: &mut Samples) -> Result<(), Vanished> {
    let bytes_file = "blkio.throttle.io_service_bytes_recursive";
    let operations_file = "blkio.throttle.io_serviced_recursive";
    let Some(bytes_text) = context.read(dir, bytes_file)? else {
        return Ok(());
    };
    let Some(operations_text) = context.read(dir, operations_file)? else {
        return Ok(());
    };
    let Some(bytes) = context.parsed_in(dir, bytes_file, parse::blkio_read_write(&bytes_text))
    else {
        return Ok(());
    };
    let Some(operations) = context.parsed_in(
        dir,
        operations_file,
        parse::blkio_read_write(&operations_text),
    ) else {
        return Ok(());
    };

    for (device, bytes) in &bytes {
        let operations = operations.get(device).copied().unwrap_or_default();
        let io = DeviceIo {
            read_bytes: bytes.read,
            write_bytes: bytes.write,
            reads: operations.read,
            writes: operations.write,
        };
        collect::device_io(context, *device, &io, samples);
    }
    Ok(())
}

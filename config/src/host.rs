//! Facts about the host that validation and `${VAR}` substitution depend on.

use std::collections::{BTreeMap, BTreeSet};

use crate::convert::parse_cpu_list;

const ONLINE_CPUS_FILE: &str = "/sys/devices/system/cpu/online";

/// The host's online CPUs and supervisord's environment.
///
/// [`HostContext::current`] reads the real values. Tests build one by hand to
/// validate against a fixed CPU count and environment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostContext {
    /// CPU numbers that are online. `resources.cpus` may be at most their
    /// count and `resources.cpuset` may name only these.
    pub online_cpus: BTreeSet<u32>,
    /// Variables that `${VAR}` falls back to when the job's `env` lacks `VAR`.
    pub environment: BTreeMap<String, String>,
}

impl HostContext {
    /// Reads the online CPUs from `/sys/devices/system/cpu/online` and this
    /// process's environment. Variables whose name or value is not UTF-8 are
    /// left out.
    ///
    /// When sysfs is unreadable, the CPUs are `0..N` with N from
    /// [`std::thread::available_parallelism`], which may be lower than the
    /// host's count because it honors affinity masks and cgroup quotas.
    pub fn current() -> Self {
        let environment = std::env::vars_os()
            .filter_map(|(name, value)| Some((name.into_string().ok()?, value.into_string().ok()?)))
            .collect();
        HostContext {
            online_cpus: read_online_cpus(),
            environment,
        }
    }

    /// Builds a context with CPUs `0..cpu_count` and the given environment.
    pub fn with_cpus(cpu_count: u32, environment: BTreeMap<String, String>) -> Self {
        HostContext {
            online_cpus: (0..cpu_count).collect(),
            environment,
        }
    }

    /// Number of online CPUs, at least 1.
    pub fn cpu_count(&self) -> usize {
        self.online_cpus.len().max(1)
    }
}

fn read_online_cpus() -> BTreeSet<u32> {
    let from_sysfs = std::fs::read_to_string(ONLINE_CPUS_FILE)
        .map_err(|error| error.to_string())
        .and_then(|text| parse_cpu_list(&text).map_err(|error| error.to_string()));
    match from_sysfs {
        Ok(cpus) if !cpus.is_empty() => return cpus,
        Ok(_) => tracing::warn!(file = ONLINE_CPUS_FILE, "no online CPUs listed"),
        Err(error) => tracing::warn!(file = ONLINE_CPUS_FILE, %error, "failed to read online CPUs"),
    }
    let count = std::thread::available_parallelism().map_or(1, |count| count.get());
    (0..count as u32).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn current_host_has_cpus() {
        let host = HostContext::current();
        assert!(host.cpu_count() >= 1);
        assert!(!host.online_cpus.is_empty());
    }

    #[test]
    fn with_cpus_numbers_from_zero() {
        let host = HostContext::with_cpus(2, BTreeMap::new());
        assert_eq!(
            host.online_cpus.iter().copied().collect::<Vec<_>>(),
            vec![0, 1]
        );
        assert_eq!(host.cpu_count(), 2);
    }
}

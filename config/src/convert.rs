//! Conversions between job spec values, OCI runtime spec values and the
//! values that cgroup v1 and v2 control files take.
//!
//! The runtime, the supervisor and the metrics agent all convert through this
//! module, so a limit written by one is read back the same way by another.

use std::collections::BTreeSet;

/// CFS period used for every job, in microseconds (the kernel default).
pub const CFS_PERIOD_US: u64 = 100_000;

/// Smallest CFS quota the kernel accepts, in microseconds.
pub const CFS_MIN_QUOTA_US: u64 = 1_000;

/// Range of cgroup v1 `cpu.shares` (kernel `MIN_SHARES` and `MAX_SHARES`).
pub const CPU_SHARES_MIN: u64 = 2;
pub const CPU_SHARES_MAX: u64 = 262_144;

/// Range of cgroup v2 `cpu.weight` and `io.weight`.
pub const WEIGHT_MIN: u64 = 1;
pub const WEIGHT_MAX: u64 = 10_000;

/// Range of cgroup v1 `blkio.weight`.
pub const BLKIO_WEIGHT_MIN: u64 = 10;
pub const BLKIO_WEIGHT_MAX: u64 = 1_000;

/// Largest CPU number that [`parse_cpu_list`] accepts. Linux allows at most
/// 8192 CPUs (`CONFIG_NR_CPUS` with `MAXSMP` on x86_64), and the cap keeps a
/// range such as `0-4294967295` from allocating a huge set.
pub const MAX_CPU_ID: u32 = 8_191;

/// An error from parsing a CPU list.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConvertError {
    #[error("invalid CPU list {list:?}: {reason}")]
    InvalidCpuList { list: String, reason: String },
}

/// Converts a CPU count to a CFS `(quota_us, period_us)` pair with a 100ms
/// period.
///
/// The quota is rounded to the nearest microsecond and raised to the kernel's
/// 1ms minimum, so `0`, negative and NaN counts all give the minimum. Callers
/// reject such counts first: job validation requires at least 0.01 CPUs.
pub fn cpus_to_cfs(cpus: f64) -> (i64, u64) {
    let quota = (cpus * CFS_PERIOD_US as f64).round() as i64;
    (quota.max(CFS_MIN_QUOTA_US as i64), CFS_PERIOD_US)
}

/// Converts a CFS quota and period back to a CPU count. Returns `None` for an
/// unlimited quota (`-1`, or any value `<= 0`) or a zero period.
pub fn cfs_to_cpus(quota_us: i64, period_us: u64) -> Option<f64> {
    if quota_us <= 0 || period_us == 0 {
        return None;
    }
    Some(quota_us as f64 / period_us as f64)
}

/// v1 `cpu.shares` per unit of v2 `cpu.weight`: both kernels' defaults
/// (1024 shares, weight 100) correspond.
const SHARES_PER_WEIGHT: f64 = 1024.0 / 100.0;

/// Converts cgroup v1 `cpu.shares` to cgroup v2 `cpu.weight` in proportion,
/// `weight = shares * 100 / 1024` rounded, so that the ratio between two
/// containers' CPU shares is the ratio between their weights. It sends the v1
/// default 1024 to the v2 default 100. The result is clamped to 1..=10000,
/// so shares above 102400 all become 10000.
///
/// runc and crun map shares to weights with other, non-proportional
/// formulas, under which weights 100 and 300 do not split a CPU 25/75.
pub fn shares_to_weight(shares: u64) -> u64 {
    let weight = (shares as f64 / SHARES_PER_WEIGHT).round() as u64;
    weight.clamp(WEIGHT_MIN, WEIGHT_MAX)
}

/// Converts cgroup v2 `cpu.weight` to cgroup v1 `cpu.shares` in proportion,
/// `shares = weight * 1024 / 100` rounded; [`shares_to_weight`] returns every
/// weight unchanged from it. Inputs are clamped to 1..=10000, so the result
/// lies in 10..=102400.
pub fn weight_to_shares(weight: u64) -> u64 {
    let weight = weight.clamp(WEIGHT_MIN, WEIGHT_MAX);
    let shares = (weight as f64 * SHARES_PER_WEIGHT).round() as u64;
    shares.clamp(CPU_SHARES_MIN, CPU_SHARES_MAX)
}

/// Converts cgroup v1 `blkio.weight` (10..=1000) to cgroup v2 `io.weight`
/// (1..=10000) linearly, as `1 + (w - 10) * 9999 / 990` in integers. Inputs are
/// clamped to 10..=1000.
pub fn blkio_weight_to_io_weight(weight: u64) -> u64 {
    let weight = weight.clamp(BLKIO_WEIGHT_MIN, BLKIO_WEIGHT_MAX);
    1 + (weight - BLKIO_WEIGHT_MIN) * (WEIGHT_MAX - WEIGHT_MIN) / 990
}

/// Converts cgroup v2 `io.weight` to cgroup v1 `blkio.weight`, the inverse of
/// [`blkio_weight_to_io_weight`]. It rounds to the nearest value, so that
/// every blkio weight survives a round trip. Inputs are clamped to 1..=10000.
pub fn io_weight_to_blkio_weight(weight: u64) -> u64 {
    let weight = weight.clamp(WEIGHT_MIN, WEIGHT_MAX);
    let span = WEIGHT_MAX - WEIGHT_MIN;
    BLKIO_WEIGHT_MIN + ((weight - WEIGHT_MIN) * 990 + span / 2) / span
}

/// Converts the OCI (and cgroup v1 `memory.memsw.limit_in_bytes`) swap value,
/// which limits memory plus swap, to cgroup v2 `memory.swap.max`, which limits
/// swap alone.
///
/// A negative `memory_swap` means unlimited and gives `-1`. With an unlimited
/// `memory` (negative) the swap alone cannot be derived, so the total is
/// returned as the swap limit: swap can never exceed it. A total below
/// `memory` gives 0.
pub fn memsw_to_swap_max(memory: i64, memory_swap: i64) -> i64 {
    if memory_swap < 0 {
        return -1;
    }
    if memory < 0 {
        return memory_swap;
    }
    (memory_swap - memory).max(0)
}

/// Parses a CPU list in the kernel's format (`"0-2,4"`), as in `cpuset.cpus`
/// and `/sys/devices/system/cpu/online`.
///
/// Surrounding whitespace is ignored and an empty list gives an empty set.
/// CPU numbers above [`MAX_CPU_ID`] are rejected.
pub fn parse_cpu_list(list: &str) -> Result<BTreeSet<u32>, ConvertError> {
    let invalid = |reason: String| ConvertError::InvalidCpuList {
        list: list.to_string(),
        reason,
    };
    let parse_cpu = |text: &str| -> Result<u32, ConvertError> {
        let valid = !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit());
        let cpu = if valid {
            text.parse::<u32>().ok()
        } else {
            None
        };
        match cpu {
            Some(cpu) if cpu <= MAX_CPU_ID => Ok(cpu),
            Some(cpu) => Err(invalid(format!(
                "CPU {cpu} is above the maximum {MAX_CPU_ID}"
            ))),
            None => Err(invalid(format!(
                "{text:?} is not a CPU number; expected numbers and ranges such as \"0-2,4\""
            ))),
        }
    };

    let mut cpus = BTreeSet::new();
    let trimmed = list.trim();
    if trimmed.is_empty() {
        return Ok(cpus);
    }
    for item in trimmed.split(',') {
        match item.split_once('-') {
            Some((first, last)) => {
                let first = parse_cpu(first)?;
                let last = parse_cpu(last)?;
                if first > last {
                    return Err(invalid(format!("range {first}-{last} is reversed")));
                }
                cpus.extend(first..=last);
            }
            None => {
                cpus.insert(parse_cpu(item)?);
            }
        }
    }
    Ok(cpus)
}

/// Linux signals by canonical name. The aliases `SIGIOT`, `SIGPOLL` and
/// `SIGCLD` resolve through [`signal_number`] but are never returned as names.
const SIGNALS: &[(&str, i32)] = &[
    ("SIGHUP", libc::SIGHUP),
    ("SIGINT", libc::SIGINT),
    ("SIGQUIT", libc::SIGQUIT),
    ("SIGILL", libc::SIGILL),
    ("SIGTRAP", libc::SIGTRAP),
    ("SIGABRT", libc::SIGABRT),
    ("SIGBUS", libc::SIGBUS),
    ("SIGFPE", libc::SIGFPE),
    ("SIGKILL", libc::SIGKILL),
    ("SIGUSR1", libc::SIGUSR1),
    ("SIGSEGV", libc::SIGSEGV),
    ("SIGUSR2", libc::SIGUSR2),
    ("SIGPIPE", libc::SIGPIPE),
    ("SIGALRM", libc::SIGALRM),
    ("SIGTERM", libc::SIGTERM),
    ("SIGSTKFLT", libc::SIGSTKFLT),
    ("SIGCHLD", libc::SIGCHLD),
    ("SIGCONT", libc::SIGCONT),
    ("SIGSTOP", libc::SIGSTOP),
    ("SIGTSTP", libc::SIGTSTP),
    ("SIGTTIN", libc::SIGTTIN),
    ("SIGTTOU", libc::SIGTTOU),
    ("SIGURG", libc::SIGURG),
    ("SIGXCPU", libc::SIGXCPU),
    ("SIGXFSZ", libc::SIGXFSZ),
    ("SIGVTALRM", libc::SIGVTALRM),
    ("SIGPROF", libc::SIGPROF),
    ("SIGWINCH", libc::SIGWINCH),
    ("SIGIO", libc::SIGIO),
    ("SIGPWR", libc::SIGPWR),
    ("SIGSYS", libc::SIGSYS),
];

const SIGNAL_ALIASES: &[(&str, i32)] = &[
    ("SIGIOT", libc::SIGIOT),
    ("SIGPOLL", libc::SIGPOLL),
    ("SIGCLD", libc::SIGCHLD),
];

/// Returns the number of a Linux signal name. The name is case-insensitive and
/// the `SIG` prefix is optional: `SIGTERM`, `TERM` and `sigterm` all give 15.
/// Real-time signals (`SIGRTMIN+N`) are not recognized.
pub fn signal_number(name: &str) -> Option<i32> {
    let upper = name.trim().to_ascii_uppercase();
    let bare = upper.strip_prefix("SIG").unwrap_or(&upper);
    SIGNALS
        .iter()
        .chain(SIGNAL_ALIASES)
        .find(|(known, _)| &known[3..] == bare)
        .map(|&(_, number)| number)
}

/// Returns the canonical name (`SIGTERM`) of a Linux signal number.
pub fn signal_name(number: i32) -> Option<&'static str> {
    SIGNALS
        .iter()
        .find(|&&(_, known)| known == number)
        .map(|&(name, _)| name)
}

/// Canonical names of all signals that [`signal_number`] recognizes, without
/// aliases.
pub fn signal_names() -> impl Iterator<Item = &'static str> {
    SIGNALS.iter().map(|&(name, _)| name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cfs_from_whole_and_fractional_cpus() {
        assert_eq!(cpus_to_cfs(1.0), (100_000, 100_000));
        assert_eq!(cpus_to_cfs(0.5), (50_000, 100_000));
        assert_eq!(cpus_to_cfs(2.25), (225_000, 100_000));
        assert_eq!(cpus_to_cfs(0.01), (1_000, 100_000));
    }

    #[test]
    fn cfs_rounds_to_nearest_microsecond() {
        assert_eq!(cpus_to_cfs(0.333_334).0, 33_333);
        assert_eq!(cpus_to_cfs(0.333_336).0, 33_334);
    }

    #[test]
    fn cfs_never_below_kernel_minimum() {
        assert_eq!(cpus_to_cfs(0.001).0, 1_000);
        assert_eq!(cpus_to_cfs(0.0).0, 1_000);
        assert_eq!(cpus_to_cfs(-3.0).0, 1_000);
        assert_eq!(cpus_to_cfs(f64::NAN).0, 1_000);
    }

    #[test]
    fn cfs_back_to_cpus() {
        assert_eq!(cfs_to_cpus(50_000, 100_000), Some(0.5));
        assert_eq!(cfs_to_cpus(150_000, 100_000), Some(1.5));
        assert_eq!(cfs_to_cpus(-1, 100_000), None);
        assert_eq!(cfs_to_cpus(0, 100_000), None);
        assert_eq!(cfs_to_cpus(50_000, 0), None);
    }

    #[test]
    fn cfs_round_trip() {
        for hundredths in 1..=400u32 {
            let cpus = f64::from(hundredths) / 100.0;
            let (quota, period) = cpus_to_cfs(cpus);
            let back = cfs_to_cpus(quota, period).unwrap();
            assert!((back - cpus).abs() < 1e-9, "{cpus} came back as {back}");
        }
    }

    #[test]
    fn shares_to_weight_fixed_points() {
        assert_eq!(shares_to_weight(2), 1);
        assert_eq!(shares_to_weight(1024), 100);
        assert_eq!(shares_to_weight(3072), 300);
        assert_eq!(shares_to_weight(102_400), 10_000);
    }

    #[test]
    fn shares_to_weight_clamps_input() {
        assert_eq!(shares_to_weight(0), 1);
        assert_eq!(shares_to_weight(1), 1);
        assert_eq!(shares_to_weight(262_144), 10_000);
        assert_eq!(shares_to_weight(1 << 30), 10_000);
    }

    #[test]
    fn shares_to_weight_is_monotonic() {
        let mut previous = 0;
        for shares in CPU_SHARES_MIN..=CPU_SHARES_MAX {
            let weight = shares_to_weight(shares);
            assert!(
                weight >= previous,
                "shares {shares} gave {weight} < {previous}"
            );
            previous = weight;
        }
    }

    #[test]
    fn weight_to_shares_fixed_points() {
        assert_eq!(weight_to_shares(1), 10);
        assert_eq!(weight_to_shares(100), 1024);
        assert_eq!(weight_to_shares(300), 3072);
        assert_eq!(weight_to_shares(10_000), 102_400);
    }

    #[test]
    fn weight_to_shares_keeps_ratios() {
        for (a, b) in [(100, 300), (50, 200), (1, 10), (2500, 10_000)] {
            let ratio = weight_to_shares(b) as f64 / weight_to_shares(a) as f64;
            let expected = b as f64 / a as f64;
            // Rounding to whole shares moves small weights by up to 5%.
            assert!(
                (ratio / expected - 1.0).abs() < 0.03,
                "weights {a} and {b} became shares with ratio {ratio}, expected {expected}"
            );
        }
    }

    #[test]
    fn weight_to_shares_clamps_input() {
        assert_eq!(weight_to_shares(0), 10);
        assert_eq!(weight_to_shares(50_000), 102_400);
    }

    #[test]
    fn weight_round_trip_through_shares() {
        for weight in WEIGHT_MIN..=WEIGHT_MAX {
            let shares = weight_to_shares(weight);
            assert_eq!(shares_to_weight(shares), weight, "via {shares} shares");
        }
    }

    #[test]
    fn blkio_weight_ends_and_default() {
        assert_eq!(blkio_weight_to_io_weight(10), 1);
        assert_eq!(blkio_weight_to_io_weight(1000), 10_000);
        assert_eq!(blkio_weight_to_io_weight(500), 4_950);
        assert_eq!(io_weight_to_blkio_weight(1), 10);
        assert_eq!(io_weight_to_blkio_weight(10_000), 1000);
        assert_eq!(io_weight_to_blkio_weight(100), 20);
    }

    #[test]
    fn blkio_weight_clamps_input() {
        assert_eq!(blkio_weight_to_io_weight(0), 1);
        assert_eq!(blkio_weight_to_io_weight(5000), 10_000);
        assert_eq!(io_weight_to_blkio_weight(0), 10);
        assert_eq!(io_weight_to_blkio_weight(99_999), 1000);
    }

    #[test]
    fn blkio_weight_round_trip() {
        for weight in BLKIO_WEIGHT_MIN..=BLKIO_WEIGHT_MAX {
            let io_weight = blkio_weight_to_io_weight(weight);
            assert_eq!(
                io_weight_to_blkio_weight(io_weight),
                weight,
                "via {io_weight}"
            );
        }
    }

    #[test]
    fn swap_max_is_total_minus_memory() {
        assert_eq!(memsw_to_swap_max(128 << 20, 256 << 20), 128 << 20);
        assert_eq!(memsw_to_swap_max(128 << 20, 128 << 20), 0);
    }

    #[test]
    fn swap_max_unlimited_stays_unlimited() {
        assert_eq!(memsw_to_swap_max(128 << 20, -1), -1);
        assert_eq!(memsw_to_swap_max(-1, -1), -1);
    }

    #[test]
    fn swap_max_edge_cases() {
        assert_eq!(memsw_to_swap_max(-1, 64 << 20), 64 << 20);
        assert_eq!(memsw_to_swap_max(128 << 20, 64 << 20), 0);
    }

    #[test]
    fn cpu_list_ranges_and_singles() {
        let cpus = parse_cpu_list("0-2,4").unwrap();
        assert_eq!(cpus.into_iter().collect::<Vec<_>>(), vec![0, 1, 2, 4]);
        let cpus = parse_cpu_list("7\n").unwrap();
        assert_eq!(cpus.into_iter().collect::<Vec<_>>(), vec![7]);
        let cpus = parse_cpu_list("3-3,1,1").unwrap();
        assert_eq!(cpus.into_iter().collect::<Vec<_>>(), vec![1, 3]);
        assert!(parse_cpu_list("").unwrap().is_empty());
        assert!(parse_cpu_list(" \n").unwrap().is_empty());
    }

    #[test]
    fn cpu_list_rejects_bad_syntax() {
        for list in ["a", "1-", "-1", "1,,2", "1 - 2", "2-1", "0-1-2", "+1", "1,"] {
            let error = parse_cpu_list(list).unwrap_err();
            assert!(
                error
                    .to_string()
                    .starts_with(&format!("invalid CPU list {list:?}")),
                "{list:?}: {error}"
            );
        }
    }

    #[test]
    fn cpu_list_rejects_huge_cpu_numbers() {
        let error = parse_cpu_list("0-4294967295").unwrap_err();
        assert!(
            error.to_string().contains("above the maximum 8191"),
            "{error}"
        );
        assert!(parse_cpu_list("99999999999").is_err());
        assert_eq!(parse_cpu_list("8191").unwrap().len(), 1);
    }

    #[test]
    fn signal_names_resolve_case_insensitively() {
        assert_eq!(signal_number("SIGTERM"), Some(15));
        assert_eq!(signal_number("TERM"), Some(15));
        assert_eq!(signal_number("sigterm"), Some(15));
        assert_eq!(signal_number("Hup"), Some(1));
        assert_eq!(signal_number("SIGKILL"), Some(9));
        assert_eq!(signal_number("SIGUSR1"), Some(libc::SIGUSR1));
        assert_eq!(signal_number("SIGIOT"), Some(libc::SIGABRT));
        assert_eq!(signal_number("CLD"), Some(libc::SIGCHLD));
    }

    #[test]
    fn signal_number_rejects_unknown() {
        assert_eq!(signal_number("SIGFOO"), None);
        assert_eq!(signal_number(""), None);
        assert_eq!(signal_number("SIG"), None);
        assert_eq!(signal_number("15"), None);
        assert_eq!(signal_number("SIGRTMIN"), None);
    }

    #[test]
    fn signal_name_is_canonical() {
        assert_eq!(signal_name(15), Some("SIGTERM"));
        assert_eq!(signal_name(libc::SIGABRT), Some("SIGABRT"));
        assert_eq!(signal_name(libc::SIGIO), Some("SIGIO"));
        assert_eq!(signal_name(0), None);
        assert_eq!(signal_name(64), None);
    }

    #[test]
    fn signal_table_round_trips() {
        for name in signal_names() {
            let number = signal_number(name).unwrap();
            assert_eq!(signal_name(number), Some(name));
        }
        assert_eq!(signal_names().count(), 31);
    }
}

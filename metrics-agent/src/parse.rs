//! Parsers for the kernel's cgroup file formats.
//!
//! Every parser looks values up by key and ignores keys it does not know,
//! because the kernel adds keys between versions and in the middle of files.

use std::collections::BTreeMap;

/// A cgroup file whose content does not have the kernel's format.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub(crate) enum ParseError {
    #[error("invalid number {value:?}")]
    InvalidNumber { value: String },
    #[error("invalid line {line:?}")]
    InvalidLine { line: String },
}

fn number(value: &str) -> Result<u64, ParseError> {
    value.parse().map_err(|_| ParseError::InvalidNumber {
        value: value.to_string(),
    })
}

/// Parses a single-value file such as `memory.usage_in_bytes`.
pub(crate) fn single_value(text: &str) -> Result<u64, ParseError> {
    number(text.trim())
}

/// Parses a single signed value such as v1 `cpu.cfs_quota_us` (-1 = no quota).
pub(crate) fn single_signed(text: &str) -> Result<i64, ParseError> {
    let value = text.trim();
    value.parse().map_err(|_| ParseError::InvalidNumber {
        value: value.to_string(),
    })
}

/// Parses a v2 single value that may be `max`, such as `memory.max`;
/// `max` becomes `None`.
pub(crate) fn single_value_or_max(text: &str) -> Result<Option<u64>, ParseError> {
    match text.trim() {
        "max" => Ok(None),
        value => number(value).map(Some),
    }
}

/// Looks up `key` in a flat-keyed file: one `KEY VALUE` pair per line
/// (`memory.stat`, `cpu.stat`, `memory.events`, `cpuacct.stat`,
/// `memory.oom_control`). Returns `Ok(None)` when the file lacks the key.
pub(crate) fn flat_keyed(text: &str, key: &str) -> Result<Option<u64>, ParseError> {
    // Matching the key as a prefix compares bytes once per line, where
    // splitting each line first searched it for the space.
    text.lines()
        .find_map(|line| line.strip_prefix(key)?.strip_prefix(' '))
        .map(|value| number(value.trim()))
        .transpose()
}

/// A block device as the kernel numbers it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) struct DeviceNumber {
    pub major: u32,
    pub minor: u32,
}

impl DeviceNumber {
    fn parse(text: &str) -> Option<Self> {
        let (major, minor) = text.split_once(':')?;
        Some(Self {
            major: major.parse().ok()?,
            minor: minor.parse().ok()?,
        })
    }
}

/// Read and write totals of one block device.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct ReadWrite {
    pub read: u64,
    pub write: u64,
}

/// Parses v1 `blkio.throttle.io_service_bytes_recursive` or
/// `blkio.throttle.io_serviced_recursive`: `MAJ:MIN OPERATION VALUE` lines
/// and a final `Total VALUE` line. Only `Read` and `Write` are kept.
pub(crate) fn blkio_read_write(
    text: &str,
) -> Result<BTreeMap<DeviceNumber, ReadWrite>, ParseError> {
    let mut devices = BTreeMap::new();
    for line in text.lines() {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let [device, operation, value] = fields[..] else {
            // The grand total line has two fields, an empty file none.
            continue;
        };
        let invalid_line = || ParseError::InvalidLine {
            line: line.to_string(),
        };
        let device = DeviceNumber::parse(device).ok_or_else(invalid_line)?;
        let totals: &mut ReadWrite = devices.entry(device).or_default();
        match operation {
            "Read" => totals.read = number(value)?,
            "Write" => totals.write = number(value)?,
            _ => {}
        }
    }
    Ok(devices)
}

/// Counters of one device in v2 `io.stat`, by key (`rbytes`, `wios`, ...).
pub(crate) type DeviceCounters<'a> = BTreeMap<&'a str, u64>;

/// Parses v2 `io.stat`: `MAJ:MIN KEY=VALUE ...` lines.
pub(crate) fn io_stat(text: &str) -> Result<Vec<(DeviceNumber, DeviceCounters<'_>)>, ParseError> {
    let mut devices = Vec::new();
    for line in text.lines().filter(|line| !line.trim().is_empty()) {
        let invalid_line = || ParseError::InvalidLine {
            line: line.to_string(),
        };
        let mut fields = line.split_whitespace();
        let device = fields
            .next()
            .and_then(DeviceNumber::parse)
            .ok_or_else(invalid_line)?;
        let mut values = BTreeMap::new();
        for field in fields {
            let (key, value) = field.split_once('=').ok_or_else(invalid_line)?;
            // Keys such as the iolatency controller's `avg_lat` carry
            // decimals; only the integer counters are of use here.
            if let Ok(value) = value.parse() {
                values.insert(key, value);
            }
        }
        devices.push((device, values));
    }
    Ok(devices)
}

/// The `total=` fields of a pressure file (`cpu.pressure`, ...), in
/// microseconds.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct PressureTotals {
    /// Time in which at least one task was stalled.
    pub some: Option<u64>,
    /// Time in which all non-idle tasks were stalled at once. Kernels before
    /// 5.13 have no `full` line in `cpu.pressure`.
    pub full: Option<u64>,
}

/// Parses a PSI file: `some avg10=... avg60=... avg300=... total=N` and
/// optionally the same with `full`.
pub(crate) fn pressure(text: &str) -> Result<PressureTotals, ParseError> {
    let mut totals = PressureTotals::default();
    for line in text.lines().filter(|line| !line.trim().is_empty()) {
        let mut fields = line.split_whitespace();
        let slot = match fields.next() {
            Some("some") => &mut totals.some,
            Some("full") => &mut totals.full,
            _ => continue,
        };
        let total = fields
            .find_map(|field| field.strip_prefix("total="))
            .ok_or_else(|| ParseError::InvalidLine {
                line: line.to_string(),
            })?;
        *slot = Some(number(total)?);
    }
    Ok(totals)
}

/// Parses v2 `cpu.max`: `$MAX $PERIOD`, where `$MAX` may be `max`.
/// Returns the quota (`None` for no limit) and the period, in microseconds.
pub(crate) fn cpu_max(text: &str) -> Result<(Option<u64>, u64), ParseError> {
    let invalid_line = || ParseError::InvalidLine {
        line: text.trim().to_string(),
    };
    let mut fields = text.split_whitespace();
    let quota = fields.next().ok_or_else(invalid_line)?;
    let period = fields.next().ok_or_else(invalid_line)?;
    let quota = match quota {
        "max" => None,
        value => Some(number(value)?),
    };
    Ok((quota, number(period)?))
}

/// Parses v1 `cpuacct.usage_percpu`: one nanosecond count per possible CPU.
pub(crate) fn per_cpu(text: &str) -> Result<Vec<u64>, ParseError> {
    text.split_whitespace().map(number).collect()
}

/// Finds `DEVNAME=` in a `/sys/dev/block/MAJ:MIN/uevent` file.
pub(crate) fn uevent_device_name(text: &str) -> Option<&str> {
    text.lines()
        .find_map(|line| line.strip_prefix("DEVNAME="))
        .map(str::trim)
        .filter(|name| !name.is_empty())
}

/// v1 memory limits at or above 2^62 bytes mean "no limit". An unset limit
/// reads as `PAGE_COUNTER_MAX` pages, which is LONG_MAX rounded down to the
/// page size (9223372036854771712 with 4 KiB pages) and above this threshold
/// for every page size.
pub(crate) const V1_UNLIMITED_THRESHOLD: u64 = 1 << 62;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flat_keyed_ignores_unknown_keys() {
        let stat = "cache 10\nnew_key 7\ntotal_rss 20\n";
        assert_eq!(flat_keyed(stat, "total_rss"), Ok(Some(20)));
        assert_eq!(flat_keyed(stat, "cache"), Ok(Some(10)));
        assert_eq!(flat_keyed(stat, "missing"), Ok(None));
    }

    #[test]
    fn flat_keyed_reports_bad_number() {
        assert!(matches!(
            flat_keyed("usage_usec twelve\n", "usage_usec"),
            Err(ParseError::InvalidNumber { .. })
        ));
    }

    #[test]
    fn blkio_keeps_read_and_write_per_device() {
        let text = "254:0 Read 2097152\n254:0 Write 1048576\n254:0 Sync 3145728\n\
                    254:0 Async 0\n254:0 Discard 0\n254:0 Total 3145728\n\
                    8:0 Read 512\n8:0 Write 0\nTotal 3146240\n";
        let devices = blkio_read_write(text).unwrap();
        let vda = DeviceNumber {
            major: 254,
            minor: 0,
        };
        let sda = DeviceNumber { major: 8, minor: 0 };
        assert_eq!(
            devices[&vda],
            ReadWrite {
                read: 2097152,
                write: 1048576
            }
        );
        assert_eq!(
            devices[&sda],
            ReadWrite {
                read: 512,
                write: 0
            }
        );
        assert_eq!(devices.len(), 2);
    }

    #[test]
    fn blkio_empty_file_has_no_devices() {
        assert!(blkio_read_write("Total 0\n").unwrap().is_empty());
    }

    #[test]
    fn io_stat_tolerates_unknown_and_decimal_keys() {
        let text = "8:16 rbytes=1459200 wbytes=314773504 rios=192 wios=353 dbytes=0 dios=0 \
                    depth=1 avg_lat=12.5 win=50\n";
        let devices = io_stat(text).unwrap();
        assert_eq!(devices.len(), 1);
        assert_eq!(
            devices[0].0,
            DeviceNumber {
                major: 8,
                minor: 16
            }
        );
        assert_eq!(devices[0].1["rbytes"], 1459200);
        assert_eq!(devices[0].1["wios"], 353);
        assert!(!devices[0].1.contains_key("avg_lat"));
    }

    #[test]
    fn pressure_without_full_line() {
        let totals = pressure("some avg10=0.00 avg60=0.00 avg300=0.00 total=1234\n").unwrap();
        assert_eq!(totals.some, Some(1234));
        assert_eq!(totals.full, None);
    }

    #[test]
    fn pressure_with_full_line() {
        let text = "some avg10=1.00 avg60=0.50 avg300=0.10 total=1500000\n\
                    full avg10=0.00 avg60=0.00 avg300=0.00 total=500000\n";
        let totals = pressure(text).unwrap();
        assert_eq!(totals.some, Some(1500000));
        assert_eq!(totals.full, Some(500000));
    }

    #[test]
    fn cpu_max_without_limit() {
        assert_eq!(cpu_max("max 100000\n"), Ok((None, 100000)));
    }

    #[test]
    fn cpu_max_with_limit() {
        assert_eq!(cpu_max("50000 100000\n"), Ok((Some(50000), 100000)));
    }

    #[test]
    fn cpu_max_rejects_one_field() {
        assert!(cpu_max("max\n").is_err());
    }

    #[test]
    fn uevent_name() {
        let text = "MAJOR=254\nMINOR=0\nDEVNAME=vda\nDEVTYPE=disk\n";
        assert_eq!(uevent_device_name(text), Some("vda"));
        assert_eq!(uevent_device_name("MAJOR=1\n"), None);
    }

    #[test]
    fn single_values() {
        assert_eq!(single_value("42\n"), Ok(42));
        assert_eq!(single_signed("-1\n"), Ok(-1));
        assert_eq!(single_value_or_max("max\n"), Ok(None));
        assert_eq!(single_value_or_max("1048576\n"), Ok(Some(1048576)));
    }
}

//! Value formatting shared by the v1 and v2 writers.

use std::collections::HashMap;

use oci_spec::runtime::{LinuxDeviceCgroup, LinuxRdma};

use super::CgroupError;

/// Returns the `pids.max` value for the spec's limit: none for 0 (unset),
/// `max` for a negative limit.
pub(crate) fn pids_max(limit: i64) -> Option<String> {
    match limit {
        0 => None,
        limit if limit < 0 => Some("max".to_string()),
        limit => Some(limit.to_string()),
    }
}

/// Returns the file name prefix for a hugepage size such as `2MB`:
/// `hugetlb.2MB`. The size is checked because it becomes part of a path.
pub(crate) fn hugetlb_prefix(page_size: &str) -> Result<String, CgroupError> {
    let valid = !page_size.is_empty()
        && page_size.starts_with(|c: char| c.is_ascii_digit())
        && page_size.chars().all(|c| c.is_ascii_alphanumeric());
    if !valid {
        return Err(CgroupError::InvalidPageSize {
            page_size: page_size.to_string(),
        });
    }
    Ok(format!("hugetlb.{page_size}"))
}

/// Returns `(device, "hca_handle=N hca_object=M")` pairs for `rdma.max`,
/// sorted by device, leaving out devices with no limit.
pub(crate) fn rdma_lines(rdma: &HashMap<String, LinuxRdma>) -> Vec<(String, String)> {
    let mut lines: Vec<(String, String)> = rdma
        .iter()
        .filter_map(|(device, limits)| {
            let mut parts = Vec::new();
            if let Some(handles) = limits.hca_handles() {
                parts.push(format!("hca_handle={handles}"));
            }
            if let Some(objects) = limits.hca_objects() {
                parts.push(format!("hca_object={objects}"));
            }
            (!parts.is_empty()).then(|| (device.clone(), parts.join(" ")))
        })
        .collect();
    lines.sort();
    lines
}

/// Formats a device rule as the v1 devices controller reads it:
/// `TYPE MAJOR:MINOR ACCESS`, with `*` for any number and `rwm` when the
/// spec gives no access.
pub(crate) fn device_rule(rule: &LinuxDeviceCgroup) -> String {
    let number = |value: Option<i64>| value.map_or("*".to_string(), |value| value.to_string());
    let kind = rule.typ().unwrap_or_default();
    let access = rule.access().as_deref().filter(|access| !access.is_empty());
    format!(
        "{} {}:{} {}",
        kind.as_str(),
        number(rule.major()),
        number(rule.minor()),
        access.unwrap_or("rwm")
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use oci_spec::runtime::{LinuxDeviceCgroupBuilder, LinuxDeviceType, LinuxRdmaBuilder};

    #[test]
    fn pids_max_maps_zero_and_negative() {
        assert_eq!(pids_max(0), None);
        assert_eq!(pids_max(-1).as_deref(), Some("max"));
        assert_eq!(pids_max(64).as_deref(), Some("64"));
    }

    #[test]
    fn hugetlb_prefix_rejects_path_characters() {
        assert_eq!(hugetlb_prefix("2MB").unwrap(), "hugetlb.2MB");
        for bad in ["", "../2MB", "2MB/x", "MB", "2 MB"] {
            assert!(hugetlb_prefix(bad).is_err(), "{bad:?} was accepted");
        }
    }

    #[test]
    fn device_rule_fills_wildcards() {
        let deny_all = LinuxDeviceCgroupBuilder::default()
            .allow(false)
            .build()
            .unwrap();
        assert_eq!(device_rule(&deny_all), "a *:* rwm");

        let null = LinuxDeviceCgroupBuilder::default()
            .allow(true)
            .typ(LinuxDeviceType::C)
            .major(1)
            .minor(3)
            .access("rw")
            .build()
            .unwrap();
        assert_eq!(device_rule(&null), "c 1:3 rw");
    }

    #[test]
    fn rdma_lines_skip_devices_without_limits() {
        let mut rdma = HashMap::new();
        let limited = LinuxRdmaBuilder::default()
            .hca_handles(2u32)
            .hca_objects(100u32)
            .build()
            .unwrap();
        rdma.insert("mlx5_1".to_string(), limited);
        rdma.insert("mlx5_0".to_string(), LinuxRdma::default());
        let lines = rdma_lines(&rdma);
        assert_eq!(
            lines,
            [(
                "mlx5_1".to_string(),
                "hca_handle=2 hca_object=100".to_string()
            )]
        );
    }
}

//! User namespace ID maps: validated before anything is created, written
//! by the runtime into /proc/PID/uid_map and gid_map of the cloned init.

use std::fs;
use std::path::PathBuf;

use oci_spec::runtime::{Linux, LinuxIdMapping};

use super::ContainerError;

/// The UID and GID maps of a container's user namespace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct IdMaps {
    uids: Vec<LinuxIdMapping>,
    gids: Vec<LinuxIdMapping>,
}

fn invalid(message: String) -> ContainerError {
    ContainerError::InvalidSpec { message }
}

/// Rejects an empty map, zero sizes, ranges that overflow 32 bits, and
/// ranges that overlap on either side.
fn check(field: &str, mappings: &[LinuxIdMapping]) -> Result<(), ContainerError> {
    if mappings.is_empty() {
        return Err(invalid(format!(
            "linux.{field} is required with a user namespace and must not be empty"
        )));
    }
    for (index, mapping) in mappings.iter().enumerate() {
        let (container, host, size) = (mapping.container_id(), mapping.host_id(), mapping.size());
        if size == 0 {
            return Err(invalid(format!(
                "linux.{field}[{index}].size is 0: it must be at least 1"
            )));
        }
        let container_end = u64::from(container) + u64::from(size);
        let host_end = u64::from(host) + u64::from(size);
        if container_end > u64::from(u32::MAX) + 1 || host_end > u64::from(u32::MAX) + 1 {
            return Err(invalid(format!(
                "linux.{field}[{index}] ({container} {host} {size}) runs past 4294967295"
            )));
        }
        for (other_index, other) in mappings.iter().enumerate().skip(index + 1) {
            let overlaps = |a: u32, b: u32| {
                u64::from(a) < u64::from(b) + u64::from(other.size())
                    && u64::from(b) < u64::from(a) + u64::from(size)
            };
            if overlaps(container, other.container_id()) {
                return Err(invalid(format!(
                    "linux.{field}[{index}] and [{other_index}] overlap in container IDs"
                )));
            }
            if overlaps(host, other.host_id()) {
                return Err(invalid(format!(
                    "linux.{field}[{index}] and [{other_index}] overlap in host IDs"
                )));
            }
        }
    }
    Ok(())
}

fn host_id_of_root(field: &str, mappings: &[LinuxIdMapping]) -> Result<u32, ContainerError> {
    mappings
        .iter()
        .find(|m| m.container_id() == 0)
        .map(|m| m.host_id())
        .ok_or_else(|| {
            invalid(format!(
                "linux.{field} must map container ID 0 (the container's root)"
            ))
        })
}

impl IdMaps {
    pub(crate) fn from_spec(linux: &Linux) -> Result<Self, ContainerError> {
        let uids = linux.uid_mappings().clone().unwrap_or_default();
        let gids = linux.gid_mappings().clone().unwrap_or_default();
        check("uidMappings", &uids)?;
        check("gidMappings", &gids)?;
        Ok(IdMaps { uids, gids })
    }

    /// Host UID and GID of the container's root.
    pub(crate) fn root_owner(&self) -> Result<(u32, u32), ContainerError> {
        Ok((
            host_id_of_root("uidMappings", &self.uids)?,
            host_id_of_root("gidMappings", &self.gids)?,
        ))
    }

    /// Writes both maps for the process `pid`.
    pub(crate) fn write(&self, pid: i32) -> Result<(), ContainerError> {
        for (file, mappings) in [("uid_map", &self.uids), ("gid_map", &self.gids)] {
            let path = PathBuf::from(format!("/proc/{pid}/{file}"));
            let text: String = mappings
                .iter()
                .map(|m| format!("{} {} {}\n", m.container_id(), m.host_id(), m.size()))
                .collect();
            fs::write(&path, &text).map_err(|source| ContainerError::Io {
                operation: "write user namespace map",
                path: path.clone(),
                source,
            })?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn linux(uids: &str, gids: &str) -> Linux {
        serde_json::from_str(&format!(
            r#"{{"uidMappings": {uids}, "gidMappings": {gids}}}"#
        ))
        .unwrap()
    }

    #[test]
    fn maps_valid_range() {
        let maps = IdMaps::from_spec(&linux(
            r#"[{"containerID": 0, "hostID": 100000, "size": 65536}]"#,
            r#"[{"containerID": 0, "hostID": 200000, "size": 65536}]"#,
        ))
        .unwrap();
        assert_eq!(maps.root_owner().unwrap(), (100000, 200000));
    }

    #[test]
    fn maps_reject_bad_ranges() {
        let cases = [
            (r#"[]"#, "must not be empty"),
            (
                r#"[{"containerID": 0, "hostID": 1000, "size": 0}]"#,
                "size is 0",
            ),
            (
                r#"[{"containerID": 0, "hostID": 4294967295, "size": 2}]"#,
                "runs past",
            ),
            (
                r#"[{"containerID": 0, "hostID": 1000, "size": 10}, {"containerID": 5, "hostID": 5000, "size": 10}]"#,
                "overlap in container IDs",
            ),
            (
                r#"[{"containerID": 0, "hostID": 1000, "size": 10}, {"containerID": 100, "hostID": 1005, "size": 10}]"#,
                "overlap in host IDs",
            ),
        ];
        for (uids, expected) in cases {
            let error = IdMaps::from_spec(&linux(
                uids,
                r#"[{"containerID": 0, "hostID": 0, "size": 1}]"#,
            ))
            .unwrap_err()
            .to_string();
            assert!(error.contains(expected), "{uids}: {error}");
            assert!(error.contains("uidMappings"), "{error}");
        }
    }
}

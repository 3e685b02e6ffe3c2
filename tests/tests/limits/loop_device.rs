//! A loop device on a sparse file in a temporary directory, detached and
//! removed on drop, and the OCI config patch that makes it visible in a job.

use std::fs;
use std::path::PathBuf;
use std::process::Command;

use corral_tests::sandbox::Sandbox;
use serde_json::{json, Value};

use crate::support::patch_config;

/// Major number of loop devices (Documentation/admin-guide/devices.txt).
const LOOP_MAJOR: u64 = 7;

pub struct LoopDevice {
    /// `/dev/loopN`.
    pub path: PathBuf,
    pub minor: u64,
    /// Holds the backing file, which is removed after the device is detached.
    _dir: tempfile::TempDir,
}

/// I/O counters of a block device from `/sys/block/NAME/stat`.
#[derive(Debug, Clone, Copy)]
pub struct DeviceStat {
    pub read_ios: u64,
    pub read_bytes: u64,
    pub write_ios: u64,
    pub write_bytes: u64,
}

impl LoopDevice {
    /// Attaches a free loop device to a new sparse file of `size` bytes.
    pub fn create(size: u64) -> Self {
        let dir = tempfile::Builder::new()
            .prefix("corral-limits-loop-")
            .tempdir()
            .expect("create loop device dir");
        let file = dir.path().join("disk.img");
        fs::File::create(&file)
            .and_then(|f| f.set_len(size))
            .expect("create the loop device's backing file");
        let output = Command::new("losetup")
            .args(["--find", "--show"])
            .arg(&file)
            .output()
            .expect("run losetup");
        assert!(
            output.status.success(),
            "losetup --find --show {} failed: {}",
            file.display(),
            String::from_utf8_lossy(&output.stderr)
        );
        let path = PathBuf::from(String::from_utf8_lossy(&output.stdout).trim());
        let minor = path
            .to_str()
            .and_then(|p| p.strip_prefix("/dev/loop"))
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("losetup printed {path:?}, not /dev/loopN"));
        LoopDevice {
            path,
            minor,
            _dir: dir,
        }
    }

    pub fn name(&self) -> String {
        format!("loop{}", self.minor)
    }

    /// `MAJOR:MINOR`, as cgroup files name the device.
    pub fn numbers(&self) -> String {
        format!("{LOOP_MAJOR}:{}", self.minor)
    }

    pub fn stat(&self) -> DeviceStat {
        let path = format!("/sys/block/{}/stat", self.name());
        let text = fs::read_to_string(&path)
            .unwrap_or_else(|error| panic!("failed to read {path}: {error}"));
        let fields: Vec<u64> = text
            .split_whitespace()
            .map(|field| field.parse().unwrap_or(0))
            .collect();
        assert!(fields.len() >= 7, "{path} has too few fields: {text:?}");
        // Fields 0, 2, 4 and 6 count completed reads, sectors read, completed
        // writes and sectors written. A sector here is always 512 bytes.
        DeviceStat {
            read_ios: fields[0],
            read_bytes: fields[2] * 512,
            write_ios: fields[4],
            write_bytes: fields[6] * 512,
        }
    }

    /// Reads the I/O schedulers that the device offers, the active one in
    /// brackets.
    pub fn schedulers(&self) -> String {
        fs::read_to_string(format!("/sys/block/{}/queue/scheduler", self.name()))
            .unwrap_or_default()
            .trim()
            .to_string()
    }

    /// Selects the device's I/O scheduler.
    pub fn set_scheduler(&self, scheduler: &str) {
        let path = format!("/sys/block/{}/queue/scheduler", self.name());
        fs::write(&path, scheduler)
            .unwrap_or_else(|error| panic!("failed to write {scheduler} to {path}: {error}"));
    }

    /// Adds the device to the job's OCI config: the runtime creates the node
    /// in the container's /dev, a tmpfs mounted without `nodev`. When the
    /// config restricts devices, an allow rule for this one is appended.
    pub fn expose_to(&self, sandbox: &Sandbox) {
        let path = self.path.display().to_string();
        let minor = self.minor;
        patch_config(sandbox, |config| {
            let linux = &mut config["linux"];
            let node = json!({"path": path, "type": "b", "major": LOOP_MAJOR, "minor": minor,
                              "fileMode": 0o660, "uid": 0, "gid": 0});
            match linux["devices"].as_array_mut() {
                Some(devices) => devices.push(node),
                None => linux["devices"] = Value::Array(vec![node]),
            }
            if let Some(rules) = linux["resources"]["devices"].as_array_mut() {
                rules.push(json!({"allow": true, "type": "b", "major": LOOP_MAJOR,
                                  "minor": minor, "access": "rw"}));
            }
        });
    }
}

impl Drop for LoopDevice {
    fn drop(&mut self) {
        // A device still open in a container is detached when it is closed.
        let detached = Command::new("losetup")
            .arg("--detach")
            .arg(&self.path)
            .output();
        if let Ok(output) = detached {
            if !output.status.success() {
                eprintln!(
                    "failed to detach {}: {}",
                    self.path.display(),
                    String::from_utf8_lossy(&output.stderr)
                );
            }
        }
    }
}

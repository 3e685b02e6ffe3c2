//! One job run through `corral run` with the OCI config that supervisord
//! would generate, in scratch directories that are removed on drop.

use std::fs;
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};

use corral_config::JobSpec;
use corral_runtime::job::{oci_spec, write_bundle, JobContainer};
use corral_runtime::state::{CgroupPaths, ContainerState, ExitRecord};

use crate::{binary, host, unique_name};

/// A job turned into a bundle in scratch directories, removed on drop.
pub struct Sandbox {
    pub scratch: tempfile::TempDir,
    pub id: String,
    pub cgroup_parent: String,
}

impl Sandbox {
    pub fn new(test: &str, job_json: &str) -> Self {
        let scratch = tempfile::Builder::new()
            .prefix("corral-sandbox-")
            .tempdir()
            .expect("scratch dir");
        let sandbox = Sandbox {
            id: unique_name(test),
            cgroup_parent: unique_name(&format!("{test}-parent")),
            scratch,
        };
        let job: JobSpec = serde_json::from_str(job_json).expect("valid job JSON");
        let container = JobContainer {
            job_name: test,
            container_id: &sandbox.id,
            data_dir: &sandbox.data_dir(),
            cgroup_parent: &sandbox.cgroup_parent,
        };
        let spec = oci_spec(&job, &container).expect("job translates to an OCI config");
        write_bundle(&spec, &sandbox.bundle()).expect("write bundle");
        sandbox
    }

    pub fn data_dir(&self) -> PathBuf {
        self.scratch.path().join("data")
    }

    pub fn bundle(&self) -> PathBuf {
        self.scratch.path().join("bundle")
    }

    pub fn root(&self) -> PathBuf {
        self.scratch.path().join("state")
    }

    pub fn exit_file(&self) -> PathBuf {
        self.scratch.path().join("exit.json")
    }

    pub fn corral(&self) -> Command {
        let mut command = Command::new(binary("corral"));
        command.arg("--root").arg(self.root());
        command
    }

    /// Runs the job to its end and returns its output and exit record.
    pub fn run(&self) -> (Output, ExitRecord) {
        let output = self
            .corral()
            .args(["run", &self.id, "--bundle"])
            .arg(self.bundle())
            .arg("--exit-file")
            .arg(self.exit_file())
            .output()
            .expect("run corral");
        let record = fs::read(self.exit_file())
            .ok()
            .and_then(|body| serde_json::from_slice(&body).ok())
            .unwrap_or_else(|| {
                panic!(
                    "no exit record; corral exited {:?} with stderr:\n{}\n{}",
                    output.status,
                    String::from_utf8_lossy(&output.stderr),
                    host::cgroup_report()
                )
            });
        (output, record)
    }

    /// Starts the job in the background and returns its state.
    pub fn run_detached(&self) -> ContainerState {
        let status = self
            .corral()
            .args(["run", "--detach", &self.id, "--bundle"])
            .arg(self.bundle())
            // The container keeps its stdout and stderr open, so capturing
            // them would wait for the container to end.
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .expect("run corral");
        assert!(
            status.success(),
            "corral run --detach {} failed with {status}",
            self.id
        );
        ContainerState::load(&self.root(), &self.id).expect("state of the detached container")
    }

    pub fn delete(&self) -> Output {
        self.corral()
            .args(["delete", "--force", &self.id])
            .output()
            .expect("run corral delete")
    }
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        if self.root().join(&self.id).exists() {
            let _ = self.delete();
        }
        crate::daemon::remove_cgroup_tree(&self.id);
        crate::daemon::remove_cgroup_tree(&self.cgroup_parent);
    }
}

/// The probe binary, visible inside containers on the host image.
pub fn probe() -> String {
    binary("corral-probe").display().to_string()
}

pub fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

pub fn cgroup_file(state: &ContainerState, controller: &str, file: &str) -> PathBuf {
    match &state.cgroup_paths {
        CgroupPaths::V1 { controllers } => controllers[controller].join(file),
        CgroupPaths::V2 { path } => path.join(file),
    }
}

/// CPU time of the container's cgroup in seconds.
pub fn cgroup_cpu_seconds(state: &ContainerState) -> f64 {
    match &state.cgroup_paths {
        CgroupPaths::V1 { controllers } => {
            let text = fs::read_to_string(controllers["cpuacct"].join("cpuacct.usage"))
                .expect("cpuacct.usage");
            text.trim().parse::<f64>().expect("nanoseconds") / 1e9
        }
        CgroupPaths::V2 { path } => {
            let text = fs::read_to_string(path.join("cpu.stat")).expect("cpu.stat");
            let usec: f64 = text
                .lines()
                .find_map(|l| l.strip_prefix("usage_usec "))
                .expect("usage_usec line")
                .trim()
                .parse()
                .expect("microseconds");
            usec / 1e6
        }
    }
}

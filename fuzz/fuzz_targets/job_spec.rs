//! Job files as supervisord reads them. Any text must give a job or a
//! `ConfigError`, never a panic. An accepted job must survive a serde round
//! trip, and it must translate into an OCI config that the runtime can load
//! and whose seccomp profile compiles.

#![no_main]

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::OnceLock;

use corral_config::{parse_job_str_with, HostContext, JobSpec};
use corral_runtime::container::seccomp;
use corral_runtime::job::{oci_spec, JobContainer};
use libfuzzer_sys::fuzz_target;
use oci_spec::runtime::Spec;

/// Returns a fixed host, so that a crash reproduces on any machine: four
/// CPUs and one variable for `${VAR}` substitution.
fn host() -> &'static HostContext {
    static HOST: OnceLock<HostContext> = OnceLock::new();
    HOST.get_or_init(|| {
        let environment = BTreeMap::from([("FUZZ_HOME".to_string(), "/srv/fuzz".to_string())]);
        HostContext::with_cpus(4, environment)
    })
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let file = Path::new("/etc/corral/jobs.d/fuzz.json");
    let Ok(job) = parse_job_str_with("fuzz", file, text, host()) else {
        return;
    };

    let value = serde_json::to_value(&job.spec).expect("a parsed job serializes");
    let reparsed: JobSpec = serde_json::from_value(value.clone())
        .unwrap_or_else(|error| panic!("serialized job {value} does not deserialize: {error}"));
    assert_eq!(reparsed, job.spec, "serde round trip changed the job");

    // A profile path makes the translation read that file, which may be a
    // device that never ends, so only the built-in choices are translated.
    if job.spec.seccomp != "default" && job.spec.seccomp != "unconfined" {
        return;
    }
    let container = JobContainer {
        job_name: "fuzz",
        container_id: "fuzz-1",
        data_dir: Path::new("/nonexistent/corral-fuzz"),
        cgroup_parent: "corral",
    };
    // Errors here come from the host (a missing image or block device).
    let Ok(spec) = oci_spec(&job.spec, &container) else {
        return;
    };
    let body = serde_json::to_vec(&spec).expect("an OCI config serializes");
    let loaded: Spec = serde_json::from_slice(&body).unwrap_or_else(|error| {
        panic!(
            "the runtime cannot load the config of an accepted job: {error}\n{}",
            String::from_utf8_lossy(&body)
        )
    });
    if let Some(profile) = loaded.linux().as_ref().and_then(|l| l.seccomp().as_ref()) {
        if let Err(error) = seccomp::compile(profile) {
            panic!("the default seccomp profile of an accepted job does not compile: {error}");
        }
    }
});

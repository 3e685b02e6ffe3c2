//! Writes the OCI bundle of a job file: `job_bundle JOB.json DATA_DIR BUNDLE_DIR ID`.

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let text = std::fs::read_to_string(&args[1])?;
    let spec: corral_config::JobSpec = serde_json::from_str(&text)?;
    let container = corral_runtime::job::JobContainer {
        job_name: "example",
        container_id: &args[4],
        data_dir: std::path::Path::new(&args[2]),
        cgroup_parent: "corral-manual",
    };
    let oci = corral_runtime::job::oci_spec(&spec, &container)?;
    corral_runtime::job::write_bundle(&oci, std::path::Path::new(&args[3]))?;
    Ok(())
}

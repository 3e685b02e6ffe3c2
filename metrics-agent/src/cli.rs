//! The command line of `metrics-agent`, shared by the binary and the
//! generator of its completions and man page.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::Parser;

/// Prometheus exporter of corral's containers, with cAdvisor's metric names.
#[derive(Debug, Parser)]
#[command(version)]
pub struct Cli {
    /// Address to serve /metrics and /healthz on.
    #[arg(long, default_value = "127.0.0.1:9102")]
    pub listen: SocketAddr,

    /// Runtime state root; containers are found in RUN_DIR/containers.
    #[arg(long, default_value = "/run/corral")]
    pub run_dir: PathBuf,

    /// Also export every cgroup from this directory down. On cgroup v1 give
    /// the directory in one controller's hierarchy, such as
    /// /sys/fs/cgroup/memory/corral.
    #[arg(long, value_name = "PATH")]
    pub cgroup_root: Option<PathBuf>,

    /// Export v1 CPU usage per CPU (`cpu="cpu00"`, ...) instead of one
    /// `cpu="total"` series.
    #[arg(long)]
    pub per_cpu: bool,

    /// Export only this label of the containers' state files as
    /// `container_label_KEY`. Repeat it for more keys. Without it, every
    /// label is exported.
    #[arg(long = "container-label", value_name = "KEY")]
    pub container_label: Vec<String>,

    /// Export no `container_label_*` labels.
    #[arg(long, conflicts_with = "container_label")]
    pub no_container_labels: bool,

    /// Maximum number of threads that read containers during one scrape
    /// (one per 64 containers). Default: the number of CPUs, at most 4.
    #[arg(long, value_name = "COUNT", value_parser = clap::value_parser!(u16).range(1..))]
    pub scrape_threads: Option<u16>,

    /// Maximum number of cgroup and /proc descriptors kept open between
    /// scrapes; files beyond it are opened on every scrape. Each kept cgroup
    /// file also uses about 4 KiB of kernel memory. Default: the soft limit
    /// of open files, raised to the hard limit at start, minus 512.
    #[arg(long, value_name = "COUNT")]
    pub kept_descriptors: Option<usize>,

    /// The supervisor's control socket, for the corral_job_* metrics.
    #[arg(long, value_name = "PATH")]
    pub supervisor_socket: Option<PathBuf>,
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::*;

    #[test]
    fn definition_passes_clap_checks() {
        Cli::command().debug_assert();
    }

    #[test]
    fn label_options_conflict() {
        let both = Cli::try_parse_from([
            "metrics-agent",
            "--container-label",
            "app",
            "--no-container-labels",
        ]);
        let error = both.unwrap_err();
        assert_eq!(error.kind(), clap::error::ErrorKind::ArgumentConflict);
    }

    #[test]
    fn zero_scrape_threads_rejected() {
        let zero = Cli::try_parse_from(["metrics-agent", "--scrape-threads", "0"]);
        assert!(zero.is_err());
    }
}

//! corral's metrics agent: a Prometheus exporter of per-container metrics
//! under cAdvisor's names.
//!
//! The agent discovers containers from the runtime's state files
//! (`RUN_DIR/containers/ID/state.json`), optionally also every cgroup below a
//! directory, and reads their cgroup files and `/proc` entries at scrape time.
//! Nothing is sampled in the background: each `GET /metrics` reads the kernel's
//! current values and encodes them in the text exposition format 0.0.4.

pub mod agent;
pub mod cgroup_root;
pub mod cli;
mod collect;
pub mod discovery;
mod exposition;
pub mod families;
mod files;
mod parse;
mod process;
mod read;
pub mod supervisor;
pub mod target;
mod v1;
mod v2;

pub use agent::{Agent, AgentError, Settings};
pub use files::{default_kept_descriptors, raise_open_files_limit};
pub use target::{ContainerLabels, Target};

//! corral's container runtime: namespaces, cgroups, an overlayfs root and
//! pivot_root, driven by an OCI runtime-spec `config.json`.

pub mod cgroups;
pub mod cli;
pub mod container;
pub mod image;
pub mod job;
pub mod logfilter;
pub mod memory;
pub mod profile;
pub mod rootfs;
pub mod selfexe;
pub mod state;

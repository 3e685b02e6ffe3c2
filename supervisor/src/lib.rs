//! supervisord, the corral job daemon, and supervisorctl, its control CLI.
//!
//! supervisord keeps one state machine per job file, runs each job's
//! container through a `corral shim` process, restarts it by its policy and
//! serves the control API on a unix socket. The modules without I/O
//! ([`machine`], [`describe`], [`status`]) hold the rules both binaries share.

pub mod api;
pub mod batch;
pub mod cli;
pub mod client;
pub mod daemon;
pub mod describe;
pub mod logrotate;
pub mod machine;
pub mod monitor;
pub mod signals;
pub mod status;
pub mod stdout;
pub mod tail;
#[cfg(test)]
mod testing;
pub mod top;
pub mod usage;

//! Metrics of a container's processes from `/proc`: process, thread and file
//! descriptor counts, and the network counters of its network namespace.

use std::io;
use std::path::Path;

use procfs::process::Process;

use crate::collect::{self, ScrapeContext};
use crate::families::{self, Samples};
use crate::parse;
use crate::read::{proc_result, ErrorKind, ProcRead, Vanished};

/// Exports the process metrics of the cgroup rooted at `processes_dir` and
/// the network counters seen by `init_pid` (or, without one, by the first
/// process listed in the cgroup).
pub(crate) fn collect(
    context: &ScrapeContext,
    processes_dir: Option<&Path>,
    init_pid: Option<i32>,
    samples: &mut Samples,
) -> Result<(), Vanished> {
    let mut pids = Vec::new();
    if let Some(dir) = processes_dir {
        list_processes(context, dir, true, &mut pids)?;
        count_processes(context, &pids, samples);
    }

    match init_pid {
        Some(pid) => match network(context, pid, samples) {
            NetworkOutcome::Exited => return Err(Vanished),
            NetworkOutcome::Done => {}
        },
        None => {
            if let Some(&pid) = pids.first() {
                // The process may exit at any time; its cgroup stays exported.
                network(context, pid, samples);
            }
        }
    }
    Ok(())
}

/// Appends the PIDs in `dir/cgroup.procs` and in every descendant cgroup.
fn list_processes(
    context: &ScrapeContext,
    dir: &Path,
    top: bool,
    pids: &mut Vec<i32>,
) -> Result<(), Vanished> {
    let listing = match context.read(dir, "cgroup.procs") {
        Ok(listing) => listing,
        // A child cgroup removed during the walk takes its processes with it.
        Err(Vanished) if !top => return Ok(()),
        Err(Vanished) => return Err(Vanished),
    };
    if let Some(listing) = listing {
        let path = dir.join("cgroup.procs");
        for line in listing.lines().filter(|line| !line.trim().is_empty()) {
            match line.trim().parse() {
                Ok(pid) => pids.push(pid),
                Err(_) => context.parse_failed(
                    &path,
                    &parse::ParseError::InvalidNumber {
                        value: line.to_string(),
                    },
                ),
            }
        }
    }

    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(error) if error.kind() == io::ErrorKind::NotFound => {
            return if top { Err(Vanished) } else { Ok(()) };
        }
        Err(error) => {
            context.errors.record(
                ErrorKind::Cgroup,
                format_args!("failed to list {}: {error}", dir.display()),
            );
            return Ok(());
        }
    };
    for entry in entries.flatten() {
        if entry.file_type().is_ok_and(|kind| kind.is_dir()) {
            list_processes(context, &entry.path(), false, pids)?;
        }
    }
    Ok(())
}

fn count_processes(context: &ScrapeContext, pids: &[i32], samples: &mut Samples) {
    let mut threads = 0;
    let mut descriptors = 0;
    for &pid in pids {
        let root = context.proc_root.join(pid.to_string());
        let process = match proc_result(
            context.errors,
            "/proc entry",
            pid,
            Process::new_with_root(root.clone()),
        ) {
            ProcRead::Value(process) => process,
            ProcRead::Exited | ProcRead::Failed => continue,
        };
        match proc_result(context.errors, "status", pid, process.status()) {
            ProcRead::Value(status) => threads += status.threads,
            ProcRead::Exited => continue,
            ProcRead::Failed => {}
        }
        if let Some(count) = count_descriptors(context, &root, pid) {
            descriptors += count;
        }
    }
    samples.push(&families::PROCESSES, pids.len() as f64);
    samples.push(&families::THREADS, threads as f64);
    samples.push(&families::FILE_DESCRIPTORS, descriptors as f64);
}

/// Counts the entries of `/proc/PID/fd`. Listing the directory works on
/// every kernel; the size of the directory equals the count only on 6.2 and
/// later.
fn count_descriptors(context: &ScrapeContext, root: &Path, pid: i32) -> Option<u64> {
    let dir = root.join("fd");
    match std::fs::read_dir(&dir) {
        Ok(entries) => Some(entries.count() as u64),
        Err(error)
            if error.kind() == io::ErrorKind::NotFound
                || error.raw_os_error() == Some(libc::ESRCH) =>
        {
            None
        }
        Err(error) => {
            context.errors.record(
                ErrorKind::Proc,
                format_args!("failed to list {} of process {pid}: {error}", dir.display()),
            );
            None
        }
    }
}

enum NetworkOutcome {
    Done,
    Exited,
}

/// Exports the interface counters of `pid`'s network namespace, except `lo`,
/// unless that namespace is the agent's own. A job with `network: host`
/// shares the host's interfaces, whose counters are not the job's traffic.
fn network(context: &ScrapeContext, pid: i32, samples: &mut Samples) -> NetworkOutcome {
    let Some(host_namespace) = context.host_network_namespace else {
        return NetworkOutcome::Done;
    };
    let root = context.proc_root.join(pid.to_string());
    let namespace_path = root.join("ns/net");
    match collect::namespace_id(&namespace_path) {
        Ok(namespace) if namespace == host_namespace => return NetworkOutcome::Done,
        Ok(_) => {}
        Err(error)
            if error.kind() == io::ErrorKind::NotFound
                || error.raw_os_error() == Some(libc::ESRCH) =>
        {
            return NetworkOutcome::Exited;
        }
        Err(error) => {
            context.errors.record(
                ErrorKind::Proc,
                format_args!("failed to stat {}: {error}", namespace_path.display()),
            );
            return NetworkOutcome::Done;
        }
    }

    let process = match proc_result(
        context.errors,
        "/proc entry",
        pid,
        Process::new_with_root(root),
    ) {
        ProcRead::Value(process) => process,
        ProcRead::Exited => return NetworkOutcome::Exited,
        ProcRead::Failed => return NetworkOutcome::Done,
    };
    let interfaces = match proc_result(context.errors, "net/dev", pid, process.dev_status()) {
        ProcRead::Value(interfaces) => interfaces,
        ProcRead::Exited => return NetworkOutcome::Exited,
        ProcRead::Failed => return NetworkOutcome::Done,
    };

    let mut interfaces: Vec<_> = interfaces
        .into_values()
        .filter(|interface| interface.name != "lo")
        .collect();
    interfaces.sort_by(|left, right| left.name.cmp(&right.name));
    for interface in interfaces {
        let counters = [
            (&families::NETWORK_RECEIVE_BYTES, interface.recv_bytes),
            (&families::NETWORK_RECEIVE_PACKETS, interface.recv_packets),
            (&families::NETWORK_RECEIVE_ERRORS, interface.recv_errs),
            (&families::NETWORK_RECEIVE_DROPPED, interface.recv_drop),
            (&families::NETWORK_TRANSMIT_BYTES, interface.sent_bytes),
            (&families::NETWORK_TRANSMIT_PACKETS, interface.sent_packets),
            (&families::NETWORK_TRANSMIT_ERRORS, interface.sent_errs),
            (&families::NETWORK_TRANSMIT_DROPPED, interface.sent_drop),
        ];
        for (family, value) in counters {
            samples.push_labeled(
                family,
                vec![("interface", interface.name.clone())],
                value as f64,
            );
        }
    }
    NetworkOutcome::Done
}

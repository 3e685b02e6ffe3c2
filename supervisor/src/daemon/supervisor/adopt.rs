//! Live restore: a supervisord that starts after another one died (even by
//! SIGKILL) takes over the containers that one left running, and records
//! the exits of those that ended meanwhile.
//!
//! Each container has a record `RUN_DIR/shims/ID.json` with the PID of its
//! monitor. A live monitor is watched through a pidfd, because it is not
//! this process's child and cannot be waited for. The exit status then
//! comes only from the exit record the shim writes.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use corral_config::JobSpec;
use corral_runtime::cgroups::{self, CgroupPaths};
use corral_runtime::state::{ContainerState, ExitRecord};

use super::{clean_up_orphan, process_stopped, Supervisor};
use crate::daemon::job::{AfterStop, Container, Job};
use crate::daemon::launch::{self, LaunchedSpecError, ShimRecord};
use crate::daemon::listing::{self, DotFiles};
use crate::daemon::monitor_handle::MonitorHandle;
use crate::daemon::pidfd::PidFd;
use crate::daemon::settled::{self, SettledRecord};
use crate::daemon::{error_chain, DaemonConfig, Event, ShimStatus, TimerKind};
use crate::daemon::{ports, reload};
use crate::describe::LastRun;
use crate::machine::JobState;

impl Supervisor {
    /// Adopts or settles every shim record left by an earlier supervisord.
    pub(super) fn adopt_shims(&mut self) {
        let mut live = Vec::new();
        let mut own_parent = None;
        for record in launch::read_shim_records(&self.config) {
            match launch::find_live_monitor(&record) {
                Some(monitor) => {
                    live.push(record.container_id.clone());
                    // Located once, at the first live container.
                    let own = own_parent.get_or_insert_with(|| locate_own_parent(&self.config));
                    let cgroup_parent = own.as_ref().and_then(|own| {
                        foreign_cgroup_parent(&self.config, own, &record.job, &record.container_id)
                    });
                    self.adopt_live(record, monitor, cgroup_parent);
                }
                None => self.settle_ended(&record),
            }
        }
        self.remove_stale_launch_files(&live);
    }

    /// Removes what a supervisord killed during a launch left behind without
    /// a shim record: a bundle written before the record, a half-written
    /// record, and pid, exit and runtime state files of containers whose
    /// monitor is not in `live`, and the overlay directories of containers
    /// that no longer exist. Runs before any launch of this supervisord,
    /// so no other container has a monitor.
    fn remove_stale_launch_files(&self, live: &[String]) {
        let belongs_to_live = |name: &str| {
            live.iter().any(|id| {
                name == id
                    || name
                        .strip_prefix(id.as_str())
                        .is_some_and(|rest| rest.starts_with('.'))
            })
        };
        let root = self.config.containers_root();
        for name in file_names(&root) {
            if !belongs_to_live(&name) {
                tracing::warn!(container_id = %name, "deleting a container that no shim record names");
                if let Err(error) = corral_runtime::container::delete(&root, &name, true) {
                    tracing::error!(container_id = %name, error = %error_chain(&error), "failed to delete a container that no shim record names");
                }
            }
        }
        // The overlay directories outlive the runtime's state when a reboot
        // empties RUN_DIR, and each can hold a job's whole writable layer.
        let overlays = self.config.data_dir.join("containers");
        for name in file_names(&overlays) {
            if belongs_to_live(&name) {
                continue;
            }
            let dir = overlays.join(&name);
            match corral_runtime::container::remove_abandoned_overlay_dir(&dir) {
                Ok(true) => {
                    tracing::info!(container_id = %name, dir = %dir.display(), "removed the overlay directory of a container that no longer exists")
                }
                Ok(false) => {}
                Err(error) => {
                    tracing::warn!(container_id = %name, dir = %dir.display(), error = %error_chain(&error), "failed to remove the overlay directory of a container that no longer exists")
                }
            }
        }
        for dir in [
            self.config.bundles_dir(),
            self.config.shims_dir(),
            self.config.pids_dir(),
            self.config.exits_dir(),
        ] {
            for name in file_names(&dir) {
                if belongs_to_live(&name) {
                    continue;
                }
                let path = dir.join(&name);
                let removed = if path.is_dir() {
                    std::fs::remove_dir_all(&path)
                } else {
                    std::fs::remove_file(&path)
                };
                match removed {
                    Ok(()) => {
                        tracing::info!(path = %path.display(), "removed a file left by an interrupted launch")
                    }
                    Err(error) => {
                        tracing::warn!(path = %path.display(), %error, "failed to remove a file left by an interrupted launch")
                    }
                }
            }
        }
    }

    /// Adopts the running container of `record`. `cgroup_parent` is its
    /// parent cgroup when that is not this daemon's own.
    fn adopt_live(
        &mut self,
        record: ShimRecord,
        monitor: PidFd,
        cgroup_parent: Option<CgroupPaths>,
    ) {
        let id = record.container_id.clone();
        // Containers of older versions have no kept spec, so a missing one
        // is no error here. Without it, an invalid or removed job file stops
        // the container below, with a warning of its own.
        let launched = launch::read_launched_spec(&self.config, &id)
            .inspect_err(|error| {
                if !matches!(error, LaunchedSpecError::Missing { .. }) {
                    tracing::warn!(job = %record.job, container_id = %id, error = %error_chain(error), "failed to read the job spec of an adopted container");
                }
            })
            .ok()
            .map(Arc::new);
        let started_at = UNIX_EPOCH + Duration::from_secs_f64(record.started_at.max(0.0));
        let pending = pending_stop(&self.config, &record.job, started_at);
        let file_removed = !self.jobs.contains_key(&record.job);
        if file_removed {
            match launched
                .clone()
                .filter(|_| stop_resumable(pending.as_ref()))
            {
                Some(spec) => self.add_removed_job(&record.job, &id, spec),
                None => {
                    tracing::warn!(job = %record.job, container_id = %id, "stopping the container of a job whose file was removed");
                    self.kill_orphan(record, monitor, cgroup_parent);
                    return;
                }
            }
        }
        let job = self
            .jobs
            .get_mut(&record.job)
            .expect("listed by its file or added above");
        // A job file that turned invalid meanwhile keeps the container
        // running with the spec it was started from, as a running daemon
        // keeps the last valid version.
        let current = job.spec.clone();
        let Some(spec) = current.clone().or_else(|| launched.clone()) else {
            tracing::warn!(job = %record.job, container_id = %id, "stopping the container of a job without a valid job file");
            self.kill_orphan(record, monitor, cgroup_parent);
            return;
        };
        job.spec = Some(Arc::clone(&spec));

        // The stop of a job without a file ends with its removal, as the
        // earlier daemon's would have.
        let restart_pending = !file_removed
            && pending
                .as_ref()
                .is_some_and(|settled| starts_after_stop(settled, &spec));
        let signal_sent = pending
            .as_ref()
            .is_some_and(|settled| settled.stop_signal_sent);
        let stop_began = pending.as_ref().map(|settled| settled.since);
        // The stop timeout counts from the stop signal, and from the stop
        // request in records that lack the signal's time.
        let timeout_began = pending
            .as_ref()
            .map(|settled| settled.stop_signal_sent_at.unwrap_or(settled.since));
        let age = SystemTime::now()
            .duration_since(started_at)
            .unwrap_or_default();

        let pid_file = self.config.pid_file(&id);
        let relay = match ports::bind(&spec.ports) {
            Ok(bound) if bound.is_empty() => None,
            Ok(bound) => Some(ports::start_relay(
                bound,
                spec.network,
                &record.job,
                &id,
                &pid_file,
            )),
            Err(error) => {
                tracing::error!(job = %record.job, container_id = %id, error = %error_chain(&error), "failed to publish the ports of an adopted container");
                None
            }
        };
        job.container = Some(Container {
            id: id.clone(),
            spec: Arc::clone(&spec),
            monitor: MonitorHandle::Adopted(monitor),
            started_at,
            started_instant: Instant::now().checked_sub(age).unwrap_or_else(Instant::now),
            pid: None,
            start_seconds_passed: false,
            stderr_offset: record.stderr_offset,
            stop: None,
            // Set below from the state of the container's PID 1.
            paused: false,
            relay,
        });
        job.last_container_id = Some(id.clone());
        job.restore_restarts(&record.restarts);
        if let Some(parent) = cgroup_parent {
            self.adopted_cgroup_parents.insert(id.clone(), parent);
        }
        let job = self.jobs.get_mut(&record.job).expect("present above");

        let start_seconds = spec.start_seconds.as_duration();
        job.enter(JobState::Starting);
        let epoch = job.epoch;
        if stop_began.is_some() {
            // The stop below takes the job from STARTING to STOPPING, so
            // it does not pass through RUNNING.
            if let Some(container) = &mut job.container {
                container.start_seconds_passed = age >= start_seconds;
            }
        } else if age >= start_seconds {
            self.on_start_seconds_passed(&record.job);
        } else {
            self.arm_timer(&record.job, epoch, TimerKind::Started, start_seconds - age);
        }
        // The job entered its state before this supervisord ran: STARTING
        // when its container started, and RUNNING once `start_seconds` had
        // passed after that.
        if let Some(job) = self.jobs.get_mut(&record.job) {
            job.since = match job.state {
                JobState::Running => started_at + start_seconds,
                _ => started_at,
            };
        }

        let job = &mut self.jobs.get_mut(&record.job).expect("present above");
        job.refresh_pid(&self.config);
        let pid = job.container.as_ref().and_then(|container| container.pid);
        // An earlier supervisord or the host may have stopped the init
        // before this supervisord watched the stopped files. The kernel
        // shows that as state T. Later stops and continues arrive as
        // events of the pid file watch.
        if let (Some(container), Some(pid)) = (&mut job.container, pid) {
            container.paused = process_stopped(pid);
            if container.paused {
                tracing::info!(job = %record.job, container_id = %id, pid, "adopted container is paused");
            }
        }
        tracing::info!(job = %record.job, container_id = %id, monitor_pid = record.monitor_pid, pid, "adopted a running container");
        self.watch_adopted(&record.job, &id);

        if let (Some(began), Some(timeout_began)) = (stop_began, timeout_began) {
            let waited = SystemTime::now()
                .duration_since(timeout_began)
                .unwrap_or_default();
            tracing::info!(job = %record.job, container_id = %id, restart = restart_pending, waited = ?waited, "finishing a stop that the earlier supervisord had begun");
            if restart_pending {
                if let Some(job) = self.jobs.get_mut(&record.job) {
                    job.after_stop = AfterStop::Start;
                }
            }
            self.stop_job_after(&record.job, waited, signal_sent);
            if let Some(job) = self.jobs.get_mut(&record.job) {
                job.since = began;
            }
            return;
        }
        // The stop settings of the current file apply to the adopted
        // container, and a change that needs a new container restarts it,
        // as an edit does while supervisord runs.
        if let (Some(current), Some(launched)) = (current, launched) {
            if reload::needs_restart(&launched, &current) {
                let fields = reload::changed_fields(&launched, &current).join(", ");
                tracing::info!(job = %record.job, container_id = %id, %fields, "job file changed while no supervisord ran; restarting the job");
                if let Some(job) = self.jobs.get_mut(&record.job) {
                    job.after_stop = AfterStop::Start;
                }
                self.stop_job(&record.job);
            } else if launched.logs != current.logs {
                // The monitor reads its rotation limits from the file that
                // update_log_settings rewrites.
                self.update_log_settings(&record.job, &current);
            }
        }
    }

    /// Sends [`Event::ShimExited`] once the adopted monitor has ended.
    fn watch_adopted(&self, name: &str, id: &str) {
        let Some(container) = self.jobs.get(name).and_then(|job| job.container.as_ref()) else {
            return;
        };
        let MonitorHandle::Adopted(monitor) = container.monitor.clone() else {
            return;
        };
        let events = self.events.clone();
        let name = name.to_string();
        let id = id.to_string();
        tokio::spawn(async move {
            if let Err(error) = monitor.wait_exited().await {
                tracing::error!(job = %name, container_id = %id, %error, "failed to watch an adopted monitor");
            }
            let _ = events.send(Event::ShimExited {
                name,
                container_id: id,
                status: ShimStatus::Adopted,
            });
        });
    }

    /// Adds job `name`, whose file was removed while the earlier
    /// supervisord stopped its container, with the spec that container
    /// started from and its removal pending, as that supervisord had it.
    /// Its settled record then follows every state change, and the job is
    /// dropped once the container ended.
    fn add_removed_job(&mut self, name: &str, container_id: &str, spec: Arc<JobSpec>) {
        tracing::info!(job = %name, container_id, "finishing the stop of a job whose file was removed");
        let file = self.config.jobs_dir.join(format!("{name}.json"));
        let mut job = Job::new(name, file, Some(spec), None, &self.config.log_dir);
        job.after_stop = AfterStop::Remove;
        self.jobs.insert(name.to_string(), Box::new(job));
    }

    /// Removes the cgroup parent of adopted container `id`, if it is not
    /// this daemon's own and no other adopted container remains below it,
    /// once the container ended. A parent that still has children or
    /// processes stays.
    pub(super) fn remove_adopted_cgroup_parent(&mut self, job: &str, id: &str) {
        let Some(parent) = self.adopted_cgroup_parents.remove(id) else {
            return;
        };
        if self
            .adopted_cgroup_parents
            .values()
            .any(|other| *other == parent)
        {
            return;
        }
        remove_cgroup_parent(job, id, &parent);
    }

    /// Kills the container of a monitor whose job is gone. The shim then
    /// notices the end of its container, cleans up and exits, the monitor
    /// follows, the container's files are removed, and so is `cgroup_parent`
    /// if it is empty.
    fn kill_orphan(&self, record: ShimRecord, monitor: PidFd, cgroup_parent: Option<CgroupPaths>) {
        let config = Arc::clone(&self.config);
        tokio::spawn(async move {
            let job = record.job.clone();
            let id = record.container_id.clone();
            let root = config.containers_root();
            let kill_id = id.clone();
            let killed = tokio::task::spawn_blocking(move || {
                corral_runtime::container::kill_all(&root, &kill_id)
            })
            .await;
            if let Ok(Err(error)) = killed {
                tracing::warn!(%job, container_id = %id, error = %error_chain(&error), "failed to kill an orphaned container");
            }
            if let Err(error) = monitor.wait_exited().await {
                tracing::error!(%job, container_id = %id, %error, "failed to watch an orphaned monitor");
            }
            launch::remove_container_files(&config, &id);
            if let Some(parent) = cgroup_parent {
                remove_cgroup_parent(&job, &id, &parent);
            }
            tracing::info!(%job, container_id = %id, "removed an orphaned container");
        });
    }

    /// Records how the container of a monitor that ended while no supervisord
    /// ran exited, and applies the job's restart policy to that exit.
    fn settle_ended(&mut self, record: &ShimRecord) {
        let id = &record.container_id;
        let Some(job) = self.jobs.get_mut(&record.job) else {
            tracing::info!(job = %record.job, container_id = %id, "removing files of a container whose job is gone");
            clean_up_orphan(&self.config, &record.job, id);
            launch::remove_container_files(&self.config, id);
            return;
        };

        if job.spec.is_none() {
            // The spec is read before remove_container_files deletes the bundle.
            keep_launched_spec(&self.config, job, id);
        }
        let (termination, exit) = launch::read_termination(
            &self.config,
            id,
            &ShimStatus::Adopted,
            &job.stderr_log,
            record.stderr_offset,
        );
        job.oom_kills += exit.as_ref().map_or(0, |exit| exit.oom_kills);
        if exit.is_none() {
            clean_up_orphan(&self.config, &record.job, id);
        }
        launch::remove_container_files(&self.config, id);

        let finished_at = exit
            .as_ref()
            .map(finished_time)
            .unwrap_or_else(SystemTime::now);
        let started_at = UNIX_EPOCH + Duration::from_secs_f64(record.started_at.max(0.0));
        let ran_for = finished_at.duration_since(started_at).unwrap_or_default();
        let run = LastRun {
            container_id: id.clone(),
            termination,
            oom_killed: exit.as_ref().is_some_and(|exit| exit.oom_kills > 0),
            killed_after: None,
            failed_start: job
                .spec
                .as_ref()
                .is_some_and(|spec| ran_for < spec.start_seconds.as_duration()),
            stopped: false,
            finished_at,
            runtime_error: None,
        };
        tracing::info!(
            job = %record.job,
            container_id = %id,
            "container ended while supervisord was not running: {}",
            crate::describe::termination_text(&run)
        );

        // A stop that the earlier daemon had not finished keeps the job
        // stopped, unless it was part of a restart.
        let pending = pending_stop(&self.config, &record.job, started_at);
        let restart_pending = pending.as_ref().is_some_and(|settled| {
            job.spec
                .as_ref()
                .is_some_and(|spec| starts_after_stop(settled, spec))
        });
        let stop_pending = pending.is_some() && !restart_pending;
        job.last_container_id = Some(id.clone());
        job.restore_restarts(&record.restarts);
        if stop_pending || restart_pending {
            let finished_at = run.finished_at;
            job.last_run = Some(run);
            job.enter(JobState::Stopped);
            // The job stopped when its container ended, not now.
            job.since = finished_at;
            if restart_pending && !self.shutting_down {
                self.start_container(&record.job);
            }
            return;
        }
        // The restart policy, the backoff counted from the exit and the
        // restart limit apply as if this supervisord had seen the exit.
        self.after_run(&record.job, run);
    }
}

/// Makes the spec that ended container `id` was started from the last
/// valid version of `job`, whose file is invalid, as it is for a container
/// that still runs. The restart policy then applies to the container's
/// exit, and `start` and `restart` run that spec until the file is fixed.
fn keep_launched_spec(config: &DaemonConfig, job: &mut Job, id: &str) {
    match launch::read_launched_spec(config, id) {
        Ok(spec) => {
            tracing::info!(job = %job.name, container_id = %id, "job file is invalid, so the spec the ended container was started from is the last valid version");
            job.spec = Some(Arc::new(spec));
        }
        Err(error) => {
            tracing::warn!(job = %job.name, container_id = %id, error = %error_chain(&error), "job file is invalid and the spec the ended container was started from cannot be read, so the job cannot start until its file is fixed");
        }
    }
}

/// Returns the directories of the cgroup parent of container `id` when
/// they differ from those of this daemon's `--cgroup-parent`: the parent of
/// an earlier supervisord started with another `--cgroup-parent`. They are
/// read from the container's state, which records its cgroup's directories.
fn foreign_cgroup_parent(
    config: &DaemonConfig,
    own: &CgroupPaths,
    job: &str,
    id: &str,
) -> Option<CgroupPaths> {
    let state = match ContainerState::load(&config.containers_root(), id) {
        Ok(state) => state,
        Err(error) => {
            tracing::warn!(%job, container_id = %id, error = %error_chain(&error), "failed to read the state of an adopted container, so its cgroup parent stays after it ends");
            return None;
        }
    };
    let parent = cgroups::parent_paths(&state.cgroup_paths)?;
    let own_dirs = cgroup_dirs(own);
    if cgroup_dirs(&parent)
        .iter()
        .any(|dir| own_dirs.contains(dir))
    {
        return None;
    }
    tracing::info!(%job, container_id = %id, cgroup = %state.cgroup_id, "adopted container runs below another cgroup parent, which is removed once empty");
    Some(parent)
}

/// Returns the directories of this daemon's `--cgroup-parent`, or `None`
/// with a warning when they cannot be located, so that the parents of
/// adopted containers stay after they end.
fn locate_own_parent(config: &DaemonConfig) -> Option<CgroupPaths> {
    match cgroups::Hierarchy::detect().and_then(|hierarchy| hierarchy.locate(&config.cgroup_parent))
    {
        Ok((own, _)) => Some(own),
        Err(error) => {
            tracing::warn!(cgroup_parent = %config.cgroup_parent, error = %error_chain(&error), "failed to locate the cgroup parent, so those of adopted containers stay after they end");
            None
        }
    }
}

fn cgroup_dirs(paths: &CgroupPaths) -> Vec<&std::path::Path> {
    match paths {
        CgroupPaths::V1 { controllers } => controllers.values().map(|dir| dir.as_path()).collect(),
        CgroupPaths::V2 { path } => vec![path.as_path()],
    }
}

/// Removes the directories of `parent` that are empty, and logs a failure
/// with the job and container whose end made the attempt.
fn remove_cgroup_parent(job: &str, id: &str, parent: &CgroupPaths) {
    if let Err(error) = cgroups::remove_paths_if_empty(parent) {
        tracing::warn!(%job, container_id = %id, error = %error_chain(&error), "failed to remove the cgroup parent of an adopted container");
    }
}

/// Returns the names in `dir`, dot files included, because no file there
/// belongs to anything but a container. Names that are not UTF-8 are left
/// out, since no container id has one.
fn file_names(dir: &std::path::Path) -> Vec<String> {
    listing::list_dir(dir, DotFiles::Include)
        .into_iter()
        .filter_map(|entry| entry.file_name().into_string().ok())
        .collect()
}

/// Returns the STOPPED record that a stop request, which the earlier
/// supervisord had not finished, left after the container started.
fn pending_stop(
    config: &DaemonConfig,
    name: &str,
    started_at: SystemTime,
) -> Option<SettledRecord> {
    settled::read(config, name)
        .filter(|settled| settled.state == JobState::Stopped && settled.since > started_at)
}

/// True when the job starts once the recorded stop is done: the stop was
/// part of a restart, or it would have removed a job whose file is back,
/// which then starts as a new file does.
fn starts_after_stop(settled: &SettledRecord, spec: &JobSpec) -> bool {
    settled.restart || (settled.removing && spec.autostart)
}

/// True when the next daemon can finish a recorded stop with the rest of
/// its timeout: the stop signal went out and the record has its time,
/// which records of older versions lack.
fn stop_resumable(pending: Option<&SettledRecord>) -> bool {
    pending.is_some_and(|settled| settled.stop_signal_sent && settled.stop_signal_sent_at.is_some())
}

fn finished_time(exit: &ExitRecord) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs_f64(exit.finished_at.max(0.0))
}

//! The supervisor task: owns every job, handles one event at a time and
//! drives each job's state machine.

mod adopt;

use std::collections::{BTreeMap, VecDeque};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use corral_config::{JobSpec, Network};
use corral_runtime::cgroups::CgroupPaths;
use nix::sys::signal::Signal;
use tokio::sync::{mpsc, oneshot};

use crate::api::Message;
use crate::daemon::job::{AfterStop, Container, Job};
use crate::daemon::launch::{self, LaunchError, Launched};
use crate::daemon::ports;
use crate::daemon::record::read_record;
use crate::daemon::reload::{self, Planned};
use crate::daemon::settled;
use crate::daemon::stats::StatsTarget;
use crate::daemon::{
    error_chain, ApiError, DaemonConfig, Event, JsonBody, Outcome, Reply, Request,
    SharedJobsDirLock, ShimStatus, TimerKind,
};
use crate::describe::{LastRun, PendingRestart, StopProgress};
use crate::machine::{self, Decision, JobState, KeptRestarts, Termination};
use crate::signals::parse_signal;

/// Signals the monitor forwards to the shim and the shim to the
/// container's init. Other stop signals go to the init directly through
/// the runtime.
const FORWARDED_SIGNALS: [Signal; 6] = crate::monitor::FORWARDED_SIGNALS;

/// Delay before trying SIGKILL again when the container's cgroup could not
/// be killed, for example because the shim had not created it yet.
const KILL_RETRY: Duration = Duration::from_secs(1);

/// Interval of pid file checks when no inotify watch reports pid files.
const PID_CHECK_INTERVAL: Duration = Duration::from_millis(50);

/// How often a stop checks whether a monitor that is still starting
/// handles the stop signal yet. Its `main` blocks the signals first thing,
/// a millisecond or so after the spawn.
const STOP_SIGNAL_RETRY: Duration = Duration::from_millis(2);

/// How long a stop waits for a starting monitor to handle the stop signal
/// before it sends the signal anyway.
const STOP_SIGNAL_WAIT: Duration = Duration::from_secs(1);

/// Containers launched at the same time. A launch waits until the new
/// monitor has executed, which takes milliseconds of scheduling delay on a
/// machine busy creating other containers. Launches in parallel overlap
/// those waits, and the supervisor task serves requests meanwhile.
const LAUNCH_CONCURRENCY: usize = 8;

/// A container launch that holds a permit: it runs on the blocking pool
/// and reports its result as [`Event::Launched`].
struct Launch {
    config: Arc<DaemonConfig>,
    events: mpsc::UnboundedSender<Event>,
    name: String,
    id: String,
    spec: Arc<JobSpec>,
    stdout_log: PathBuf,
    stderr_log: PathBuf,
    restarts: KeptRestarts,
}

impl Launch {
    async fn run(self, permit: tokio::sync::OwnedSemaphorePermit) {
        let Launch {
            config,
            events,
            name,
            id,
            spec,
            stdout_log,
            stderr_log,
            restarts,
        } = self;
        let container_id = id.clone();
        let job_name = name.clone();
        let launched = tokio::task::spawn_blocking(move || {
            let logs = (stdout_log.as_path(), stderr_log.as_path());
            launch::launch(&config, &name, &id, &spec, logs, restarts)
        })
        .await
        .unwrap_or_else(|error| {
            Err(LaunchError::Task {
                id: container_id.clone(),
                message: error.to_string(),
            })
        });
        // Freed before the event, so that the supervisor task finds the
        // permit free when it starts the next queued launch.
        drop(permit);
        let _ = events.send(Event::Launched {
            name: job_name,
            container_id,
            result: Box::new(launched),
        });
    }
}

/// Bytes reserved per job for the job list, a little more than a view
/// with a container takes, so that the buffer rarely grows.
const LIST_BYTES_PER_JOB: usize = 640;

pub struct Supervisor {
    config: Arc<DaemonConfig>,
    /// Boxed, so that the map's nodes hold pointers and the free slots of
    /// a node cost 8 bytes each instead of a whole job.
    jobs: BTreeMap<String, Box<Job>>,
    events: mpsc::UnboundedSender<Event>,
    shutting_down: bool,
    /// Shutdown requests that wait for every job to stop.
    shutdown_waiters: Vec<oneshot::Sender<Reply>>,
    /// False while the initial scan is applied, so that jobs whose
    /// containers are adopted are not started twice.
    autostart: bool,
    /// Whether an inotify watch reports new pid files; without one, jobs
    /// check for them on a timer.
    watching_pids: bool,
    /// Set by a detach: the task ends and leaves the containers running.
    detached: bool,
    /// Limits the launches that run on the blocking pool at once.
    launch_permits: Arc<tokio::sync::Semaphore>,
    /// Jobs whose launch waits for a permit, oldest first. A launch task
    /// is spawned only once it has one, so a burst of starts allocates a
    /// few tasks at a time. With a task per waiting job, the few bytes
    /// that each started job keeps ended up spread over the heap pages
    /// those tasks had filled, and kept them resident.
    launch_queue: VecDeque<String>,
    /// Cgroup parents of adopted containers that lie outside this daemon's
    /// own `--cgroup-parent`, by container id, removed once empty.
    adopted_cgroup_parents: BTreeMap<String, CgroupPaths>,
    /// The lock on the jobs directory, moved to a directory that replaced
    /// it before each scan.
    jobs_lock: SharedJobsDirLock,
}

impl Supervisor {
    pub fn new(
        config: DaemonConfig,
        events: mpsc::UnboundedSender<Event>,
        watching_pids: bool,
        jobs_lock: SharedJobsDirLock,
    ) -> Self {
        Supervisor {
            config: Arc::new(config),
            jobs_lock,
            jobs: BTreeMap::new(),
            events,
            shutting_down: false,
            shutdown_waiters: Vec::new(),
            autostart: true,
            watching_pids,
            detached: false,
            launch_permits: Arc::new(tokio::sync::Semaphore::new(LAUNCH_CONCURRENCY)),
            launch_queue: VecDeque::new(),
            adopted_cgroup_parents: BTreeMap::new(),
        }
    }

    /// Loads the jobs, starts those with `autostart`, and handles events
    /// until a shutdown has stopped every container or a detach.
    pub async fn run(mut self, mut receiver: mpsc::UnboundedReceiver<Event>) -> Outcome {
        let scan = self.scan_jobs_dir();
        let plans = reload::plan(&self.jobs, &scan);
        self.autostart = false;
        self.apply(plans);
        self.autostart = true;
        self.adopt_shims();
        settled::remove_unknown(&self.config, |name| self.jobs.contains_key(name));
        let names: Vec<String> = self.jobs.keys().cloned().collect();
        for name in names {
            let job = self.jobs.get_mut(&name).expect("listed above");
            // A job whose file has been invalid since this daemon loaded
            // it is INVALID until a record gives it its last valid spec.
            let loaded_state = if job.spec.is_some() {
                JobState::Stopped
            } else {
                JobState::Invalid
            };
            let untouched = job.state == loaded_state
                && job.last_run.is_none()
                && job.container.is_none()
                && job.launching.is_none();
            if !untouched {
                continue;
            }
            // The record of a stop that would have removed the job does
            // not apply to the file that is back, which starts as a new
            // file does.
            let mut record = settled::read(&self.config, &name).filter(|record| !record.removing);
            // A job whose file is invalid and that has no container left
            // gets its last valid spec from the record, which keeps it
            // while the file is invalid.
            if job.spec.is_none() {
                match record.as_mut().and_then(|record| record.spec.take()) {
                    Some(spec) => {
                        tracing::info!(job = %name, "the job file is invalid; the recorded last valid version stays");
                        job.spec = Some(Arc::new(spec));
                    }
                    None => continue,
                }
            }
            if let Some(record) = record {
                if record.restart {
                    tracing::info!(job = %name, "finishing a restart that the earlier supervisord had begun");
                    self.start_container(&name);
                    continue;
                }
                tracing::info!(job = %name, state = %record.state, "job keeps the state it had before supervisord restarted");
                job.restore(record);
                if let Some(pending) = job.pending_restart {
                    let delay = pending
                        .at
                        .duration_since(SystemTime::now())
                        .unwrap_or_default();
                    tracing::info!(job = %name, attempt_in_window = pending.attempt, max_restarts = pending.max_restarts, delay = ?delay, "restart scheduled by the earlier supervisord");
                    let epoch = job.epoch;
                    self.arm_timer(&name, epoch, TimerKind::Restart, delay);
                }
                continue;
            }
            let autostart = job.spec.as_ref().is_some_and(|spec| spec.autostart);
            if autostart {
                self.start_container(&name);
            }
        }
        self.record_settled_states();

        loop {
            let stopped_all = self.shutting_down && self.no_containers_left();
            if stopped_all {
                // The server writes these replies before supervisord exits,
                // unless a client stops reading one (see server::serve).
                let list = self.list();
                for waiter in self.shutdown_waiters.drain(..) {
                    let _ = waiter.send(Ok(list.clone()));
                }
                break;
            }
            if self.detached {
                break;
            }
            let Some(event) = receiver.recv().await else {
                break;
            };
            self.handle(event);
            self.answer_settled_waiters();
            self.record_settled_states();
        }
        if self.detached {
            let running = self
                .jobs
                .values()
                .filter(|job| job.container.is_some())
                .count();
            return Outcome::Detached { running };
        }
        // Every job was stopped with the daemon, so the next daemon starts
        // them by their autostart, as after a reboot.
        settled::remove_unknown(&self.config, |_| false);
        Outcome::Stopped
    }

    /// Writes or removes the settled-state record of every job whose state
    /// changed. The stops of a shutdown are recorded too, so that a
    /// supervisord killed during one leaves the next one to finish them.
    /// A shutdown that completes removes every record.
    fn record_settled_states(&mut self) {
        for (name, job) in &mut self.jobs {
            if !std::mem::take(&mut job.state_changed) || job.spec.is_none() {
                continue;
            }
            match job.settled_record() {
                Some(record) => {
                    if let Err(error) = settled::write(&self.config, name, &record) {
                        tracing::warn!(job = %name, %error, "failed to record the settled state; a restarted supervisord may start the job");
                    }
                }
                None => settled::remove(&self.config, name),
            }
        }
    }

    fn no_containers_left(&self) -> bool {
        self.jobs
            .values()
            .all(|job| job.container.is_none() && job.launching.is_none())
    }

    fn handle(&mut self, event: Event) {
        match event {
            Event::Request(request, reply) => self.handle_request(request, reply),
            Event::StatsTargets(reply) => {
                let _ = reply.send(self.stats_targets());
            }
            Event::ShimExited {
                name,
                container_id,
                status,
            } => self.on_shim_exited(&name, &container_id, status),
            Event::Timer { name, epoch, kind } => self.on_timer(&name, epoch, kind),
            Event::ChildExited => self.reap_monitors(),
            Event::Launched {
                name,
                container_id,
                result,
            } => {
                self.on_launched(&name, &container_id, *result);
                self.start_queued_launches();
            }
            Event::LaunchCancelled { name, container_id } => {
                self.on_launch_cancelled(&name, &container_id);
                self.start_queued_launches();
            }
            Event::PidWritten { container_id } => self.on_pid_written(&container_id),
            Event::StoppedChanged {
                container_id,
                stopped,
            } => self.on_stopped_changed(&container_id, stopped),
            Event::PidEventsLost => self.on_pid_events_lost(),
            Event::PidWatchFailed => self.on_pid_watch_failed(),
            Event::Reload { origin } => {
                tracing::info!(origin, "reloading job files");
                self.reload(true);
            }
            Event::Shutdown { origin } => self.begin_shutdown(origin),
            Event::Detach { origin } => self.detach(origin),
        }
    }

    // ---- requests ------------------------------------------------------

    fn handle_request(&mut self, request: Request, reply: oneshot::Sender<Reply>) {
        // Every job is being stopped, so these would be undone or do
        // nothing. Status, spec and signals still work, so that a slow
        // stop can be watched or sped up with SIGKILL.
        let changes_jobs = matches!(
            request,
            Request::Start { .. }
                | Request::Stop { .. }
                | Request::Restart { .. }
                | Request::Reread
                | Request::Update
        );
        if self.shutting_down && changes_jobs {
            let _ = reply.send(Err(ApiError::unavailable()));
            return;
        }
        let result = match request {
            Request::Info => Ok(self.info()),
            Request::List => Ok(self.list()),
            Request::Get { name } => self.view_of(&name),
            Request::Start { name, wait } => return self.request_start(&name, wait, reply),
            Request::Stop { name, wait } => return self.request_stop(&name, wait, reply),
            Request::Restart { name, wait } => return self.request_restart(&name, wait, reply),
            Request::Signal { name, signal } => self.request_signal(&name, &signal),
            Request::Spec { name } => self.spec_of(&name),
            Request::Reread => Ok(to_json(&self.reload(false))),
            Request::Update => Ok(to_json(&self.reload(true))),
            Request::Shutdown { wait } => {
                self.begin_shutdown("API request");
                if wait {
                    self.shutdown_waiters.push(reply);
                    return;
                }
                Ok(to_json(&Message {
                    message: "Shut down".to_string(),
                }))
            }
        };
        let _ = reply.send(result);
    }

    fn info(&self) -> JsonBody {
        to_json(&serde_json::json!({
            "pid": std::process::id(),
            "version": env!("CARGO_PKG_VERSION"),
            "config": *self.config,
            "shutting_down": self.shutting_down,
        }))
    }

    /// Encodes the job list one view at a time into a buffer sized for it,
    /// the body of `GET /v1/jobs` as [`crate::api::JobList`] encodes it.
    fn list(&mut self) -> JsonBody {
        let now = SystemTime::now();
        let mut body = Vec::with_capacity(LIST_BYTES_PER_JOB * self.jobs.len() + 16);
        body.extend_from_slice(b"{\"jobs\":[");
        for (index, job) in self.jobs.values_mut().enumerate() {
            if index > 0 {
                body.push(b',');
            }
            job.refresh_pid(&self.config);
            if let Err(error) = serde_json::to_writer(&mut body, &job.view(now)) {
                tracing::error!(job = %job.name, %error, "failed to encode an API reply");
                return to_json(&serde_json::json!({
                    "error": format!("failed to encode the reply: {error}")
                }));
            }
        }
        body.extend_from_slice(b"]}");
        JsonBody::from(body)
    }

    fn stats_targets(&mut self) -> Vec<StatsTarget> {
        let root = self.config.containers_root();
        self.jobs
            .values_mut()
            .map(|job| {
                job.refresh_pid(&self.config);
                let container = job.container.as_ref();
                StatsTarget {
                    name: job.name.clone(),
                    state: job.displayed_state(),
                    container: container.map(|container| (container.id.clone(), root.clone())),
                    pid: container.and_then(|container| container.pid),
                    own_network: container
                        .is_some_and(|container| container.spec.network != Network::Host),
                    relay_traffic: container
                        .and_then(|container| container.relay.as_ref())
                        .map(|relay| relay.traffic()),
                }
            })
            .collect()
    }

    fn view_of(&mut self, name: &str) -> Reply {
        let config = Arc::clone(&self.config);
        let job = self.job_mut(name)?;
        job.refresh_pid(&config);
        Ok(to_json(&job.view(SystemTime::now())))
    }

    fn job_mut(&mut self, name: &str) -> Result<&mut Job, ApiError> {
        self.jobs
            .get_mut(name)
            .map(|job| &mut **job)
            .ok_or_else(|| ApiError::not_found(name))
    }

    /// Sends the reply now, or once the job settles when `wait` is set.
    fn reply_when_settled(&mut self, name: &str, wait: bool, reply: oneshot::Sender<Reply>) {
        match self.jobs.get_mut(name) {
            Some(job) if wait && !job.is_settled() => job.waiters.push(reply),
            Some(job) => {
                job.refresh_pid(&self.config);
                let _ = reply.send(Ok(to_json(&job.view(SystemTime::now()))));
            }
            None => {
                let _ = reply.send(Err(ApiError::not_found(name)));
            }
        }
    }

    fn request_start(&mut self, name: &str, wait: bool, reply: oneshot::Sender<Reply>) {
        if let Err(error) = self.check_start(name) {
            let _ = reply.send(Err(error));
            return;
        }
        let job = self.jobs.get_mut(name).expect("checked above");
        match job.state {
            JobState::Running => {
                let pid = job.container.as_ref().and_then(|container| container.pid);
                let message = match pid {
                    Some(pid) => format!("job {name:?} is already running (pid {pid})"),
                    None => format!("job {name:?} is already running"),
                };
                let _ = reply.send(Err(ApiError::conflict(message)));
                return;
            }
            JobState::Starting => {}
            JobState::Stopping => job.after_stop = AfterStop::Start,
            _ => {
                job.history.clear();
                self.start_container(name);
            }
        }
        self.reply_when_settled(name, wait, reply);
    }

    fn check_start(&self, name: &str) -> Result<(), ApiError> {
        if self.shutting_down {
            return Err(ApiError::unavailable());
        }
        let job = self
            .jobs
            .get(name)
            .ok_or_else(|| ApiError::not_found(name))?;
        if job.spec.is_none() {
            let error = job.invalid.as_ref().map_or("", |error| error.text.as_str());
            return Err(ApiError::conflict(format!(
                "job {name:?} has no valid job file: {error}"
            )));
        }
        if job.after_stop == AfterStop::Remove {
            return Err(ApiError::conflict(format!(
                "job {name:?} is being removed because its file {} was removed; \
                 restore the file to keep the job",
                job.file.display()
            )));
        }
        Ok(())
    }

    fn request_stop(&mut self, name: &str, wait: bool, reply: oneshot::Sender<Reply>) {
        let job = match self.job_mut(name) {
            Ok(job) => job,
            Err(error) => {
                let _ = reply.send(Err(error));
                return;
            }
        };
        if !job.state.is_active() {
            let message = format!("job {name:?} is not running ({})", job.state);
            let _ = reply.send(Err(ApiError::conflict(message)));
            return;
        }
        // A job whose file was removed is forgotten once it stopped, also
        // when a stop request comes meanwhile.
        if job.after_stop != AfterStop::Remove {
            job.after_stop = AfterStop::Stay;
        }
        self.stop_job(name);
        self.reply_when_settled(name, wait, reply);
    }

    fn request_restart(&mut self, name: &str, wait: bool, reply: oneshot::Sender<Reply>) {
        if let Err(error) = self.check_start(name) {
            let _ = reply.send(Err(error));
            return;
        }
        let job = self.jobs.get_mut(name).expect("checked above");
        job.history.clear();
        match job.state {
            JobState::Starting | JobState::Running | JobState::Stopping => {
                job.after_stop = AfterStop::Start;
                self.stop_job(name);
            }
            _ => self.start_container(name),
        }
        self.reply_when_settled(name, wait, reply);
    }

    fn request_signal(&mut self, name: &str, signal_text: &str) -> Reply {
        let config = Arc::clone(&self.config);
        let root = config.containers_root();
        // An unknown name is reported as such before the signal is checked,
        // as in a request for that job alone.
        let job = self.job_mut(name)?;
        let signal = parse_signal(signal_text)
            .map_err(|error| ApiError::bad_request(format!("job {name:?}: {error}")))?;
        // A STOPPING job takes signals too, as in Python's supervisord, so
        // that a slow stop can be ended with SIGKILL.
        let container = match (&job.container, job.state) {
            (Some(container), JobState::Starting | JobState::Running | JobState::Stopping) => {
                container
            }
            _ => {
                return Err(ApiError::conflict(format!(
                    "job {name:?} is not running ({})",
                    job.state
                )))
            }
        };
        // A stopped init could neither pass signals on nor reap, and SIGSTOP
        // cannot be passed on, so STOP and CONT pause and resume the whole
        // job.
        let every_process = matches!(signal, Signal::SIGSTOP | Signal::SIGCONT);
        let starting = job.state == JobState::Starting;
        corral_runtime::container::kill(&root, &container.id, signal as i32, every_process)
            .map_err(|error| match error {
                // The shim has not created the container yet.
                corral_runtime::container::ContainerError::WrongStatus { .. }
                | corral_runtime::container::ContainerError::State(_)
                    if starting =>
                {
                    ApiError::conflict(format!(
                        "job {name:?} is starting and its container does not exist yet: send \
                         the signal once status shows its pid"
                    ))
                }
                // The exit event of a container that just ended is queued.
                corral_runtime::container::ContainerError::WrongStatus { .. } => {
                    ApiError::conflict(format!("job {name:?} is not running: its container ended"))
                }
                error => ApiError::conflict(format!(
                    "failed to send {signal} to job {name:?} (container {}): {}",
                    container.id,
                    error_chain(&error)
                )),
            })?;
        tracing::info!(job = %name, container_id = %container.id, %signal, every_process, "sent signal");
        if every_process {
            if let Some(container) = &mut job.container {
                container.paused = signal == Signal::SIGSTOP;
            }
        }
        job.refresh_pid(&config);
        Ok(to_json(&job.view(SystemTime::now())))
    }

    /// Returns the OCI config of the job's running container, or the one a
    /// start would generate. Either way it carries the overlay directory
    /// and cgroup of a new container id, so that running it by hand does
    /// not take over the running container's.
    fn spec_of(&mut self, name: &str) -> Reply {
        let config = self.config.clone();
        let job = self.job_mut(name)?;
        // The id of a container that would start now; nothing is created.
        let id = launch::new_container_id(name);
        if let Some(container) = &job.container {
            let path = config.bundle_dir(&container.id).join("config.json");
            let text = read_record(&path).map_err(|error| {
                ApiError::internal(format!(
                    "failed to read {} of job {name:?}: {error}",
                    path.display()
                ))
            })?;
            let mut oci: oci_spec::runtime::Spec =
                serde_json::from_slice(&text).map_err(|error| {
                    ApiError::internal(format!(
                        "invalid {} of job {name:?}: {error}",
                        path.display()
                    ))
                })?;
            launch::reassign_spec(&config, name, &id, &mut oci);
            return serde_json::to_vec(&oci)
                .map(JsonBody::from)
                .map_err(|error| {
                    ApiError::internal(format!("failed to encode the OCI config: {error}"))
                });
        }
        let spec = job
            .spec
            .clone()
            .ok_or_else(|| ApiError::conflict(format!("job {name:?} has no valid job file")))?;
        let oci = launch::build_spec(&config, name, &id, &spec).map_err(|error| {
            ApiError::conflict(format!(
                "failed to build the OCI config of job {name:?}: {}",
                error_chain(&error)
            ))
        })?;
        serde_json::to_vec(&oci)
            .map(JsonBody::from)
            .map_err(|error| {
                ApiError::internal(format!("failed to encode the OCI config: {error}"))
            })
    }

    fn answer_settled_waiters(&mut self) {
        let now = SystemTime::now();
        for job in self.jobs.values_mut() {
            if job.waiters.is_empty() || !job.is_settled() {
                continue;
            }
            job.refresh_pid(&self.config);
            let view = to_json(&job.view(now));
            for waiter in job.waiters.drain(..) {
                let _ = waiter.send(Ok(view.clone()));
            }
        }
    }

    // ---- reload --------------------------------------------------------

    /// Scans the jobs directory after moving its lock to a directory that
    /// took its place. A directory that another supervisord has locked is
    /// not read, and the scan reports it as a directory error, so no job
    /// is removed.
    fn scan_jobs_dir(&mut self) -> reload::Scan {
        let dir = self.config.jobs_dir.display().to_string();
        let followed = self
            .jobs_lock
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .follow();
        let scan = match followed {
            Ok(moved) => {
                if moved {
                    tracing::info!(%dir, "locked the replaced jobs directory");
                }
                reload::scan(&self.config.jobs_dir, &self.config.data_dir)
            }
            Err(error) => reload::Scan {
                jobs: Vec::new(),
                dir_error: Some(error_chain(&error)),
            },
        };
        if let Some(error) = &scan.dir_error {
            tracing::error!(%dir, %error, "failed to read the jobs directory");
        }
        scan
    }

    fn reload(&mut self, apply: bool) -> crate::api::ReloadReport {
        let scan = self.scan_jobs_dir();
        let plans = reload::plan(&self.jobs, &scan);
        let report = reload::report(&plans, &scan, &self.jobs);
        if apply {
            self.apply(plans);
        }
        report
    }

    fn apply(&mut self, mut plans: Vec<Planned>) {
        // Removals first: their stops begin before any new job starts, so
        // a new job that publishes a removed job's port (a renamed file)
        // waits for the port instead of failing to bind it.
        plans.sort_by_key(|plan| !matches!(plan, Planned::Remove { .. }));
        for plan in plans {
            match plan {
                Planned::Add { name, file, spec } => self.add_job(name, file, spec),
                Planned::Update {
                    name,
                    spec,
                    restart,
                    ..
                } => self.update_job(&name, spec, restart),
                Planned::Invalidate { name, error } => {
                    tracing::warn!(job = %name, error = %error.text, "job file is invalid; the last valid version stays");
                    if let Some(job) = self.jobs.get_mut(&name) {
                        if job.spec.is_none() {
                            job.enter(JobState::Invalid);
                        }
                        job.invalid = Some(error);
                        // The settled-state record now keeps the last
                        // valid spec too.
                        job.state_changed = true;
                    }
                }
                Planned::Remove { name } => self.remove_job(&name),
            }
        }
    }

    fn add_job(
        &mut self,
        name: String,
        file: std::path::PathBuf,
        spec: Result<Arc<corral_config::JobSpec>, crate::api::InvalidJob>,
    ) {
        let (spec, invalid) = match spec {
            Ok(spec) => (Some(spec), None),
            Err(error) => {
                tracing::warn!(job = %name, error = %error.text, "job file is invalid");
                (None, Some(error))
            }
        };
        let autostart = spec.as_ref().is_some_and(|spec| spec.autostart);
        tracing::info!(job = %name, file = %file.display(), "added job");
        let job = Job::new(&name, file, spec, invalid, &self.config.log_dir);
        self.jobs.insert(name.clone(), Box::new(job));
        if autostart && self.autostart && !self.shutting_down {
            self.start_container(&name);
        }
    }

    fn update_job(&mut self, name: &str, spec: Arc<corral_config::JobSpec>, restart: bool) {
        let shutting_down = self.shutting_down;
        let Some(job) = self.jobs.get_mut(name) else {
            return;
        };
        let was_valid = job.spec.is_some();
        let was_autostart = job.spec.as_ref().is_some_and(|old| old.autostart);
        let autostart = spec.autostart;
        let logs_changed = job.spec.as_ref().is_some_and(|old| old.logs != spec.logs);
        job.spec = Some(Arc::clone(&spec));
        job.invalid = None;
        tracing::info!(job = %name, restart, "job file changed");
        if !restart {
            // Only fields read at the next decision changed, the stop
            // settings among them, so the running container takes the
            // new spec: a later stop uses the new signal and timeout.
            if let Some(container) = job.container.as_mut() {
                container.spec = Arc::clone(&spec);
            }
            if logs_changed {
                self.update_log_settings(name, &spec);
            }
        }
        let Some(job) = self.jobs.get_mut(name) else {
            return;
        };
        if shutting_down {
            return;
        }
        if !was_valid {
            job.enter(JobState::Stopped);
            if autostart {
                self.start_container(name);
            }
            return;
        }
        let never_ran = job.state == JobState::Stopped
            && job.last_run.is_none()
            && job.container.is_none()
            && job.launching.is_none();
        if !restart {
            // Turning autostart on starts a job that never ran, as a new
            // file with it would.
            if autostart && !was_autostart && never_ran {
                self.start_container(name);
            }
            return;
        }
        match job.state {
            JobState::Starting | JobState::Running => {
                job.after_stop = AfterStop::Start;
                self.stop_job(name);
            }
            JobState::Stopping if job.after_stop == AfterStop::Remove && !autostart => {
                job.after_stop = AfterStop::Stay;
            }
            // A stop request stays in effect, and the new spec applies at
            // the next start, as for a stopped job.
            JobState::Stopping if job.after_stop == AfterStop::Stay => {
                tracing::info!(job = %name, "the job is stopping; the new spec applies at the next start");
            }
            JobState::Stopping => job.after_stop = AfterStop::Start,
            JobState::Backoff => self.start_container(name),
            // A job that never ran starts as a new file would. One that was
            // stopped, exited or went FATAL stays so, as it does when the
            // file changes while no supervisord runs: the new spec applies
            // at the next start.
            JobState::Stopped if autostart && job.last_run.is_none() => {
                job.history.clear();
                self.start_container(name);
            }
            state => {
                tracing::info!(job = %name, %state, "the new spec applies at the next start");
            }
        }
    }

    /// Hands the rotation limits of `spec`, which needs no new container,
    /// to the monitor of the job's running container.
    pub(super) fn update_log_settings(&self, name: &str, spec: &JobSpec) {
        let Some(container) = self.jobs.get(name).and_then(|job| job.container.as_ref()) else {
            return;
        };
        let settings = crate::monitor::LogSettings::for_job(spec);
        match launch::update_log_settings(&self.config, &container.id, &container.monitor, settings)
        {
            Ok(()) => {
                tracing::info!(job = %name, container_id = %container.id, max_size = settings.max_size, keep = settings.keep, "applied new log settings")
            }
            Err(error) => {
                tracing::warn!(job = %name, container_id = %container.id, %error, "failed to apply new log settings; they apply from the next start")
            }
        }
    }

    fn remove_job(&mut self, name: &str) {
        let Some(job) = self.jobs.get_mut(name) else {
            return;
        };
        tracing::info!(job = %name, "job file removed");
        if job.container.is_some() || job.launching.is_some() {
            job.after_stop = AfterStop::Remove;
            self.stop_job(name);
        } else {
            self.forget(name);
        }
    }

    /// Drops a job whose file was removed. Requests that wait for it get
    /// its last view, in which `removing` is set.
    fn forget(&mut self, name: &str) {
        if let Some(mut job) = self.jobs.remove(name) {
            settled::remove(&self.config, name);
            job.enter(JobState::Stopped);
            let view = to_json(&job.view(SystemTime::now()));
            for waiter in job.waiters {
                let _ = waiter.send(Ok(view.clone()));
            }
            tracing::info!(job = %name, "removed job");
        }
    }

    // ---- starting ------------------------------------------------------

    /// Starts a new container for the job's current spec.
    fn start_container(&mut self, name: &str) {
        let blockers = self.port_blockers(name);
        let Some(job) = self.jobs.get_mut(name) else {
            return;
        };
        if job.spec.is_none() {
            return;
        }
        let id = launch::new_container_id(name);
        job.pending_restart = None;
        job.fatal = None;
        job.enter(JobState::Starting);

        if blockers.is_empty() && job.closing_relay.is_none() {
            // Waits for a permit in the queue, where a stop removes it.
            job.launching = Some(id);
            self.launch_queue.push_back(name.to_string());
            self.start_queued_launches();
            return;
        }
        job.launching = Some(id.clone());

        // The last container's listeners hold the addresses the launch
        // binds. The job keeps the closing relay until the launch ends, so
        // a cancelled launch leaves it for the next one.
        let own_release = job
            .closing_relay
            .as_ref()
            .map(ports::ClosingRelay::released);
        let (cancel_launch, cancelled) = oneshot::channel();
        job.cancel_launch = Some(cancel_launch);
        let permits = Arc::clone(&self.launch_permits);
        let events = self.events.clone();
        let name = name.to_string();
        let launch = self.prepare_launch(&name, &id);
        tokio::spawn(async move {
            let ready = async {
                for blocker in blockers.into_iter().chain(own_release) {
                    blocker.wait().await;
                }
                // The semaphore is never closed, so acquiring only waits.
                permits.acquire_owned().await
            };
            // A dropped sender only means no stop can come any more.
            let cancelled = async {
                if cancelled.await.is_err() {
                    std::future::pending::<()>().await;
                }
            };
            let permit = tokio::select! {
                permit = ready => permit,
                () = cancelled => {
                    let _ = events.send(Event::LaunchCancelled { name, container_id: id });
                    return;
                }
            };
            if let (Some(launch), Ok(permit)) = (launch, permit) {
                launch.run(permit).await;
            }
        });
    }

    /// Spawns the launch tasks of queued jobs while permits are free.
    fn start_queued_launches(&mut self) {
        while !self.launch_queue.is_empty() {
            let Ok(permit) = Arc::clone(&self.launch_permits).try_acquire_owned() else {
                return;
            };
            let name = self.launch_queue.pop_front().expect("checked above");
            let id = self.jobs.get(&name).and_then(|job| job.launching.clone());
            let launch = id.and_then(|id| self.prepare_launch(&name, &id));
            match launch {
                Some(launch) => {
                    tokio::spawn(launch.run(permit));
                }
                // A stop removes the job from the queue, so this is a bug.
                None => tracing::error!(job = %name, "a queued launch belongs to no launching job"),
            }
        }
    }

    /// Removes `name` from the launch queue. Returns whether it was there.
    fn dequeue_launch(&mut self, name: &str) -> bool {
        let queued = self.launch_queue.iter().position(|queued| queued == name);
        if let Some(index) = queued {
            self.launch_queue.remove(index);
        }
        queued.is_some()
    }

    /// Collects what the launch of container `id` of job `name` needs, or
    /// `None` when the job has no spec.
    fn prepare_launch(&self, name: &str, id: &str) -> Option<Launch> {
        let job = self.jobs.get(name)?;
        Some(Launch {
            config: Arc::clone(&self.config),
            events: self.events.clone(),
            name: name.to_string(),
            id: id.to_string(),
            spec: job.spec.clone()?,
            stdout_log: job.stdout_log.clone(),
            stderr_log: job.stderr_log.clone(),
            restarts: job.kept_restarts(),
        })
    }

    /// Returns the release signals of other jobs' relays that listen on a
    /// host address of `name`'s ports and are about to close: those of a
    /// stopping container, or listeners being closed. A job that keeps
    /// running keeps its address, and the launch fails to bind it.
    fn port_blockers(&self, name: &str) -> Vec<ports::PortsReleased> {
        let Some(spec) = self.jobs.get(name).and_then(|job| job.spec.as_ref()) else {
            return Vec::new();
        };
        let addresses = ports::host_addresses(&spec.ports);
        if addresses.is_empty() {
            return Vec::new();
        }
        let mut blockers = Vec::new();
        for (other, job) in &self.jobs {
            if other == name {
                continue;
            }
            let releasing = job
                .listening(job.state == JobState::Stopping)
                .filter(|listening| addresses.iter().any(|address| listening.blocks(address)));
            for listening in releasing {
                tracing::info!(job = %name, holder = %other, "waiting for another job to release a published port");
                blockers.push(listening.released());
            }
        }
        blockers
    }

    /// Returns the name of the other job whose relay listens on the address
    /// that `error` failed to bind, when the address was in use.
    fn address_holder(&self, name: &str, error: &LaunchError) -> Option<String> {
        let LaunchError::Ports(ports::PortError::Bind {
            address, source, ..
        }) = error
        else {
            return None;
        };
        if source.kind() != std::io::ErrorKind::AddrInUse {
            return None;
        }
        self.jobs
            .iter()
            .filter(|(other, _)| other.as_str() != name)
            .find(|(_, job)| {
                job.listening(true)
                    .any(|listening| listening.blocks(address))
            })
            .map(|(other, _)| other.clone())
    }

    /// Takes over the container whose launch finished, or records the
    /// failed start. A stop that came during the launch applies now.
    fn on_launched(&mut self, name: &str, id: &str, result: Result<Launched, LaunchError>) {
        let current = self
            .jobs
            .get(name)
            .is_some_and(|job| job.launching.as_deref() == Some(id));
        if !current {
            // remove_job keeps a job while its launch is in flight, so this
            // is a bug. A monitor that ran would stay unreaped.
            tracing::error!(job = %name, container_id = %id, "a launch finished for a job that no longer waits for it");
            return;
        }
        let job = self.jobs.get_mut(name).expect("checked above");
        // The id moves into the container, so a burst of starts keeps no
        // new allocation for it.
        let id_owned = job.launching.take().expect("checked above");
        job.cancel_launch = None;
        // The launch waited for the listeners of the job's last container.
        job.closing_relay = None;
        let spec = job.spec.clone().expect("a job with a launch has a spec");
        self.release_memory_when_settled();
        let job = self.jobs.get_mut(name).expect("checked above");
        let Launched {
            monitor,
            stderr_offset,
            ports,
        } = match result {
            Ok(launched) => launched,
            Err(error) => {
                let mut message = error_chain(&error);
                if let Some(holder) = self.address_holder(name, &error) {
                    message.push_str(&format!("; job {holder:?} publishes that address"));
                }
                tracing::error!(job = %name, container_id = %id, error = %message, "failed to start job");
                if let Some(job) = self.jobs.get_mut(name) {
                    job.last_container_id = Some(id_owned);
                }
                let run = LastRun {
                    container_id: id.to_string(),
                    termination: Termination::SetupFailed { message },
                    oom_killed: false,
                    killed_after: None,
                    failed_start: true,
                    stopped: false,
                    finished_at: SystemTime::now(),
                    runtime_error: None,
                };
                self.after_run(name, run);
                return;
            }
        };

        tracing::info!(job = %name, container_id = %id, monitor_pid = monitor.pid(), "started job");
        let relay = (!ports.is_empty()).then(|| {
            let pid_file = self.config.pid_file(id);
            ports::start_relay(ports, spec.network, name, id, &pid_file)
        });
        job.container = Some(Container {
            id: id_owned,
            spec: spec.clone(),
            monitor,
            started_at: SystemTime::now(),
            started_instant: Instant::now(),
            pid: None,
            start_seconds_passed: false,
            stderr_offset,
            stop: None,
            paused: false,
            relay,
        });
        // A monitor that exited before this point raised its SIGCHLD before
        // the container was known, so that scan missed it.
        self.reap_monitors();

        let Some(job) = self.jobs.get_mut(name) else {
            return;
        };
        if job.container.is_none() {
            return;
        }
        if job.state == JobState::Stopping {
            self.send_stop_signal(name, Duration::ZERO, false);
            return;
        }
        let epoch = job.epoch;
        let start_seconds = spec.start_seconds.as_duration();
        if start_seconds.is_zero() {
            self.on_start_seconds_passed(name);
        } else {
            self.arm_timer(name, epoch, TimerKind::Started, start_seconds);
        }
    }

    /// Ends a launch that a stop cancelled before it created the container,
    /// and moves the job on as if its container had stopped.
    fn on_launch_cancelled(&mut self, name: &str, id: &str) {
        let Some(job) = self.jobs.get_mut(name) else {
            return;
        };
        if job.launching.as_deref() != Some(id) {
            tracing::error!(job = %name, container_id = %id, "a cancelled launch belongs to no launching job");
            return;
        }
        job.launching = None;
        job.cancel_launch = None;
        tracing::info!(job = %name, container_id = %id, "launch cancelled before the container was created");
        self.release_memory_when_settled();
        self.finish_stop(name);
    }

    /// Marks that the container has run for `start_seconds` and enters
    /// RUNNING, or waits for the pid file if the container's init does not
    /// exist yet.
    pub(super) fn on_start_seconds_passed(&mut self, name: &str) {
        let Some(container) = self
            .jobs
            .get_mut(name)
            .and_then(|job| job.container.as_mut())
        else {
            return;
        };
        container.start_seconds_passed = true;
        self.enter_running_once_created(name);
    }

    fn enter_running_once_created(&mut self, name: &str) {
        let watching_pids = self.watching_pids;
        let Some(job) = self.jobs.get_mut(name) else {
            return;
        };
        job.refresh_pid(&self.config);
        let Some(container) = &job.container else {
            return;
        };
        if !(job.state == JobState::Starting && container.start_seconds_passed) {
            return;
        }
        if let Some(pid) = container.pid {
            let container_id = container.id.clone();
            job.enter(JobState::Running);
            tracing::info!(job = %name, %container_id, pid, "job is running");
            self.release_memory_when_settled();
            return;
        }
        tracing::debug!(job = %name, container_id = %container.id, "start_seconds passed before the container was created; waiting for its pid file");
        if !watching_pids {
            let epoch = job.epoch;
            self.arm_timer(name, epoch, TimerKind::PidCheck, PID_CHECK_INTERVAL);
        }
    }

    /// Gives the heap's free pages back to the kernel once no launch is in
    /// flight and no job waits for its start time, which is when a burst of
    /// starts has freed the most.
    fn release_memory_when_settled(&self) {
        let settled = self
            .jobs
            .values()
            .all(|job| job.launching.is_none() && job.state != JobState::Starting);
        if settled {
            corral_runtime::memory::release_free_memory();
        }
    }

    /// Reaps every child monitor that has exited and handles the end of its
    /// container. Reaping and forgetting the container happen in this one
    /// step, so no signal can reach a reused PID.
    fn reap_monitors(&mut self) {
        let mut exited = Vec::new();
        for (name, job) in &self.jobs {
            let Some(container) = &job.container else {
                continue;
            };
            if let Some(status) = container.monitor.try_reap() {
                exited.push((name.clone(), container.id.clone(), status));
            }
        }
        for (name, container_id, status) in exited {
            self.on_shim_exited(&name, &container_id, ShimStatus::Reaped(status));
        }
    }

    fn on_pid_written(&mut self, container_id: &str) {
        // A container id is the job name, a dash and 8 hex digits.
        let Some((name, _)) = container_id.rsplit_once('-') else {
            return;
        };
        let current = self
            .jobs
            .get(name)
            .and_then(|job| job.container.as_ref())
            .is_some_and(|container| container.id == container_id);
        if current {
            self.enter_running_once_created(name);
        }
    }

    /// Makes the paused mark follow the container's init after its shim
    /// reported a stop or a continue through the stopped file. Events of
    /// an earlier container of the job are ignored.
    fn on_stopped_changed(&mut self, container_id: &str, stopped: bool) {
        let Some((name, _)) = container_id.rsplit_once('-') else {
            return;
        };
        let Some(container) = self
            .jobs
            .get_mut(name)
            .and_then(|job| job.container.as_mut())
            .filter(|container| container.id == container_id)
        else {
            return;
        };
        if container.paused == stopped {
            return;
        }
        container.paused = stopped;
        let pid = container.pid;
        if stopped {
            tracing::info!(job = %name, %container_id, ?pid, "the container's init stopped; the job is paused");
        } else {
            tracing::info!(job = %name, %container_id, ?pid, "the container's init continued; the job is no longer paused");
        }
    }

    /// Catches up on pid files and stops that the lost inotify events
    /// reported, with one read of `/proc/PID/stat` per container whose
    /// init is known.
    fn on_pid_events_lost(&mut self) {
        tracing::warn!("inotify dropped events of the pid file watch; checking every container");
        let names: Vec<String> = self.jobs.keys().cloned().collect();
        for name in names {
            self.enter_running_once_created(&name);
            let Some(container) = self.jobs.get(&name).and_then(|job| job.container.as_ref())
            else {
                continue;
            };
            if let Some(pid) = container.pid {
                let stopped = process_stopped(pid);
                let container_id = container.id.clone();
                self.on_stopped_changed(&container_id, stopped);
            }
        }
    }

    fn on_pid_watch_failed(&mut self) {
        self.watching_pids = false;
        let names: Vec<String> = self.jobs.keys().cloned().collect();
        for name in names {
            self.enter_running_once_created(&name);
        }
    }

    fn arm_timer(&self, name: &str, epoch: u64, kind: TimerKind, delay: Duration) {
        let events = self.events.clone();
        let name = name.to_string();
        tokio::spawn(async move {
            tokio::time::sleep(delay).await;
            let _ = events.send(Event::Timer { name, epoch, kind });
        });
    }

    fn on_timer(&mut self, name: &str, epoch: u64, kind: TimerKind) {
        let Some(job) = self.jobs.get_mut(name) else {
            return;
        };
        if job.epoch != epoch {
            return;
        }
        match (kind, job.state) {
            (TimerKind::Started, JobState::Starting) => self.on_start_seconds_passed(name),
            (TimerKind::PidCheck, JobState::Starting) => self.enter_running_once_created(name),
            (TimerKind::Restart, JobState::Backoff) => {
                if self.shutting_down {
                    return;
                }
                job.restarts += 1;
                tracing::info!(job = %name, total_restarts = job.restarts, "restarting job");
                self.start_container(name);
            }
            (TimerKind::StopTimeout, JobState::Stopping) => self.kill_after_timeout(name),
            (TimerKind::StopSignal, JobState::Stopping) => self.send_deferred_stop_signal(name),
            _ => {}
        }
    }

    // ---- stopping ------------------------------------------------------

    /// Sends the stop signal, or cancels a pending restart.
    fn stop_job(&mut self, name: &str) {
        self.stop_job_after(name, Duration::ZERO, false);
    }

    /// Stops the job like [`Supervisor::stop_job`] when `waited` of its
    /// stop timeout already passed, in a supervisord that ended before it
    /// finished the stop, and that had sent the stop signal when
    /// `signal_sent` is set.
    pub(super) fn stop_job_after(&mut self, name: &str, waited: Duration, signal_sent: bool) {
        let Some(job) = self.jobs.get_mut(name) else {
            return;
        };
        match job.state {
            JobState::Starting | JobState::Running => {}
            JobState::Backoff => {
                job.pending_restart = None;
                tracing::info!(job = %name, "cancelled restart");
                if job.after_stop == AfterStop::Remove {
                    self.forget(name);
                } else if job.after_stop == AfterStop::Start {
                    job.after_stop = AfterStop::Stay;
                    self.start_container(name);
                } else {
                    job.enter(JobState::Stopped);
                }
                return;
            }
            _ => return,
        }
        if job.container.is_none() {
            if let Some(id) = job.launching.clone() {
                // While the launch still waits, a cancel ends it with
                // LaunchCancelled. Once it creates the container, the stop
                // applies when the launch ends.
                let cancelled = job
                    .cancel_launch
                    .take()
                    .is_some_and(|cancel| cancel.send(()).is_ok());
                job.enter(JobState::Stopping);
                let dequeued = self.dequeue_launch(name);
                if dequeued {
                    let _ = self.events.send(Event::LaunchCancelled {
                        name: name.to_string(),
                        container_id: id,
                    });
                }
                if cancelled || dequeued {
                    tracing::info!(job = %name, "stop requested while the launch waits; cancelling it");
                } else {
                    tracing::info!(job = %name, "stop requested during the launch; it applies once the container started");
                }
            }
            return;
        }
        job.enter(JobState::Stopping);
        self.send_stop_signal(name, waited, signal_sent);
    }

    /// Sends the stop signal to a container that is STOPPING and arms the
    /// rest of the stop timeout after `waited`.
    fn send_stop_signal(&mut self, name: &str, waited: Duration, signal_sent: bool) {
        let root = self.config.containers_root();
        let Some(job) = self.jobs.get_mut(name) else {
            return;
        };
        let Some(container) = &mut job.container else {
            return;
        };

        let stop = &container.spec.stop;
        let timeout = stop.timeout.as_duration();
        let signal = parse_signal(&stop.signal).unwrap_or_else(|error| {
            tracing::warn!(job = %name, %error, "invalid stop signal; using SIGTERM");
            Signal::SIGTERM
        });
        let mut deferred = false;
        let sent = if signal_sent {
            // Many programs take a second SIGTERM as a request to quit at
            // once, so the earlier daemon's signal is not repeated.
            tracing::info!(job = %name, container_id = %container.id, %signal, "the earlier supervisord sent the stop signal; waiting for the rest of the timeout");
            Ok(())
        } else if FORWARDED_SIGNALS.contains(&signal) && !container.monitor.blocks_signal(signal) {
            // A monitor spawned a moment ago may not handle signals yet, and
            // the stop signal would end it instead of reaching the job. The
            // supervisor task sends it once the monitor blocks it, and it
            // also reaps the monitor, so the PID still names the monitor.
            tracing::debug!(job = %name, container_id = %container.id, %signal, "the monitor is still starting; the stop signal follows once it handles signals");
            deferred = true;
            Ok(())
        } else if FORWARDED_SIGNALS.contains(&signal) {
            container
                .monitor
                .send_signal(signal)
                .map_err(|error| error.to_string())
        } else {
            corral_runtime::container::kill(&root, &container.id, signal as i32, false)
                .map_err(|error| error_chain(&error))
        };
        match sent {
            Ok(()) if signal_sent => {}
            Ok(()) => {
                tracing::info!(job = %name, container_id = %container.id, %signal, timeout = ?timeout, "stopping job")
            }
            // The exit event of a monitor that just ended is already queued.
            Err(error) => {
                tracing::warn!(job = %name, container_id = %container.id, %signal, %error, "failed to send the stop signal")
            }
        }
        // A paused process handles the stop signal only once it runs again,
        // whether a signal stopped it or `corral pause` froze its cgroup.
        // Reading the container's state and cgroup runs on the blocking
        // pool, so a shutdown of many jobs does not wait for it.
        let (job_name, id) = (name.to_string(), container.id.clone());
        tokio::task::spawn_blocking(move || {
            if signal != Signal::SIGCONT {
                let resumed =
                    corral_runtime::container::kill(&root, &id, Signal::SIGCONT as i32, true);
                if let Err(error) = resumed {
                    tracing::debug!(job = %job_name, container_id = %id, error = %error_chain(&error), "failed to send SIGCONT after the stop signal");
                }
            }
            match corral_runtime::container::thaw_if_frozen(&root, &id) {
                Ok(true) => {
                    tracing::info!(job = %job_name, container_id = %id, "thawed the frozen cgroup of the stopping job, so it can handle the stop signal")
                }
                Ok(false) => {}
                Err(error) => {
                    tracing::warn!(job = %job_name, container_id = %id, error = %error_chain(&error), "failed to thaw the cgroup of the stopping job; a frozen job ends at the stop timeout")
                }
            }
        });
        let left = timeout.saturating_sub(waited);
        container.paused = false;
        container.stop = Some(StopProgress {
            signal: signal.to_string(),
            kill_at: SystemTime::now() + left,
            timeout,
            killed: false,
        });
        let epoch = job.epoch;
        self.arm_timer(name, epoch, TimerKind::StopTimeout, left);
        if deferred {
            self.arm_timer(name, epoch, TimerKind::StopSignal, STOP_SIGNAL_RETRY);
        }
    }

    /// Sends the stop signal to a monitor that did not handle signals yet
    /// when the stop began, once it does, or after [`STOP_SIGNAL_WAIT`]
    /// anyway.
    fn send_deferred_stop_signal(&mut self, name: &str) {
        let Some(job) = self.jobs.get_mut(name) else {
            return;
        };
        let epoch = job.epoch;
        let Some(container) = &job.container else {
            return;
        };
        let Some(stop) = &container.stop else {
            return;
        };
        let Ok(signal) = parse_signal(&stop.signal) else {
            return;
        };
        let began = stop.kill_at.checked_sub(stop.timeout);
        let waited = began
            .and_then(|began| SystemTime::now().duration_since(began).ok())
            .unwrap_or_default();
        if !container.monitor.blocks_signal(signal) && waited < STOP_SIGNAL_WAIT {
            self.arm_timer(name, epoch, TimerKind::StopSignal, STOP_SIGNAL_RETRY);
            return;
        }
        match container.monitor.send_signal(signal) {
            Ok(()) => {
                tracing::debug!(job = %name, container_id = %container.id, %signal, waited = ?waited, "sent the stop signal to the monitor once it was ready")
            }
            // The exit event of a monitor that just ended is already queued.
            Err(error) => {
                tracing::warn!(job = %name, container_id = %container.id, %signal, %error, "failed to send the stop signal")
            }
        }
    }

    /// Sends SIGKILL to every process of the container's cgroup. The
    /// runtime freezes the cgroup and waits for it to empty, which blocks,
    /// so it runs on the blocking pool. A failure arms the timeout again.
    fn kill_after_timeout(&mut self, name: &str) {
        let root = self.config.containers_root();
        let Some(job) = self.jobs.get_mut(name) else {
            return;
        };
        let epoch = job.epoch;
        let Some(container) = &mut job.container else {
            return;
        };
        if let Some(stop) = &mut container.stop {
            stop.killed = true;
        }
        tracing::warn!(job = %name, container_id = %container.id, "stop timed out; sending SIGKILL to every process of the container");
        let events = self.events.clone();
        let job_name = name.to_string();
        let id = container.id.clone();
        tokio::task::spawn_blocking(move || {
            let Err(error) = corral_runtime::container::kill_all(&root, &id) else {
                return;
            };
            // The shim removes the cgroup as soon as the container ended,
            // so an error here often only means the kill already worked.
            tracing::warn!(
                job = %job_name,
                container_id = %id,
                error = %error_chain(&error),
                "SIGKILL to the container failed; trying again unless it ended"
            );
            std::thread::sleep(KILL_RETRY);
            let _ = events.send(Event::Timer {
                name: job_name,
                epoch,
                kind: TimerKind::StopTimeout,
            });
        });
    }

    /// Ends the task and leaves every container running. A shutdown that
    /// already stops the jobs goes on.
    fn detach(&mut self, origin: &str) {
        if self.shutting_down {
            tracing::info!(
                origin,
                "shutdown in progress; finishing it instead of leaving the jobs running"
            );
            return;
        }
        let running = self
            .jobs
            .values()
            .filter(|job| job.container.is_some())
            .count();
        tracing::info!(
            origin,
            running,
            "leaving the jobs running for the next supervisord"
        );
        self.detached = true;
        for job in self.jobs.values_mut() {
            for waiter in job.waiters.drain(..) {
                let _ = waiter.send(Err(ApiError::unavailable()));
            }
        }
    }

    fn begin_shutdown(&mut self, origin: &str) {
        if self.shutting_down {
            tracing::info!(origin, "shutdown already in progress");
            return;
        }
        tracing::info!(origin, "shutting down: stopping every job");
        self.shutting_down = true;
        let names: Vec<String> = self.jobs.keys().cloned().collect();
        for name in names {
            if let Some(job) = self.jobs.get_mut(&name) {
                if job.after_stop == AfterStop::Start {
                    job.after_stop = AfterStop::Stay;
                }
                if job.state.is_active() && job.state != JobState::Stopping {
                    self.stop_job(&name);
                }
            }
        }
    }

    // ---- exits ---------------------------------------------------------

    fn on_shim_exited(&mut self, name: &str, container_id: &str, status: ShimStatus) {
        let config = self.config.clone();
        let Some(job) = self.jobs.get_mut(name) else {
            tracing::warn!(job = %name, container_id, "monitor of an unknown job exited");
            return;
        };
        if job
            .container
            .as_ref()
            .map(|container| container.id.as_str())
            != Some(container_id)
        {
            tracing::warn!(job = %name, container_id, "monitor of an earlier container exited");
            return;
        }
        let mut container = job.container.take().expect("checked above");
        if let Some(relay) = container.relay.take() {
            job.closing_relay = Some(relay.close());
        }
        job.last_container_id = Some(std::mem::take(&mut container.id));
        let (termination, record) = launch::read_termination(
            &config,
            container_id,
            &status,
            &job.stderr_log,
            container.stderr_offset,
        );
        job.oom_kills += record.as_ref().map_or(0, |record| record.oom_kills);
        if record.is_none() {
            clean_up_orphan(&config, name, container_id);
        }
        launch::remove_container_files(&config, container_id);

        let killed_after = container
            .stop
            .as_ref()
            .filter(|stop| stop.killed)
            .map(|stop| stop.timeout);
        let failed_start = job.state == JobState::Starting;
        // The init prints its failures after the start, such as an execve
        // or a fork that failed, to the job's stderr and exits with a
        // status that a job could have exited with too.
        let runtime_error = match &termination {
            Termination::SetupFailed { .. } => None,
            _ if failed_start => {
                crate::daemon::logs::read_runtime_error(&job.stderr_log, container.stderr_offset)
            }
            _ => None,
        };
        let run = LastRun {
            container_id: container_id.to_string(),
            termination,
            oom_killed: record.as_ref().is_some_and(|record| record.oom_kills > 0),
            killed_after,
            failed_start,
            stopped: container.stop.is_some(),
            finished_at: SystemTime::now(),
            runtime_error,
        };
        tracing::info!(
            job = %name,
            container_id,
            status = run.termination.exit_status(),
            signal = run.termination.signal(),
            oom_killed = run.oom_killed,
            killed_after_timeout = killed_after.is_some(),
            ran_for = ?container.started_instant.elapsed(),
            "job exited: {}",
            crate::describe::termination_text(&run)
        );
        self.remove_adopted_cgroup_parent(name, container_id);
        self.after_run(name, run);
    }

    /// Moves a stopped job to the state its stop asked for: STOPPED, a new
    /// start, or removed.
    fn finish_stop(&mut self, name: &str) {
        let shutting_down = self.shutting_down;
        let Some(job) = self.jobs.get_mut(name) else {
            return;
        };
        match std::mem::take(&mut job.after_stop) {
            AfterStop::Remove => self.forget(name),
            AfterStop::Start if !shutting_down => self.start_container(name),
            _ => {
                job.enter(JobState::Stopped);
                tracing::info!(job = %name, "job stopped");
            }
        }
    }

    /// Moves a job whose run ended to its next state: the one a stop asked
    /// for, or the one the restart policy decides.
    fn after_run(&mut self, name: &str, run: LastRun) {
        let shutting_down = self.shutting_down;
        let Some(job) = self.jobs.get_mut(name) else {
            return;
        };
        let stopping = job.state == JobState::Stopping;
        job.last_run = Some(run);

        if stopping || shutting_down {
            self.finish_stop(name);
            return;
        }

        let Some(spec) = job.spec.clone() else {
            job.enter(JobState::Exited);
            return;
        };
        let run = job.last_run.as_ref().expect("set above");
        // A run that ended while no supervisord ran has waited part of its
        // backoff already.
        let ended_ago = SystemTime::now()
            .duration_since(run.finished_at)
            .unwrap_or_default();
        let ended = Instant::now()
            .checked_sub(ended_ago)
            .unwrap_or_else(Instant::now);
        let decision = machine::decide_after_exit(
            &spec.restart,
            (&run.termination, run.failed_start),
            &mut job.history,
            ended,
            fastrand::f64(),
        );
        match decision {
            Decision::Restart { delay, attempt } => {
                let delay = delay.saturating_sub(ended_ago);
                job.enter(JobState::Backoff);
                job.pending_restart = Some(PendingRestart {
                    attempt,
                    max_restarts: spec.restart.max_restarts,
                    at: SystemTime::now() + delay,
                });
                tracing::info!(
                    job = %name,
                    attempt_in_window = attempt,
                    max_restarts = spec.restart.max_restarts,
                    delay = ?delay,
                    "restart scheduled"
                );
                let epoch = job.epoch;
                self.arm_timer(name, epoch, TimerKind::Restart, delay);
            }
            Decision::Fatal { restarts, window } => {
                job.enter(JobState::Fatal);
                job.fatal = Some((restarts, window));
                tracing::error!(job = %name, restarts_in_window = restarts, window = ?window, "job keeps exiting; giving up");
            }
            Decision::Exit => job.enter(JobState::Exited),
        }
    }
}

/// Kills and deletes a container whose shim ended without an exit record,
/// so that no process of the job outlives it. Nothing exists when the shim
/// failed before creating the container.
fn clean_up_orphan(config: &DaemonConfig, name: &str, container_id: &str) {
    let root = config.containers_root();
    if !root.join(container_id).exists() {
        return;
    }
    match corral_runtime::container::delete(&root, container_id, true) {
        Ok(()) => {
            tracing::warn!(job = %name, container_id, "deleted the container of a shim that ended without an exit record")
        }
        Err(error) => {
            tracing::error!(job = %name, container_id, error = %error_chain(&error), "failed to delete the container of a lost shim")
        }
    }
}

/// Returns whether process `pid` is stopped by a signal (state `T` in
/// /proc/PID/stat). The state is read after the last `)`, because the
/// command name before it may contain spaces and parentheses.
fn process_stopped(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|stat| {
            let after_name = &stat[stat.rfind(')')? + 1..];
            after_name
                .split_whitespace()
                .next()
                .map(|state| state == "T")
        })
        .unwrap_or(false)
}

/// Encodes an API body. The API types write paths lossily, but a daemon
/// configured with a path that is not UTF-8 cannot encode `/v1/info`, so
/// a failure becomes an error body instead of a panic of the daemon.
fn to_json<T: serde::Serialize>(value: &T) -> JsonBody {
    let body = serde_json::to_vec(value).unwrap_or_else(|error| {
        tracing::error!(%error, "failed to encode an API reply");
        let text = format!("failed to encode the reply: {error}");
        serde_json::to_vec(&serde_json::json!({ "error": text })).unwrap_or_default()
    });
    JsonBody::from(body)
}

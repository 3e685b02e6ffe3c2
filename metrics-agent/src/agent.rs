//! The agent: settings, the container index and one scrape from start to the
//! encoded text.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use prometheus::{Gauge, IntGauge, Registry, TextEncoder};

use crate::cgroup_root::{CgroupRoot, CgroupRootError};
use crate::collect::{self, ScrapeContext};
use crate::discovery::{Discovery, DiscoveryError};
use crate::exposition::Exposition;
use crate::files::{self, Budget, TargetFiles};
use crate::read::{ErrorKind, ReadErrors, Vanished};
use crate::supervisor::{self, JobStatus};
use crate::target::{ContainerLabels, Target};

/// Time a scrape waits for the supervisor's job list. Prometheus's default
/// scrape timeout is 10 s, so a hung supervisor still leaves the container
/// metrics time to arrive.
const SUPERVISOR_TIMEOUT: Duration = Duration::from_secs(2);

/// Export options and the filesystem roots the agent reads.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The runtime's state root, which contains `containers/ID/state.json`.
    pub run_dir: PathBuf,
    /// Also export every cgroup from this directory down.
    pub cgroup_root: Option<PathBuf>,
    /// Export v1 CPU usage per CPU instead of one total.
    pub per_cpu: bool,
    /// Selection of the state files' labels exported as `container_label_*`.
    pub container_labels: ContainerLabels,
    /// The supervisor's control socket, for the `corral_job_*` metrics.
    pub supervisor_socket: Option<PathBuf>,
    /// Maximum number of threads that read containers during one scrape.
    /// A scrape uses one thread per 64 containers up to this number; the
    /// threads end with the scrape.
    pub scrape_threads: usize,
    /// Maximum number of cgroup and `/proc` descriptors kept open from one
    /// scrape to the next. Files beyond it are opened and closed on every
    /// scrape.
    pub kept_descriptors: usize,
    /// Mount point of procfs, `/proc` except in tests.
    pub proc_root: PathBuf,
    /// Mount point of sysfs, `/sys` except in tests.
    pub sys_root: PathBuf,
}

impl Settings {
    /// Settings with the defaults of the binary for `run_dir`.
    pub fn new(run_dir: impl Into<PathBuf>) -> Self {
        Self {
            run_dir: run_dir.into(),
            cgroup_root: None,
            per_cpu: false,
            container_labels: ContainerLabels::All,
            supervisor_socket: None,
            scrape_threads: default_scrape_threads(),
            kept_descriptors: files::default_kept_descriptors(),
            proc_root: PathBuf::from("/proc"),
            sys_root: PathBuf::from("/sys"),
        }
    }
}

/// Returns the default of [`Settings::scrape_threads`]: the number of CPUs
/// the agent may run on, at most 4, so that a scrape on a large machine
/// does not take many CPUs from the containers at once.
pub fn default_scrape_threads() -> usize {
    std::thread::available_parallelism()
        .map(|count| count.get().min(4))
        .unwrap_or(1)
}

/// An error setting up the agent or encoding a scrape.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    #[error("failed to register the agent's own metrics")]
    Register(#[source] prometheus::Error),
    #[error("failed to resolve --cgroup-root")]
    CgroupRoot(#[source] CgroupRootError),
    #[error("failed to start watching the containers directory")]
    Discovery(#[source] DiscoveryError),
    #[error("failed to encode the metrics")]
    Encode(#[source] prometheus::Error),
    #[error("scrape task failed")]
    Task(#[source] tokio::task::JoinError),
}

/// The exporter's state, shared by every scrape.
pub struct Agent {
    settings: Settings,
    discovery: Arc<Discovery>,
    cgroup_root: Option<CgroupRoot>,
    errors: Arc<ReadErrors>,
    registry: Registry,
    scrape_duration: Gauge,
    containers: IntGauge,
    kept_descriptors: IntGauge,
    budget: Arc<Budget>,
    /// Descriptors of the targets of the last scrape, by id and PID.
    files: Mutex<HashMap<FilesKey, TargetFiles>>,
}

/// A target's id and init PID. A restarted container has a new PID and so
/// starts with new descriptors.
type FilesKey = (String, Option<i32>);

impl Agent {
    /// Creates the agent and loads the containers present now. Call
    /// [`Agent::watch`] inside a tokio runtime to follow changes with inotify.
    pub fn new(settings: Settings) -> Result<Self, AgentError> {
        let registry = Registry::new();
        let errors = Arc::new(ReadErrors::new(&registry).map_err(AgentError::Register)?);
        let scrape_duration = Gauge::new(
            "metrics_agent_scrape_duration_seconds",
            "Time the last scrape took to read every container and the job list, in seconds.",
        )
        .map_err(AgentError::Register)?;
        let containers = IntGauge::new(
            "metrics_agent_containers",
            "Number of containers exported by the last scrape.",
        )
        .map_err(AgentError::Register)?;
        registry
            .register(Box::new(scrape_duration.clone()))
            .map_err(AgentError::Register)?;
        let kept_descriptors = IntGauge::new(
            "metrics_agent_kept_descriptors",
            "Number of cgroup and /proc descriptors kept open between scrapes.",
        )
        .map_err(AgentError::Register)?;
        for gauge in [&containers, &kept_descriptors] {
            registry
                .register(Box::new(gauge.clone()))
                .map_err(AgentError::Register)?;
        }

        let cgroup_root = settings
            .cgroup_root
            .as_deref()
            .map(|path| CgroupRoot::resolve(path, &settings.proc_root))
            .transpose()
            .map_err(AgentError::CgroupRoot)?;

        let discovery = Arc::new(Discovery::new(
            &settings.run_dir,
            settings.container_labels.clone(),
            Arc::clone(&errors),
        ));
        discovery.rescan();
        let budget = Budget::new(settings.kept_descriptors);
        Ok(Self {
            settings,
            discovery,
            cgroup_root,
            errors,
            registry,
            scrape_duration,
            containers,
            kept_descriptors,
            budget,
            files: Mutex::new(HashMap::new()),
        })
    }

    /// Starts following the containers directory with inotify.
    pub fn watch(&self) -> Result<(), AgentError> {
        self.discovery.start().map_err(AgentError::Discovery)
    }

    pub fn discovery(&self) -> &Discovery {
        &self.discovery
    }

    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    /// Runs one scrape and returns the text exposition.
    pub async fn scrape(self: &Arc<Self>) -> Result<String, AgentError> {
        let started = Instant::now();
        let jobs = match &self.settings.supervisor_socket {
            Some(socket) => match supervisor::fetch_jobs(socket, SUPERVISOR_TIMEOUT).await {
                Ok(jobs) => Some(jobs),
                Err(error) => {
                    self.errors
                        .record(ErrorKind::Supervisor, error_chain(&error));
                    None
                }
            },
            None => None,
        };

        // Cgroup and /proc reads block, so they run off the async workers.
        let agent = Arc::clone(self);
        let mut text = tokio::task::spawn_blocking(move || {
            let mut text = String::new();
            agent.collect(jobs.as_deref()).write_to(&mut text);
            text
        })
        .await
        .map_err(AgentError::Task)?;
        self.scrape_duration.set(started.elapsed().as_secs_f64());

        // The agent's own families sort after the container and job
        // families, so appending them keeps the output sorted by name.
        TextEncoder::new()
            .encode_utf8(&self.registry.gather(), &mut text)
            .map_err(AgentError::Encode)?;
        Ok(text)
    }

    fn lock_files(&self) -> std::sync::MutexGuard<'_, HashMap<FilesKey, TargetFiles>> {
        self.files.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Reads every target and the given jobs. Blocks on file reads.
    fn collect(&self, jobs: Option<&[JobStatus]>) -> Exposition {
        self.discovery.rescan();
        let mut targets = self.discovery.targets();
        if let Some(root) = &self.cgroup_root {
            match root.targets() {
                Ok(found) => targets.extend(found),
                Err(error) => self.errors.record(ErrorKind::Cgroup, error_chain(&error)),
            }
        }

        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs_f64();
        let context = ScrapeContext::new(
            &self.errors,
            &self.settings.proc_root,
            &self.settings.sys_root,
            self.settings.per_cpu,
            now,
            Arc::clone(&self.budget),
        );

        // Descriptors of targets that discovery no longer lists are closed
        // when `kept` is dropped.
        let mut kept = std::mem::take(&mut *self.lock_files());
        let mut files: Vec<TargetFiles> = targets
            .iter()
            .map(|target| {
                kept.remove(&files_key(target))
                    .filter(|files| files.cgroup == target.cgroup)
                    .unwrap_or_else(|| TargetFiles::new(target.cgroup.clone()))
            })
            .collect();
        drop(kept);

        let collected =
            collect::collect_targets(&context, &targets, &mut files, self.settings.scrape_threads);
        let mut exposition = Exposition::default();
        let mut exported = 0;
        let mut next_kept = HashMap::with_capacity(targets.len());
        for ((target, samples), files) in targets.iter().zip(collected).zip(files) {
            match samples {
                Ok(samples) => {
                    exposition.extend(samples);
                    exported += 1;
                    next_kept.insert(files_key(target), files);
                }
                // A target that went away keeps no descriptors.
                Err(Vanished) => log_vanished(target),
            }
        }
        // A scrape that ran at the same time may have stored descriptors
        // too; one set per target is kept.
        let mut stored = self.lock_files();
        for (key, files) in next_kept {
            stored.entry(key).or_insert(files);
        }
        drop(stored);
        self.kept_descriptors
            .set(i64::try_from(self.budget.kept()).unwrap_or(i64::MAX));
        if let Some(jobs) = jobs {
            supervisor::add_job_samples(jobs, &mut exposition);
        }
        self.containers.set(exported);
        exposition
    }
}

fn files_key(target: &Target) -> FilesKey {
    (target.id.clone(), target.pid)
}

fn log_vanished(target: &Target) {
    tracing::debug!(
        id = %target.id,
        name = %target.name,
        "container went away during the scrape, skipped"
    );
}

/// Formats an error with its sources, `outer: inner: ...`.
pub(crate) fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

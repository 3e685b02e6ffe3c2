//! The job lifecycle rules without any I/O: states, how a run ended, whether
//! the restart policy restarts it, the backoff delay and the restart limit.
//!
//! The daemon feeds events in and acts on the decisions, so every rule here is
//! unit-tested without processes or timers.

use std::collections::VecDeque;
use std::fmt;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use corral_config::{BackoffConfig, RestartConfig, RestartPolicy};
use serde::{Deserialize, Serialize};

/// Lifecycle state of a job, named as supervisord names its process states.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum JobState {
    /// Not running, and no restart is scheduled.
    Stopped,
    /// The container was started less than `start_seconds` ago.
    Starting,
    /// The container has run for at least `start_seconds`.
    Running,
    /// The container ended and a restart is scheduled after a delay.
    Backoff,
    /// The stop signal was sent and the container has not ended yet.
    Stopping,
    /// The container ended and the restart policy does not restart it.
    Exited,
    /// The container kept ending and the restart limit was reached.
    Fatal,
    /// The job file does not parse or validate.
    Invalid,
}

impl JobState {
    pub const ALL: [JobState; 8] = [
        JobState::Stopped,
        JobState::Starting,
        JobState::Running,
        JobState::Backoff,
        JobState::Stopping,
        JobState::Exited,
        JobState::Fatal,
        JobState::Invalid,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            JobState::Stopped => "STOPPED",
            JobState::Starting => "STARTING",
            JobState::Running => "RUNNING",
            JobState::Backoff => "BACKOFF",
            JobState::Stopping => "STOPPING",
            JobState::Exited => "EXITED",
            JobState::Fatal => "FATAL",
            JobState::Invalid => "INVALID",
        }
    }

    /// True while a container exists or a restart is pending, that is while
    /// a stop request has something to do.
    pub fn is_active(self) -> bool {
        matches!(
            self,
            JobState::Starting | JobState::Running | JobState::Backoff | JobState::Stopping
        )
    }
}

impl fmt::Display for JobState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The ending of one run of a job's container.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Termination {
    /// The container's main process exited with this code.
    Exited { code: i32 },
    /// A signal ended the container's main process. `status` is 128 plus
    /// the signal number, as a shell reports it.
    Signaled { signal: String, status: i32 },
    /// The shim failed before the container ran (it exits 125 then and
    /// writes no exit record), or the shim could not be spawned at all.
    SetupFailed { message: String },
    /// The shim ended without an exit record for another reason, for
    /// example because it was killed.
    ShimLost { status: String },
}

impl Termination {
    /// True for every ending except exit code 0.
    pub fn is_failure(&self) -> bool {
        !matches!(self, Termination::Exited { code: 0 })
    }

    /// Returns the exit status a shell would report for this ending, if any.
    pub fn exit_status(&self) -> Option<i32> {
        match self {
            Termination::Exited { code } => Some(*code),
            Termination::Signaled { status, .. } => Some(*status),
            Termination::SetupFailed { .. } | Termination::ShimLost { .. } => None,
        }
    }

    pub fn signal(&self) -> Option<&str> {
        match self {
            Termination::Signaled { signal, .. } => Some(signal),
            _ => None,
        }
    }
}

/// Returns whether `policy` restarts a container that ended with
/// `termination`. A failed start, an ending before `start_seconds` passed,
/// is a failure under `on-failure` also when it exited 0.
pub fn policy_restarts(
    policy: RestartPolicy,
    termination: &Termination,
    failed_start: bool,
) -> bool {
    match policy {
        RestartPolicy::Never => false,
        RestartPolicy::OnFailure => failed_start || termination.is_failure(),
        RestartPolicy::Always => true,
    }
}

/// Share of the base delay by which the backoff jitter moves a delay up or
/// down, so jobs that failed together do not restart in lockstep. A base
/// delay at `max` moves only down, within this share below `max`.
pub const BACKOFF_JITTER: f64 = 0.2;

/// Exponential backoff: `initial` before the first restart in a window,
/// doubling for each further one, never above `max`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    pub initial: Duration,
    pub max: Duration,
}

impl Backoff {
    pub fn from_config(config: &BackoffConfig) -> Self {
        Backoff {
            initial: config.initial.as_duration(),
            max: config.max.as_duration(),
        }
    }

    /// Returns the delay before restart number `attempt` (0 for the first) without
    /// jitter: `initial * 2^attempt`, capped at `max`.
    pub fn base_delay(&self, attempt: u32) -> Duration {
        let factor = 1u32.checked_shl(attempt.min(31)).unwrap_or(u32::MAX);
        self.initial
            .checked_mul(factor)
            .map_or(self.max, |delay| delay.min(self.max))
    }

    /// Returns a delay drawn uniformly from the base delay moved by up to
    /// [`BACKOFF_JITTER`] in either direction, with the upper end cut at
    /// `max`. `random` is a uniform sample from `[0, 1)`.
    ///
    /// The range is cut before the sample is mapped onto it, so a base delay
    /// at `max` still spreads over the lower [`BACKOFF_JITTER`] share below
    /// `max`. Capping after the jitter would instead map every sample above
    /// `max` to `max` itself.
    pub fn delay(&self, attempt: u32, random: f64) -> Duration {
        let base = self.base_delay(attempt);
        let low = base.mul_f64(1.0 - BACKOFF_JITTER);
        let high = base.mul_f64(1.0 + BACKOFF_JITTER).min(self.max);
        let spread = high.saturating_sub(low);
        (low + spread.mul_f64(random.clamp(0.0, 1.0))).min(self.max)
    }
}

/// Times of the automatic restarts of one job, to apply `max_restarts`
/// within `window`.
#[derive(Debug, Clone, Default)]
pub struct RestartHistory {
    restarts: VecDeque<Instant>,
}

impl RestartHistory {
    /// Number of restarts recorded within `window` before `now`, dropping
    /// older ones.
    pub fn count_within(&mut self, now: Instant, window: Duration) -> u32 {
        while let Some(&oldest) = self.restarts.front() {
            if now.saturating_duration_since(oldest) >= window {
                self.restarts.pop_front();
            } else {
                break;
            }
        }
        self.restarts.len().try_into().unwrap_or(u32::MAX)
    }

    pub fn record(&mut self, now: Instant) {
        self.restarts.push_back(now);
    }

    /// Forgets every restart, as an explicit start by an operator does.
    pub fn clear(&mut self) {
        self.restarts.clear();
    }

    /// Returns the restart times as seconds since the Unix epoch, for a
    /// record that outlives this process. `now` and `wall_now` are the same
    /// moment on the monotonic and the wall clock.
    pub fn to_unix_seconds(&self, now: Instant, wall_now: SystemTime) -> Vec<f64> {
        self.restarts
            .iter()
            .map(|&at| {
                wall_now
                    .checked_sub(now.saturating_duration_since(at))
                    .and_then(|wall| wall.duration_since(UNIX_EPOCH).ok())
                    .unwrap_or_default()
                    .as_secs_f64()
            })
            .collect()
    }

    /// Rebuilds a history from [`RestartHistory::to_unix_seconds`]. Times
    /// in the future count as `now`; times before the monotonic clock's
    /// start are dropped, as no window reaches back that far.
    pub fn from_unix_seconds(times: &[f64], now: Instant, wall_now: SystemTime) -> Self {
        let restarts = times
            .iter()
            .filter_map(|&seconds| {
                let since_epoch = Duration::try_from_secs_f64(seconds).ok()?;
                let wall = UNIX_EPOCH.checked_add(since_epoch)?;
                now.checked_sub(wall_now.duration_since(wall).unwrap_or_default())
            })
            .collect::<Vec<Instant>>();
        let mut restarts = VecDeque::from(restarts);
        restarts.make_contiguous().sort();
        RestartHistory { restarts }
    }
}

/// A job's restarts in the form that the shim record of its container and
/// its settled-state record store. A restarted supervisord reads them, so
/// it applies `max_restarts` and the backoff as the one before it would.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct KeptRestarts {
    /// Automatic restarts since supervisord loaded the job, as status shows.
    pub count: u32,
    /// When the restarts of the current window happened, in seconds since
    /// the Unix epoch.
    pub times: Vec<f64>,
    /// OOM kills of ended containers since supervisord loaded the job, as
    /// status shows. Records written before this field existed read as 0.
    #[serde(default)]
    pub oom_kills: u64,
}

/// The next step for a job whose container ended on its own.
#[derive(Debug, Clone, PartialEq)]
pub enum Decision {
    /// Start again after `delay`. `attempt` counts from 1 within the window.
    Restart { delay: Duration, attempt: u32 },
    /// The policy restarts it, but `max_restarts` restarts already happened
    /// within the window.
    Fatal { restarts: u32, window: Duration },
    /// The policy does not restart it.
    Exit,
}

/// Decides what follows the end of a run and records the restart if there
/// is one. `random` is a uniform sample from `[0, 1)` for the jitter.
pub fn decide_after_exit(
    config: &RestartConfig,
    (termination, failed_start): (&Termination, bool),
    history: &mut RestartHistory,
    now: Instant,
    random: f64,
) -> Decision {
    if !policy_restarts(config.policy, termination, failed_start) {
        return Decision::Exit;
    }
    let window = config.window.as_duration();
    let earlier = history.count_within(now, window);
    if earlier >= config.max_restarts {
        return Decision::Fatal {
            restarts: earlier,
            window,
        };
    }
    history.record(now);
    Decision::Restart {
        delay: Backoff::from_config(&config.backoff).delay(earlier, random),
        attempt: earlier + 1,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use corral_config::DurationValue;

    fn restart_config(policy: RestartPolicy, max_restarts: u32, window_secs: u64) -> RestartConfig {
        RestartConfig {
            policy,
            max_restarts,
            window: DurationValue::from_secs(window_secs),
            backoff: BackoffConfig {
                initial: DurationValue::from_secs(1),
                max: DurationValue::from_secs(30),
            },
        }
    }

    fn killed() -> Termination {
        Termination::Signaled {
            signal: "SIGKILL".to_string(),
            status: 137,
        }
    }

    #[test]
    fn policy_decisions_per_ending() {
        let success = Termination::Exited { code: 0 };
        let failure = Termination::Exited { code: 3 };
        let setup = Termination::SetupFailed {
            message: "corral: no such image".to_string(),
        };
        let cases = [
            (RestartPolicy::Never, &success, false),
            (RestartPolicy::Never, &failure, false),
            (RestartPolicy::Never, &setup, false),
            (RestartPolicy::OnFailure, &success, false),
            (RestartPolicy::OnFailure, &failure, true),
            (RestartPolicy::OnFailure, &setup, true),
            (RestartPolicy::Always, &success, true),
            (RestartPolicy::Always, &failure, true),
        ];
        for (policy, termination, expected) in cases {
            assert_eq!(
                policy_restarts(policy, termination, false),
                expected,
                "{policy:?} after {termination:?}"
            );
        }
        assert!(policy_restarts(RestartPolicy::OnFailure, &killed(), false));
        // An exit 0 before start_seconds passed is a failed start.
        assert!(policy_restarts(RestartPolicy::OnFailure, &success, true));
        assert!(!policy_restarts(RestartPolicy::Never, &success, true));
    }

    #[test]
    fn termination_status_and_signal() {
        assert_eq!(Termination::Exited { code: 3 }.exit_status(), Some(3));
        assert_eq!(killed().exit_status(), Some(137));
        assert_eq!(killed().signal(), Some("SIGKILL"));
        assert_eq!(Termination::Exited { code: 0 }.signal(), None);
        let setup = Termination::SetupFailed {
            message: String::new(),
        };
        assert_eq!(setup.exit_status(), None);
        assert!(setup.is_failure());
    }

    #[test]
    fn backoff_doubles_up_to_max() {
        let backoff = Backoff {
            initial: Duration::from_millis(500),
            max: Duration::from_secs(5),
        };
        let expected_ms = [500, 1000, 2000, 4000, 5000, 5000];
        for (attempt, expected) in expected_ms.into_iter().enumerate() {
            assert_eq!(
                backoff.base_delay(attempt as u32),
                Duration::from_millis(expected),
                "attempt {attempt}"
            );
        }
        assert_eq!(backoff.base_delay(40), Duration::from_secs(5));
        assert_eq!(backoff.base_delay(u32::MAX), Duration::from_secs(5));
    }

    #[test]
    fn backoff_jitter_stays_in_bounds() {
        let backoff = Backoff {
            initial: Duration::from_secs(1),
            max: Duration::from_secs(30),
        };
        for attempt in 0..8 {
            let base = backoff.base_delay(attempt);
            let low = base.mul_f64(1.0 - BACKOFF_JITTER);
            let high = base.mul_f64(1.0 + BACKOFF_JITTER).min(backoff.max);
            for step in 0..=100 {
                let random = f64::from(step) / 100.0;
                let delay = backoff.delay(attempt, random);
                assert!(delay >= low, "attempt {attempt}: {delay:?} below {low:?}");
                assert!(delay <= high, "attempt {attempt}: {delay:?} above {high:?}");
            }
        }
        assert_eq!(backoff.delay(0, 0.0), Duration::from_millis(800));
        assert_eq!(backoff.delay(0, 1.0), Duration::from_millis(1200));
        assert_eq!(backoff.delay(10, 1.0), Duration::from_secs(30));
    }

    #[test]
    fn backoff_jitter_spreads_capped_delays() {
        let backoff = Backoff {
            initial: Duration::from_secs(1),
            max: Duration::from_secs(4),
        };
        // Attempt 2 has the base delay 4 s and attempt 10 is long capped.
        for attempt in [2, 10] {
            assert_eq!(backoff.delay(attempt, 0.0), Duration::from_millis(3200));
            assert_eq!(backoff.delay(attempt, 0.5), Duration::from_millis(3600));
            assert_eq!(backoff.delay(attempt, 1.0), Duration::from_secs(4));
            let delays: std::collections::BTreeSet<Duration> = (0..100)
                .map(|step| backoff.delay(attempt, f64::from(step) / 100.0))
                .collect();
            assert_eq!(delays.len(), 100, "attempt {attempt}: samples collapse");
        }
        // A base delay of 3.5 s spreads from 2.8 s up to the cap.
        let partly_capped = Backoff {
            initial: Duration::from_millis(1750),
            max: Duration::from_secs(4),
        };
        assert_eq!(partly_capped.delay(1, 0.0), Duration::from_millis(2800));
        assert_eq!(partly_capped.delay(1, 0.5), Duration::from_millis(3400));
        assert!(partly_capped.delay(1, 0.99) < Duration::from_secs(4));
    }

    #[test]
    fn backoff_jitter_spreads_delays() {
        let backoff = Backoff {
            initial: Duration::from_secs(4),
            max: Duration::from_secs(60),
        };
        let delays: std::collections::BTreeSet<Duration> =
            (0..50).map(|_| backoff.delay(1, fastrand::f64())).collect();
        assert!(
            delays.len() > 10,
            "jitter produced {} distinct delays",
            delays.len()
        );
    }

    #[test]
    fn restarts_grow_then_fatal() {
        let config = restart_config(RestartPolicy::OnFailure, 3, 60);
        let mut history = RestartHistory::default();
        let start = Instant::now();
        let failure = Termination::Exited { code: 3 };

        let mut delays = Vec::new();
        for second in 0..3 {
            let now = start + Duration::from_secs(second);
            match decide_after_exit(&config, (&failure, false), &mut history, now, 0.5) {
                Decision::Restart { delay, attempt } => {
                    assert_eq!(attempt, second as u32 + 1);
                    delays.push(delay);
                }
                other => panic!("restart {second}: expected a restart, got {other:?}"),
            }
        }
        assert_eq!(
            delays,
            [1, 2, 4].map(Duration::from_secs),
            "jitter sample 0.5 keeps the base delay"
        );

        let now = start + Duration::from_secs(3);
        let decision = decide_after_exit(&config, (&failure, false), &mut history, now, 0.5);
        assert_eq!(
            decision,
            Decision::Fatal {
                restarts: 3,
                window: Duration::from_secs(60)
            }
        );
    }

    #[test]
    fn restarts_outside_window_are_forgotten() {
        let config = restart_config(RestartPolicy::Always, 2, 10);
        let mut history = RestartHistory::default();
        let start = Instant::now();
        let ending = Termination::Exited { code: 0 };

        for offset in [0, 1] {
            let now = start + Duration::from_secs(offset);
            let decision = decide_after_exit(&config, (&ending, false), &mut history, now, 0.5);
            assert!(matches!(decision, Decision::Restart { .. }), "{decision:?}");
        }
        let within = start + Duration::from_secs(9);
        assert!(matches!(
            decide_after_exit(&config, (&ending, false), &mut history, within, 0.5),
            Decision::Fatal { restarts: 2, .. }
        ));

        // Both earlier restarts are 10 s or more in the past here.
        let later = start + Duration::from_secs(11);
        let decision = decide_after_exit(&config, (&ending, false), &mut history, later, 0.5);
        assert_eq!(
            decision,
            Decision::Restart {
                delay: Duration::from_secs(1),
                attempt: 1
            }
        );
    }

    #[test]
    fn policy_never_exits_without_recording() {
        let config = restart_config(RestartPolicy::Never, 0, 60);
        let mut history = RestartHistory::default();
        let now = Instant::now();
        let decision = decide_after_exit(&config, (&killed(), false), &mut history, now, 0.5);
        assert_eq!(decision, Decision::Exit);
        assert_eq!(history.count_within(now, Duration::from_secs(60)), 0);
    }

    #[test]
    fn zero_max_restarts_is_fatal_at_once() {
        let config = restart_config(RestartPolicy::OnFailure, 0, 60);
        let mut history = RestartHistory::default();
        let decision = decide_after_exit(
            &config,
            (&Termination::Exited { code: 1 }, false),
            &mut history,
            Instant::now(),
            0.5,
        );
        assert!(
            matches!(decision, Decision::Fatal { restarts: 0, .. }),
            "{decision:?}"
        );
    }

    #[test]
    fn history_survives_wall_clock_round_trip() {
        let now = Instant::now();
        let wall_now = SystemTime::now();
        let mut history = RestartHistory::default();
        for ago in [50, 20, 5] {
            history.record(now - Duration::from_secs(ago));
        }
        let times = history.to_unix_seconds(now, wall_now);
        assert_eq!(times.len(), 3);
        // A later daemon reads the record 10 s on, when the restarts are
        // 60, 30 and 15 s old.
        let later = now + Duration::from_secs(10);
        let mut restored =
            RestartHistory::from_unix_seconds(&times, later, wall_now + Duration::from_secs(10));
        assert_eq!(restored.count_within(later, Duration::from_secs(61)), 3);
        assert_eq!(restored.count_within(later, Duration::from_secs(25)), 1);

        let odd = [f64::NAN, -1.0, 1e300, 4e9];
        let restored = RestartHistory::from_unix_seconds(&odd, now, wall_now);
        assert_eq!(restored.restarts.len(), 1, "only the time in 2096 is kept");
    }

    #[test]
    fn history_clear_resets_the_limit() {
        let config = restart_config(RestartPolicy::OnFailure, 1, 60);
        let mut history = RestartHistory::default();
        let now = Instant::now();
        let failure = Termination::Exited { code: 1 };
        assert!(matches!(
            decide_after_exit(&config, (&failure, false), &mut history, now, 0.5),
            Decision::Restart { .. }
        ));
        assert!(matches!(
            decide_after_exit(&config, (&failure, false), &mut history, now, 0.5),
            Decision::Fatal { .. }
        ));
        history.clear();
        assert!(matches!(
            decide_after_exit(&config, (&failure, false), &mut history, now, 0.5),
            Decision::Restart { .. }
        ));
    }

    #[test]
    fn state_names_round_trip_as_json() {
        for state in JobState::ALL {
            let json = serde_json::to_string(&state).unwrap();
            assert_eq!(json, format!("\"{}\"", state.as_str()));
            let back: JobState = serde_json::from_str(&json).unwrap();
            assert_eq!(back, state);
        }
    }
}

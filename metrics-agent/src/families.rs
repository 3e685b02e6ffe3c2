//! The metric families the agent exports: name, help text and type.
//!
//! Names, meanings and types follow cAdvisor, so dashboards and alert rules
//! written for cAdvisor work unchanged. The one type that differs is
//! `container_memory_failcnt`, see [`MEMORY_FAILCNT`].

use prometheus::proto::MetricType;

/// Name, help text and type of one exported metric family.
#[derive(Debug)]
pub struct Family {
    pub name: &'static str,
    pub help: &'static str,
    pub kind: MetricType,
}

const fn counter(name: &'static str, help: &'static str) -> Family {
    Family {
        name,
        help,
        kind: MetricType::COUNTER,
    }
}

const fn gauge(name: &'static str, help: &'static str) -> Family {
    Family {
        name,
        help,
        kind: MetricType::GAUGE,
    }
}

pub static CPU_USAGE: Family = counter(
    "container_cpu_usage_seconds_total",
    "Cumulative CPU time consumed in seconds.",
);
pub static CPU_USER: Family = counter(
    "container_cpu_user_seconds_total",
    "Cumulative user CPU time consumed in seconds.",
);
pub static CPU_SYSTEM: Family = counter(
    "container_cpu_system_seconds_total",
    "Cumulative system CPU time consumed in seconds.",
);
pub static CFS_PERIODS: Family = counter(
    "container_cpu_cfs_periods_total",
    "Number of elapsed CFS enforcement periods.",
);
pub static CFS_THROTTLED_PERIODS: Family = counter(
    "container_cpu_cfs_throttled_periods_total",
    "Number of CFS enforcement periods in which the container was throttled.",
);
pub static CFS_THROTTLED_SECONDS: Family = counter(
    "container_cpu_cfs_throttled_seconds_total",
    "Total time the container has been throttled, in seconds.",
);
pub static MEMORY_USAGE: Family = gauge(
    "container_memory_usage_bytes",
    "Current memory usage in bytes, including page cache.",
);
pub static MEMORY_WORKING_SET: Family = gauge(
    "container_memory_working_set_bytes",
    "Memory usage minus inactive file pages, in bytes.",
);
pub static MEMORY_RSS: Family = gauge("container_memory_rss", "Anonymous memory (RSS) in bytes.");
pub static MEMORY_CACHE: Family = gauge("container_memory_cache", "Page cache memory in bytes.");
pub static MEMORY_SWAP: Family = gauge("container_memory_swap", "Swap usage in bytes.");
/// cAdvisor declares this family a counter, but `promtool check metrics`
/// rejects a counter whose name lacks `_total`. The agent keeps cAdvisor's name,
/// so existing queries work, and declares a gauge. The v1 value can also go
/// down, because writing 0 to `memory.failcnt` resets it.
pub static MEMORY_FAILCNT: Family = gauge(
    "container_memory_failcnt",
    "Number of times memory usage hit the limit.",
);
pub static MEMORY_MAX_USAGE: Family = gauge(
    "container_memory_max_usage_bytes",
    "Maximum memory usage recorded, in bytes.",
);
pub static OOM_EVENTS: Family = counter(
    "container_oom_events_total",
    "Number of processes of the container killed by the OOM killer.",
);
pub static SPEC_MEMORY_LIMIT: Family = gauge(
    "container_spec_memory_limit_bytes",
    "Memory limit of the container in bytes, 0 when unlimited.",
);
pub static SPEC_CPU_QUOTA: Family = gauge(
    "container_spec_cpu_quota",
    "CFS quota of the container in microseconds per period.",
);
pub static SPEC_CPU_PERIOD: Family = gauge(
    "container_spec_cpu_period",
    "CFS period of the container in microseconds.",
);
pub static SPEC_CPU_SHARES: Family =
    gauge("container_spec_cpu_shares", "CPU shares of the container.");
pub static THREADS_MAX: Family = gauge(
    "container_threads_max",
    "Maximum number of tasks (pids.max) of the container, 0 when unlimited.",
);
pub static FS_READS_BYTES: Family = counter(
    "container_fs_reads_bytes_total",
    "Cumulative count of bytes read from the block device.",
);
pub static FS_WRITES_BYTES: Family = counter(
    "container_fs_writes_bytes_total",
    "Cumulative count of bytes written to the block device.",
);
pub static FS_READS: Family = counter(
    "container_fs_reads_total",
    "Cumulative count of read operations completed on the block device.",
);
pub static FS_WRITES: Family = counter(
    "container_fs_writes_total",
    "Cumulative count of write operations completed on the block device.",
);
pub static NETWORK_RECEIVE_BYTES: Family = counter(
    "container_network_receive_bytes_total",
    "Cumulative count of bytes received.",
);
pub static NETWORK_RECEIVE_PACKETS: Family = counter(
    "container_network_receive_packets_total",
    "Cumulative count of packets received.",
);
pub static NETWORK_RECEIVE_ERRORS: Family = counter(
    "container_network_receive_errors_total",
    "Cumulative count of errors encountered while receiving.",
);
pub static NETWORK_RECEIVE_DROPPED: Family = counter(
    "container_network_receive_packets_dropped_total",
    "Cumulative count of packets dropped while receiving.",
);
pub static NETWORK_TRANSMIT_BYTES: Family = counter(
    "container_network_transmit_bytes_total",
    "Cumulative count of bytes transmitted.",
);
pub static NETWORK_TRANSMIT_PACKETS: Family = counter(
    "container_network_transmit_packets_total",
    "Cumulative count of packets transmitted.",
);
pub static NETWORK_TRANSMIT_ERRORS: Family = counter(
    "container_network_transmit_errors_total",
    "Cumulative count of errors encountered while transmitting.",
);
pub static NETWORK_TRANSMIT_DROPPED: Family = counter(
    "container_network_transmit_packets_dropped_total",
    "Cumulative count of packets dropped while transmitting.",
);
pub static PROCESSES: Family = gauge(
    "container_processes",
    "Number of processes in the container's cgroup and its descendants.",
);
pub static THREADS: Family = gauge(
    "container_threads",
    "Number of threads of the container's processes.",
);
pub static FILE_DESCRIPTORS: Family = gauge(
    "container_file_descriptors",
    "Number of open file descriptors of the container's processes.",
);
pub static START_TIME: Family = gauge(
    "container_start_time_seconds",
    "Start time of the container in seconds since the Unix epoch.",
);
pub static LAST_SEEN: Family = gauge(
    "container_last_seen",
    "Last time the agent saw the container, in seconds since the Unix epoch.",
);
pub static PRESSURE_CPU_WAITING: Family = counter(
    "container_pressure_cpu_waiting_seconds_total",
    "Total time in which some tasks waited for CPU, in seconds.",
);
pub static PRESSURE_CPU_STALLED: Family = counter(
    "container_pressure_cpu_stalled_seconds_total",
    "Total time in which all non-idle tasks waited for CPU, in seconds.",
);
pub static PRESSURE_MEMORY_WAITING: Family = counter(
    "container_pressure_memory_waiting_seconds_total",
    "Total time in which some tasks waited for memory, in seconds.",
);
pub static PRESSURE_MEMORY_STALLED: Family = counter(
    "container_pressure_memory_stalled_seconds_total",
    "Total time in which all non-idle tasks waited for memory, in seconds.",
);
pub static PRESSURE_IO_WAITING: Family = counter(
    "container_pressure_io_waiting_seconds_total",
    "Total time in which some tasks waited for I/O, in seconds.",
);
pub static PRESSURE_IO_STALLED: Family = counter(
    "container_pressure_io_stalled_seconds_total",
    "Total time in which all non-idle tasks waited for I/O, in seconds.",
);
pub static JOB_UP: Family = gauge(
    "corral_job_up",
    "1 when the supervisor reports the job RUNNING, 0 otherwise.",
);
pub static JOB_RESTARTS: Family = counter(
    "corral_job_restarts_total",
    "Number of times the supervisor restarted the job.",
);
/// The supervisor sums the OOM kill count that the runtime reads from each
/// container's cgroup after its init exits and before it removes the cgroup.
/// Every ended container adds its count once, which a scrape of the
/// container's own `container_oom_events_total` cannot do: a container killed
/// by the OOM killer usually ends, and its series with it, between scrapes.
pub static JOB_OOM_KILLS: Family = counter(
    "corral_job_oom_kills_total",
    "Number of processes the OOM killer killed in the job's ended containers.",
);
pub static JOB_STATE: Family = gauge(
    "corral_job_state",
    "Supervisor state of the job: 1 for the current state, 0 for the others.",
);

/// Every family built from container and job samples, for documentation and
/// for the test that each one is exported. The agent's own health metrics
/// live in its registry instead.
pub static ALL: &[&Family] = &[
    &CPU_USAGE,
    &CPU_USER,
    &CPU_SYSTEM,
    &CFS_PERIODS,
    &CFS_THROTTLED_PERIODS,
    &CFS_THROTTLED_SECONDS,
    &MEMORY_USAGE,
    &MEMORY_WORKING_SET,
    &MEMORY_RSS,
    &MEMORY_CACHE,
    &MEMORY_SWAP,
    &MEMORY_FAILCNT,
    &MEMORY_MAX_USAGE,
    &OOM_EVENTS,
    &SPEC_MEMORY_LIMIT,
    &SPEC_CPU_QUOTA,
    &SPEC_CPU_PERIOD,
    &SPEC_CPU_SHARES,
    &THREADS_MAX,
    &FS_READS_BYTES,
    &FS_WRITES_BYTES,
    &FS_READS,
    &FS_WRITES,
    &NETWORK_RECEIVE_BYTES,
    &NETWORK_RECEIVE_PACKETS,
    &NETWORK_RECEIVE_ERRORS,
    &NETWORK_RECEIVE_DROPPED,
    &NETWORK_TRANSMIT_BYTES,
    &NETWORK_TRANSMIT_PACKETS,
    &NETWORK_TRANSMIT_ERRORS,
    &NETWORK_TRANSMIT_DROPPED,
    &PROCESSES,
    &THREADS,
    &FILE_DESCRIPTORS,
    &START_TIME,
    &LAST_SEEN,
    &PRESSURE_CPU_WAITING,
    &PRESSURE_CPU_STALLED,
    &PRESSURE_MEMORY_WAITING,
    &PRESSURE_MEMORY_STALLED,
    &PRESSURE_IO_WAITING,
    &PRESSURE_IO_STALLED,
    &JOB_UP,
    &JOB_RESTARTS,
    &JOB_OOM_KILLS,
    &JOB_STATE,
];

//! The job spec: one JSON file per job, the job name being the file stem.
//!
//! Defaults live in the `Default` impls and `default_*` functions of this
//! file and nowhere else; docs/job-spec.md lists the same values.

use std::collections::BTreeMap;
use std::path::PathBuf;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::strict;
use crate::units::{ByteSize, DurationValue};

/// One job: what to run, in which sandbox, with which limits and policies.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct JobSpec {
    /// Root filesystem: `"host"`, an image name from the store, or `{"path": DIR}`.
    #[serde(default)]
    pub image: ImageRef,
    /// Program and arguments. May be empty only when the image supplies a command.
    #[serde(default)]
    pub command: Vec<String>,
    /// Environment variables. `${VAR}` in a value is replaced from supervisord's
    /// environment when the job is loaded. `PATH` and `HOME` get defaults when
    /// neither this nor the image sets them.
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// Working directory inside the container (absolute); `/` when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub working_dir: Option<String>,
    /// `UID[:GID]` or a user name from the image's /etc/passwd; root when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// Host name inside the container's UTS namespace; the job name when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hostname: Option<String>,
    #[serde(default, deserialize_with = "strict::object")]
    pub resources: Resources,
    #[serde(default, deserialize_with = "strict::name")]
    pub network: Network,
    /// Host addresses relayed to ports inside the job's network namespace.
    #[serde(default, deserialize_with = "strict::object_list")]
    pub ports: Vec<PortMapping>,
    /// Bind and tmpfs mounts inside the container.
    #[serde(default)]
    pub mounts: Vec<MountSpec>,
    /// Mounts the container's root read-only.
    #[serde(default)]
    pub readonly_rootfs: bool,
    /// Runs a minimal init as PID 1 that forwards signals and reaps zombies.
    #[serde(default)]
    pub init: bool,
    #[serde(default, deserialize_with = "deserialize_restart")]
    pub restart: RestartConfig,
    /// A start that exits sooner than this counts as a failed start.
    #[serde(default = "default_start_seconds")]
    pub start_seconds: DurationValue,
    #[serde(default, deserialize_with = "strict::object")]
    pub stop: StopConfig,
    /// Starts the job when supervisord starts or when its file appears.
    #[serde(default = "default_autostart")]
    pub autostart: bool,
    #[serde(default, deserialize_with = "strict::object")]
    pub logs: LogConfig,
    /// Free-form labels, exported with the job's metrics and state.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// Capabilities added to the default set, such as `NET_ADMIN` or
    /// `CAP_SYS_PTRACE`.
    #[serde(default)]
    pub cap_add: Vec<String>,
    /// Capabilities removed from the default set; `ALL` removes every one.
    #[serde(default)]
    pub cap_drop: Vec<String>,
    /// System call filter: `default` (the built-in profile), `unconfined`,
    /// or the absolute path of an OCI `linux.seccomp` JSON file.
    #[serde(default = "default_seccomp")]
    pub seccomp: String,
    /// Keeps setuid binaries and file capabilities from granting privileges.
    #[serde(default = "default_no_new_privileges")]
    pub no_new_privileges: bool,
    /// Runs the job in its own user namespace: container IDs 0 to size-1 map
    /// to host IDs from `uid` and `gid`.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "strict::optional_object"
    )]
    pub user_namespace: Option<UserNamespace>,
}

/// The ID ranges of a job's user namespace.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct UserNamespace {
    /// First host UID; container UID 0 maps to it.
    pub uid: u32,
    /// First host GID; container GID 0 maps to it.
    pub gid: u32,
    /// Number of IDs mapped, at least 1.
    #[serde(default = "default_user_namespace_size")]
    pub size: u32,
}

pub fn default_seccomp() -> String {
    "default".to_string()
}

pub fn default_no_new_privileges() -> bool {
    true
}

pub fn default_user_namespace_size() -> u32 {
    65536
}

/// The image a job's root filesystem is built from.
///
/// In JSON, `"host"` is [`ImageRef::Host`], any other string is an image name and
/// `{"path": DIR}` is a directory.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum ImageRef {
    /// The host's `/` as the single read-only lower layer.
    #[default]
    Host,
    /// An image in the store, by name.
    Named(String),
    /// A plain directory used as the read-only lower layer.
    Path { path: PathBuf },
}

/// Resource limits, applied through the job's cgroup.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Resources {
    /// Memory limit, at least 1M. The job is OOM-killed above it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory: Option<ByteSize>,
    /// Memory plus swap limit, at least `memory`. Equal to `memory` means no swap.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory_swap: Option<ByteSize>,
    /// CPU bandwidth in CPUs, converted to a CFS quota per 100ms period.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0.01))]
    pub cpus: Option<f64>,
    /// Relative CPU weight, 1 to 10000 (100 is the kernel default).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 10000))]
    pub cpu_weight: Option<u64>,
    /// CPUs the job may run on, in the kernel's list format (`"0-2,4"`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpuset: Option<String>,
    /// Maximum number of tasks (processes and threads), from 1 to the
    /// kernel's limit of 4194304.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 4_194_304))]
    pub pids: Option<u64>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "strict::optional_object"
    )]
    pub io: Option<IoLimits>,
}

/// Block I/O weight and per-device throttles, keyed by device path.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct IoLimits {
    /// Relative I/O weight, 1 to 10000 (100 is the kernel default).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 10000))]
    pub weight: Option<u64>,
    /// Read bytes per second, keyed by a device path under /dev.
    #[serde(default)]
    pub read_bps: BTreeMap<String, ByteSize>,
    /// Written bytes per second, keyed by a device path under /dev.
    #[serde(default)]
    pub write_bps: BTreeMap<String, ByteSize>,
    /// Read operations per second, keyed by a device path under /dev.
    #[serde(default)]
    #[schemars(transform = require_positive_values)]
    pub read_iops: BTreeMap<String, u64>,
    /// Write operations per second, keyed by a device path under /dev.
    #[serde(default)]
    #[schemars(transform = require_positive_values)]
    pub write_iops: BTreeMap<String, u64>,
}

/// Sets `minimum: 1` on the values of a map schema, because a zero limit is
/// invalid.
fn require_positive_values(schema: &mut schemars::Schema) {
    let values = schema
        .get_mut("additionalProperties")
        .and_then(|values| values.as_object_mut());
    if let Some(values) = values {
        values.insert("minimum".to_string(), 1.into());
    }
}

/// The network a job sees.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Network {
    /// A new network namespace with no interface up.
    None,
    /// A new network namespace with `lo` up.
    #[default]
    Loopback,
    /// The host's network namespace.
    Host,
}

/// A host address relayed to a port inside the job's network namespace.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PortMapping {
    /// `ADDRESS:PORT` to accept on, for example `127.0.0.1:8080`.
    pub host: String,
    /// TCP port inside the job's network namespace, 1 to 65535.
    #[schemars(range(min = 1))]
    pub container: u16,
}

/// A bind or tmpfs mount inside the container.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, JsonSchema)]
#[serde(tag = "type", rename_all = "lowercase", deny_unknown_fields)]
pub enum MountSpec {
    Bind {
        /// Absolute host path.
        source: PathBuf,
        /// Absolute path inside the container.
        target: String,
        /// Mounts the source read-only inside the container.
        #[serde(default)]
        readonly: bool,
    },
    Tmpfs {
        /// Absolute path inside the container.
        target: String,
        /// Size limit of the tmpfs. Unset means the kernel default, half of RAM.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        size: Option<ByteSize>,
        /// Mounts the tmpfs read-only, so it stays empty.
        #[serde(default)]
        readonly: bool,
    },
}

/// When a job that ended is started again.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum RestartPolicy {
    Never,
    #[default]
    OnFailure,
    Always,
}

/// Whether a job whose process ended starts again, how many restarts a
/// sliding window allows before the job becomes FATAL, and the delay
/// before each restart.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RestartConfig {
    /// When a job that ended starts again: `never`, `on-failure` (a non-zero
    /// exit, a signal, or an end before `start_seconds`) or `always`.
    #[serde(default, deserialize_with = "strict::name")]
    pub policy: RestartPolicy,
    /// Restarts allowed within `window` before the job becomes FATAL.
    #[serde(default = "default_max_restarts")]
    pub max_restarts: u32,
    /// The sliding time span in which `max_restarts` restarts are counted.
    #[serde(default = "default_restart_window")]
    pub window: DurationValue,
    /// Delay before each restart.
    #[serde(default, deserialize_with = "strict::object")]
    pub backoff: BackoffConfig,
}

/// Deserializes `restart` from a JSON object only. A policy name given in
/// place of the object gets an error that shows the object to write.
fn deserialize_restart<'de, D: serde::Deserializer<'de>>(
    deserializer: D,
) -> Result<RestartConfig, D::Error> {
    struct RestartVisitor;

    impl<'de> serde::de::Visitor<'de> for RestartVisitor {
        type Value = RestartConfig;

        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            let keys = strict::serde_names::<RestartConfig>();
            f.write_str(&strict::describe_object(keys))
        }

        fn visit_str<E: serde::de::Error>(self, value: &str) -> Result<RestartConfig, E> {
            use serde::de::IntoDeserializer;

            let policy: Result<RestartPolicy, E> =
                RestartPolicy::deserialize(value.into_deserializer());
            if policy.is_err() {
                return Err(E::invalid_type(serde::de::Unexpected::Str(value), &self));
            }
            Err(E::custom(format!(
                "expected a JSON object, found the string {value:?}: the policy is one key of \
                 the restart object, so write \"restart\": {{\"policy\": {value:?}}}"
            )))
        }

        fn visit_map<A: serde::de::MapAccess<'de>>(
            self,
            map: A,
        ) -> Result<RestartConfig, A::Error> {
            RestartConfig::deserialize(serde::de::value::MapAccessDeserializer::new(map))
        }
    }

    deserializer.deserialize_any(RestartVisitor)
}

/// Delay before a restart: doubles from `initial` up to `max`, with jitter.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct BackoffConfig {
    /// Delay before the first restart within the window.
    #[serde(default = "default_backoff_initial")]
    pub initial: DurationValue,
    /// Maximum delay, at which the doubling stops.
    #[serde(default = "default_backoff_max")]
    pub max: DurationValue,
}

/// How a job is stopped: `signal` to its main process, then SIGKILL to every
/// process in its cgroup after `timeout`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct StopConfig {
    /// Signal name, case-insensitive, with or without the `SIG` prefix. Loading
    /// a job stores it in canonical form, such as `SIGTERM`.
    #[serde(default = "default_stop_signal")]
    pub signal: String,
    /// Time between the stop signal and SIGKILL to every process of the job.
    #[serde(default = "default_stop_timeout")]
    pub timeout: DurationValue,
}

/// Rotation of the job's stdout and stderr files.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct LogConfig {
    #[serde(default = "default_log_max_size")]
    pub max_size: ByteSize,
    /// Rotated files kept besides the current one, at most 1000.
    #[serde(default = "default_log_keep")]
    #[schemars(range(max = 1000))]
    pub keep: u32,
}

pub fn default_start_seconds() -> DurationValue {
    DurationValue::from_secs(1)
}

pub fn default_autostart() -> bool {
    true
}

pub fn default_max_restarts() -> u32 {
    5
}

pub fn default_restart_window() -> DurationValue {
    DurationValue::from_secs(60)
}

pub fn default_backoff_initial() -> DurationValue {
    DurationValue::from_secs(1)
}

pub fn default_backoff_max() -> DurationValue {
    DurationValue::from_secs(30)
}

pub fn default_stop_signal() -> String {
    "SIGTERM".to_string()
}

pub fn default_stop_timeout() -> DurationValue {
    DurationValue::from_secs(10)
}

pub fn default_log_max_size() -> ByteSize {
    ByteSize(10 << 20)
}

pub fn default_log_keep() -> u32 {
    3
}

impl Default for RestartConfig {
    fn default() -> Self {
        RestartConfig {
            policy: RestartPolicy::default(),
            max_restarts: default_max_restarts(),
            window: default_restart_window(),
            backoff: BackoffConfig::default(),
        }
    }
}

impl Default for BackoffConfig {
    fn default() -> Self {
        BackoffConfig {
            initial: default_backoff_initial(),
            max: default_backoff_max(),
        }
    }
}

impl Default for StopConfig {
    fn default() -> Self {
        StopConfig {
            signal: default_stop_signal(),
            timeout: default_stop_timeout(),
        }
    }
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            max_size: default_log_max_size(),
            keep: default_log_keep(),
        }
    }
}

impl Serialize for ImageRef {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        match self {
            ImageRef::Host => serializer.serialize_str("host"),
            ImageRef::Named(name) => serializer.serialize_str(name),
            ImageRef::Path { path } => {
                let mut map = serializer.serialize_map(Some(1))?;
                map.serialize_entry("path", path)?;
                map.end()
            }
        }
    }
}

impl<'de> Deserialize<'de> for ImageRef {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct ImageVisitor;

        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct PathImage {
            path: PathBuf,
        }

        impl<'de> serde::de::Visitor<'de> for ImageVisitor {
            type Value = ImageRef;

            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("\"host\", an image name, or {\"path\": \"/absolute/dir\"}")
            }

            fn visit_str<E: serde::de::Error>(self, name: &str) -> Result<ImageRef, E> {
                if name == "host" {
                    Ok(ImageRef::Host)
                } else {
                    Ok(ImageRef::Named(name.to_string()))
                }
            }

            fn visit_map<A: serde::de::MapAccess<'de>>(self, map: A) -> Result<ImageRef, A::Error> {
                let image =
                    PathImage::deserialize(serde::de::value::MapAccessDeserializer::new(map))?;
                Ok(ImageRef::Path { path: image.path })
            }
        }

        deserializer.deserialize_any(ImageVisitor)
    }
}

impl JsonSchema for ImageRef {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "ImageRef".into()
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "description": "Root filesystem: \"host\" (the host's / read-only), an image name from the store, or {\"path\": DIR} for a directory.",
            "oneOf": [
                {"type": "string", "minLength": 1},
                {
                    "type": "object",
                    "properties": {"path": {
                        "type": "string",
                        "pattern": "^/",
                        "description": "Absolute host path of a directory, used as the read-only lower layer."
                    }},
                    "required": ["path"],
                    "additionalProperties": false
                }
            ]
        })
    }
}

/// The kind of a mount, from its `type` key.
#[derive(Deserialize)]
#[serde(rename_all = "lowercase")]
enum MountKind {
    Bind,
    Tmpfs,
}

/// Every key a mount object may have, before the `type` decides which apply.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawMount {
    #[serde(rename = "type", default, deserialize_with = "strict::present_name")]
    kind: Option<MountKind>,
    #[serde(default)]
    source: Option<PathBuf>,
    target: String,
    #[serde(default)]
    readonly: bool,
    #[serde(default)]
    size: Option<ByteSize>,
}

// Deserialization reads a flat struct of every mount key and then checks the
// `type`. Serde's internally tagged enums would buffer the object first and so
// lose the path of a wrong field (`mounts[0].source`) in error messages.
impl<'de> Deserialize<'de> for MountSpec {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        use serde::de::Error;

        let raw: RawMount = strict::object(deserializer)?;
        let Some(kind) = raw.kind else {
            return Err(D::Error::custom(format!(
                "missing field `type`: expected {}",
                strict::describe_names(strict::serde_names::<MountKind>())
            )));
        };
        match kind {
            MountKind::Bind => {
                if raw.size.is_some() {
                    return Err(D::Error::custom(
                        "field `size` applies only to tmpfs mounts, not to bind mounts",
                    ));
                }
                let source = raw.source.ok_or_else(|| {
                    D::Error::custom("missing field `source`: a bind mount needs one")
                })?;
                Ok(MountSpec::Bind {
                    source,
                    target: raw.target,
                    readonly: raw.readonly,
                })
            }
            MountKind::Tmpfs => {
                if raw.source.is_some() {
                    return Err(D::Error::custom(
                        "field `source` applies only to bind mounts, not to tmpfs mounts",
                    ));
                }
                Ok(MountSpec::Tmpfs {
                    target: raw.target,
                    size: raw.size,
                    readonly: raw.readonly,
                })
            }
        }
    }
}

//! Job specs for corral: the types of a job file, parsing with positions,
//! validation, drop-in merging, the JSON Schema and the conversions from spec
//! values to kernel values.
//!
//! [`load_jobs_dir`] loads a whole jobs directory, [`parse_job_file`] one job
//! file with its drop-ins. Every error is a [`ConfigError`] that names the
//! file, line, column and field.

pub mod convert;
mod dropin;
mod error;
mod field;
mod file;
mod host;
mod parse;
pub mod paths;
mod position;
mod schema;
mod source;
mod strict;
mod substitute;
pub mod types;
pub mod units;
mod validate;

pub use dropin::{
    dropin_dir, is_ignored_file_name, load_jobs_dir, load_jobs_dir_with, JobsDirScan,
};
pub use error::{ConfigError, UnknownField};
pub use file::{file_type_name, MAX_JOB_FILE_SIZE};
pub use host::HostContext;
pub use parse::{
    job_name_from_path, parse_job_file, parse_job_file_with, parse_job_str, parse_job_str_with, Job,
};
pub use schema::job_schema;
pub use types::*;
pub use units::{ByteSize, DurationValue, UnitError};
pub use validate::{
    canonical_capability, is_reserved_job_name, is_valid_job_name, validate_spec, ValidationError,
    CAPABILITIES, JOB_NAME_RULE, MAX_HOSTNAME_LEN, MAX_JOB_NAME_LEN, MAX_LOG_KEEP, MIN_CPUS,
    MIN_LOG_SIZE, MIN_MEMORY, RESERVED_JOB_NAMES,
};

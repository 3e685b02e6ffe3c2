//! The JSON Schema of job files, generated from the spec types.
//!
//! `config/job.schema.json` is a committed copy for editors and other tools.
//! A test fails when it differs from [`job_schema`], and running
//! `UPDATE_SCHEMA=1 cargo test -p corral-config` rewrites it.

use crate::types::JobSpec;

/// Returns the JSON Schema (draft 2020-12) of a job file.
///
/// The schema checks structure, types, unknown keys and simple ranges. Rules
/// that need the host or several fields at once (CPU count, `memory_swap` at
/// least `memory`, unique ports) are checked only by validation.
pub fn job_schema() -> serde_json::Value {
    let schema = schemars::schema_for!(JobSpec);
    schema.to_value()
}

//! Reading one job: the file, its drop-ins, deserialization and validation,
//! with every error located in the file it came from.

use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::dropin::{apply_dropins, dropin_dir, list_dropins};
use crate::error::ConfigError;
use crate::file::read_job_text;
use crate::host::HostContext;
use crate::position::PositionIndex;
use crate::source::SourceMap;
use crate::types::JobSpec;
use crate::validate::{is_reserved_job_name, is_valid_job_name, validate_spec};

/// A validated job.
#[derive(Debug, Clone, PartialEq)]
pub struct Job {
    /// The job name: the file name without `.json`.
    pub name: String,
    /// The job file.
    pub file: PathBuf,
    /// The spec after drop-ins, `${VAR}` substitution and validation.
    pub spec: JobSpec,
    /// The drop-ins applied to the file, in the order applied.
    pub dropins: Vec<PathBuf>,
}

/// Returns the job name of a job file: its file name without `.json`, which
/// must match `[a-z0-9][a-z0-9_.-]{0,62}` and must not be reserved (`all`).
pub fn job_name_from_path(path: &Path) -> Result<String, ConfigError> {
    let invalid = |name: String| ConfigError::InvalidName {
        file: path.to_path_buf(),
        name,
    };
    let Some(file_name) = path.file_name() else {
        return Err(invalid(String::new()));
    };
    let Some(file_name) = file_name.to_str() else {
        let lossy = file_name.to_string_lossy();
        return Err(invalid(
            lossy.strip_suffix(".json").unwrap_or(&lossy).to_string(),
        ));
    };
    let name = file_name.strip_suffix(".json").unwrap_or(file_name);
    if !file_name.ends_with(".json") || !is_valid_job_name(name) {
        return Err(invalid(name.to_string()));
    }
    check_not_reserved(path, name)?;
    Ok(name.to_string())
}

fn check_not_reserved(file: &Path, name: &str) -> Result<(), ConfigError> {
    if is_reserved_job_name(name) {
        return Err(ConfigError::ReservedName {
            file: file.to_path_buf(),
            name: name.to_string(),
        });
    }
    Ok(())
}

/// Reads, merges and validates a job file and the drop-ins in `PATH.d/`,
/// against the current host.
pub fn parse_job_file(path: &Path) -> Result<Job, ConfigError> {
    parse_job_file_with(path, &HostContext::current())
}

/// Like [`parse_job_file`], against the given host.
pub fn parse_job_file_with(path: &Path, host: &HostContext) -> Result<Job, ConfigError> {
    let name = job_name_from_path(path)?;
    let dropins = list_dropins(&dropin_dir(path))?;
    let text = read_job_text(path)?;
    let document = parse_document(path, &text)?;
    let mut sources = SourceMap::new(path, document.index);
    let mut merged = document.value;
    apply_dropins(&mut merged, &mut sources, &dropins)?;
    build_job(&name, path, &merged, &sources, dropins, host)
}

/// Parses and validates the text of a job file, without drop-ins, against the
/// current host. `file` is used only in error messages and [`Job::file`].
pub fn parse_job_str(name: &str, file: &Path, text: &str) -> Result<Job, ConfigError> {
    parse_job_str_with(name, file, text, &HostContext::current())
}

/// Like [`parse_job_str`], against the given host.
pub fn parse_job_str_with(
    name: &str,
    file: &Path,
    text: &str,
    host: &HostContext,
) -> Result<Job, ConfigError> {
    if !is_valid_job_name(name) {
        return Err(ConfigError::InvalidName {
            file: file.to_path_buf(),
            name: name.to_string(),
        });
    }
    check_not_reserved(file, name)?;
    let document = parse_document(file, text)?;
    let sources = SourceMap::new(file, document.index);
    build_job(name, file, &document.value, &sources, Vec::new(), host)
}

/// A JSON object with the positions of its values.
pub(crate) struct Document {
    pub value: Value,
    pub index: PositionIndex,
}

/// Parses the text of a job file or drop-in, which must be one JSON object
/// without duplicate keys. A leading UTF-8 byte order mark, which some
/// editors write, is skipped as RFC 8259 allows.
pub(crate) fn parse_document(file: &Path, text: &str) -> Result<Document, ConfigError> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let syntax = |line: usize, column: usize, message: String| ConfigError::Syntax {
        file: file.to_path_buf(),
        line,
        column,
        message,
    };
    if text.trim().is_empty() {
        return Err(syntax(
            1,
            1,
            "the file is empty: expected a JSON object".to_string(),
        ));
    }

    let value: Value = serde_json::from_str(text).map_err(|error| {
        let (line, column) = (
            error.line(),
            character_column(text, error.line(), error.column()),
        );
        // serde_json appends " at line L column C", which the location repeats.
        let message = error.to_string();
        let suffix = format!(" at line {} column {}", error.line(), error.column());
        let message = message
            .strip_suffix(&suffix)
            .unwrap_or(&message)
            .to_string();
        syntax(line, column, message)
    })?;

    let index = PositionIndex::build(text).map_err(|duplicate| ConfigError::Invalid {
        file: file.to_path_buf(),
        line: duplicate.second.line,
        column: duplicate.second.column,
        field: duplicate.path.to_string(),
        message: format!(
            "duplicate key {:?}: it is already defined at line {}, column {}",
            duplicate.key, duplicate.first.line, duplicate.first.column
        ),
    })?;

    if !value.is_object() {
        return Err(syntax(
            1,
            1,
            format!(
                "expected a JSON object at the top level, found {}",
                kind_of(&value)
            ),
        ));
    }
    Ok(Document { value, index })
}

fn kind_of(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// Converts serde_json's byte column on `line` to a column in characters, to
/// match the columns of [`PositionIndex`]. Returns at least 1.
fn character_column(text: &str, line: usize, byte_column: usize) -> usize {
    let Some(line_text) = text.lines().nth(line.saturating_sub(1)) else {
        return byte_column.max(1);
    };
    let characters = line_text
        .char_indices()
        .take_while(|&(offset, _)| offset < byte_column)
        .count();
    characters.max(1)
}

/// Deserializes and validates a (merged) document into a [`Job`].
pub(crate) fn build_job(
    name: &str,
    file: &Path,
    value: &Value,
    sources: &SourceMap,
    dropins: Vec<PathBuf>,
    host: &HostContext,
) -> Result<Job, ConfigError> {
    let mut spec: JobSpec = serde_path_to_error::deserialize(value)
        .map_err(|error| sources.deserialize_error(error))?;
    validate_spec(name, &mut spec, host).map_err(|error| sources.validation_error(error))?;
    Ok(Job {
        name: name.to_string(),
        file: file.to_path_buf(),
        spec,
        dropins,
    })
}

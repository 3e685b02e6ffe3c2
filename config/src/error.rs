//! The error of loading a job file: which file, where in it, which field and
//! what is wrong.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// An invalid or unreadable job file or drop-in.
///
/// Errors located in the text display as `FILE:LINE:COLUMN: FIELD: MESSAGE`,
/// for example `/etc/corral/jobs.d/web.json:4:15: resources.memory: invalid size
/// "12X": ...`. Lines and columns are 1-based and columns count characters.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ConfigError {
    /// The file or directory could not be read.
    #[error("{}: failed to {operation}: {source}", file.display())]
    Io {
        file: PathBuf,
        operation: &'static str,
        #[source]
        source: Arc<io::Error>,
    },

    /// A job file or drop-in that is not a regular file, such as a FIFO or a
    /// device.
    #[error(
        "{}: not a regular file ({kind}): a job file or drop-in must be a regular file or a \
         symbolic link to one",
        file.display()
    )]
    NotRegularFile { file: PathBuf, kind: &'static str },

    /// A job file or drop-in larger than [`crate::MAX_JOB_FILE_SIZE`].
    /// `size` is the size that fstat returned, or the number of bytes read
    /// when the file grew during the read.
    #[error(
        "{}: the file is {size} bytes, larger than the maximum of {limit} bytes for a job file \
         or drop-in",
        file.display()
    )]
    TooLarge {
        file: PathBuf,
        size: u64,
        limit: u64,
    },

    /// The file name does not give a valid job name.
    #[error(
        "{}: invalid job name {name:?}: {}",
        file.display(),
        crate::validate::JOB_NAME_RULE
    )]
    InvalidName { file: PathBuf, name: String },

    /// The file name gives a job name that supervisorctl reserves.
    #[error(
        "{}: job name {name:?} is reserved: supervisorctl commands take `{name}` to mean every \
         job, so they could not address this job by name; rename the file",
        file.display()
    )]
    ReservedName { file: PathBuf, name: String },

    /// Two files in one jobs directory give the same job name.
    #[error("{}: job name {name:?} is also given by {}", file.display(), other.display())]
    DuplicateName {
        file: PathBuf,
        name: String,
        other: PathBuf,
    },

    /// The text is not JSON, or not a JSON object.
    #[error("{}:{line}:{column}: invalid JSON: {message}", file.display())]
    Syntax {
        file: PathBuf,
        line: usize,
        column: usize,
        message: String,
    },

    /// An object has a key that the job spec does not define.
    #[error("{0}")]
    UnknownField(Box<UnknownField>),

    /// A value has the wrong type or is outside its allowed range.
    #[error("{}:{line}:{column}: {}{message}", file.display(), field_prefix(field))]
    Invalid {
        file: PathBuf,
        line: usize,
        column: usize,
        /// Path of the value, such as `resources.memory`, or empty for the
        /// whole document.
        field: String,
        message: String,
    },
}

/// A key that the job spec does not define, with the closest known key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "{}:{line}:{column}: unknown field `{key}` at {}{}",
    file.display(),
    describe_parent(parent),
    suggest(suggestion.as_deref(), expected)
)]
pub struct UnknownField {
    pub file: PathBuf,
    pub line: usize,
    pub column: usize,
    /// Path of the unknown key itself, such as `resources.memroy`.
    pub field: String,
    /// Path of the object that contains it, or empty at the top level.
    pub parent: String,
    pub key: String,
    /// The closest known key, when one is close enough to be a likely typo.
    pub suggestion: Option<String>,
    /// Every key the containing object takes.
    pub expected: Vec<String>,
}

fn describe_parent(parent: &str) -> &str {
    if parent.is_empty() {
        "the top level"
    } else {
        parent
    }
}

/// Returns the closest key as a question, or else the keys that the object
/// takes.
fn suggest(suggestion: Option<&str>, expected: &[String]) -> String {
    match suggestion {
        Some(key) => format!(", did you mean `{key}`?"),
        None if expected.is_empty() => String::new(),
        None => {
            let keys: Vec<String> = expected.iter().map(|key| format!("`{key}`")).collect();
            format!("; known fields: {}", keys.join(", "))
        }
    }
}

fn field_prefix(field: &str) -> String {
    if field.is_empty() {
        String::new()
    } else {
        format!("{field}: ")
    }
}

impl ConfigError {
    pub(crate) fn io(file: &Path, operation: &'static str, source: io::Error) -> Self {
        ConfigError::Io {
            file: file.to_path_buf(),
            operation,
            source: Arc::new(source),
        }
    }

    /// Returns the job file or drop-in that the error is in.
    pub fn file(&self) -> &Path {
        match self {
            ConfigError::Io { file, .. }
            | ConfigError::NotRegularFile { file, .. }
            | ConfigError::TooLarge { file, .. }
            | ConfigError::InvalidName { file, .. }
            | ConfigError::ReservedName { file, .. }
            | ConfigError::DuplicateName { file, .. }
            | ConfigError::Syntax { file, .. }
            | ConfigError::Invalid { file, .. } => file,
            ConfigError::UnknownField(unknown) => &unknown.file,
        }
    }

    /// Returns the 1-based line, for errors located in the text.
    pub fn line(&self) -> Option<usize> {
        match self {
            ConfigError::Syntax { line, .. } | ConfigError::Invalid { line, .. } => Some(*line),
            ConfigError::UnknownField(unknown) => Some(unknown.line),
            _ => None,
        }
    }

    /// Returns the 1-based column in characters, for errors located in the text.
    pub fn column(&self) -> Option<usize> {
        match self {
            ConfigError::Syntax { column, .. } | ConfigError::Invalid { column, .. } => {
                Some(*column)
            }
            ConfigError::UnknownField(unknown) => Some(unknown.column),
            _ => None,
        }
    }

    /// Returns the path of the offending value, such as `resources.memory` or
    /// `ports[0].host`, for errors about one value. The empty string is the
    /// whole document.
    pub fn field(&self) -> Option<&str> {
        match self {
            ConfigError::UnknownField(unknown) => Some(&unknown.field),
            ConfigError::Invalid { field, .. } => Some(field),
            _ => None,
        }
    }
}

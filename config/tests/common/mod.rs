//! Helpers shared by the integration tests: a fixed host and job texts with a
//! marker at the position where an error is expected.

#![allow(dead_code, reason = "each test binary uses a different subset")]

use std::collections::BTreeMap;
use std::path::Path;

use corral_config::{parse_job_str_with, ConfigError, HostContext, Job};

/// Marks the expected error position in a test text. It is removed before
/// parsing.
pub const MARK: char = '▶';

pub const FILE: &str = "/etc/corral/jobs.d/web.json";

/// Returns a host with CPUs 0 and 1 and a small environment.
pub fn host() -> HostContext {
    let environment = BTreeMap::from([
        ("HOME".to_string(), "/home/corral".to_string()),
        ("PATH".to_string(), "/usr/bin:/bin".to_string()),
    ]);
    HostContext::with_cpus(2, environment)
}

/// Removes the marker and returns the text with the marker's 1-based line and
/// column, counted in characters.
pub fn unmark(marked: &str) -> (String, usize, usize) {
    let offset = marked.find(MARK).expect("test text has no marker");
    let before = &marked[..offset];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |newline| newline + 1);
    let column = before[line_start..].chars().count() + 1;
    (marked.replacen(MARK, "", 1), line, column)
}

pub fn parse(text: &str) -> Result<Job, ConfigError> {
    parse_job_str_with("web", Path::new(FILE), text, &host())
}

pub fn parse_ok(text: &str) -> Job {
    match parse(text) {
        Ok(job) => job,
        Err(error) => panic!("expected a valid job, got: {error}"),
    }
}

/// Parses a marked text that must fail at the marker, on `field`, with a
/// message containing `fragment`. Returns the error for further checks.
pub fn expect_error(marked: &str, field: &str, fragment: &str) -> ConfigError {
    let (text, line, column) = unmark(marked);
    let error = match parse(&text) {
        Ok(job) => panic!("expected an error on {field}, got a valid job: {job:?}"),
        Err(error) => error,
    };
    let display = error.to_string();
    assert_eq!(error.field(), Some(field), "field of: {display}");
    assert_eq!(error.line(), Some(line), "line of: {display}");
    assert_eq!(error.column(), Some(column), "column of: {display}");
    assert_eq!(error.file(), Path::new(FILE), "file of: {display}");
    assert!(display.contains(fragment), "{display:?} lacks {fragment:?}");
    let prefix = format!("{FILE}:{line}:{column}: ");
    assert!(
        display.starts_with(&prefix),
        "{display:?} lacks prefix {prefix:?}"
    );
    error
}

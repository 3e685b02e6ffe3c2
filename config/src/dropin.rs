//! Drop-ins and jobs directories.
//!
//! A job file `NAME.json` may have drop-ins in `NAME.json.d/*.json`. They are
//! applied in lexical (byte) order of their file names as JSON merge patches
//! (RFC 7396): objects merge key by key, arrays and scalars replace, and
//! `null` deletes. The merged document is then validated as a whole, and an
//! error in a value that a drop-in set points at that drop-in.

use std::collections::{BTreeMap, HashMap};
use std::ffi::{OsStr, OsString};
use std::fs;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use serde_json::{Map, Value};

use crate::error::ConfigError;
use crate::field::escape_pointer_token;
use crate::file::read_job_text;
use crate::host::HostContext;
use crate::parse::{job_name_from_path, parse_document, parse_job_file_with, Job};
use crate::source::SourceMap;

/// The result of loading every job file of a directory.
#[derive(Debug)]
pub struct JobsDirScan {
    /// Each job file's job or error, keyed by job name. A file whose name is
    /// not a valid job name is keyed by its file name without `.json`.
    pub jobs: BTreeMap<String, Result<Job, ConfigError>>,
    /// The error from listing the directory itself. `jobs` is then empty.
    pub dir_error: Option<ConfigError>,
}

/// Returns the drop-in directory of a job file: `PATH.d`.
pub fn dropin_dir(job_file: &Path) -> PathBuf {
    let mut dir = OsString::from(job_file.as_os_str());
    dir.push(".d");
    PathBuf::from(dir)
}

/// Returns whether a directory entry is an editor, package manager or
/// half-written temporary file rather than a job file or drop-in: a name
/// starting with `.`, ending in `~`, `.swp` or `.tmp`, or containing `.dpkg-`.
pub fn is_ignored_file_name(name: &OsStr) -> bool {
    let bytes = name.as_bytes();
    bytes.starts_with(b".")
        || bytes.ends_with(b"~")
        || bytes.ends_with(b".swp")
        || bytes.ends_with(b".tmp")
        || bytes.windows(6).any(|window| window == b".dpkg-")
}

/// Returns whether a directory entry name is a candidate job file or drop-in:
/// it ends in `.json` and is not ignored.
fn is_json_file_name(name: &OsStr) -> bool {
    name.as_bytes().ends_with(b".json") && !is_ignored_file_name(name)
}

/// Lists the regular `*.json` files of `dir`, sorted by file name bytes, and
/// skips ignored names and directories. Symbolic links are followed.
fn list_json_files(dir: &Path) -> io::Result<Vec<PathBuf>> {
    let entries = fs::read_dir(dir)?;
    let mut files = Vec::new();
    for entry in entries {
        let entry = entry?;
        let name = entry.file_name();
        if !is_json_file_name(&name) {
            tracing::debug!(file = %entry.path().display(), "skipping non-job file");
            continue;
        }
        // A dangling symbolic link stays in the list, so that reading it
        // reports the error.
        let is_dir = fs::metadata(entry.path()).is_ok_and(|metadata| metadata.is_dir());
        if is_dir {
            tracing::warn!(dir = %entry.path().display(), "skipping a directory named like a job file");
            continue;
        }
        files.push(entry.path());
    }
    files.sort_by(|a, b| a.file_name().cmp(&b.file_name()));
    Ok(files)
}

/// Lists the drop-ins of a job in the order they apply. A missing drop-in
/// directory has none.
pub(crate) fn list_dropins(dir: &Path) -> Result<Vec<PathBuf>, ConfigError> {
    match list_json_files(dir) {
        Ok(files) => Ok(files),
        Err(error) if error.kind() == io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(error) => Err(ConfigError::io(dir, "list drop-in directory", error)),
    }
}

/// Reads each drop-in and merges it into `merged`, recording in `sources`
/// which values it set.
pub(crate) fn apply_dropins(
    merged: &mut Value,
    sources: &mut SourceMap,
    dropins: &[PathBuf],
) -> Result<(), ConfigError> {
    for dropin in dropins {
        let text = read_job_text(dropin)?;
        let document = parse_document(dropin, &text)?;
        let file = sources.add_file(dropin, document.index);
        merge_patch(merged, &document.value, "", file, sources);
    }
    Ok(())
}

/// Applies `patch` to `target` as an RFC 7396 merge patch. `pointer` is the
/// JSON pointer of `target` in the whole document, and `file` the index of the
/// patch's file in `sources`.
fn merge_patch(
    target: &mut Value,
    patch: &Value,
    pointer: &str,
    file: usize,
    sources: &mut SourceMap,
) {
    let Value::Object(patch_members) = patch else {
        *target = patch.clone();
        sources.set_origin(pointer, file);
        return;
    };
    if !target.is_object() {
        *target = Value::Object(Map::new());
        sources.set_origin(pointer, file);
    }
    let Value::Object(members) = target else {
        unreachable!("target was just made an object");
    };
    for (key, value) in patch_members {
        let member = format!("{pointer}/{}", escape_pointer_token(key));
        if value.is_null() {
            members.remove(key);
            sources.clear_origin(&member);
            continue;
        }
        match members.get_mut(key) {
            Some(existing) => merge_patch(existing, value, &member, file, sources),
            None => {
                let mut created = Value::Null;
                merge_patch(&mut created, value, &member, file, sources);
                members.insert(key.clone(), created);
            }
        }
    }
}

/// Returns the file name without `.json`, with bytes that are not UTF-8
/// replaced, as the key of a job whose name may be invalid.
fn file_stem_lossy(file: &Path) -> String {
    let name = file.file_name().unwrap_or_default().to_string_lossy();
    name.strip_suffix(".json").unwrap_or(&name).to_string()
}

/// Loads every job file in `dir` with its drop-ins, against the current host.
pub fn load_jobs_dir(dir: &Path) -> JobsDirScan {
    load_jobs_dir_with(dir, &HostContext::current())
}

/// Like [`load_jobs_dir`], against the given host.
///
/// One bad file never prevents loading the others: each file gets its own
/// `Ok` or `Err`. Non-`.json` files and ignored names (see
/// [`is_ignored_file_name`]) are skipped. Two names for one file, such as a
/// symbolic link `a.json` to `web.json`, give two jobs.
pub fn load_jobs_dir_with(dir: &Path, host: &HostContext) -> JobsDirScan {
    let mut scan = JobsDirScan {
        jobs: BTreeMap::new(),
        dir_error: None,
    };
    let files = match list_json_files(dir) {
        Ok(files) => files,
        Err(error) => {
            scan.dir_error = Some(ConfigError::io(dir, "list jobs directory", error));
            return scan;
        }
    };

    let mut first_file: HashMap<String, PathBuf> = HashMap::new();
    for file in files {
        let key = file_stem_lossy(&file);
        let result = job_name_from_path(&file).and_then(|_| parse_job_file_with(&file, host));
        // Names are file stems, so only file names that are not UTF-8 and
        // decode to the same lossy text can collide.
        if let Some(other) = first_file.get(&key) {
            let error = ConfigError::DuplicateName {
                file: file.clone(),
                name: key.clone(),
                other: other.clone(),
            };
            scan.jobs.insert(key, Err(error));
            continue;
        }
        first_file.insert(key.clone(), file);
        scan.jobs.insert(key, result);
    }
    scan
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::position::PositionIndex;

    /// Applies patches in order and returns the result.
    fn merged(target: Value, patches: &[Value]) -> Value {
        let mut sources = SourceMap::new(Path::new("/job.json"), PositionIndex::default());
        let mut target = target;
        for patch in patches {
            let file = sources.add_file(Path::new("/dropin.json"), PositionIndex::default());
            merge_patch(&mut target, patch, "", file, &mut sources);
        }
        target
    }

    #[test]
    fn merge_objects_merge_by_key() {
        let result = merged(
            json!({"a": {"x": 1, "y": 2}, "b": 1}),
            &[json!({"a": {"y": 3, "z": 4}})],
        );
        assert_eq!(result, json!({"a": {"x": 1, "y": 3, "z": 4}, "b": 1}));
    }

    #[test]
    fn merge_arrays_and_scalars_replace() {
        let result = merged(
            json!({"list": [1, 2, 3], "s": "old", "o": {"k": 1}}),
            &[json!({"list": [9], "s": 5, "o": "now a string"})],
        );
        assert_eq!(result, json!({"list": [9], "s": 5, "o": "now a string"}));
    }

    #[test]
    fn merge_null_deletes() {
        let result = merged(
            json!({"a": 1, "b": {"c": 2, "d": 3}}),
            &[json!({"a": null, "b": {"c": null}, "missing": null})],
        );
        assert_eq!(result, json!({"b": {"d": 3}}));
    }

    #[test]
    fn merge_new_object_drops_nested_nulls() {
        let result = merged(
            json!({"a": 1}),
            &[json!({"b": {"c": null, "d": {"e": null, "f": 1}}})],
        );
        assert_eq!(result, json!({"a": 1, "b": {"d": {"f": 1}}}));
    }

    #[test]
    fn merge_object_replaces_scalar() {
        let result = merged(
            json!({"image": "busybox"}),
            &[json!({"image": {"path": "/srv"}})],
        );
        assert_eq!(result, json!({"image": {"path": "/srv"}}));
    }

    #[test]
    fn merge_later_patch_wins() {
        let result = merged(
            json!({"a": 1}),
            &[json!({"a": 2, "b": 2}), json!({"a": 3}), json!({"b": null})],
        );
        assert_eq!(result, json!({"a": 3}));
    }

    #[test]
    fn merge_empty_patch_changes_nothing() {
        let result = merged(json!({"a": [1], "b": {}}), &[json!({})]);
        assert_eq!(result, json!({"a": [1], "b": {}}));
    }

    #[test]
    fn merge_records_origins() {
        let mut sources = SourceMap::new(Path::new("/job.json"), PositionIndex::default());
        let mut target = json!({"resources": {"memory": "1M"}, "command": ["/x"]});
        let first = sources.add_file(Path::new("/10.json"), PositionIndex::default());
        merge_patch(
            &mut target,
            &json!({"resources": {"cpus": 1, "io": {"weight": 5}}, "command": ["/y"]}),
            "",
            first,
            &mut sources,
        );
        let second = sources.add_file(Path::new("/20.json"), PositionIndex::default());
        merge_patch(
            &mut target,
            &json!({"resources": {"io": {"weight": null}}, "command": null}),
            "",
            second,
            &mut sources,
        );
        let origins: Vec<(&str, usize)> = sources.origins().collect();
        assert_eq!(
            origins,
            vec![("/resources/cpus", first), ("/resources/io", first)]
        );
    }

    #[test]
    fn ignored_file_names() {
        for name in [
            ".web.json",
            "web.json~",
            "web.json.swp",
            "web.json.tmp",
            "web.json.dpkg-new",
        ] {
            assert!(is_ignored_file_name(OsStr::new(name)), "{name}");
        }
        for name in ["web.json", "10-memory.json", "a.b.json"] {
            assert!(!is_ignored_file_name(OsStr::new(name)), "{name}");
        }
    }

    #[test]
    fn dropin_dir_appends_d() {
        assert_eq!(
            dropin_dir(Path::new("/etc/corral/jobs.d/web.json")),
            Path::new("/etc/corral/jobs.d/web.json.d")
        );
    }
}

//! Drop-ins applied to job files on disk, errors located in the file that set
//! the value, and whole jobs directories.

mod common;

use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use common::{host, unmark};
use corral_config::{load_jobs_dir_with, parse_job_file_with, ConfigError, Job};

/// A temporary jobs directory, removed on drop.
struct JobsDir {
    dir: tempfile::TempDir,
}

impl JobsDir {
    fn new() -> Self {
        JobsDir {
            dir: tempfile::tempdir().expect("create temporary jobs directory"),
        }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Writes `relative` (creating parent directories) and returns its path.
    fn write(&self, relative: &str, text: &str) -> PathBuf {
        let path = self.dir.path().join(relative);
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(&path, text).unwrap();
        path
    }

    fn load(&self, name: &str) -> Result<Job, ConfigError> {
        parse_job_file_with(&self.path().join(format!("{name}.json")), &host())
    }
}

/// Asserts that `error` is located at the marker of `marked` in `file`.
fn assert_located(error: &ConfigError, file: &Path, marked: &str, field: &str) {
    let (_, line, column) = unmark(marked);
    assert_eq!(error.file(), file, "{error}");
    assert_eq!(error.line(), Some(line), "{error}");
    assert_eq!(error.column(), Some(column), "{error}");
    assert_eq!(error.field(), Some(field), "{error}");
}

#[test]
fn dropin_objects_merge() {
    let jobs = JobsDir::new();
    jobs.write(
        "web.json",
        r#"{"command": ["/x"], "resources": {"memory": "64M"}}"#,
    );
    jobs.write("web.json.d/limits.json", r#"{"resources": {"cpus": 0.5}}"#);
    let job = jobs.load("web").unwrap();
    assert_eq!(
        job.spec.resources.memory.map(|size| size.bytes()),
        Some(64 << 20)
    );
    assert_eq!(job.spec.resources.cpus, Some(0.5));
    assert_eq!(
        job.dropins,
        vec![jobs.path().join("web.json.d/limits.json")]
    );
}

#[test]
fn dropin_arrays_replace() {
    let jobs = JobsDir::new();
    jobs.write("web.json", r#"{"command": ["/bin/sh", "-c", "sleep 1"]}"#);
    jobs.write("web.json.d/cmd.json", r#"{"command": ["/bin/true"]}"#);
    let job = jobs.load("web").unwrap();
    assert_eq!(job.spec.command, vec!["/bin/true"]);
}

#[test]
fn dropin_null_deletes() {
    let jobs = JobsDir::new();
    jobs.write(
        "web.json",
        r#"{"command": ["/x"], "hostname": "h", "resources": {"memory": "64M", "pids": 5}}"#,
    );
    jobs.write(
        "web.json.d/unset.json",
        r#"{"hostname": null, "resources": {"memory": null}}"#,
    );
    let job = jobs.load("web").unwrap();
    assert_eq!(job.spec.hostname, None);
    assert_eq!(job.spec.resources.memory, None);
    assert_eq!(job.spec.resources.pids, Some(5));
}

#[test]
fn dropins_apply_in_lexical_order() {
    let jobs = JobsDir::new();
    jobs.write(
        "web.json",
        r#"{"command": ["/x"], "labels": {"order": "base"}}"#,
    );
    jobs.write(
        "web.json.d/9-last.json",
        r#"{"labels": {"order": "9", "nine": "y"}}"#,
    );
    jobs.write(
        "web.json.d/10-first.json",
        r#"{"labels": {"order": "10", "ten": "y"}}"#,
    );
    jobs.write(
        "web.json.d/20-middle.json",
        r#"{"labels": {"order": "20"}}"#,
    );

    let job = jobs.load("web").unwrap();
    // Byte order: "10-first" < "20-middle" < "9-last".
    assert_eq!(job.spec.labels["order"], "9");
    assert_eq!(job.spec.labels["ten"], "y");
    assert_eq!(job.spec.labels["nine"], "y");

    let names: Vec<String> = job
        .dropins
        .iter()
        .map(|path| path.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    assert_eq!(
        names,
        vec!["10-first.json", "20-middle.json", "9-last.json"]
    );
}

#[test]
fn dropins_skip_temporary_and_other_files() {
    let jobs = JobsDir::new();
    jobs.write("web.json", r#"{"command": ["/x"]}"#);
    let broken = r#"{"command": "#;
    for name in [
        ".hidden.json",
        "a.json~",
        "a.json.swp",
        "a.json.tmp",
        "a.json.dpkg-old",
        "README",
    ] {
        jobs.write(&format!("web.json.d/{name}"), broken);
    }
    fs::create_dir_all(jobs.path().join("web.json.d/sub.json")).unwrap();
    let job = jobs.load("web").unwrap();
    assert!(job.dropins.is_empty(), "{:?}", job.dropins);
}

#[test]
fn dropin_syntax_error_names_dropin() {
    let jobs = JobsDir::new();
    jobs.write("web.json", r#"{"command": ["/x"]}"#);
    let dropin = jobs.write("web.json.d/bad.json", "{\n  \"init\": yes\n}");
    let error = jobs.load("web").unwrap_err();
    assert!(matches!(error, ConfigError::Syntax { .. }), "{error}");
    assert_eq!(error.file(), dropin);
    assert_eq!(error.line(), Some(2), "{error}");
    assert_eq!(error.column(), Some(11), "{error}");
}

#[test]
fn dropin_must_be_object() {
    let jobs = JobsDir::new();
    jobs.write("web.json", r#"{"command": ["/x"]}"#);
    let dropin = jobs.write("web.json.d/bad.json", "[1]");
    let error = jobs.load("web").unwrap_err();
    assert_eq!(error.file(), dropin);
    assert!(
        error
            .to_string()
            .contains("expected a JSON object at the top level"),
        "{error}"
    );
}

#[test]
fn merged_error_points_at_dropin_value() {
    let jobs = JobsDir::new();
    jobs.write(
        "web.json",
        r#"{"command": ["/x"], "resources": {"memory": "64M"}}"#,
    );
    let marked = "{\n  \"resources\": {\n    \"memory\": ▶\"512K\"\n  }\n}";
    let dropin = jobs.write("web.json.d/small.json", &unmark(marked).0);
    let error = jobs.load("web").unwrap_err();
    assert_located(&error, &dropin, marked, "resources.memory");
    assert!(
        error.to_string().contains("below the minimum of 1M"),
        "{error}"
    );
}

#[test]
fn merged_error_points_at_base_value() {
    let jobs = JobsDir::new();
    let marked = "{\"command\": [\"/x\"],\n \"resources\": {\"memory_swap\": ▶\"32M\"}}";
    let base = jobs.write("web.json", &unmark(marked).0);
    jobs.write(
        "web.json.d/memory.json",
        r#"{"resources": {"memory": "64M"}}"#,
    );
    let error = jobs.load("web").unwrap_err();
    assert_located(&error, &base, marked, "resources.memory_swap");
    assert!(
        error
            .to_string()
            .contains("memory_swap 32M is below memory 64M"),
        "{error}"
    );
}

#[test]
fn merged_type_error_points_at_dropin() {
    let jobs = JobsDir::new();
    jobs.write("web.json", r#"{"command": ["/x"]}"#);
    let marked = "{\"stop\": {\n  \"timeout\": ▶\"ten seconds\"}}";
    let dropin = jobs.write("web.json.d/stop.json", &unmark(marked).0);
    let error = jobs.load("web").unwrap_err();
    assert_located(&error, &dropin, marked, "stop.timeout");
}

#[test]
fn merged_unknown_field_points_at_dropin_key() {
    let jobs = JobsDir::new();
    jobs.write(
        "web.json",
        r#"{"command": ["/x"], "resources": {"memory": "64M"}}"#,
    );
    let marked = "{\"resources\": {\n  ▶\"cpu\": 1}}";
    let dropin = jobs.write("web.json.d/cpu.json", &unmark(marked).0);
    let error = jobs.load("web").unwrap_err();
    assert_located(&error, &dropin, marked, "resources.cpu");
    assert!(
        error.to_string().contains("did you mean `cpus`?"),
        "{error}"
    );
}

#[test]
fn merged_error_inside_replaced_array() {
    let jobs = JobsDir::new();
    jobs.write(
        "web.json",
        r#"{"command": ["/x"], "ports": [{"host": "127.0.0.1:80", "container": 80}]}"#,
    );
    let marked = "{\"ports\": [\n  {\"host\": \"127.0.0.1:81\", \"container\": 80},\n  \
                  {\"host\": ▶\"127.0.0.1:81\", \"container\": 81}]}";
    let dropin = jobs.write("web.json.d/ports.json", &unmark(marked).0);
    let error = jobs.load("web").unwrap_err();
    assert_located(&error, &dropin, marked, "ports[1].host");
}

#[test]
fn merged_error_in_object_replacing_string() {
    let jobs = JobsDir::new();
    jobs.write("web.json", r#"{"command": ["/x"], "image": "busybox"}"#);
    let marked = "{\"image\": {\"path\": ▶\"relative/dir\"}}";
    let dropin = jobs.write("web.json.d/image.json", &unmark(marked).0);
    let error = jobs.load("web").unwrap_err();
    assert_located(&error, &dropin, marked, "image.path");
}

#[test]
fn value_deleted_then_set_points_at_last_dropin() {
    let jobs = JobsDir::new();
    jobs.write(
        "web.json",
        r#"{"command": ["/x"], "resources": {"pids": 5}}"#,
    );
    jobs.write("web.json.d/10.json", r#"{"resources": null}"#);
    let marked = "{\"resources\": {\"pids\": ▶0}}";
    let dropin = jobs.write("web.json.d/20.json", &unmark(marked).0);
    let error = jobs.load("web").unwrap_err();
    assert_located(&error, &dropin, marked, "resources.pids");
}

#[test]
fn dropin_sets_missing_required_value() {
    let jobs = JobsDir::new();
    jobs.write("web.json", r#"{"image": "host"}"#);
    jobs.write("web.json.d/cmd.json", r#"{"command": ["/bin/true"]}"#);
    assert_eq!(jobs.load("web").unwrap().spec.command, vec!["/bin/true"]);
}

#[test]
fn jobs_dir_bad_file_beside_good_ones() {
    let jobs = JobsDir::new();
    jobs.write("api.json", r#"{"command": ["/bin/api"]}"#);
    jobs.write(
        "web.json",
        r#"{"command": ["/bin/web"], "resources": {"memroy": "1M"}}"#,
    );
    jobs.write("worker.json", r#"{"command": ["/bin/worker"]}"#);
    jobs.write("worker.json.d/env.json", r#"{"env": {"QUEUE": "jobs"}}"#);

    let scan = load_jobs_dir_with(jobs.path(), &host());
    assert!(scan.dir_error.is_none());
    let names: Vec<&str> = scan.jobs.keys().map(String::as_str).collect();
    assert_eq!(names, vec!["api", "web", "worker"]);
    assert_eq!(
        scan.jobs["api"].as_ref().unwrap().spec.command,
        vec!["/bin/api"]
    );
    let worker = scan.jobs["worker"].as_ref().unwrap();
    assert_eq!(worker.spec.env["QUEUE"], "jobs");
    let error = scan.jobs["web"].as_ref().unwrap_err();
    assert_eq!(error.file(), jobs.path().join("web.json"));
    assert_eq!(error.field(), Some("resources.memroy"));
}

#[test]
fn jobs_dir_ignores_temporary_files() {
    let jobs = JobsDir::new();
    jobs.write("web.json", r#"{"command": ["/x"]}"#);
    for name in [
        ".web.json",
        "web.json~",
        "web.json.swp",
        "web.json.tmp",
        "web.json.dpkg-new",
        "notes.txt",
    ] {
        jobs.write(name, "{ half written");
    }
    fs::create_dir_all(jobs.path().join("dir.json")).unwrap();
    fs::create_dir_all(jobs.path().join("orphan.json.d")).unwrap();
    let scan = load_jobs_dir_with(jobs.path(), &host());
    let names: Vec<&str> = scan.jobs.keys().map(String::as_str).collect();
    assert_eq!(names, vec!["web"]);
}

#[test]
fn jobs_dir_invalid_name_keyed_by_stem() {
    let jobs = JobsDir::new();
    jobs.write("Web.json", r#"{"command": ["/x"]}"#);
    jobs.write("web.json", r#"{"command": ["/x"]}"#);
    let scan = load_jobs_dir_with(jobs.path(), &host());
    assert!(scan.jobs["web"].is_ok());
    let error = scan.jobs["Web"].as_ref().unwrap_err();
    assert!(matches!(error, ConfigError::InvalidName { .. }), "{error}");
}

#[test]
fn jobs_dir_rejects_reserved_name() {
    let jobs = JobsDir::new();
    jobs.write("all.json", r#"{"command": ["/x"]}"#);
    jobs.write("web.json", r#"{"command": ["/x"]}"#);
    let scan = load_jobs_dir_with(jobs.path(), &host());
    assert!(scan.jobs["web"].is_ok());
    let error = scan.jobs["all"].as_ref().unwrap_err();
    assert!(matches!(error, ConfigError::ReservedName { .. }), "{error}");
    assert_eq!(error.file(), jobs.path().join("all.json"));
    let text = error.to_string();
    assert!(text.contains("job name \"all\" is reserved"), "{text}");
    assert!(text.contains("rename the file"), "{text}");
}

#[test]
fn jobs_dir_symlink_gives_second_name() {
    let jobs = JobsDir::new();
    let target = jobs.write("web.json", r#"{"command": ["/x"]}"#);
    std::os::unix::fs::symlink(&target, jobs.path().join("www.json")).unwrap();
    let scan = load_jobs_dir_with(jobs.path(), &host());
    assert_eq!(scan.jobs["web"].as_ref().unwrap().name, "web");
    assert_eq!(scan.jobs["www"].as_ref().unwrap().name, "www");
}

#[test]
fn jobs_dir_dangling_symlink_is_an_error() {
    let jobs = JobsDir::new();
    std::os::unix::fs::symlink(jobs.path().join("gone"), jobs.path().join("web.json")).unwrap();
    let scan = load_jobs_dir_with(jobs.path(), &host());
    let error = scan.jobs["web"].as_ref().unwrap_err();
    assert!(matches!(error, ConfigError::Io { .. }), "{error}");
}

#[test]
fn jobs_dir_lossy_names_collide() {
    let jobs = JobsDir::new();
    for raw in [&b"\xff.json"[..], &b"\xfe.json"[..]] {
        let name = std::ffi::OsStr::from_bytes(raw);
        fs::write(jobs.path().join(name), "{}").unwrap();
    }
    let scan = load_jobs_dir_with(jobs.path(), &host());
    assert_eq!(scan.jobs.len(), 1);
    let error = scan.jobs["\u{FFFD}"].as_ref().unwrap_err();
    assert!(
        matches!(error, ConfigError::DuplicateName { .. }),
        "{error}"
    );
    assert!(error.to_string().contains("is also given by"), "{error}");
}

#[test]
fn jobs_dir_missing_reports_dir_error() {
    let jobs = JobsDir::new();
    let missing = jobs.path().join("nope");
    let scan = load_jobs_dir_with(&missing, &host());
    assert!(scan.jobs.is_empty());
    let error = scan.dir_error.expect("a missing directory is an error");
    assert_eq!(error.file(), missing);
    assert!(
        error.to_string().contains("failed to list jobs directory"),
        "{error}"
    );
}

#[test]
fn jobs_dir_unreadable_dropin_dir_fails_that_job() {
    let jobs = JobsDir::new();
    jobs.write("web.json", r#"{"command": ["/x"]}"#);
    jobs.write("api.json", r#"{"command": ["/x"]}"#);
    // A regular file where the drop-in directory belongs cannot be listed.
    jobs.write("web.json.d", "not a directory");
    let scan = load_jobs_dir_with(jobs.path(), &host());
    assert!(scan.jobs["api"].is_ok());
    let error = scan.jobs["web"].as_ref().unwrap_err();
    assert!(
        error
            .to_string()
            .contains("failed to list drop-in directory"),
        "{error}"
    );
}

/// Creates a FIFO at `path`.
fn mkfifo(path: &Path) {
    let c_path = std::ffi::CString::new(path.as_os_str().as_bytes()).unwrap();
    // SAFETY: `c_path` is a NUL-terminated string that outlives the call.
    let result = unsafe { libc::mkfifo(c_path.as_ptr(), 0o600) };
    assert_eq!(result, 0, "mkfifo {}", path.display());
}

#[test]
fn jobs_dir_special_and_huge_files_are_invalid() {
    let jobs = JobsDir::new();
    jobs.write("good.json", r#"{"command": ["/x"]}"#);
    mkfifo(&jobs.path().join("fifo.json"));
    std::os::unix::fs::symlink("/dev/zero", jobs.path().join("zero.json")).unwrap();
    let huge = jobs.path().join("huge.json");
    fs::File::create(&huge)
        .unwrap()
        .set_len(corral_config::MAX_JOB_FILE_SIZE + 1)
        .unwrap();
    jobs.write("dropin.json", r#"{"command": ["/x"]}"#);
    fs::create_dir(jobs.path().join("dropin.json.d")).unwrap();
    mkfifo(&jobs.path().join("dropin.json.d/10-fifo.json"));

    // A FIFO blocks an open without O_NONBLOCK until a writer comes, so
    // the load runs on its own thread and a hang fails the test.
    let (sender, receiver) = std::sync::mpsc::channel();
    let dir = jobs.path().to_path_buf();
    std::thread::spawn(move || sender.send(load_jobs_dir_with(&dir, &host())));
    let scan = receiver
        .recv_timeout(std::time::Duration::from_secs(10))
        .expect("loading the jobs directory blocked");

    assert!(scan.dir_error.is_none());
    assert!(scan.jobs["good"].is_ok());
    for (name, file, expected) in [
        ("fifo", "fifo.json", "not a regular file (FIFO)"),
        ("zero", "zero.json", "not a regular file (character device)"),
        (
            "huge",
            "huge.json",
            "the file is 1048577 bytes, larger than the maximum of 1048576 bytes",
        ),
        (
            "dropin",
            "dropin.json.d/10-fifo.json",
            "not a regular file (FIFO)",
        ),
    ] {
        let error = scan.jobs[name].as_ref().unwrap_err();
        assert_eq!(error.file(), jobs.path().join(file), "{error}");
        assert!(error.to_string().contains(expected), "{error}");
    }
}

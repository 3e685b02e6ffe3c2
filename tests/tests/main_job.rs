//! The main job end to end: the example job files under supervisord, the
//! metrics agent, and a real Prometheus scraping it.

use std::fs;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::time::Duration;

use corral_tests::daemon::{free_port, Agent, Supervisor};
use corral_tests::prometheus::Prometheus;
use corral_tests::{host, require_root, wait_until, workspace_root};

/// The host port that examples/jobs.d/web.json publishes.
const WEB_PORT: u16 = 18080;

/// Copies examples/jobs.d into the supervisor's jobs directory, with
/// `web_port` in place of the web job's published host port.
fn copy_examples(supervisor: &Supervisor, web_port: u16) -> Vec<String> {
    let examples = workspace_root().join("examples/jobs.d");
    let mut names = Vec::new();
    for entry in fs::read_dir(&examples).expect("examples/jobs.d exists") {
        let path = entry.expect("directory entry").path();
        if path.extension().is_some_and(|e| e == "json") {
            let name = path.file_stem().unwrap().to_string_lossy().into_owned();
            let text = fs::read_to_string(&path).expect("read example");
            // Another program may listen on the example's published port.
            let text = text.replace(
                &format!("\"host\": \"127.0.0.1:{WEB_PORT}\""),
                &format!("\"host\": \"127.0.0.1:{web_port}\""),
            );
            fs::write(supervisor.jobs_dir.join(path.file_name().unwrap()), text)
                .expect("copy example");
            names.push(name);
        }
    }
    names.sort();
    names
}

/// Sends `GET path` to 127.0.0.1:port and returns the whole response.
fn http_get(port: u16, path: &str) -> std::io::Result<String> {
    let mut stream = TcpStream::connect(("127.0.0.1", port))?;
    stream.set_read_timeout(Some(Duration::from_secs(2)))?;
    write!(stream, "GET {path} HTTP/1.0\r\nHost: web\r\n\r\n")?;
    let mut response = Vec::new();
    stream.read_to_end(&mut response)?;
    Ok(String::from_utf8_lossy(&response).into_owned())
}

#[test]
fn examples_run_and_prometheus_scrapes() {
    if !require_root("examples_run_and_prometheus_scrapes") {
        return;
    }
    let mut supervisor = Supervisor::new("examples");
    let web_port = free_port();
    let names = copy_examples(&supervisor, web_port);
    assert_eq!(names, vec!["cpu-burner", "memory-hog", "web"]);
    let web_spec = fs::read_to_string(supervisor.jobs_dir.join("web.json")).expect("read web.json");
    assert!(
        web_spec.contains(&format!("127.0.0.1:{web_port}")),
        "web.json publishes 127.0.0.1:{WEB_PORT}: {web_spec}"
    );
    // A broken file beside the examples must not stop them.
    supervisor.add_job(
        "broken",
        "{\n  \"command\": [\"/bin/true\"],\n  \"resources\": {\"memory\": \"12X\"}\n}\n",
    );
    // The examples may do no block I/O at all, because their files can be
    // in the page cache or on a RAM disk (as in the test VM). On cgroup v2,
    // io.stat then lists no device and the agent exports no container_fs_*
    // series. This job writes and reads with O_DIRECT below target/, on the
    // disk that contains the build.
    let target = workspace_root().join("target");
    fs::create_dir_all(&target).expect("create target/");
    let io_dir = tempfile::Builder::new()
        .prefix("corral-main-job-io-")
        .tempdir_in(&target)
        .expect("create I/O directory below target/");
    supervisor.add_job(
        "disk-io",
        &serde_json::json!({
            "image": "host",
            "command": ["/bin/sh", "-c", "while :; do dd if=/dev/zero of=/data/blocks bs=64k count=16 oflag=direct 2>/dev/null; dd if=/data/blocks of=/dev/null bs=64k iflag=direct 2>/dev/null; sleep 1; done"],
            "network": "none",
            "init": true,
            "resources": {"memory": "32M"},
            "mounts": [{"type": "bind", "source": io_dir.path(), "target": "/data"}],
            "stop": {"timeout": "2s"},
        })
        .to_string(),
    );
    supervisor.start();

    supervisor.wait_for_status("web", "RUNNING", Duration::from_secs(20));
    supervisor.wait_for_status("cpu-burner", "RUNNING", Duration::from_secs(20));
    supervisor.wait_for_status("disk-io", "RUNNING", Duration::from_secs(20));
    let hog = supervisor.wait_for_status("memory-hog", "OOM killed", Duration::from_secs(30));
    assert!(hog.contains("137"), "the OOM kill shows exit 137: {hog}");

    let broken = supervisor.status_line("broken");
    assert!(broken.contains("INVALID"), "{broken}");
    assert!(
        broken.contains("broken.json:3:"),
        "file and line of the bad value: {broken}"
    );
    assert!(
        broken.contains("resources.memory"),
        "field path of the bad value: {broken}"
    );

    let status = supervisor.ctl(&["status"]);
    assert_eq!(
        status.status.code(),
        Some(3),
        "not every job is RUNNING, so status exits 3"
    );

    // The web server listens on the job's own loopback and is reached from
    // the host through the published port.
    let web_pid: String = String::from_utf8_lossy(&supervisor.ctl(&["pid", "web"]).stdout)
        .trim()
        .to_string();
    assert!(
        web_pid.parse::<i32>().is_ok(),
        "supervisorctl pid web printed {web_pid:?}"
    );
    let mut response = String::new();
    let mut last_error = String::new();
    // python3 takes seconds to start listening in the emulated test VM.
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while std::time::Instant::now() < deadline {
        match http_get(web_port, "/") {
            Ok(text) if text.starts_with("HTTP/1.0 200") || text.starts_with("HTTP/1.1 200") => {
                response = text;
                break;
            }
            Ok(text) => last_error = text.lines().next().unwrap_or_default().to_string(),
            Err(error) => last_error = error.to_string(),
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(
        !response.is_empty(),
        "the web job did not answer on 127.0.0.1:{web_port} within 60 s; status: {}last request: {last_error}\nweb's stderr:\n{}",
        supervisor.status_line("web"),
        supervisor.job_log("web", "stderr")
    );
    assert!(
        response.contains("Directory listing for /"),
        "the response is http.server's listing of /usr/share/doc: {response:.300}"
    );

    let agent = Agent::start(&supervisor.run_dir, Some(&supervisor.socket()));
    // The disk-io job's first reads may come after the first scrape.
    let mut metrics = String::new();
    wait_until(Duration::from_secs(20), || {
        metrics = agent.get("/metrics").expect("agent serves /metrics");
        metrics.contains("# TYPE container_fs_reads_bytes_total ")
    });
    for family in [
        "container_cpu_usage_seconds_total",
        "container_memory_usage_bytes",
        "container_memory_working_set_bytes",
        "container_spec_memory_limit_bytes",
        "container_fs_reads_bytes_total",
        "container_fs_writes_bytes_total",
        "container_processes",
    ] {
        assert!(
            metrics
                .lines()
                .any(|l| l.starts_with(&format!("# TYPE {family} "))),
            "{family} missing from /metrics"
        );
    }
    assert!(
        metrics.contains("container_spec_memory_limit_bytes{id="),
        "{metrics}"
    );

    if let Some(prometheus) =
        Prometheus::start("examples_run_and_prometheus_scrapes", &agent.address)
    {
        let mut value = 0.0;
        let found = wait_until(Duration::from_secs(30), || {
            let result = prometheus.query(r#"container_memory_usage_bytes{name="web"}"#);
            value = result
                .first()
                .and_then(|series| series["value"][1].as_str())
                .and_then(|v| v.parse::<f64>().ok())
                .unwrap_or(0.0);
            value > 0.0
        });
        assert!(
            found,
            "Prometheus never returned container_memory_usage_bytes{{name=\"web\"}} > 0"
        );
    } else {
        panic!("Prometheus is required for this test: install Debian's prometheus package");
    }

    drop(agent);
    let exit = supervisor.stop().expect("supervisord was running");
    assert!(
        exit.success(),
        "supervisord exited with {exit:?}\n{}",
        supervisor.daemon_log()
    );
    assert!(
        host::overlay_mounts_below(supervisor.scratch.path()).is_empty(),
        "overlay mounts left: {:?}",
        host::overlay_mounts_below(supervisor.scratch.path())
    );
    assert!(
        host::cgroups_named(&supervisor.cgroup_parent).is_empty(),
        "cgroups left: {:?}",
        host::cgroups_named(&supervisor.cgroup_parent)
    );
    let containers = supervisor.containers_dir();
    let left: Vec<_> = fs::read_dir(&containers)
        .map(|entries| entries.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    assert!(left.is_empty(), "container state left: {left:?}");
    let processes = host::processes_with(&supervisor.scratch.path().display().to_string());
    assert!(processes.is_empty(), "processes left: {processes:?}");
    assert!(
        !Path::new(&format!("/proc/{web_pid}")).exists(),
        "the web job's process survived"
    );
}

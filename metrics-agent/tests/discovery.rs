//! The container index: inotify updates without a scrape, and the rescan that
//! catches a run directory created after the agent started.

mod common;

use std::fs;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::state;
use corral_metrics_agent::{Agent, Settings};
use corral_runtime::state::{CgroupPaths, ContainerState, Status};

fn container(id: &str, status: Status) -> ContainerState {
    let cgroup = CgroupPaths::V2 {
        path: format!("/sys/fs/cgroup/corral/{id}").into(),
    };
    state(id, Some(id), cgroup, status, Some(1))
}

/// Writes a state file the way the runtime does, through a rename.
fn save(run_dir: &Path, state: &ContainerState) {
    let root = run_dir.join("containers");
    fs::create_dir_all(root.join(&state.id)).unwrap();
    state.save(&root).unwrap();
}

/// Polls `condition` without triggering a rescan until it is true or 5 s pass.
async fn eventually(what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while !condition() {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn ids(agent: &Agent) -> Vec<String> {
    agent.discovery().container_ids()
}

fn exported_names(agent: &Agent) -> Vec<String> {
    agent
        .discovery()
        .targets()
        .into_iter()
        .map(|target| target.name)
        .collect()
}

#[tokio::test]
async fn inotify_follows_state_files() {
    let run = tempfile::tempdir().unwrap();
    fs::create_dir_all(run.path().join("containers")).unwrap();
    let agent = Agent::new(Settings::new(run.path())).unwrap();
    agent.watch().unwrap();
    assert!(ids(&agent).is_empty());

    save(run.path(), &container("web", Status::Running));
    eventually("web is indexed", || ids(&agent) == ["web"]).await;
    assert_eq!(exported_names(&agent), ["web"]);

    save(run.path(), &container("web", Status::Stopped));
    eventually("web is no longer exported", || {
        exported_names(&agent).is_empty()
    })
    .await;
    assert_eq!(ids(&agent), ["web"]);

    fs::remove_dir_all(run.path().join("containers/web")).unwrap();
    eventually("web is dropped", || ids(&agent).is_empty()).await;
}

#[tokio::test]
async fn inotify_sees_in_place_write() {
    let run = tempfile::tempdir().unwrap();
    save(run.path(), &container("web", Status::Created));
    let agent = Agent::new(Settings::new(run.path())).unwrap();
    agent.watch().unwrap();
    assert_eq!(ids(&agent), ["web"]);

    // A writer that truncates and rewrites the file instead of renaming.
    let path = run.path().join("containers/web/state.json");
    let mut running = container("web", Status::Running);
    running.image = "alpine".to_string();
    fs::write(&path, serde_json::to_vec(&running).unwrap()).unwrap();
    eventually("the new image is indexed", || {
        agent
            .discovery()
            .targets()
            .iter()
            .any(|target| target.image == "alpine")
    })
    .await;
}

#[tokio::test]
async fn inotify_follows_containers_dir_created_later() {
    let run = tempfile::tempdir().unwrap();
    let agent = Agent::new(Settings::new(run.path())).unwrap();
    agent.watch().unwrap();

    save(run.path(), &container("api", Status::Running));
    eventually("api is indexed", || ids(&agent) == ["api"]).await;

    save(run.path(), &container("web", Status::Running));
    eventually("web is indexed", || ids(&agent) == ["api", "web"]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scrape_finds_run_dir_created_later() {
    let parent = tempfile::tempdir().unwrap();
    let run_dir = parent.path().join("run");
    let agent = Arc::new(Agent::new(Settings::new(&run_dir)).unwrap());
    agent.watch().unwrap();

    // Nothing existed to watch, so only the scrape's rescan can find this.
    save(&run_dir, &container("web", Status::Running));
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(ids(&agent).is_empty(), "no watch could see the new run dir");
    agent.scrape().await.unwrap();
    assert_eq!(ids(&agent), ["web"]);

    // The rescan also installed the watches.
    save(&run_dir, &container("api", Status::Running));
    eventually("api is indexed without a scrape", || {
        ids(&agent) == ["api", "web"]
    })
    .await;
}

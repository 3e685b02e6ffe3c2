//! `rootfs::mount_overlay` with more lower layers than one page of mount
//! options can name by absolute path.
//!
//! The mount happens in a thread that first moves into a mount namespace of
//! its own, so nothing reaches the host's mount table and the namespace,
//! with the overlay in it, goes away when the thread ends. Needs root.

use std::fs;
use std::path::{Path, PathBuf};

use corral_runtime::rootfs::mount_overlay;
use nix::mount::{mount, umount2, MntFlags, MsFlags};
use nix::sched::{unshare, CloneFlags};

const LAYERS: usize = 150;

#[test]
fn mount_overlay_stacks_many_long_layers() {
    if !nix::unistd::geteuid().is_root() {
        eprintln!("SKIP mount_overlay_stacks_many_long_layers: needs root to mount overlayfs");
        return;
    }
    let scratch = tempfile::tempdir().unwrap();
    // Long directory names, as a store's `layers/sha256/HEX/rootfs` paths are.
    let mut lower_dirs = Vec::new();
    for index in 0..LAYERS {
        let dir = scratch
            .path()
            .join("layers/sha256")
            .join(format!("{index:064}"))
            .join("rootfs");
        fs::create_dir_all(&dir).unwrap();
        fs::write(dir.join(format!("layer-{index}")), "").unwrap();
        fs::write(dir.join("top"), format!("{index}\n")).unwrap();
        lower_dirs.push(dir);
    }
    // Top layer first, as the annotation lists them.
    lower_dirs.reverse();
    let joined = lower_dirs
        .iter()
        .map(|d| d.display().to_string())
        .collect::<Vec<_>>()
        .join(":");
    assert!(
        joined.len() > 4096,
        "the test needs lower dirs longer than a page, got {} bytes",
        joined.len()
    );
    let container = scratch.path().join("containers/test");
    let (upper, work, merged) = (
        container.join("upper"),
        container.join("work"),
        container.join("merged"),
    );
    for dir in [&upper, &work, &merged] {
        fs::create_dir_all(dir).unwrap();
    }

    let seen = std::thread::spawn(move || -> Result<Vec<String>, String> {
        unshare(CloneFlags::CLONE_NEWNS).map_err(|e| format!("unshare: {e}"))?;
        mount(
            None::<&str>,
            "/",
            None::<&str>,
            MsFlags::MS_REC | MsFlags::MS_PRIVATE,
            None::<&str>,
        )
        .map_err(|e| format!("make / private: {e}"))?;
        let cwd_before = std::env::current_dir().map_err(|e| format!("getcwd: {e}"))?;
        mount_overlay(&joined, &upper, &work, &merged).map_err(|e| format!("{e:#?}"))?;
        let cwd_after = std::env::current_dir().map_err(|e| format!("getcwd: {e}"))?;
        let mut result = inspect(&merged, &container);
        result.push((cwd_before == cwd_after).to_string());
        umount2(&merged, MntFlags::MNT_DETACH).map_err(|e| format!("unmount: {e}"))?;
        Ok(result)
    })
    .join()
    .expect("mount thread panicked")
    .expect("mount the overlay");

    assert_eq!(
        seen[0],
        format!("{}\n", LAYERS - 1),
        "top layer does not win"
    );
    assert_eq!(seen[1], LAYERS.to_string(), "not every layer is visible");
    assert_eq!(seen[2], "false", "the link directory was left behind");
    assert_eq!(seen[3], "true", "the working directory was not restored");
}

/// Returns the top file's contents, the number of layer files and whether
/// the temporary link directory still exists.
fn inspect(merged: &Path, container: &Path) -> Vec<String> {
    let top = fs::read_to_string(merged.join("top")).unwrap_or_default();
    let layer_files = fs::read_dir(merged)
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .filter(|e| e.file_name().to_string_lossy().starts_with("layer-"))
                .count()
        })
        .unwrap_or(0);
    let links: PathBuf = container.join("lower-links");
    vec![top, layer_files.to_string(), links.exists().to_string()]
}

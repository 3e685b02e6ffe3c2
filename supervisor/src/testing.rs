//! Helpers shared by the unit tests.

use std::path::{Path, PathBuf};

/// A tmpfs mounted on a directory that it creates, unmounted on drop, also
/// when the test panics.
pub struct Tmpfs {
    pub path: PathBuf,
}

impl Tmpfs {
    /// Creates `path` and mounts a tmpfs of `size` bytes there, in the
    /// notation of tmpfs(5) such as `8k`. Returns None, after a SKIP line
    /// naming `test`, when the process is not root.
    pub fn mount(test: &str, path: &Path, size: &str) -> Option<Tmpfs> {
        use nix::mount::MsFlags;

        if !nix::unistd::geteuid().is_root() {
            eprintln!("SKIP {test}: needs root to mount a tmpfs");
            return None;
        }
        std::fs::create_dir(path).unwrap();
        let options = format!("size={size},mode=0700");
        nix::mount::mount(
            Some("tmpfs"),
            path,
            Some("tmpfs"),
            MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
            Some(options.as_str()),
        )
        .unwrap_or_else(|error| panic!("failed to mount a tmpfs on {}: {error}", path.display()));
        Some(Tmpfs {
            path: path.to_path_buf(),
        })
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        // A detached mount goes away once the last file open there closes.
        if let Err(error) = nix::mount::umount2(&self.path, nix::mount::MntFlags::MNT_DETACH) {
            eprintln!(
                "cleanup: failed to unmount {}: {error}",
                self.path.display()
            );
        }
    }
}

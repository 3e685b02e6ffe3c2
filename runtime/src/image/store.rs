//! The image store: content-addressed unpacked layers and one record per
//! image name.
//!
//! ```text
//! STORE/
//!   lock                 flock(2) target: imports hold it shared, gc exclusive
//!   images/NAME.json     one ImageRecord per name ('/' in a name is written %2F)
//!   layers/ALG/HEX/      one layer per diff ID (digest of the uncompressed tar)
//!     rootfs/            the layer's files: an overlayfs lower directory
//!     layer.json         LayerRecord
//!   tmp/                 staging directories of imports in progress
//! ```
//!
//! Layers and image records appear by rename(2), so a reader sees each one
//! whole or not at all, and an image record is written only after all of
//! its layers are in place. An interrupted import leaves at most complete
//! layers (reused by the next import, or removed by gc) and a staging
//! directory under `tmp/` (removed by gc).

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::os::unix::fs::{DirBuilderExt, FileTypeExt, MetadataExt};
use std::path::{Component, Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use nix::fcntl::{Flock, FlockArg};
use serde::{Deserialize, Serialize};

use super::digest::{Digest, DigestError};
use super::unpack::OVERLAY_OPAQUE_XATTR;

/// Default store directory; supervisord uses `DATA_DIR/images`.
pub const DEFAULT_STORE: &str = "/var/lib/corral/images";

/// Maximum number of lower layers overlayfs stacks (`OVL_MAX_STACK` in
/// Linux's fs/overlayfs, 500 since Linux 4.x).
pub const MAX_LAYERS: usize = 500;

/// Maximum length of an image name, as for Docker references.
const MAX_NAME_LEN: usize = 255;

/// An error reading or changing the image store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("image {name:?} not found in the image store {store}: import it with `corral image --store {store} import --name {name} SOURCE`")]
    ImageNotFound { name: String, store: PathBuf },
    #[error("invalid image name {name:?}: {reason}")]
    InvalidName { name: String, reason: &'static str },
    #[error("invalid image store path {path}: it must not contain ':' or ',', which separate overlayfs lower directories and options")]
    InvalidStorePath { path: PathBuf },
    #[error("layer {digest} of image {image:?} is missing from the image store {store}: import the image again")]
    LayerMissing {
        image: String,
        digest: Digest,
        store: PathBuf,
    },
    #[error("failed to {operation} {path}")]
    Io {
        operation: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("failed to lock the image store at {path}")]
    Lock {
        path: PathBuf,
        #[source]
        source: nix::Error,
    },
    #[error("invalid record {path}")]
    Record {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    #[error("invalid layer directory name {path}")]
    LayerName {
        path: PathBuf,
        #[source]
        source: DigestError,
    },
    #[error("failed to read container state {path}, so gc cannot tell which layers the container uses: delete the container or repair the file")]
    ContainerState {
        path: PathBuf,
        #[source]
        source: crate::state::StateError,
    },
}

pub(crate) fn io_error<'a>(
    operation: &'static str,
    path: &'a Path,
) -> impl FnOnce(io::Error) -> StoreError + 'a {
    move |source| StoreError::Io {
        operation,
        path: path.to_path_buf(),
        source,
    }
}

/// Process defaults of an image, from the `config` object of the OCI image
/// configuration. A container's own settings take precedence.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageConfig {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub entrypoint: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub cmd: Vec<String>,
    /// `KEY=VALUE` entries, in image order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub env: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub working_dir: Option<String>,
    /// `USER`, `UID`, `USER:GROUP` or `UID:GID`, resolved in the image's
    /// /etc/passwd and /etc/group.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
}

impl ImageConfig {
    /// Returns the default process: the entrypoint followed by cmd.
    pub fn command(&self) -> Vec<String> {
        self.entrypoint.iter().chain(&self.cmd).cloned().collect()
    }

    /// Returns the image's environment with `overrides` applied: an
    /// override replaces the image's entry of the same name in place, and
    /// the other overrides follow in key order.
    pub fn merged_env(&self, overrides: &BTreeMap<String, String>) -> Vec<String> {
        let mut env = Vec::with_capacity(self.env.len() + overrides.len());
        for entry in &self.env {
            let key = entry.split_once('=').map_or(entry.as_str(), |(key, _)| key);
            match overrides.get(key) {
                Some(value) => env.push(format!("{key}={value}")),
                None => env.push(entry.clone()),
            }
        }
        for (key, value) in overrides {
            let in_image = self
                .env
                .iter()
                .any(|entry| entry.split_once('=').map_or(entry.as_str(), |(k, _)| k) == key);
            if !in_image {
                env.push(format!("{key}={value}"));
            }
        }
        env
    }
}

/// Origin of an imported image.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageSource {
    /// `rootfs-dir`, `rootfs-tar`, `oci-layout`, `oci-archive` or `docker-archive`.
    pub format: String,
    pub path: PathBuf,
}

/// One image of the store, `images/NAME.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageRecord {
    pub name: String,
    /// Digest of the image configuration, the image ID that podman and
    /// Docker show. For a rootfs source it is the digest of a minimal OCI
    /// configuration that lists the one layer.
    pub id: Digest,
    /// Diff IDs of the layers, bottom layer first.
    pub layers: Vec<Digest>,
    /// Bytes of file contents in all layers.
    pub size: u64,
    /// `OS/ARCHITECTURE[/VARIANT]` from the image configuration.
    pub platform: String,
    pub config: ImageConfig,
    pub source: ImageSource,
    /// Seconds since the Unix epoch.
    pub imported_at: u64,
}

/// `layers/ALG/HEX/layer.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LayerRecord {
    pub diff_id: Digest,
    /// Bytes of file contents.
    pub size: u64,
    /// Tar entries, whiteouts included.
    pub entries: u64,
    /// Seconds since the Unix epoch.
    pub unpacked_at: u64,
}

/// A held lock on the store, released on drop.
pub struct StoreLock {
    _lock: Flock<File>,
}

/// A staging directory under `tmp/`, removed on drop.
pub struct Staging {
    dir: tempfile::TempDir,
}

impl Staging {
    pub fn path(&self) -> &Path {
        self.dir.path()
    }
}

/// An image store rooted at one directory.
#[derive(Debug, Clone)]
pub struct Store {
    root: PathBuf,
}

impl Store {
    /// Refers to the store at `root`; nothing is read or created yet.
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Store { root: root.into() }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    fn images_dir(&self) -> PathBuf {
        self.root.join("images")
    }

    fn layers_dir(&self) -> PathBuf {
        self.root.join("layers")
    }

    pub(crate) fn tmp_dir(&self) -> PathBuf {
        self.root.join("tmp")
    }

    /// Creates the store's directories (mode 0700) if they are missing.
    pub fn init(&self) -> Result<(), StoreError> {
        let text = self.root.to_string_lossy();
        if text.contains(':') || text.contains(',') {
            return Err(StoreError::InvalidStorePath {
                path: self.root.clone(),
            });
        }
        for dir in [
            self.root.clone(),
            self.images_dir(),
            self.layers_dir(),
            self.tmp_dir(),
        ] {
            fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(&dir)
                .map_err(io_error("create store directory", &dir))?;
        }
        Ok(())
    }

    fn lock(&self, mode: FlockArg) -> Result<StoreLock, StoreError> {
        self.init()?;
        let path = self.root.join("lock");
        let file = fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(io_error("open the lock file", &path))?;
        let lock = Flock::lock(file, mode).map_err(|(_, source)| StoreError::Lock {
            path: path.clone(),
            source,
        })?;
        Ok(StoreLock { _lock: lock })
    }

    /// Locks the store against gc; any number of imports share this lock.
    pub fn lock_shared(&self) -> Result<StoreLock, StoreError> {
        self.lock(FlockArg::LockShared)
    }

    /// Locks the store for gc: waits until no import runs.
    pub fn lock_exclusive(&self) -> Result<StoreLock, StoreError> {
        self.lock(FlockArg::LockExclusive)
    }

    fn record_path(&self, name: &str) -> PathBuf {
        self.images_dir()
            .join(format!("{}.json", name.replace('/', "%2F")))
    }

    /// Reads the record of image `name`.
    pub fn image(&self, name: &str) -> Result<ImageRecord, StoreError> {
        validate_name(name)?;
        let path = self.record_path(name);
        match fs::read(&path) {
            Ok(body) => {
                serde_json::from_slice(&body).map_err(|source| StoreError::Record { path, source })
            }
            Err(error) if error.kind() == io::ErrorKind::NotFound => {
                Err(StoreError::ImageNotFound {
                    name: name.to_string(),
                    store: self.root.clone(),
                })
            }
            Err(error) => Err(io_error("read image record", &path)(error)),
        }
    }

    /// Reads every image record, sorted by name.
    pub fn images(&self) -> Result<Vec<ImageRecord>, StoreError> {
        let dir = self.images_dir();
        let entries = match fs::read_dir(&dir) {
            Ok(entries) => entries,
            Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(error) => return Err(io_error("list images in", &dir)(error)),
        };
        let mut records = Vec::new();
        for entry in entries {
            let path = entry.map_err(io_error("list images in", &dir))?.path();
            if path.extension().is_none_or(|ext| ext != "json") {
                continue;
            }
            let body = fs::read(&path).map_err(io_error("read image record", &path))?;
            let record: ImageRecord = serde_json::from_slice(&body)
                .map_err(|source| StoreError::Record { path, source })?;
            records.push(record);
        }
        records.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(records)
    }

    /// Removes the record of image `name`. Its layers stay until gc.
    pub fn remove_image(&self, name: &str) -> Result<ImageRecord, StoreError> {
        let record = self.image(name)?;
        let path = self.record_path(name);
        fs::remove_file(&path).map_err(io_error("remove image record", &path))?;
        Ok(record)
    }

    /// Writes `record` through a temporary file and a rename, replacing an
    /// image of the same name.
    pub(crate) fn save_image(&self, record: &ImageRecord) -> Result<(), StoreError> {
        validate_name(&record.name)?;
        let path = self.record_path(&record.name);
        let mut temporary = tempfile::NamedTempFile::new_in(self.tmp_dir())
            .map_err(io_error("create a temporary record in", &self.tmp_dir()))?;
        let body = serde_json::to_vec_pretty(record).expect("image record serializes to JSON");
        temporary
            .write_all(&body)
            .and_then(|()| temporary.as_file().sync_all())
            .map_err(io_error("write image record", temporary.path()))?;
        temporary
            .persist(&path)
            .map_err(|error| io_error("write image record", &path)(error.error))?;
        Ok(())
    }

    /// Directory of one layer: `layers/ALG/HEX`.
    pub fn layer_dir(&self, diff_id: &Digest) -> PathBuf {
        self.layers_dir()
            .join(diff_id.algorithm().name())
            .join(diff_id.hex())
    }

    /// Returns the directory of the layer's files, which overlayfs stacks.
    pub fn layer_rootfs(&self, diff_id: &Digest) -> PathBuf {
        self.layer_dir(diff_id).join("rootfs")
    }

    pub fn has_layer(&self, diff_id: &Digest) -> bool {
        self.layer_dir(diff_id).is_dir()
    }

    pub fn layer(&self, diff_id: &Digest) -> Result<LayerRecord, StoreError> {
        let path = self.layer_dir(diff_id).join("layer.json");
        let body = fs::read(&path).map_err(io_error("read layer record", &path))?;
        serde_json::from_slice(&body).map_err(|source| StoreError::Record { path, source })
    }

    /// Lists the diff IDs of every layer present, sorted.
    pub fn layers(&self) -> Result<Vec<Digest>, StoreError> {
        let mut layers = Vec::new();
        let base = self.layers_dir();
        let algorithms = match fs::read_dir(&base) {
            Ok(entries) => entries,
            Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(layers),
            Err(error) => return Err(io_error("list layers in", &base)(error)),
        };
        for algorithm in algorithms {
            let algorithm = algorithm.map_err(io_error("list layers in", &base))?;
            let algorithm_dir = algorithm.path();
            let entries =
                fs::read_dir(&algorithm_dir).map_err(io_error("list layers in", &algorithm_dir))?;
            for entry in entries {
                let path = entry
                    .map_err(io_error("list layers in", &algorithm_dir))?
                    .path();
                let text = format!(
                    "{}:{}",
                    algorithm.file_name().to_string_lossy(),
                    path.file_name().unwrap_or_default().to_string_lossy()
                );
                let digest = Digest::parse(&text)
                    .map_err(|source| StoreError::LayerName { path, source })?;
                layers.push(digest);
            }
        }
        layers.sort();
        Ok(layers)
    }

    /// Returns the overlayfs lower directories of `record`, top layer first,
    /// checking that every layer is present.
    pub fn lower_dirs(&self, record: &ImageRecord) -> Result<Vec<PathBuf>, StoreError> {
        let mut dirs = Vec::with_capacity(record.layers.len());
        for diff_id in record.layers.iter().rev() {
            let dir = self.layer_rootfs(diff_id);
            if !dir.is_dir() {
                return Err(StoreError::LayerMissing {
                    image: record.name.clone(),
                    digest: diff_id.clone(),
                    store: self.root.clone(),
                });
            }
            dirs.push(dir);
        }
        Ok(dirs)
    }

    /// Creates a staging directory under `tmp/`.
    pub(crate) fn staging(&self) -> Result<Staging, StoreError> {
        let tmp = self.tmp_dir();
        let dir = tempfile::Builder::new()
            .prefix("import-")
            .tempdir_in(&tmp)
            .map_err(io_error("create a staging directory in", &tmp))?;
        Ok(Staging { dir })
    }

    /// Moves an unpacked layer from `staged` (a directory holding `rootfs/`)
    /// into place and writes its record. Returns false when the layer was
    /// already present, in which case `staged` is left for its owner to
    /// remove.
    pub(crate) fn commit_layer(
        &self,
        staged: &Path,
        record: &LayerRecord,
    ) -> Result<bool, StoreError> {
        let record_path = staged.join("layer.json");
        let body = serde_json::to_vec_pretty(record).expect("layer record serializes to JSON");
        fs::write(&record_path, body).map_err(io_error("write layer record", &record_path))?;

        let target = self.layer_dir(&record.diff_id);
        if let Some(parent) = target.parent() {
            fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(parent)
                .map_err(io_error("create layer directory", parent))?;
        }
        match fs::rename(staged, &target) {
            Ok(()) => Ok(true),
            // Another import committed the same layer first.
            Err(error)
                if matches!(
                    error.raw_os_error(),
                    Some(libc::ENOTEMPTY) | Some(libc::EEXIST)
                ) =>
            {
                Ok(false)
            }
            Err(error) => Err(io_error("move the unpacked layer to", &target)(error)),
        }
    }

    /// Reads the regular file `path` (relative, without `..`) as a container
    /// of `record` would see it, following overlayfs rules for whiteouts and
    /// opaque directories. Returns None when it is absent, or is not a
    /// regular file in the top layer that has it (symlinks are not followed).
    pub fn read_image_file(
        &self,
        record: &ImageRecord,
        path: &Path,
    ) -> Result<Option<Vec<u8>>, StoreError> {
        let components: Vec<_> = path
            .components()
            .filter_map(|c| match c {
                Component::Normal(part) => Some(part),
                _ => None,
            })
            .collect();
        let Some((name, parents)) = components.split_last() else {
            return Ok(None);
        };
        for layer in self.lower_dirs(record)? {
            let mut dir = layer;
            let mut opaque = false;
            let mut parents_present = true;
            for parent in parents {
                dir.push(parent);
                match fs::symlink_metadata(&dir) {
                    Ok(metadata) if metadata.is_dir() => {
                        opaque |= xattr::get(&dir, OVERLAY_OPAQUE_XATTR)
                            .ok()
                            .flatten()
                            .is_some_and(|value| value == b"y");
                    }
                    // A whiteout, file or symlink hides everything below it.
                    Ok(_) => return Ok(None),
                    Err(_) => {
                        parents_present = false;
                        break;
                    }
                }
            }
            if parents_present {
                let file = dir.join(name);
                match fs::symlink_metadata(&file) {
                    Ok(metadata) if metadata.is_file() => {
                        let mut body = Vec::new();
                        File::open(&file)
                            .and_then(|mut f| f.read_to_end(&mut body))
                            .map_err(io_error("read", &file))?;
                        return Ok(Some(body));
                    }
                    Ok(metadata)
                        if metadata.file_type().is_char_device() && metadata.rdev() == 0 =>
                    {
                        return Ok(None)
                    }
                    Ok(_) => return Ok(None),
                    Err(_) => {}
                }
            }
            if opaque {
                return Ok(None);
            }
        }
        Ok(None)
    }
}

/// Checks an image name: letters, digits and `._-:/@+`, starting with a
/// letter or digit, at most 255 bytes, and not `host` (the job spec's name
/// for the host's root).
pub fn validate_name(name: &str) -> Result<(), StoreError> {
    let invalid = |reason| StoreError::InvalidName {
        name: name.to_string(),
        reason,
    };
    if name.is_empty() {
        return Err(invalid("must not be empty"));
    }
    if name.len() > MAX_NAME_LEN {
        return Err(invalid("longer than 255 bytes"));
    }
    if name == "host" {
        return Err(invalid("\"host\" names the host's root in job files"));
    }
    if !name.as_bytes()[0].is_ascii_alphanumeric() {
        return Err(invalid("must start with a letter or digit"));
    }
    let allowed = |b: u8| b.is_ascii_alphanumeric() || b"._-:/@+".contains(&b);
    if !name.bytes().all(allowed) {
        return Err(invalid(
            "may contain only letters, digits and the characters . _ - : / @ +",
        ));
    }
    Ok(())
}

pub(crate) fn now_seconds() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_reference_characters() {
        for name in [
            "busybox",
            "localhost/bb:latest",
            "a",
            "x@sha256:ab",
            "web_1.2",
        ] {
            assert!(validate_name(name).is_ok(), "{name} was rejected");
        }
        for name in ["", "host", "/abs", ".hidden", "a b", "a\nb", "ä"] {
            assert!(validate_name(name).is_err(), "{name:?} was accepted");
        }
    }

    #[test]
    fn init_rejects_option_separators() {
        for root in ["/srv/a:b", "/srv/a,b"] {
            assert!(matches!(
                Store::new(root).init(),
                Err(StoreError::InvalidStorePath { .. })
            ));
        }
    }

    #[test]
    fn record_path_encodes_slashes() {
        let store = Store::new("/store");
        assert_eq!(
            store.record_path("localhost/bb:latest"),
            PathBuf::from("/store/images/localhost%2Fbb:latest.json")
        );
    }

    #[test]
    fn command_is_entrypoint_then_cmd() {
        let config = ImageConfig {
            entrypoint: vec!["/bin/tini".into(), "--".into()],
            cmd: vec!["httpd".into()],
            ..ImageConfig::default()
        };
        assert_eq!(config.command(), ["/bin/tini", "--", "httpd"]);
    }

    #[test]
    fn merged_env_overrides_in_place() {
        let config = ImageConfig {
            env: vec!["PATH=/bin".into(), "LANG=C".into(), "EMPTY".into()],
            ..ImageConfig::default()
        };
        let overrides = BTreeMap::from([
            ("LANG".to_string(), "C.UTF-8".to_string()),
            ("APP".to_string(), "a=b".to_string()),
        ]);
        assert_eq!(
            config.merged_env(&overrides),
            ["PATH=/bin", "LANG=C.UTF-8", "EMPTY", "APP=a=b"]
        );
    }
}

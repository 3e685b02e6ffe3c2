//! Importing an image into the store from any supported source: a rootfs
//! directory, a rootfs tarball (plain, gzip or zstd), an OCI image layout
//! directory, an oci-archive or a `docker save` archive (either archive may
//! itself be compressed).
//!
//! The format is detected from the source itself. A directory with an
//! `oci-layout` file is an OCI layout. A tarball with `oci-layout` and
//! `index.json` is an oci-archive, which wins when Docker 25 and later
//! write both layouts into one `docker save` archive. A tarball with
//! `manifest.json` is a `docker save` archive. Anything else is a root
//! filesystem.

use std::fmt;
use std::fs::{self, File};
use std::io::{self, BufRead, BufReader, Read};
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};

use oci_spec::image::ImageConfiguration;
use serde::de::DeserializeOwned;

use super::archive::{Blobs, DirBlobs, TarBlobs};
use super::compression::{decompress, Compression};
use super::digest::{Algorithm, Digest, DigestError, DigestReader};
use super::progress::{LayerOutcome, Progress, ProgressReader};
use super::store::{
    now_seconds, validate_name, ImageConfig, ImageRecord, ImageSource, LayerRecord, Staging, Store,
    StoreError, MAX_LAYERS,
};
use super::unpack::{unpack_layer, UnpackError, UnpackStats};
use super::{dirtar, docker, oci};

/// Largest JSON document (index, manifest, configuration) read from a
/// source; real ones are a few kilobytes.
const MAX_JSON_BYTES: u64 = 4 * 1024 * 1024;

/// An error importing an image.
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    #[error("failed to open the import source {path}")]
    SourceMissing {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("failed to {operation} {path}")]
    Io {
        operation: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{name} is missing from {source_path}")]
    Missing { name: String, source_path: PathBuf },
    #[error("invalid JSON in {name} of {source_path}")]
    Json {
        name: String,
        source_path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    #[error("{name} in {source_path} is larger than {limit} bytes, which no image document needs")]
    TooLarge {
        name: String,
        source_path: PathBuf,
        limit: u64,
    },
    #[error("invalid digest in {context}")]
    Digest {
        context: String,
        #[source]
        source: DigestError,
    },
    #[error("digest mismatch for {name} in {source_path}: expected {expected}, found {actual}; the file is corrupt or was changed")]
    DigestMismatch {
        name: String,
        source_path: PathBuf,
        expected: Digest,
        actual: Digest,
    },
    #[error("size mismatch for {name} in {source_path}: expected {expected} bytes, found {actual}; the file is corrupt or was changed")]
    SizeMismatch {
        name: String,
        source_path: PathBuf,
        expected: u64,
        actual: u64,
    },
    #[error("layer {index} ({name}) unpacks to diff ID {actual}, but the image configuration lists {expected}; the layer is corrupt")]
    DiffIdMismatch {
        index: usize,
        name: String,
        expected: Digest,
        actual: Digest,
    },
    #[error(
        "the manifest lists {layers} layers but the image configuration lists {diff_ids} diff IDs"
    )]
    LayerCount { layers: usize, diff_ids: usize },
    #[error("the image has no layers")]
    NoLayers,
    #[error("the image has {count} layers, more than the {max} that overlayfs can stack", max = MAX_LAYERS)]
    TooManyLayers { count: usize },
    #[error("unsupported {what}")]
    Unsupported { what: String },
    #[error("no image for platform {wanted} (the source has {}); choose one with --platform", available.join(", "))]
    NoMatchingPlatform {
        wanted: String,
        available: Vec<String>,
    },
    #[error("{source_path} holds several images ({}); choose one with --name", names.join(", "))]
    Ambiguous {
        source_path: PathBuf,
        names: Vec<String>,
    },
    #[error("cannot derive an image name from {source_path}: pass --name")]
    NoName { source_path: PathBuf },
    #[error("invalid platform {text:?}: expected OS/ARCHITECTURE[/VARIANT], such as linux/amd64")]
    InvalidPlatform { text: String },
    #[error("the image store {store} is inside the source directory {source_path}: import a directory that does not contain the store")]
    StoreInsideSource {
        store: PathBuf,
        source_path: PathBuf,
    },
    #[error("failed to unpack layer {layer}")]
    Unpack {
        layer: String,
        #[source]
        source: UnpackError,
    },
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// An OS, architecture and optional variant, as image indexes state them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Platform {
    pub os: String,
    pub architecture: String,
    pub variant: Option<String>,
}

impl Platform {
    /// Returns the platform this process runs on, in OCI names (`linux/amd64` on x86_64).
    pub fn host() -> Self {
        let architecture = match std::env::consts::ARCH {
            "x86_64" => "amd64",
            "x86" => "386",
            "aarch64" => "arm64",
            "powerpc64" if cfg!(target_endian = "little") => "ppc64le",
            "loongarch64" => "loong64",
            other => other,
        };
        Platform {
            os: "linux".to_string(),
            architecture: architecture.to_string(),
            variant: None,
        }
    }

    /// Parses `OS/ARCHITECTURE[/VARIANT]`.
    pub fn parse(text: &str) -> Result<Self, ImportError> {
        let parts: Vec<&str> = text.split('/').collect();
        match parts.as_slice() {
            [os, architecture] if !os.is_empty() && !architecture.is_empty() => Ok(Platform {
                os: os.to_string(),
                architecture: architecture.to_string(),
                variant: None,
            }),
            [os, architecture, variant]
                if !os.is_empty() && !architecture.is_empty() && !variant.is_empty() =>
            {
                Ok(Platform {
                    os: os.to_string(),
                    architecture: architecture.to_string(),
                    variant: Some(variant.to_string()),
                })
            }
            _ => Err(ImportError::InvalidPlatform {
                text: text.to_string(),
            }),
        }
    }

    /// Returns whether an image for `os`/`architecture`/`variant` runs here.
    /// A variant is compared only when this platform names one.
    pub fn matches(&self, os: &str, architecture: &str, variant: Option<&str>) -> bool {
        os == self.os
            && architecture == self.architecture
            && self
                .variant
                .as_deref()
                .is_none_or(|wanted| variant == Some(wanted))
    }
}

impl fmt::Display for Platform {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.os, self.architecture)?;
        if let Some(variant) = &self.variant {
            write!(f, "/{variant}")?;
        }
        Ok(())
    }
}

/// The kinds of source `import` accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SourceFormat {
    RootfsDir,
    RootfsTar(Compression),
    OciLayout,
    OciArchive(Compression),
    DockerArchive(Compression),
}

impl SourceFormat {
    /// Returns the name stored in image records.
    pub fn name(self) -> &'static str {
        match self {
            SourceFormat::RootfsDir => "rootfs-dir",
            SourceFormat::RootfsTar(_) => "rootfs-tar",
            SourceFormat::OciLayout => "oci-layout",
            SourceFormat::OciArchive(_) => "oci-archive",
            SourceFormat::DockerArchive(_) => "docker-archive",
        }
    }
}

impl fmt::Display for SourceFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SourceFormat::RootfsTar(c)
            | SourceFormat::OciArchive(c)
            | SourceFormat::DockerArchive(c)
                if *c != Compression::None =>
            {
                write!(f, "{} ({c})", self.name())
            }
            _ => f.write_str(self.name()),
        }
    }
}

/// Settings of one import.
pub struct ImportOptions<'a> {
    /// Name of the image in the store; derived from the source when unset.
    pub name: Option<String>,
    /// Platform chosen from a multi-platform index.
    pub platform: Platform,
    pub progress: &'a dyn Progress,
}

/// Outcome of one import.
#[derive(Debug, Clone)]
pub struct ImportReport {
    pub record: ImageRecord,
    pub format: SourceFormat,
    pub layers_unpacked: usize,
    pub layers_reused: usize,
}

/// The image configuration fields corral uses.
#[derive(Debug, Clone)]
pub(crate) struct ParsedConfig {
    pub defaults: ImageConfig,
    pub diff_ids: Vec<Digest>,
    pub platform: String,
}

/// A layer blob to import.
#[derive(Debug, Clone)]
pub(crate) struct LayerSource {
    /// Path of the blob inside the source.
    pub blob: String,
    /// Digest of the blob as stored (compressed), when the format states it.
    pub digest: Option<Digest>,
    pub size: Option<u64>,
}

/// An image read from a source's manifests, before its layers are imported.
#[derive(Debug, Clone)]
pub(crate) struct ImagePlan {
    pub name_hint: Option<String>,
    pub config_digest: Digest,
    pub config: ParsedConfig,
    pub layers: Vec<LayerSource>,
}

/// Imports the image at `source` into `store` and returns what it did.
///
/// Every layer is verified against its digests before it becomes visible,
/// and the image record is written only after all its layers are in place.
pub fn import(
    store: &Store,
    source: &Path,
    options: &ImportOptions<'_>,
) -> Result<ImportReport, ImportError> {
    if let Some(name) = &options.name {
        validate_name(name)?;
    }
    let metadata = fs::metadata(source).map_err(|error| ImportError::SourceMissing {
        path: source.to_path_buf(),
        source: error,
    })?;
    store.init()?;
    let _lock = store.lock_shared()?;

    if metadata.is_dir() {
        if source.join("oci-layout").is_file() {
            let blobs = DirBlobs::new(source);
            let plan = oci::read_layout(&blobs, &options.platform, options.name.as_deref())?;
            return import_plan(
                store,
                &blobs,
                plan,
                SourceFormat::OciLayout,
                source,
                options,
            );
        }
        return import_rootfs_dir(store, source, options);
    }

    let compression = sniff_file(source)?;
    if compression == Compression::None {
        let blobs = TarBlobs::index(source)?;
        return match archive_kind(|name| blobs.contains(name)) {
            ArchiveKind::Oci => {
                let plan = oci::read_layout(&blobs, &options.platform, options.name.as_deref())?;
                let format = SourceFormat::OciArchive(compression);
                import_plan(store, &blobs, plan, format, source, options)
            }
            ArchiveKind::Docker => {
                let plan =
                    docker::read_archive(&blobs, &options.platform, options.name.as_deref())?;
                let format = SourceFormat::DockerArchive(compression);
                import_plan(store, &blobs, plan, format, source, options)
            }
            ArchiveKind::Rootfs => {
                drop(blobs);
                import_rootfs_tar(store, source, compression, options)
            }
        };
    }

    // A compressed source is scanned once as a stream to learn its kind. An
    // image archive is then decompressed into the staging area, because its
    // blobs are read in manifest order. A root filesystem is unpacked
    // straight from the stream.
    let kind = scan_archive_kind(source)?;
    if kind == ArchiveKind::Rootfs {
        return import_rootfs_tar(store, source, compression, options);
    }
    let staging = store.staging()?;
    let plain = staging.path().join("source.tar");
    decompress_to(source, &plain)?;
    let blobs = TarBlobs::index(&plain)?;
    let (plan, format) = if kind == ArchiveKind::Oci {
        let plan = oci::read_layout(&blobs, &options.platform, options.name.as_deref())?;
        (plan, SourceFormat::OciArchive(compression))
    } else {
        let plan = docker::read_archive(&blobs, &options.platform, options.name.as_deref())?;
        (plan, SourceFormat::DockerArchive(compression))
    };
    import_plan(store, &blobs, plan, format, source, options)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ArchiveKind {
    Oci,
    Docker,
    Rootfs,
}

fn archive_kind(contains: impl Fn(&str) -> bool) -> ArchiveKind {
    if contains("oci-layout") && contains("index.json") {
        ArchiveKind::Oci
    } else if contains("manifest.json") {
        ArchiveKind::Docker
    } else {
        ArchiveKind::Rootfs
    }
}

fn sniff_file(path: &Path) -> Result<Compression, ImportError> {
    let file = File::open(path).map_err(|source| ImportError::SourceMissing {
        path: path.to_path_buf(),
        source,
    })?;
    let mut reader = BufReader::new(file);
    let prefix = reader.fill_buf().map_err(|source| ImportError::Io {
        operation: "read",
        path: path.to_path_buf(),
        source,
    })?;
    Ok(Compression::sniff(prefix))
}

fn scan_archive_kind(path: &Path) -> Result<ArchiveKind, ImportError> {
    let read_error = |source| ImportError::Io {
        operation: "read the archive",
        path: path.to_path_buf(),
        source,
    };
    let file = File::open(path).map_err(read_error)?;
    let (_, reader) = decompress(file).map_err(read_error)?;
    let mut archive = tar::Archive::new(reader);
    let mut names = Vec::new();
    for entry in archive.entries().map_err(read_error)? {
        let entry = entry.map_err(read_error)?;
        let raw = entry.path_bytes();
        let name = String::from_utf8_lossy(&raw);
        let name = name.trim_start_matches("./");
        if matches!(name, "oci-layout" | "index.json" | "manifest.json") {
            names.push(name.to_string());
        }
    }
    Ok(archive_kind(|name| names.iter().any(|n| n == name)))
}

fn decompress_to(source: &Path, target: &Path) -> Result<(), ImportError> {
    let file = File::open(source).map_err(|error| ImportError::SourceMissing {
        path: source.to_path_buf(),
        source: error,
    })?;
    let (_, mut reader) = decompress(file).map_err(|error| ImportError::Io {
        operation: "decompress",
        path: source.to_path_buf(),
        source: error,
    })?;
    let mut output = File::create(target).map_err(|error| ImportError::Io {
        operation: "create",
        path: target.to_path_buf(),
        source: error,
    })?;
    io::copy(&mut reader, &mut output).map_err(|error| ImportError::Io {
        operation: "decompress",
        path: source.to_path_buf(),
        source: error,
    })?;
    Ok(())
}

/// Reads a small file of a source whole, rejecting more than [`MAX_JSON_BYTES`].
pub(crate) fn read_limited(blobs: &dyn Blobs, name: &str) -> Result<Vec<u8>, ImportError> {
    let reader = blobs.open(name)?;
    let mut body = Vec::new();
    reader
        .take(MAX_JSON_BYTES + 1)
        .read_to_end(&mut body)
        .map_err(|source| ImportError::Io {
            operation: "read",
            path: blobs.source().join(name),
            source,
        })?;
    if body.len() as u64 > MAX_JSON_BYTES {
        return Err(ImportError::TooLarge {
            name: name.to_string(),
            source_path: blobs.source().to_path_buf(),
            limit: MAX_JSON_BYTES,
        });
    }
    Ok(body)
}

pub(crate) fn read_json<T: DeserializeOwned>(
    blobs: &dyn Blobs,
    name: &str,
) -> Result<T, ImportError> {
    let body = read_limited(blobs, name)?;
    serde_json::from_slice(&body).map_err(|source| ImportError::Json {
        name: name.to_string(),
        source_path: blobs.source().to_path_buf(),
        source,
    })
}

/// Reads the blob `digest` of an OCI layout and checks its size and digest.
pub(crate) fn read_verified(
    blobs: &dyn Blobs,
    digest: &Digest,
    size: Option<u64>,
) -> Result<Vec<u8>, ImportError> {
    let name = oci::blob_name(digest);
    let body = read_limited(blobs, &name)?;
    if let Some(expected) = size {
        if body.len() as u64 != expected {
            return Err(ImportError::SizeMismatch {
                name,
                source_path: blobs.source().to_path_buf(),
                expected,
                actual: body.len() as u64,
            });
        }
    }
    let actual = Digest::of_bytes(digest.algorithm(), &body);
    if &actual != digest {
        return Err(ImportError::DigestMismatch {
            name,
            source_path: blobs.source().to_path_buf(),
            expected: digest.clone(),
            actual,
        });
    }
    Ok(body)
}

/// Parses an image configuration (OCI, or Docker's, which has the same
/// fields) and keeps what corral uses.
pub(crate) fn parse_config(
    body: &[u8],
    name: &str,
    blobs: &dyn Blobs,
    platform: &Platform,
) -> Result<ParsedConfig, ImportError> {
    let config: ImageConfiguration =
        serde_json::from_slice(body).map_err(|source| ImportError::Json {
            name: name.to_string(),
            source_path: blobs.source().to_path_buf(),
            source,
        })?;
    let os = config.os().to_string();
    let architecture = config.architecture().to_string();
    if !platform.matches(&os, &architecture, config.variant().as_deref()) {
        tracing::warn!(image = %blobs.source().display(), wanted = %platform, found = %format!("{os}/{architecture}"),
            "the image is built for another platform, so its programs may not run here");
    }
    let mut image_platform = format!("{os}/{architecture}");
    if let Some(variant) = config.variant() {
        image_platform = format!("{image_platform}/{variant}");
    }
    let diff_ids = config
        .rootfs()
        .diff_ids()
        .iter()
        .map(|text| {
            Digest::parse(text).map_err(|source| ImportError::Digest {
                context: format!("rootfs.diff_ids of {name}"),
                source,
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    let defaults = match config.config() {
        None => ImageConfig::default(),
        Some(c) => ImageConfig {
            entrypoint: c.entrypoint().clone().unwrap_or_default(),
            cmd: c.cmd().clone().unwrap_or_default(),
            env: c.env().clone().unwrap_or_default(),
            working_dir: c.working_dir().clone().filter(|dir| !dir.is_empty()),
            user: c.user().clone().filter(|user| !user.is_empty()),
        },
    };
    Ok(ParsedConfig {
        defaults,
        diff_ids,
        platform: image_platform,
    })
}

fn import_plan(
    store: &Store,
    blobs: &dyn Blobs,
    plan: ImagePlan,
    format: SourceFormat,
    source: &Path,
    options: &ImportOptions<'_>,
) -> Result<ImportReport, ImportError> {
    let name = image_name(options.name.as_deref(), plan.name_hint.as_deref(), source)?;
    check_layer_count(plan.layers.len())?;
    if plan.layers.len() != plan.config.diff_ids.len() {
        return Err(ImportError::LayerCount {
            layers: plan.layers.len(),
            diff_ids: plan.config.diff_ids.len(),
        });
    }

    let count = plan.layers.len();
    let mut size = 0;
    let mut unpacked = 0;
    for (index, (layer, diff_id)) in plan.layers.iter().zip(&plan.config.diff_ids).enumerate() {
        let label = layer.digest.as_ref().unwrap_or(diff_id).to_string();
        if store.has_layer(diff_id) {
            options
                .progress
                .layer_started(index, count, &label, Some(0));
            options.progress.layer_finished(index, LayerOutcome::Reused);
            size += store.layer(diff_id)?.size;
            continue;
        }
        let blob_size = layer.size.or_else(|| blobs.size(&layer.blob));
        options
            .progress
            .layer_started(index, count, &label, blob_size);
        let reader = blobs.open(&layer.blob)?;
        let staged = stage_layer(
            store,
            reader,
            layer,
            diff_id.algorithm(),
            blobs.source(),
            options.progress,
        )?;
        if &staged.diff_id != diff_id {
            return Err(ImportError::DiffIdMismatch {
                index,
                name: layer.blob.clone(),
                expected: diff_id.clone(),
                actual: staged.diff_id,
            });
        }
        let committed = commit(store, &staged)?;
        size += staged.stats.bytes;
        let outcome = if committed {
            unpacked += 1;
            LayerOutcome::Unpacked(staged.stats)
        } else {
            LayerOutcome::Reused
        };
        options.progress.layer_finished(index, outcome);
    }

    let record = ImageRecord {
        name,
        id: plan.config_digest,
        layers: plan.config.diff_ids,
        size,
        platform: plan.config.platform,
        config: plan.config.defaults,
        source: ImageSource {
            format: format.name().to_string(),
            path: absolute(source),
        },
        imported_at: now_seconds(),
    };
    store.save_image(&record)?;
    tracing::info!(image = %record.name, id = %record.id, layers = count, unpacked, "imported image");
    Ok(ImportReport {
        layers_reused: count - unpacked,
        layers_unpacked: unpacked,
        record,
        format,
    })
}

fn check_layer_count(count: usize) -> Result<(), ImportError> {
    if count == 0 {
        return Err(ImportError::NoLayers);
    }
    if count > MAX_LAYERS {
        return Err(ImportError::TooManyLayers { count });
    }
    Ok(())
}

/// A layer unpacked into a staging directory, not yet in the store.
struct StagedLayer {
    staging: Staging,
    diff_id: Digest,
    stats: UnpackStats,
}

impl StagedLayer {
    fn layer_dir(&self) -> PathBuf {
        self.staging.path().join("layer")
    }
}

fn new_staging(store: &Store) -> Result<(Staging, PathBuf), ImportError> {
    let staging = store.staging()?;
    let rootfs = staging.path().join("layer").join("rootfs");
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o755)
        .create(&rootfs)
        .map_err(|source| ImportError::Io {
            operation: "create",
            path: rootfs.clone(),
            source,
        })?;
    Ok((staging, rootfs))
}

/// Unpacks one layer blob of `source_path` into a staging directory,
/// checking the blob's size and digest when the source states them, and
/// computing the diff ID (the digest of the uncompressed tar) with
/// `diff_algorithm`.
fn stage_layer(
    store: &Store,
    reader: Box<dyn Read + '_>,
    layer: &LayerSource,
    diff_algorithm: Algorithm,
    source_path: &Path,
    progress: &dyn Progress,
) -> Result<StagedLayer, ImportError> {
    let (staging, rootfs) = new_staging(store)?;
    let blob_algorithm = layer
        .digest
        .as_ref()
        .map_or(Algorithm::Sha256, Digest::algorithm);
    let mut blob_reader = DigestReader::new(
        ProgressReader {
            inner: reader,
            progress,
        },
        blob_algorithm,
    );
    let unpacked = unpack_stream(&mut blob_reader, &rootfs, diff_algorithm, &layer.blob);
    // The blob's digest is checked even when unpacking failed, because a
    // corrupt blob usually shows first as a broken tar or compressed stream.
    let (blob_digest, blob_size) = blob_reader.finish().map_err(|source| ImportError::Io {
        operation: "read the layer",
        path: source_path.join(&layer.blob),
        source,
    })?;
    if let Some(expected) = &layer.digest {
        if expected != &blob_digest {
            return Err(ImportError::DigestMismatch {
                name: layer.blob.clone(),
                source_path: source_path.to_path_buf(),
                expected: expected.clone(),
                actual: blob_digest,
            });
        }
    }
    if let Some(expected) = layer.size {
        if expected != blob_size {
            return Err(ImportError::SizeMismatch {
                name: layer.blob.clone(),
                source_path: source_path.to_path_buf(),
                expected,
                actual: blob_size,
            });
        }
    }
    let (diff_id, stats) = unpacked?;
    Ok(StagedLayer {
        staging,
        diff_id,
        stats,
    })
}

/// Decompresses `reader` as needed and unpacks the tar into `rootfs`.
fn unpack_stream(
    reader: impl Read,
    rootfs: &Path,
    diff_algorithm: Algorithm,
    label: &str,
) -> Result<(Digest, UnpackStats), ImportError> {
    let unpack_error = |source| ImportError::Unpack {
        layer: label.to_string(),
        source,
    };
    let (_, decompressed) =
        decompress(reader).map_err(|source| unpack_error(UnpackError::Read { source }))?;
    let mut diff_reader = DigestReader::new(decompressed, diff_algorithm);
    let stats = unpack_layer(&mut diff_reader, rootfs).map_err(unpack_error)?;
    let (diff_id, _) = diff_reader
        .finish()
        .map_err(|source| unpack_error(UnpackError::Read { source }))?;
    Ok((diff_id, stats))
}

/// Moves a staged layer into the store. Returns false when the store
/// already had it.
fn commit(store: &Store, staged: &StagedLayer) -> Result<bool, ImportError> {
    let record = LayerRecord {
        diff_id: staged.diff_id.clone(),
        size: staged.stats.bytes,
        entries: staged.stats.entries,
        unpacked_at: now_seconds(),
    };
    Ok(store.commit_layer(&staged.layer_dir(), &record)?)
}

fn import_rootfs_tar(
    store: &Store,
    source: &Path,
    compression: Compression,
    options: &ImportOptions<'_>,
) -> Result<ImportReport, ImportError> {
    let name = image_name(options.name.as_deref(), None, source)?;
    let file = File::open(source).map_err(|error| ImportError::SourceMissing {
        path: source.to_path_buf(),
        source: error,
    })?;
    let size = file.metadata().ok().map(|m| m.len());
    options
        .progress
        .layer_started(0, 1, &source.display().to_string(), size);
    let (staging, rootfs) = new_staging(store)?;
    let reader = ProgressReader {
        inner: file,
        progress: options.progress,
    };
    let label = source.display().to_string();
    let (diff_id, stats) = unpack_stream(reader, &rootfs, Algorithm::Sha256, &label)?;
    let staged = StagedLayer {
        staging,
        diff_id,
        stats,
    };
    finish_rootfs_import(
        store,
        staged,
        SourceFormat::RootfsTar(compression),
        source,
        name,
        options,
    )
}

fn import_rootfs_dir(
    store: &Store,
    source: &Path,
    options: &ImportOptions<'_>,
) -> Result<ImportReport, ImportError> {
    let name = image_name(options.name.as_deref(), None, source)?;
    if let (Ok(store_path), Ok(source_path)) =
        (fs::canonicalize(store.root()), fs::canonicalize(source))
    {
        if store_path.starts_with(&source_path) {
            return Err(ImportError::StoreInsideSource {
                store: store_path,
                source_path,
            });
        }
    }
    options
        .progress
        .layer_started(0, 1, &source.display().to_string(), None);
    let (staging, rootfs) = new_staging(store)?;
    let pipe_error = |error: nix::Error| ImportError::Io {
        operation: "create a pipe to read",
        path: source.to_path_buf(),
        source: io::Error::from(error),
    };
    let (read_end, write_end) =
        nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(pipe_error)?;
    let reader = ProgressReader {
        inner: File::from(read_end),
        progress: options.progress,
    };
    let label = source.display().to_string();
    let (unpacked, written) = std::thread::scope(|scope| {
        let writer = scope.spawn(move || dirtar::write_tree(source, File::from(write_end)));
        // unpack_stream owns the read end and closes it when it returns, so
        // a writer blocked on a full pipe gets EPIPE instead of hanging.
        let unpacked = unpack_stream(reader, &rootfs, Algorithm::Sha256, &label);
        let written = writer.join().expect("the directory tar writer panicked");
        (unpacked, written)
    });
    match (unpacked, written) {
        (Ok((diff_id, stats)), Ok(())) => {
            let staged = StagedLayer {
                staging,
                diff_id,
                stats,
            };
            finish_rootfs_import(
                store,
                staged,
                SourceFormat::RootfsDir,
                source,
                name,
                options,
            )
        }
        // The unpacker stopped reading first; the writer only saw the
        // closed pipe.
        (Err(error), Err(write)) if write.kind() == io::ErrorKind::BrokenPipe => Err(error),
        (_, Err(write)) => Err(ImportError::Io {
            operation: "read the directory",
            path: source.to_path_buf(),
            source: write,
        }),
        (Err(error), Ok(())) => Err(error),
    }
}

/// Commits the one layer of a rootfs import and writes its image record.
/// The image ID is the digest of a minimal OCI configuration that lists
/// the layer, so the same tree imported twice has the same ID.
fn finish_rootfs_import(
    store: &Store,
    staged: StagedLayer,
    format: SourceFormat,
    source: &Path,
    name: String,
    options: &ImportOptions<'_>,
) -> Result<ImportReport, ImportError> {
    let size = staged.stats.bytes;
    let committed = if store.has_layer(&staged.diff_id) {
        false
    } else {
        commit(store, &staged)?
    };
    let outcome = if committed {
        LayerOutcome::Unpacked(staged.stats)
    } else {
        LayerOutcome::Reused
    };
    options.progress.layer_finished(0, outcome);

    let platform = Platform::host();
    let config = serde_json::json!({
        "architecture": platform.architecture,
        "os": platform.os,
        "rootfs": {"type": "layers", "diff_ids": [staged.diff_id.to_string()]},
        "config": {},
    });
    let config_body = serde_json::to_vec(&config).expect("configuration serializes to JSON");
    let record = ImageRecord {
        name,
        id: Digest::of_bytes(Algorithm::Sha256, &config_body),
        layers: vec![staged.diff_id.clone()],
        size,
        platform: platform.to_string(),
        config: ImageConfig::default(),
        source: ImageSource {
            format: format.name().to_string(),
            path: absolute(source),
        },
        imported_at: now_seconds(),
    };
    store.save_image(&record)?;
    tracing::info!(image = %record.name, id = %record.id, reused = !committed, "imported root filesystem");
    Ok(ImportReport {
        record,
        format,
        layers_unpacked: usize::from(committed),
        layers_reused: usize::from(!committed),
    })
}

/// Picks the image name: the option, else the source's own reference, else
/// the source's file name without its tar and compression extensions.
fn image_name(
    option: Option<&str>,
    hint: Option<&str>,
    source: &Path,
) -> Result<String, ImportError> {
    if let Some(name) = option {
        return Ok(name.to_string());
    }
    if let Some(hint) = hint.filter(|h| validate_name(h).is_ok()) {
        return Ok(hint.to_string());
    }
    let file_name = source
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let mut stem = file_name.as_str();
    for extension in [
        ".tar.gz", ".tar.zst", ".tgz", ".tzst", ".tar", ".gz", ".zst",
    ] {
        if let Some(stripped) = stem.strip_suffix(extension) {
            stem = stripped;
            break;
        }
    }
    if validate_name(stem).is_ok() {
        Ok(stem.to_string())
    } else {
        Err(ImportError::NoName {
            source_path: source.to_path_buf(),
        })
    }
}

fn absolute(path: &Path) -> PathBuf {
    std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn platform_parses_and_matches() {
        let platform = Platform::parse("linux/arm/v7").unwrap();
        assert_eq!(platform.to_string(), "linux/arm/v7");
        assert!(platform.matches("linux", "arm", Some("v7")));
        assert!(!platform.matches("linux", "arm", Some("v6")));
        let any_variant = Platform::parse("linux/arm64").unwrap();
        assert!(any_variant.matches("linux", "arm64", Some("v8")));
        for text in ["linux", "linux/", "/amd64", "a/b/c/d"] {
            assert!(Platform::parse(text).is_err(), "{text} was accepted");
        }
    }

    #[test]
    fn image_name_prefers_option_then_hint_then_file() {
        let source = Path::new("/srv/busybox.tar.gz");
        assert_eq!(image_name(Some("web"), Some("x"), source).unwrap(), "web");
        assert_eq!(
            image_name(None, Some("localhost/bb:latest"), source).unwrap(),
            "localhost/bb:latest"
        );
        assert_eq!(image_name(None, None, source).unwrap(), "busybox");
        assert!(image_name(None, None, Path::new("/srv/.tar")).is_err());
    }

    #[test]
    fn archive_kind_prefers_oci() {
        let both = |name: &str| matches!(name, "oci-layout" | "index.json" | "manifest.json");
        assert_eq!(archive_kind(both), ArchiveKind::Oci);
        assert_eq!(archive_kind(|n| n == "manifest.json"), ArchiveKind::Docker);
        assert_eq!(archive_kind(|n| n == "index.json"), ArchiveKind::Rootfs);
    }
}

//! Reading an OCI image layout (a directory, or the files of an
//! oci-archive): `oci-layout`, `index.json`, then image indexes down to
//! the manifest of the requested platform.

use oci_spec::image::{Descriptor, ImageIndex, ImageManifest};

use super::archive::Blobs;
use super::digest::Digest;
use super::import::{
    parse_config, read_json, read_verified, ImagePlan, ImportError, LayerSource, Platform,
};

/// Nesting of image indexes followed before giving up.
const MAX_INDEX_DEPTH: usize = 8;

/// Annotation with the image's reference, as podman and skopeo write it.
const REF_NAME: &str = "org.opencontainers.image.ref.name";
/// Annotation with the full image name, as containerd writes it.
const CONTAINERD_NAME: &str = "io.containerd.image.name";

const INDEX_TYPES: [&str; 2] = [
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
];
const MANIFEST_TYPES: [&str; 2] = [
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.v2+json",
];
const LAYER_TYPES: [&str; 8] = [
    "application/vnd.oci.image.layer.v1.tar",
    "application/vnd.oci.image.layer.v1.tar+gzip",
    "application/vnd.oci.image.layer.v1.tar+zstd",
    "application/vnd.oci.image.layer.nondistributable.v1.tar",
    "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip",
    "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd",
    "application/vnd.docker.image.rootfs.diff.tar.gzip",
    "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip",
];

#[derive(serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct LayoutHeader {
    image_layout_version: String,
}

/// Reads the image for `platform` from an OCI layout. With `name`, an
/// index that lists several images picks the one whose reference is `name`.
pub(crate) fn read_layout(
    blobs: &dyn Blobs,
    platform: &Platform,
    name: Option<&str>,
) -> Result<ImagePlan, ImportError> {
    let header: LayoutHeader = read_json(blobs, "oci-layout")?;
    if !header.image_layout_version.starts_with("1.") {
        return Err(ImportError::Unsupported {
            what: format!(
                "OCI layout version {} in {}",
                header.image_layout_version,
                blobs.source().display()
            ),
        });
    }
    let index: ImageIndex = read_json(blobs, "index.json")?;
    let mut candidates: Vec<&Descriptor> = index.manifests().iter().collect();
    if let Some(name) = name {
        let named: Vec<&Descriptor> = candidates
            .iter()
            .copied()
            .filter(|d| reference(d).as_deref() == Some(name))
            .collect();
        if !named.is_empty() {
            candidates = named;
        }
    }
    let mut references: Vec<String> = candidates.iter().filter_map(|d| reference(d)).collect();
    references.sort();
    references.dedup();
    if references.len() > 1 {
        return Err(ImportError::Ambiguous {
            source_path: blobs.source().to_path_buf(),
            names: references,
        });
    }
    let name_hint = references.into_iter().next();

    let mut descriptor = select(&candidates, platform, blobs)?.clone();
    for _ in 0..MAX_INDEX_DEPTH {
        let media_type = descriptor.media_type().to_string();
        if MANIFEST_TYPES.contains(&media_type.as_str()) {
            return read_manifest(blobs, &descriptor, platform, name_hint);
        }
        if !INDEX_TYPES.contains(&media_type.as_str()) {
            return Err(ImportError::Unsupported {
                what: format!("manifest media type {media_type}"),
            });
        }
        let digest = descriptor_digest(&descriptor)?;
        let body = read_verified(blobs, &digest, Some(descriptor.size()))?;
        let nested: ImageIndex =
            serde_json::from_slice(&body).map_err(|source| ImportError::Json {
                name: blob_name(&digest),
                source_path: blobs.source().to_path_buf(),
                source,
            })?;
        let manifests: Vec<&Descriptor> = nested.manifests().iter().collect();
        descriptor = select(&manifests, platform, blobs)?.clone();
    }
    Err(ImportError::Unsupported {
        what: format!("image indexes nested deeper than {MAX_INDEX_DEPTH} levels"),
    })
}

fn reference(descriptor: &Descriptor) -> Option<String> {
    let annotations = descriptor.annotations().as_ref()?;
    annotations
        .get(CONTAINERD_NAME)
        .or_else(|| annotations.get(REF_NAME))
        .cloned()
}

/// Picks the descriptor for `platform`: one whose platform matches, or the
/// only one when none states a platform.
fn select<'a>(
    descriptors: &[&'a Descriptor],
    platform: &Platform,
    blobs: &dyn Blobs,
) -> Result<&'a Descriptor, ImportError> {
    let matching: Vec<&Descriptor> = descriptors
        .iter()
        .copied()
        .filter(|d| {
            d.platform().as_ref().is_some_and(|p| {
                platform.matches(
                    &p.os().to_string(),
                    &p.architecture().to_string(),
                    p.variant().as_deref(),
                )
            })
        })
        .collect();
    if let Some(first) = matching.first() {
        return Ok(first);
    }
    let without_platform: Vec<&Descriptor> = descriptors
        .iter()
        .copied()
        .filter(|d| d.platform().is_none())
        .collect();
    match without_platform.as_slice() {
        [only] => Ok(only),
        [] if descriptors.is_empty() => Err(ImportError::Unsupported {
            what: format!(
                "an image index without manifests in {}",
                blobs.source().display()
            ),
        }),
        [] => Err(ImportError::NoMatchingPlatform {
            wanted: platform.to_string(),
            available: descriptors
                .iter()
                .filter_map(|d| d.platform().as_ref())
                .map(|p| {
                    let mut text = format!("{}/{}", p.os(), p.architecture());
                    if let Some(variant) = p.variant() {
                        text = format!("{text}/{variant}");
                    }
                    text
                })
                .collect(),
        }),
        several => Err(ImportError::Unsupported {
            what: format!(
                "{} manifests without a platform in one index of {}",
                several.len(),
                blobs.source().display()
            ),
        }),
    }
}

fn descriptor_digest(descriptor: &Descriptor) -> Result<Digest, ImportError> {
    Digest::parse(descriptor.digest().as_ref()).map_err(|source| ImportError::Digest {
        context: format!("descriptor of type {}", descriptor.media_type()),
        source,
    })
}

/// Path of a blob inside an OCI layout.
pub(crate) fn blob_name(digest: &Digest) -> String {
    format!("blobs/{}/{}", digest.algorithm().name(), digest.hex())
}

fn read_manifest(
    blobs: &dyn Blobs,
    descriptor: &Descriptor,
    platform: &Platform,
    name_hint: Option<String>,
) -> Result<ImagePlan, ImportError> {
    let digest = descriptor_digest(descriptor)?;
    let body = read_verified(blobs, &digest, Some(descriptor.size()))?;
    let manifest: ImageManifest =
        serde_json::from_slice(&body).map_err(|source| ImportError::Json {
            name: blob_name(&digest),
            source_path: blobs.source().to_path_buf(),
            source,
        })?;

    let config_digest = descriptor_digest(manifest.config())?;
    let config_body = read_verified(blobs, &config_digest, Some(manifest.config().size()))?;
    let config = parse_config(&config_body, &blob_name(&config_digest), blobs, platform)?;

    let mut layers = Vec::with_capacity(manifest.layers().len());
    for layer in manifest.layers() {
        let media_type = layer.media_type().to_string();
        if !LAYER_TYPES.contains(&media_type.as_str()) {
            return Err(ImportError::Unsupported {
                what: format!("layer media type {media_type}"),
            });
        }
        let digest = descriptor_digest(layer)?;
        layers.push(LayerSource {
            blob: blob_name(&digest),
            digest: Some(digest),
            size: Some(layer.size()),
        });
    }
    Ok(ImagePlan {
        name_hint,
        config_digest,
        config,
        layers,
    })
}

//! Reading a `docker save` archive: `manifest.json` lists, per image, the
//! configuration file and the layer tars, bottom layer first.
//!
//! Layer tars carry no digest of their own in this format (their directory
//! names are legacy v1 ids), so each layer is verified against the diff ID
//! that the configuration lists for it. A configuration named by its own
//! digest (`HEX.json` or `blobs/sha256/HEX`) is verified against that name.

use serde::Deserialize;

use super::archive::Blobs;
use super::digest::{Algorithm, Digest};
use super::import::{parse_config, read_limited, ImagePlan, ImportError, LayerSource, Platform};

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct ManifestEntry {
    config: String,
    #[serde(default)]
    repo_tags: Option<Vec<String>>,
    layers: Vec<String>,
}

/// Reads one image of a `docker save` archive. With `name`, an archive of
/// several images picks the one tagged `name`.
pub(crate) fn read_archive(
    blobs: &dyn Blobs,
    platform: &Platform,
    name: Option<&str>,
) -> Result<ImagePlan, ImportError> {
    let entries: Vec<ManifestEntry> = super::import::read_json(blobs, "manifest.json")?;
    let entry = match entries.as_slice() {
        [] => {
            return Err(ImportError::Unsupported {
                what: format!("an empty manifest.json in {}", blobs.source().display()),
            })
        }
        [only] => only,
        several => {
            let tagged = name.and_then(|name| {
                several
                    .iter()
                    .find(|e| e.repo_tags.iter().flatten().any(|tag| tag == name))
            });
            match tagged {
                Some(entry) => entry,
                None => {
                    return Err(ImportError::Ambiguous {
                        source_path: blobs.source().to_path_buf(),
                        names: several
                            .iter()
                            .flat_map(|e| e.repo_tags.iter().flatten().cloned())
                            .collect(),
                    })
                }
            }
        }
    };

    let config_body = read_limited(blobs, &entry.config)?;
    let computed = Digest::of_bytes(Algorithm::Sha256, &config_body);
    if let Some(named) = digest_in_name(&entry.config) {
        if named != computed {
            return Err(ImportError::DigestMismatch {
                name: entry.config.clone(),
                source_path: blobs.source().to_path_buf(),
                expected: named,
                actual: computed,
            });
        }
    }
    let config = parse_config(&config_body, &entry.config, blobs, platform)?;

    let layers = entry
        .layers
        .iter()
        .map(|path| LayerSource {
            blob: path.clone(),
            digest: digest_in_name(path).filter(|_| path.starts_with("blobs/")),
            size: None,
        })
        .collect();
    let name_hint = entry.repo_tags.iter().flatten().next().cloned();
    Ok(ImagePlan {
        name_hint,
        config_digest: computed,
        config,
        layers,
    })
}

/// Returns the sha256 digest a file is named after: `HEX.json` (Docker
/// before 25 and podman) or `blobs/sha256/HEX` (Docker 25 and later).
fn digest_in_name(path: &str) -> Option<Digest> {
    let file = path.rsplit('/').next()?;
    let hex = file.strip_suffix(".json").unwrap_or(file);
    Digest::parse(&format!("sha256:{hex}")).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digest_in_name_reads_both_layouts() {
        let hex = "a".repeat(64);
        assert!(digest_in_name(&format!("{hex}.json")).is_some());
        assert!(digest_in_name(&format!("blobs/sha256/{hex}")).is_some());
        assert!(digest_in_name("abc/layer.tar").is_none());
    }
}

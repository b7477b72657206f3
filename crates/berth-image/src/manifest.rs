//! Manifests, indexes and platform selection.
//!
//! Accepts OCI image manifests and indexes (image-spec manifest.md, image-index.md) and Docker's
//! schema 2 manifest and manifest list, which share the same JSON shape. The `mediaType` field is
//! optional in OCI documents, so the kind is taken from the HTTP `Content-Type` when known, then
//! from `mediaType`, then from the shape (`manifests` vs `layers`).

use oci_spec::image::{Descriptor, ImageIndex, ImageManifest};
use serde::{Deserialize, Serialize};

use crate::digest::{Digest, DigestParseError};

pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
pub const OCI_LAYER: &str = "application/vnd.oci.image.layer.v1.tar";
pub const OCI_LAYER_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
pub const OCI_LAYER_ZSTD: &str = "application/vnd.oci.image.layer.v1.tar+zstd";
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
pub const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
pub const DOCKER_CONFIG: &str = "application/vnd.docker.container.image.v1+json";
pub const DOCKER_LAYER_GZIP: &str = "application/vnd.docker.image.rootfs.diff.tar.gzip";
pub const DOCKER_FOREIGN_LAYER: &str = "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip";

/// Everything the `Accept` header of a manifest request lists.
pub const ACCEPT_MANIFESTS: &str = "application/vnd.oci.image.index.v1+json, \
application/vnd.docker.distribution.manifest.list.v2+json, \
application/vnd.oci.image.manifest.v1+json, \
application/vnd.docker.distribution.manifest.v2+json";

/// A parsed manifest document.
#[derive(Clone, Debug)]
pub enum Manifest {
    Image(Box<ImageManifest>),
    Index(Box<ImageIndex>),
}

/// Why a manifest document cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    #[error("unsupported manifest media type {media_type:?}")]
    MediaType { media_type: String },
    #[error("docker schema 1 manifests are not supported (deprecated since 2017)")]
    Schema1,
    #[error("malformed {kind} JSON")]
    Json {
        kind: &'static str,
        #[source]
        source: serde_json::Error,
    },
    #[error("layer {digest} has unsupported media type {media_type:?}")]
    LayerMediaType { digest: String, media_type: String },
    #[error("descriptor has an unusable digest")]
    Digest(#[source] DigestParseError),
    #[error("no manifest for platform {wanted} (available: {available})")]
    NoPlatform { wanted: Platform, available: String },
    #[error("invalid platform {value:?}: expected os/arch[/variant]")]
    PlatformSyntax { value: String },
}

#[derive(Deserialize)]
struct Probe {
    #[serde(rename = "mediaType")]
    media_type: Option<String>,
    #[serde(rename = "schemaVersion")]
    schema_version: Option<u32>,
    manifests: Option<serde_json::Value>,
    layers: Option<serde_json::Value>,
}

fn base_type(ct: &str) -> &str {
    ct.split(';').next().unwrap_or("").trim()
}

/// Parses a manifest or index, given the `Content-Type` it was served with (if any).
pub fn parse_manifest(bytes: &[u8], content_type: Option<&str>) -> Result<Manifest, ManifestError> {
    let probe: Probe = serde_json::from_slice(bytes).map_err(|source| ManifestError::Json {
        kind: "manifest",
        source,
    })?;
    if probe.schema_version == Some(1) {
        return Err(ManifestError::Schema1);
    }
    // Registries often answer with a generic type; only trust a specific one.
    let ct = content_type
        .map(base_type)
        .filter(|t| t.starts_with("application/vnd."));
    let kind = ct.map(str::to_string).or(probe.media_type.clone());
    let is_index = match kind.as_deref() {
        Some(OCI_INDEX | DOCKER_LIST) => true,
        Some(OCI_MANIFEST | DOCKER_MANIFEST) => false,
        Some(t) if t.contains("distribution.manifest.v1") => return Err(ManifestError::Schema1),
        Some(t) => {
            return Err(ManifestError::MediaType {
                media_type: t.to_string(),
            })
        }
        None if probe.manifests.is_some() => true,
        None if probe.layers.is_some() => false,
        None => {
            return Err(ManifestError::MediaType {
                media_type: "(none)".into(),
            })
        }
    };
    if is_index {
        serde_json::from_slice(bytes)
            .map(|i| Manifest::Index(Box::new(i)))
            .map_err(|source| ManifestError::Json {
                kind: "index",
                source,
            })
    } else {
        let m: ImageManifest =
            serde_json::from_slice(bytes).map_err(|source| ManifestError::Json {
                kind: "image manifest",
                source,
            })?;
        for l in m.layers() {
            layer_compression(l)?;
        }
        Ok(Manifest::Image(Box::new(m)))
    }
}

/// How a layer blob is compressed, by its media type.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Compression {
    None,
    Gzip,
    Zstd,
}

/// The compression a layer descriptor declares; unknown layer types are refused.
pub fn layer_compression(d: &Descriptor) -> Result<Compression, ManifestError> {
    let mt = d.media_type().to_string();
    let c = match mt.as_str() {
        OCI_LAYER | "application/vnd.oci.image.layer.nondistributable.v1.tar" => Compression::None,
        OCI_LAYER_GZIP
        | DOCKER_LAYER_GZIP
        | DOCKER_FOREIGN_LAYER
        | "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip" => Compression::Gzip,
        OCI_LAYER_ZSTD | "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd" => {
            Compression::Zstd
        }
        _ => {
            return Err(ManifestError::LayerMediaType {
                digest: d.digest().to_string(),
                media_type: mt,
            })
        }
    };
    Ok(c)
}

/// The digest of a descriptor in Berth's checked form.
pub fn descriptor_digest(d: &Descriptor) -> Result<Digest, ManifestError> {
    d.digest()
        .to_string()
        .parse()
        .map_err(ManifestError::Digest)
}

/// A target platform: `linux/amd64`, `linux/arm64/v8`, ...
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Platform {
    pub os: String,
    pub architecture: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
}

impl std::fmt::Display for Platform {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.os, self.architecture)?;
        if let Some(v) = &self.variant {
            write!(f, "/{v}")?;
        }
        Ok(())
    }
}

impl std::str::FromStr for Platform {
    type Err = ManifestError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let parts: Vec<&str> = s.split('/').collect();
        let bad = || ManifestError::PlatformSyntax { value: s.into() };
        if !(2..=3).contains(&parts.len()) || parts.iter().any(|p| p.is_empty()) {
            return Err(bad());
        }
        Ok(Self {
            os: parts[0].to_string(),
            architecture: parts[1].to_string(),
            variant: parts.get(2).map(|v| v.to_string()),
        })
    }
}

impl Platform {
    /// The platform this binary runs on, in Go's GOOS/GOARCH names as images use them.
    pub fn host() -> Self {
        let (architecture, variant) = match std::env::consts::ARCH {
            "x86_64" => ("amd64", None),
            "x86" => ("386", None),
            "aarch64" => ("arm64", None),
            "arm" => ("arm", Some("v7")),
            "powerpc64" => ("ppc64le", None),
            "riscv64" => ("riscv64", None),
            "s390x" => ("s390x", None),
            other => (other, None),
        };
        Self {
            os: "linux".into(),
            architecture: architecture.into(),
            variant: variant.map(str::to_string),
        }
    }

    fn matches(&self, p: &oci_spec::image::Platform) -> bool {
        if p.os().to_string() != self.os || p.architecture().to_string() != self.architecture {
            return false;
        }
        match (&self.variant, p.variant()) {
            (None, _) => true,
            (Some(w), Some(v)) => w == v,
            // arm64 images often omit the default "v8"
            (Some(w), None) => self.architecture == "arm64" && w == "v8",
        }
    }
}

/// Picks the manifest for `wanted` from an index. Entries without a platform (attestations and
/// other artifacts) are never chosen.
pub fn select_platform<'a>(
    index: &'a ImageIndex,
    wanted: &Platform,
) -> Result<&'a Descriptor, ManifestError> {
    let candidates = || {
        index.manifests().iter().filter(|d| {
            matches!(
                d.media_type().to_string().as_str(),
                OCI_MANIFEST | DOCKER_MANIFEST
            )
        })
    };
    // Exact variant first, then the first entry matching os/arch when no variant was asked for.
    let exact = candidates().find(|d| {
        d.platform()
            .as_ref()
            .is_some_and(|p| wanted.matches(p) && p.variant() == &wanted.variant)
    });
    if let Some(d) = exact
        .or_else(|| candidates().find(|d| d.platform().as_ref().is_some_and(|p| wanted.matches(p))))
    {
        return Ok(d);
    }
    let available: Vec<String> = candidates()
        .filter_map(|d| d.platform().as_ref())
        .filter(|p| p.os().to_string() != "unknown")
        .map(|p| {
            let mut s = format!("{}/{}", p.os(), p.architecture());
            if let Some(v) = p.variant() {
                s.push('/');
                s.push_str(v);
            }
            s
        })
        .collect();
    Err(ManifestError::NoPlatform {
        wanted: wanted.clone(),
        available: if available.is_empty() {
            "none".into()
        } else {
            available.join(", ")
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const D1: &str = "sha256:1111111111111111111111111111111111111111111111111111111111111111";
    const D2: &str = "sha256:2222222222222222222222222222222222222222222222222222222222222222";

    fn manifest_json(media_type: Option<&str>, layer_type: &str) -> String {
        let mt = media_type
            .map(|m| format!(r#""mediaType": "{m}","#))
            .unwrap_or_default();
        format!(
            r#"{{"schemaVersion": 2, {mt}
            "config": {{"mediaType": "{OCI_CONFIG}", "digest": "{D1}", "size": 10}},
            "layers": [{{"mediaType": "{layer_type}", "digest": "{D2}", "size": 20}}]}}"#
        )
    }

    fn index_json() -> String {
        format!(
            r#"{{"schemaVersion": 2, "mediaType": "{DOCKER_LIST}", "manifests": [
            {{"mediaType": "{DOCKER_MANIFEST}", "digest": "{D1}", "size": 1,
              "platform": {{"os": "linux", "architecture": "arm", "variant": "v6"}}}},
            {{"mediaType": "{DOCKER_MANIFEST}", "digest": "{D2}", "size": 1,
              "platform": {{"os": "linux", "architecture": "arm64"}}}},
            {{"mediaType": "{OCI_MANIFEST}", "digest": "{D2}", "size": 1,
              "platform": {{"os": "unknown", "architecture": "unknown"}}}},
            {{"mediaType": "{DOCKER_MANIFEST}", "digest": "{D1}", "size": 1,
              "platform": {{"os": "linux", "architecture": "amd64"}}}}]}}"#
        )
    }

    #[test]
    fn oci_manifest_without_media_type() {
        let m = parse_manifest(manifest_json(None, OCI_LAYER_GZIP).as_bytes(), None).unwrap();
        assert!(matches!(m, Manifest::Image(_)));
    }

    #[test]
    fn docker_manifest_by_content_type_and_field() {
        let body = manifest_json(Some(DOCKER_MANIFEST), DOCKER_LAYER_GZIP);
        let m = parse_manifest(
            body.as_bytes(),
            Some(&format!("{DOCKER_MANIFEST}; charset=utf-8")),
        )
        .unwrap();
        let Manifest::Image(m) = m else {
            panic!("not an image manifest")
        };
        assert_eq!(
            layer_compression(&m.layers()[0]).unwrap(),
            Compression::Gzip
        );
        // a generic content type falls back to the field
        assert!(parse_manifest(body.as_bytes(), Some("application/json")).is_ok());
    }

    #[test]
    fn unknown_media_types_are_refused() {
        let e = parse_manifest(
            manifest_json(Some("application/x-foo"), OCI_LAYER).as_bytes(),
            None,
        )
        .unwrap_err();
        assert!(e.to_string().contains("application/x-foo"), "{e}");
        let e = parse_manifest(
            manifest_json(None, "application/x-weird-layer").as_bytes(),
            None,
        )
        .unwrap_err();
        assert!(e.to_string().contains(D2), "{e}");
        let e = parse_manifest(br#"{"schemaVersion": 1, "fsLayers": []}"#, None).unwrap_err();
        assert!(matches!(e, ManifestError::Schema1));
    }

    #[test]
    fn selects_platforms() {
        let Manifest::Index(idx) = parse_manifest(index_json().as_bytes(), None).unwrap() else {
            panic!("not an index")
        };
        let amd: Platform = "linux/amd64".parse().unwrap();
        assert_eq!(
            select_platform(&idx, &amd).unwrap().digest().to_string(),
            D1
        );
        let arm64: Platform = "linux/arm64/v8".parse().unwrap();
        assert_eq!(
            select_platform(&idx, &arm64).unwrap().digest().to_string(),
            D2
        );
        let armv6: Platform = "linux/arm/v6".parse().unwrap();
        assert_eq!(
            select_platform(&idx, &armv6).unwrap().digest().to_string(),
            D1
        );
        let e = select_platform(&idx, &"linux/s390x".parse().unwrap()).unwrap_err();
        let msg = e.to_string();
        assert!(
            msg.contains("linux/s390x") && msg.contains("linux/arm64"),
            "{msg}"
        );
        assert!(!msg.contains("unknown"), "{msg}");
        assert!("linux".parse::<Platform>().is_err());
    }
}

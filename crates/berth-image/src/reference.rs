//! Image references: `[registry[:port]/]repository[:tag][@sha256:digest]`.
//!
//! Normalisation follows Docker's `reference.ParseNormalizedNamed` (distribution/reference,
//! normalize.go): a first path component is a registry only if it contains `.` or `:` or is
//! `localhost`; otherwise the registry is Docker Hub, and single-component Hub names get the
//! `library/` prefix. No tag and no digest means `:latest`.

use std::fmt;
use std::str::FromStr;

use crate::digest::{Digest, DigestParseError};

/// Docker Hub's canonical registry name.
pub const DOCKER_HUB: &str = "docker.io";
/// The host that actually serves Docker Hub's registry API.
pub const DOCKER_HUB_API: &str = "registry-1.docker.io";

/// A parsed, normalised image reference.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reference {
    /// `docker.io`, `quay.io`, `127.0.0.1:5000`, ...
    pub registry: String,
    /// `library/busybox`, `user/app`, ...
    pub repository: String,
    pub tag: Option<String>,
    pub digest: Option<Digest>,
}

/// Why a string is not an image reference.
#[derive(Debug, thiserror::Error)]
pub enum ReferenceError {
    #[error("invalid reference {value:?}: empty")]
    Empty { value: String },
    #[error("invalid reference {value:?}: repository names must be lowercase")]
    Uppercase { value: String },
    #[error("invalid reference {value:?}: bad repository path component {component:?}")]
    Component { value: String, component: String },
    #[error("invalid reference {value:?}: bad tag {tag:?}")]
    Tag { value: String, tag: String },
    #[error("invalid reference {value:?}: bad digest")]
    Digest {
        value: String,
        #[source]
        source: DigestParseError,
    },
    #[error("invalid reference {value:?}: longer than 255 characters")]
    TooLong { value: String },
}

fn valid_component(c: &str) -> bool {
    // distribution/reference: [a-z0-9]+(?:(?:[._]|__|[-]+)[a-z0-9]+)*
    let b = c.as_bytes();
    if b.is_empty() || !b[0].is_ascii_alphanumeric() || !b[b.len() - 1].is_ascii_alphanumeric() {
        return false;
    }
    let mut prev_sep = false;
    let mut i = 0;
    while i < b.len() {
        let ch = b[i];
        if ch.is_ascii_lowercase() || ch.is_ascii_digit() {
            prev_sep = false;
        } else if ch == b'.' || ch == b'_' || ch == b'-' {
            if prev_sep && !(ch == b'_' && b[i - 1] == b'_') && !(ch == b'-' && b[i - 1] == b'-') {
                return false;
            }
            prev_sep = true;
        } else {
            return false;
        }
        i += 1;
    }
    true
}

fn valid_tag(t: &str) -> bool {
    // [\w][\w.-]{0,127}
    let b = t.as_bytes();
    !b.is_empty()
        && b.len() <= 128
        && (b[0].is_ascii_alphanumeric() || b[0] == b'_')
        && b.iter()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'_' | b'.' | b'-'))
}

fn valid_registry(r: &str) -> bool {
    !r.is_empty()
        && r.bytes()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'.' | b'-' | b':' | b'[' | b']'))
}

impl FromStr for Reference {
    type Err = ReferenceError;

    fn from_str(value: &str) -> Result<Self, Self::Err> {
        if value.is_empty() {
            return Err(ReferenceError::Empty {
                value: value.into(),
            });
        }
        if value.len() > 255 {
            return Err(ReferenceError::TooLong {
                value: value.into(),
            });
        }
        let (name, digest) = match value.split_once('@') {
            Some((n, d)) => (
                n,
                Some(
                    d.parse::<Digest>()
                        .map_err(|source| ReferenceError::Digest {
                            value: value.into(),
                            source,
                        })?,
                ),
            ),
            None => (value, None),
        };
        // The tag is after the last ':' that follows the last '/', so "host:5000/x" has none.
        let last_slash = name.rfind('/').map(|i| i + 1).unwrap_or(0);
        let (name, tag) = match name[last_slash..].rfind(':') {
            Some(i) => (&name[..last_slash + i], Some(&name[last_slash + i + 1..])),
            None => (name, None),
        };
        if let Some(t) = tag {
            if !valid_tag(t) {
                return Err(ReferenceError::Tag {
                    value: value.into(),
                    tag: t.into(),
                });
            }
        }
        let (registry, path) = match name.split_once('/') {
            Some((first, rest))
                if first.contains('.') || first.contains(':') || first == "localhost" =>
            {
                (first.to_string(), rest.to_string())
            }
            _ => (DOCKER_HUB.to_string(), name.to_string()),
        };
        if !valid_registry(&registry) {
            return Err(ReferenceError::Component {
                value: value.into(),
                component: registry,
            });
        }
        let registry = match registry.as_str() {
            "index.docker.io" | "registry-1.docker.io" => DOCKER_HUB.to_string(),
            _ => registry,
        };
        if path.bytes().any(|c| c.is_ascii_uppercase()) {
            return Err(ReferenceError::Uppercase {
                value: value.into(),
            });
        }
        for c in path.split('/') {
            if !valid_component(c) {
                return Err(ReferenceError::Component {
                    value: value.into(),
                    component: c.into(),
                });
            }
        }
        let repository = if registry == DOCKER_HUB && !path.contains('/') {
            format!("library/{path}")
        } else {
            path
        };
        let tag = match (tag, &digest) {
            (Some(t), _) => Some(t.to_string()),
            (None, Some(_)) => None,
            (None, None) => Some("latest".to_string()),
        };
        Ok(Self {
            registry,
            repository,
            tag,
            digest,
        })
    }
}

impl Reference {
    /// The name without tag or digest, fully qualified: `docker.io/library/busybox`.
    pub fn name(&self) -> String {
        format!("{}/{}", self.registry, self.repository)
    }

    /// The short form Docker shows: `busybox`, `user/app`, `127.0.0.1:5000/x`.
    pub fn familiar_name(&self) -> String {
        if self.registry == DOCKER_HUB {
            self.repository
                .strip_prefix("library/")
                .unwrap_or(&self.repository)
                .to_string()
        } else {
            self.name()
        }
    }

    /// The tag or digest the registry is asked for.
    pub fn manifest_selector(&self) -> String {
        match (&self.digest, &self.tag) {
            (Some(d), _) => d.to_string(),
            (None, Some(t)) => t.clone(),
            (None, None) => "latest".into(),
        }
    }

    /// The host the registry API is served from (Docker Hub's differs from its name).
    pub fn api_host(&self) -> &str {
        if self.registry == DOCKER_HUB {
            DOCKER_HUB_API
        } else {
            &self.registry
        }
    }

    /// `name:tag` as stored in the image index; `None` for digest-only references.
    pub fn tagged(&self) -> Option<String> {
        self.tag.as_ref().map(|t| format!("{}:{t}", self.name()))
    }
}

impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.name())?;
        if let Some(t) = &self.tag {
            write!(f, ":{t}")?;
        }
        if let Some(d) = &self.digest {
            write!(f, "@{d}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> Reference {
        s.parse().unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    #[test]
    fn docker_hub_normalisation() {
        let r = p("busybox");
        assert_eq!(r.to_string(), "docker.io/library/busybox:latest");
        assert_eq!(r.familiar_name(), "busybox");
        assert_eq!(r.api_host(), "registry-1.docker.io");
        assert_eq!(p("user/app:1.0").to_string(), "docker.io/user/app:1.0");
        assert_eq!(
            p("index.docker.io/busybox").to_string(),
            "docker.io/library/busybox:latest"
        );
        assert_eq!(p("docker.io/library/busybox:1").familiar_name(), "busybox");
    }

    #[test]
    fn registries_with_port_and_localhost() {
        let r = p("127.0.0.1:5000/busybox");
        assert_eq!(r.registry, "127.0.0.1:5000");
        assert_eq!(r.repository, "busybox");
        assert_eq!(r.tag.as_deref(), Some("latest"));
        let r = p("localhost/a/b:t");
        assert_eq!(
            (r.registry.as_str(), r.repository.as_str()),
            ("localhost", "a/b")
        );
        let r = p("quay.io/org/app:v1.2-rc");
        assert_eq!(r.tag.as_deref(), Some("v1.2-rc"));
        // a port but no tag: the ':' belongs to the host
        assert_eq!(p("host:5000/x").tag.as_deref(), Some("latest"));
    }

    #[test]
    fn digests_and_tags() {
        let d = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
        let r = p(&format!("busybox@{d}"));
        assert_eq!(r.tag, None);
        assert_eq!(r.manifest_selector(), d);
        let r = p(&format!("h.io/busybox:1@{d}"));
        assert_eq!(r.tag.as_deref(), Some("1"));
        assert_eq!(r.manifest_selector(), d);
    }

    #[test]
    fn rejects_bad_input() {
        for bad in [
            "",
            "Busybox",
            "busybox:",
            "busybox:-x",
            "a//b",
            "-a",
            "a@sha256:1234",
            "a@md5:00",
            "a/../b",
            "h.io/x:t/y",
        ] {
            assert!(bad.parse::<Reference>().is_err(), "{bad:?} accepted");
        }
    }
}

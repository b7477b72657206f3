//! Loading and validating a bundle's `config.json`.
//!
//! Parsing is done by `oci-spec`; this module adds the checks a runtime needs before it creates
//! anything, so bad input fails early with the field's name.

use std::path::{Path, PathBuf};

use oci_spec::runtime::{LinuxNamespaceType, Spec};

/// Why a bundle's configuration cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum SpecError {
    /// The file could not be read.
    #[error("reading {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The JSON is malformed or a field has the wrong type or an unknown value.
    #[error("parsing {path}: {source}")]
    Parse {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    /// A field holds a value the runtime cannot use.
    #[error("invalid {field} in config.json: {reason}")]
    Invalid { field: &'static str, reason: String },
}

fn invalid(field: &'static str, reason: impl Into<String>) -> SpecError {
    SpecError::Invalid {
        field,
        reason: reason.into(),
    }
}

/// Reads and parses `BUNDLE/config.json`.
pub fn load(bundle: &Path) -> Result<Spec, SpecError> {
    let path = bundle.join("config.json");
    let data = std::fs::read(&path).map_err(|source| SpecError::Read {
        path: path.clone(),
        source,
    })?;
    serde_json::from_slice(&data).map_err(|source| SpecError::Parse { path, source })
}

/// Checks what `create` needs before it creates anything.
pub fn validate(spec: &Spec) -> Result<(), SpecError> {
    let version = spec.version();
    if !version.starts_with("1.") {
        return Err(invalid(
            "ociVersion",
            format!("{version:?} is not a 1.x runtime-spec version"),
        ));
    }
    let root = spec
        .root()
        .as_ref()
        .ok_or_else(|| invalid("root", "missing"))?;
    if root.path().as_os_str().is_empty() {
        return Err(invalid("root.path", "empty"));
    }
    let process = spec
        .process()
        .as_ref()
        .ok_or_else(|| invalid("process", "missing (required by create)"))?;
    match process.args() {
        Some(args) if !args.is_empty() => {}
        _ => return Err(invalid("process.args", "missing or empty")),
    }
    if !process.cwd().is_absolute() {
        return Err(invalid(
            "process.cwd",
            format!("{:?} is not an absolute path", process.cwd()),
        ));
    }
    let linux = spec
        .linux()
        .as_ref()
        .ok_or_else(|| invalid("linux", "missing (only Linux containers are supported)"))?;
    if let Some(namespaces) = linux.namespaces() {
        let mut seen = Vec::new();
        for ns in namespaces {
            if seen.contains(&ns.typ()) {
                return Err(invalid(
                    "linux.namespaces",
                    format!("namespace {:?} listed twice", ns.typ()),
                ));
            }
            seen.push(ns.typ());
        }
        let has = |t: LinuxNamespaceType| seen.contains(&t);
        if spec.hostname().is_some() && !has(LinuxNamespaceType::Uts) {
            return Err(invalid(
                "hostname",
                "set without a new or joined uts namespace",
            ));
        }
        if linux.uid_mappings().as_ref().is_some_and(|m| !m.is_empty())
            && !has(LinuxNamespaceType::User)
        {
            return Err(invalid("linux.uidMappings", "set without a user namespace"));
        }
        if linux.time_offsets().is_some() && !has(LinuxNamespaceType::Time) {
            return Err(invalid("linux.timeOffsets", "set without a time namespace"));
        }
    }
    Ok(())
}

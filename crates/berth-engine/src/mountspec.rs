//! `-v/--volume`, `--mount` and `--tmpfs` as Docker parses them, into [`MountRecord`]s: a pure
//! step, unit-tested without root. Volumes come out with their name (empty for an anonymous
//! one) and no source yet; the engine creates them and fills the source in.
//!
//! The rules and messages follow moby's `volume/mounts/linux_parser.go` (`-v`) and the CLI's
//! `opts/mount.go` (`--mount`), so scripts written for Docker fail the same way here.

use std::path::Path;

use crate::record::MountRecord;
use crate::volume::{clean_container_path, valid_name};

/// Why a mount flag was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MountSpecError {
    #[error("invalid volume specification: '{spec}'{}", why_suffix(why))]
    Volume { spec: String, why: String },
    #[error("invalid argument {spec:?} for \"--mount\" flag: {why}")]
    Mount { spec: String, why: String },
    #[error("invalid mount config for type \"{kind}\": {why}")]
    Config { kind: &'static str, why: String },
    #[error("invalid --tmpfs {spec:?}: the path must be absolute, without ..")]
    Tmpfs { spec: String },
    #[error("Duplicate mount point: {0}")]
    Duplicate(String),
}

fn why_suffix(why: &str) -> String {
    if why.is_empty() {
        String::new()
    } else {
        format!(": {why}")
    }
}

const PROPAGATIONS: &[&str] = &[
    "private", "rprivate", "shared", "rshared", "slave", "rslave",
];

/// The destination as the container sees it, cleaned; refuses relative paths, `/` and `..`.
fn destination(kind: &'static str, dst: &str) -> Result<String, MountSpecError> {
    if dst == "/" || (dst.starts_with('/') && dst.trim_matches('/').is_empty()) {
        return Err(MountSpecError::Config {
            kind,
            why: "invalid specification: destination can't be '/'".into(),
        });
    }
    clean_container_path(dst).ok_or_else(|| MountSpecError::Config {
        kind,
        why: format!(
            "invalid mount path: '{dst}' mount path must be absolute and must not contain '..'"
        ),
    })
}

/// `-v SRC:DST[:OPTS]`, `-v NAME:DST[:OPTS]` or `-v DST` (an anonymous volume).
pub fn parse_volume_flag(spec: &str) -> Result<MountRecord, MountSpecError> {
    let invalid = |why: &str| MountSpecError::Volume {
        spec: spec.to_owned(),
        why: why.to_owned(),
    };
    let parts: Vec<&str> = spec.split(':').collect();
    let (src, dst, mode) = match parts.as_slice() {
        [d] => ("", *d, ""),
        // moby: a destination with a mode but no source is not a volume (`/foo:rw`).
        [_, m] if is_mode(m) => return Err(invalid("")),
        [s, d] => (*s, *d, ""),
        [s, d, m] => (*s, *d, *m),
        _ => return Err(invalid("")),
    };
    if dst.is_empty() {
        return Err(invalid(""));
    }
    let bind = src.starts_with('/');
    let kind = if bind { "bind" } else { "volume" };
    let destination = destination(kind, dst).map_err(|e| invalid(&e.to_string()))?;
    if !bind && !src.is_empty() && !valid_name(src) {
        return Err(invalid(&format!(
            "{src:?} includes invalid characters for a local volume name, only \"[a-zA-Z0-9][a-zA-Z0-9_.-]\" are allowed; if you intended to pass a host directory, use an absolute path"
        )));
    }
    let mut m = MountRecord {
        kind: kind.into(),
        source: if bind { src.to_owned() } else { String::new() },
        destination,
        rw: true,
        name: if bind { String::new() } else { src.to_owned() },
        anonymous: !bind && src.is_empty(),
        ..Default::default()
    };
    for o in mode.split(',').filter(|o| !o.is_empty()) {
        match o {
            "ro" => m.rw = false,
            "rw" => m.rw = true,
            // SELinux relabelling and macOS consistency: accepted, nothing to do here.
            "z" | "Z" | "consistent" | "cached" | "delegated" => {}
            "nocopy" if !bind => m.nocopy = true,
            p if bind && PROPAGATIONS.contains(&p) => m.propagation = p.to_owned(),
            _ => return Err(invalid(&format!("invalid mode: {o}"))),
        }
    }
    Ok(m)
}

fn is_mode(s: &str) -> bool {
    s.split(',')
        .all(|o| matches!(o, "ro" | "rw" | "z" | "Z" | "nocopy") || PROPAGATIONS.contains(&o))
}

fn parse_bool(v: Option<&str>) -> Option<bool> {
    match v {
        None | Some("1" | "true" | "True" | "TRUE") => Some(true),
        Some("0" | "false" | "False" | "FALSE") => Some(false),
        _ => None,
    }
}

/// `--mount type=bind|volume|tmpfs,source=..,target=..,readonly,...` (Docker's keys).
pub fn parse_mount_flag(spec: &str) -> Result<MountRecord, MountSpecError> {
    let bad = |why: String| MountSpecError::Mount {
        spec: spec.to_owned(),
        why,
    };
    let mut kind: Option<String> = None;
    let mut source = String::new();
    let mut target = String::new();
    let mut readonly = false;
    let mut propagation = String::new();
    let mut nonrecursive = false;
    let mut nocopy = false;
    let mut tmpfs_size: Option<i64> = None;
    let mut tmpfs_mode: Option<u32> = None;
    // Which family of type-specific keys was used, to refuse mixing (moby's message).
    let mut family: Vec<&'static str> = Vec::new();
    for field in spec.split(',') {
        let (key, value) = match field.split_once('=') {
            Some((k, v)) => (k.trim().to_ascii_lowercase(), Some(v)),
            None => (field.trim().to_ascii_lowercase(), None),
        };
        let need = |v: Option<&str>| -> Result<String, MountSpecError> {
            v.map(str::to_owned)
                .ok_or_else(|| bad(format!("invalid field '{field}' must be a key=value pair")))
        };
        let boolean = |v: Option<&str>| -> Result<bool, MountSpecError> {
            parse_bool(v).ok_or_else(|| {
                bad(format!(
                    "invalid value for {key}: {}",
                    v.unwrap_or_default()
                ))
            })
        };
        match key.as_str() {
            "type" => kind = Some(need(value)?.to_ascii_lowercase()),
            "source" | "src" => source = need(value)?,
            "target" | "dst" | "destination" => target = need(value)?,
            "readonly" | "ro" => readonly = boolean(value)?,
            "consistency" => {
                need(value)?;
            }
            "bind-propagation" => {
                family.push("bind");
                let p = need(value)?.to_ascii_lowercase();
                if !PROPAGATIONS.contains(&p.as_str()) {
                    return Err(bad(format!("invalid bind-propagation value {p:?}")));
                }
                propagation = p;
            }
            "bind-nonrecursive" => {
                family.push("bind");
                nonrecursive = boolean(value)?;
            }
            "volume-nocopy" => {
                family.push("volume");
                nocopy = boolean(value)?;
            }
            "volume-label" | "volume-opt" | "volume-driver" | "volume-subpath" => {
                family.push("volume");
                need(value)?;
                return Err(bad(format!(
                    "{key} is not supported yet (create the volume with `berth volume create` first)"
                )));
            }
            "tmpfs-size" => {
                family.push("tmpfs");
                let v = need(value)?;
                tmpfs_size = Some(
                    crate::bundle::parse_bytes(&v)
                        .ok_or_else(|| bad(format!("invalid value for tmpfs-size: {v}")))?,
                );
            }
            "tmpfs-mode" => {
                family.push("tmpfs");
                let v = need(value)?;
                tmpfs_mode = Some(
                    u32::from_str_radix(&v, 8)
                        .ok()
                        .filter(|m| *m <= 0o7777)
                        .ok_or_else(|| bad(format!("invalid value for tmpfs-mode: {v}")))?,
                );
            }
            "" => {
                return Err(bad(format!(
                    "invalid field '{field}' must be a key=value pair"
                )))
            }
            _ => return Err(bad(format!("unexpected key '{key}' in '{field}'"))),
        }
    }
    let kind = kind.ok_or_else(|| bad("type is required".into()))?;
    if target.is_empty() {
        return Err(bad("target is required".into()));
    }
    let kind: &'static str = match kind.as_str() {
        "bind" => "bind",
        "volume" => "volume",
        "tmpfs" => "tmpfs",
        other => {
            return Err(bad(format!(
                "mount type {other:?} is not supported (bind, volume, tmpfs)"
            )))
        }
    };
    if let Some(f) = family.iter().find(|f| **f != kind) {
        return Err(bad(format!(
            "cannot mix '{f}-*' options with mount type '{kind}'"
        )));
    }
    let destination = destination(kind, &target)?;
    let cfg = |why: String| MountSpecError::Config { kind, why };
    let mut m = MountRecord {
        kind: kind.into(),
        destination,
        rw: !readonly,
        ..Default::default()
    };
    match kind {
        "bind" => {
            if source.is_empty() {
                return Err(cfg("field Source must not be empty".into()));
            }
            if !source.starts_with('/') {
                return Err(cfg(format!(
                    "invalid mount path: '{source}' mount path must be absolute"
                )));
            }
            if !Path::new(&source).exists() {
                return Err(cfg(format!("bind source path does not exist: {source}")));
            }
            m.source = source;
            m.propagation = propagation;
            m.nonrecursive = nonrecursive;
        }
        "volume" => {
            if !source.is_empty() && !valid_name(&source) {
                return Err(cfg(format!(
                    "{source:?} includes invalid characters for a local volume name, only \"[a-zA-Z0-9][a-zA-Z0-9_.-]\" are allowed"
                )));
            }
            m.anonymous = source.is_empty();
            m.name = source;
            m.nocopy = nocopy;
        }
        _ => {
            if !source.is_empty() {
                return Err(cfg("field Source must not be specified".into()));
            }
            let mut o = Vec::new();
            if let Some(s) = tmpfs_size {
                o.push(format!("size={s}"));
            }
            if let Some(md) = tmpfs_mode {
                o.push(format!("mode={md:o}"));
            }
            if readonly {
                o.push("ro".into());
            }
            m.source = o.join(",");
        }
    }
    Ok(m)
}

/// `--tmpfs PATH[:OPTIONS]`.
pub fn parse_tmpfs_flag(spec: &str) -> Result<MountRecord, MountSpecError> {
    let (dst, o) = spec.split_once(':').unwrap_or((spec, ""));
    let destination = destination("tmpfs", dst).map_err(|_| MountSpecError::Tmpfs {
        spec: spec.to_owned(),
    })?;
    Ok(MountRecord {
        kind: "tmpfs".into(),
        source: o.to_owned(),
        destination,
        rw: !o.split(',').any(|x| x == "ro"),
        ..Default::default()
    })
}

/// Every mount of `-v`, `--mount` and `--tmpfs`, refusing two at one destination.
pub fn parse_all(
    volumes: &[String],
    mounts: &[String],
    tmpfs: &[String],
) -> Result<Vec<MountRecord>, MountSpecError> {
    let mut out: Vec<MountRecord> = Vec::new();
    let parsed = volumes
        .iter()
        .map(|v| parse_volume_flag(v))
        .chain(mounts.iter().map(|m| parse_mount_flag(m)))
        .chain(tmpfs.iter().map(|t| parse_tmpfs_flag(t)));
    for m in parsed {
        let m = m?;
        if out.iter().any(|o| o.destination == m.destination) {
            return Err(MountSpecError::Duplicate(m.destination));
        }
        out.push(m);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn volume_flag_forms() {
        let m = parse_volume_flag("/tmp:/data:ro,Z").unwrap();
        assert_eq!(
            (m.kind.as_str(), m.source.as_str(), m.rw),
            ("bind", "/tmp", false)
        );
        let m = parse_volume_flag("cache:/var/cache/:nocopy").unwrap();
        assert_eq!(m.kind, "volume");
        assert_eq!(m.name, "cache");
        assert_eq!(m.destination, "/var/cache");
        assert!(m.nocopy && m.rw && !m.anonymous);
        let m = parse_volume_flag("/data").unwrap();
        assert!(m.anonymous && m.name.is_empty() && m.kind == "volume");
        let m = parse_volume_flag("/h:/c:rshared").unwrap();
        assert_eq!(m.propagation, "rshared");
    }

    #[test]
    fn volume_flag_errors_name_the_spec() {
        let e = |s: &str| parse_volume_flag(s).unwrap_err().to_string();
        assert_eq!(e("/foo:rw"), "invalid volume specification: '/foo:rw'");
        assert!(e("a:b:c:d").starts_with("invalid volume specification: 'a:b:c:d'"));
        assert!(e("vol:data").contains("mount path must be absolute"));
        assert!(e("vol:/").contains("destination can't be '/'"));
        assert!(e("vol:/a/../b").contains("'..'"));
        assert!(e("v@l:/data").contains("invalid characters for a local volume name"));
        assert!(e("vol:/data:bogus").contains("invalid mode: bogus"));
        assert!(e("vol:/data:rshared").contains("invalid mode: rshared"));
        assert!(e("/h:/data:nocopy").contains("invalid mode: nocopy"));
    }

    #[test]
    fn mount_flag_keys() {
        let m =
            parse_mount_flag("type=bind,source=/tmp,target=/data,readonly,bind-propagation=rslave")
                .unwrap();
        assert_eq!(m.kind, "bind");
        assert!(!m.rw);
        assert_eq!(m.propagation, "rslave");
        let m = parse_mount_flag("type=volume,src=cache,dst=/c,volume-nocopy=true").unwrap();
        assert_eq!((m.name.as_str(), m.nocopy), ("cache", true));
        let m = parse_mount_flag("type=volume,target=/anon").unwrap();
        assert!(m.anonymous);
        let m = parse_mount_flag("type=tmpfs,target=/t,tmpfs-size=1m,tmpfs-mode=1770").unwrap();
        assert_eq!(m.source, "size=1048576,mode=1770");
        let m = parse_mount_flag("type=bind,src=/tmp,dst=/x,ro=false").unwrap();
        assert!(m.rw);
    }

    #[test]
    fn mount_flag_errors_are_dockers() {
        let e = |s: &str| parse_mount_flag(s).unwrap_err().to_string();
        assert_eq!(
            e("type=bind,source=/tmp,target=/x,foo=bar"),
            "invalid argument \"type=bind,source=/tmp,target=/x,foo=bar\" for \"--mount\" flag: unexpected key 'foo' in 'foo=bar'"
        );
        assert!(e("source=/tmp,target=/x").ends_with("type is required"));
        assert!(e("type=bind,source=/tmp").ends_with("target is required"));
        assert!(e("type=bind,source").contains("invalid field 'source' must be a key=value pair"));
        assert!(e("type=nfs,target=/x").contains("not supported"));
        assert_eq!(
            e("type=bind,source=/does/not/exist/berth,target=/x"),
            "invalid mount config for type \"bind\": bind source path does not exist: /does/not/exist/berth"
        );
        assert!(e("type=bind,target=/x").contains("field Source must not be empty"));
        assert!(e("type=tmpfs,source=x,target=/x").contains("field Source must not be specified"));
        assert!(e("type=volume,target=/x,bind-propagation=shared")
            .contains("cannot mix 'bind-*' options with mount type 'volume'"));
        assert!(e("type=bind,src=/tmp,target=/x,readonly=maybe").contains("invalid value"));
    }

    #[test]
    fn duplicate_destinations_are_refused() {
        let e = parse_all(
            &["/tmp:/data".into()],
            &["type=volume,target=/data/".into()],
            &[],
        )
        .unwrap_err();
        assert_eq!(e, MountSpecError::Duplicate("/data".into()));
    }
}

//! `--device HOST[:CONTAINER[:PERMS]]` and the host devices of `--privileged`, as Docker does
//! them (moby `daemon/oci_linux.go` `WithDevices`, `opts.ParseDevice`):
//!
//! - `HOST` is resolved through symlinks; a device node gives one device, a directory every
//!   device node below it (at the same relative path under `CONTAINER`);
//! - each device becomes an entry of `linux.devices` (created by the runtime with the host
//!   node's type, major, minor, mode and owner) and a device-cgroup rule allowing `PERMS`
//!   (default `rwm`) on exactly that major:minor;
//! - `--privileged` gets every device node of the host's `/dev` (except the `pts`, `shm`,
//!   `mqueue` and `fd` directories, `/dev/console` and `/dev/ptmx`, which the runtime provides
//!   itself) and a
//!   device cgroup that allows everything.
//!
//! A missing host device is an error before anything is created.

use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use serde_json::{json, Value};

use crate::bundle::RunOptions;

/// Why a `--device` could not be used.
#[derive(Debug, thiserror::Error)]
pub enum DeviceError {
    #[error("invalid --device {spec:?}: {why}")]
    Invalid { spec: String, why: &'static str },
    #[error("error gathering device information while adding custom device {path:?}")]
    Gather {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("--device {path:?} is neither a device node nor a directory of device nodes")]
    NotDevice { path: String },
}

/// One `--device` as given.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceMapping {
    pub host: String,
    pub container: String,
    pub perms: String,
}

/// A device node to create in the container, and what the device cgroup allows on it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Device {
    /// Path inside the container.
    pub path: String,
    /// `c` or `b`.
    pub kind: char,
    pub major: u64,
    pub minor: u64,
    /// Permission bits of the host node.
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    /// `r`, `w`, `m` letters the cgroup allows.
    pub access: String,
}

/// Docker's `validDeviceMode`: a non-empty set of distinct `r`, `w`, `m`.
fn valid_perms(p: &str) -> bool {
    !p.is_empty()
        && p.len() <= 3
        && p.chars().all(|c| matches!(c, 'r' | 'w' | 'm'))
        && p.chars().enumerate().all(|(i, c)| !p[..i].contains(c))
}

/// Parses `HOST[:CONTAINER[:PERMS]]` (and Docker's `HOST:PERMS`).
pub fn parse(spec: &str) -> Result<DeviceMapping, DeviceError> {
    let bad = |why| DeviceError::Invalid {
        spec: spec.to_owned(),
        why,
    };
    let parts: Vec<&str> = spec.split(':').collect();
    let (host, container, perms) = match parts.as_slice() {
        [h] => (*h, *h, "rwm"),
        [h, p] if valid_perms(p) => (*h, *h, *p),
        [h, c] => (*h, *c, "rwm"),
        [h, c, p] => (*h, if c.is_empty() { *h } else { *c }, *p),
        _ => return Err(bad("expected HOST[:CONTAINER[:PERMISSIONS]]")),
    };
    if !host.starts_with('/') {
        return Err(bad("the host path must be absolute"));
    }
    if !container.starts_with('/') || container.split('/').any(|c| c == "..") {
        return Err(bad("the container path must be absolute, without .."));
    }
    if !valid_perms(perms) {
        return Err(bad("permissions must be a combination of r, w and m"));
    }
    Ok(DeviceMapping {
        host: host.to_owned(),
        container: container.to_owned(),
        perms: perms.to_owned(),
    })
}

/// The device node at `path` (not following a final symlink), if it is one.
fn node(path: &Path, container: String, access: &str) -> Option<Device> {
    let md = std::fs::symlink_metadata(path).ok()?;
    let ft = md.file_type();
    let kind = if ft.is_char_device() {
        'c'
    } else if ft.is_block_device() {
        'b'
    } else {
        return None;
    };
    let rdev = md.rdev();
    Some(Device {
        path: container,
        kind,
        major: libc::major(rdev) as u64,
        minor: libc::minor(rdev) as u64,
        mode: md.mode() & 0o777,
        uid: md.uid(),
        gid: md.gid(),
        access: access.to_owned(),
    })
}

/// Every device node below `dir` (symlinks are not followed), mapped under `under`.
fn walk(dir: &Path, under: &str, access: &str, skip: &[&str], out: &mut Vec<Device>) {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return;
    };
    let mut entries: Vec<_> = rd.flatten().collect();
    entries.sort_by_key(|e| e.file_name());
    for e in entries {
        let name = e.file_name().to_string_lossy().into_owned();
        if skip.contains(&name.as_str()) {
            continue;
        }
        let path = e.path();
        let target = format!("{}/{name}", under.trim_end_matches('/'));
        match e.file_type() {
            Ok(t) if t.is_dir() => walk(&path, &target, access, &[], out),
            Ok(_) => out.extend(node(&path, target, access)),
            Err(_) => {}
        }
    }
}

/// Resolves the `--device` options against the host.
pub fn resolve(opts: &RunOptions) -> Result<Vec<Device>, DeviceError> {
    let mut out = Vec::new();
    for spec in &opts.devices {
        let m = parse(spec)?;
        let gather = |source| DeviceError::Gather {
            path: m.host.clone(),
            source,
        };
        let real: PathBuf = std::fs::canonicalize(&m.host).map_err(gather)?;
        let md = std::fs::metadata(&real).map_err(gather)?;
        if md.is_dir() {
            let before = out.len();
            walk(&real, &m.container, &m.perms, &[], &mut out);
            if out.len() == before {
                return Err(DeviceError::NotDevice { path: m.host });
            }
        } else {
            let d = node(&real, m.container.clone(), &m.perms).ok_or_else(|| {
                DeviceError::NotDevice {
                    path: m.host.clone(),
                }
            })?;
            out.push(d);
        }
    }
    Ok(out)
}

/// The device nodes of the host's `/dev` that a privileged container gets (moby's
/// `HostDevices`: the pts, shm, mqueue and fd directories and the console are the runtime's).
pub fn host_devices() -> Vec<Device> {
    let mut out = Vec::new();
    walk(
        Path::new("/dev"),
        "/dev",
        "rwm",
        &[
            "pts",
            "shm",
            "mqueue",
            "fd",
            "console",
            // a symlink to pts/ptmx in every container
            "ptmx",
            ".lxc",
            ".lxd-mounts",
            ".udev",
        ],
        &mut out,
    );
    out
}

/// Adds the devices to a generated spec: nodes in `linux.devices`, and (unless the container
/// is privileged, whose device cgroup allows all) one allow rule per device.
pub fn apply(
    spec: berth_runtime::Spec,
    opts: &RunOptions,
) -> Result<berth_runtime::Spec, DeviceError> {
    let mut devices = resolve(opts)?;
    if opts.privileged {
        let user: Vec<String> = devices.iter().map(|d| d.path.clone()).collect();
        devices.extend(
            host_devices()
                .into_iter()
                .filter(|d| !user.contains(&d.path)),
        );
    }
    if devices.is_empty() {
        return Ok(spec);
    }
    let mut s = serde_json::to_value(&spec).expect("a spec serialises");
    let linux = &mut s["linux"];
    let mut nodes = linux["devices"].as_array().cloned().unwrap_or_default();
    let mut rules = linux["resources"]["devices"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    for d in &devices {
        nodes.push(json!({
            "path": d.path, "type": d.kind.to_string(), "major": d.major, "minor": d.minor,
            "fileMode": d.mode, "uid": d.uid, "gid": d.gid,
        }));
        if !opts.privileged {
            rules.push(json!({
                "allow": true, "type": d.kind.to_string(), "major": d.major, "minor": d.minor,
                "access": d.access,
            }));
        }
    }
    linux["devices"] = Value::Array(nodes);
    linux["resources"]["devices"] = Value::Array(rules);
    Ok(serde_json::from_value(s).expect("devices keep the spec valid"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_dockers_forms() {
        let m = |h: &str, c: &str, p: &str| DeviceMapping {
            host: h.into(),
            container: c.into(),
            perms: p.into(),
        };
        assert_eq!(
            parse("/dev/fuse").unwrap(),
            m("/dev/fuse", "/dev/fuse", "rwm")
        );
        assert_eq!(
            parse("/dev/fuse:r").unwrap(),
            m("/dev/fuse", "/dev/fuse", "r")
        );
        assert_eq!(
            parse("/dev/fuse:/dev/x").unwrap(),
            m("/dev/fuse", "/dev/x", "rwm")
        );
        assert_eq!(
            parse("/dev/fuse:/dev/x:rw").unwrap(),
            m("/dev/fuse", "/dev/x", "rw")
        );
        for bad in [
            "dev/fuse",
            "/dev/fuse:x",
            "/dev/fuse:/dev/x:rwz",
            "/dev/fuse:/dev/x:rr",
            "/dev/fuse:/dev/x:",
            "/dev/fuse:/../x",
            "/a:/b:r:w",
        ] {
            assert!(parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn resolves_host_nodes_and_refuses_missing_ones() {
        let opts = RunOptions {
            devices: vec!["/dev/null:/dev/mynull:r".into()],
            ..Default::default()
        };
        let d = resolve(&opts).unwrap();
        assert_eq!(d.len(), 1);
        assert_eq!((d[0].kind, d[0].major, d[0].minor), ('c', 1, 3));
        assert_eq!(d[0].path, "/dev/mynull");
        assert_eq!(d[0].access, "r");
        let missing = RunOptions {
            devices: vec!["/dev/berth-no-such-device".into()],
            ..Default::default()
        };
        let e = resolve(&missing).unwrap_err();
        assert!(matches!(e, DeviceError::Gather { .. }));
        let file = RunOptions {
            devices: vec!["/proc/self/status".into()],
            ..Default::default()
        };
        assert!(matches!(
            resolve(&file).unwrap_err(),
            DeviceError::NotDevice { .. }
        ));
    }

    #[test]
    fn apply_adds_the_node_and_its_cgroup_rule() {
        let opts = RunOptions {
            devices: vec!["/dev/null:/dev/mynull:rw".into()],
            ..Default::default()
        };
        let spec = berth_runtime::ops::spec::default_spec(false);
        let v = serde_json::to_value(apply(spec, &opts).unwrap()).unwrap();
        let nodes = v["linux"]["devices"].as_array().unwrap();
        assert!(nodes.iter().any(|d| d["path"] == "/dev/mynull"
            && d["type"] == "c"
            && d["major"] == 1
            && d["minor"] == 3));
        let rules = v["linux"]["resources"]["devices"].as_array().unwrap();
        assert!(rules.iter().any(|r| r["allow"] == true
            && r["major"] == 1
            && r["minor"] == 3
            && r["access"] == "rw"));
        // Privileged: host nodes, and no per-device rule (its cgroup allows all).
        let privileged = RunOptions {
            privileged: true,
            ..Default::default()
        };
        let spec = berth_runtime::ops::spec::default_spec(false);
        let v = serde_json::to_value(apply(spec, &privileged).unwrap()).unwrap();
        let nodes = v["linux"]["devices"].as_array().unwrap();
        assert!(nodes.iter().any(|d| d["path"] == "/dev/null"));
        assert!(!nodes
            .iter()
            .any(|d| d["path"] == "/dev/console" || d["path"] == "/dev/ptmx"));
    }
}

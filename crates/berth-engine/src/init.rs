//! `--init`: a minimal init as the container's PID 1 (`berth-init`, Docker's tini role) that
//! forwards signals to the command and reaps zombies.
//!
//! The binary comes from the host and is bind-mounted read-only at [`CONTAINER_PATH`] (where
//! Docker puts `docker-init`); the process becomes `CONTAINER_PATH -- ARGS...`. Read-only
//! matters: a container root that opens `/proc/1/exe` for writing must not reach the host
//! file (CVE-2019-5736). It must be statically linked, since the image may have no libc or
//! loader at all; a dynamic one is refused here with a clear error rather than failing inside
//! the container with "no such file or directory".

use std::path::{Path, PathBuf};

use serde_json::json;

/// Where the init appears inside the container.
pub const CONTAINER_PATH: &str = "/sbin/docker-init";

/// The environment variable that names the init binary (Docker's `--init-path`).
pub const PATH_VAR: &str = "BERTH_INIT_PATH";

/// Why no usable init binary was found.
#[derive(Debug, thiserror::Error)]
pub enum InitError {
    #[error("--init: no berth-init binary found (looked at {searched}); build it statically and install it as /usr/libexec/berth/berth-init, or name it with {PATH_VAR}")]
    NotFound { searched: String },
    #[error("--init: {path} is dynamically linked; containers without a libc could not run it (build it with RUSTFLAGS='-C target-feature=+crt-static')")]
    Dynamic { path: PathBuf },
    #[error("--init: {path} is not a 64-bit little-endian ELF executable")]
    NotElf { path: PathBuf },
    #[error("--init: reading {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// Whether the ELF file `data` asks for a program interpreter (`PT_INTERP`): a dynamic
/// executable. `None` when it is not a 64-bit little-endian ELF file.
pub fn elf_is_dynamic(data: &[u8]) -> Option<bool> {
    const PT_INTERP: u32 = 3;
    if data.len() < 64 || &data[..4] != b"\x7fELF" || data[4] != 2 || data[5] != 1 {
        return None;
    }
    let u16_at = |o: usize| u16::from_le_bytes([data[o], data[o + 1]]) as usize;
    let phoff = u64::from_le_bytes(data[0x20..0x28].try_into().ok()?) as usize;
    let (phentsize, phnum) = (u16_at(0x36), u16_at(0x38));
    if phentsize < 4 {
        return None;
    }
    for i in 0..phnum {
        let at = phoff.checked_add(i.checked_mul(phentsize)?)?;
        let p_type = data.get(at..at.checked_add(4)?)?;
        if u32::from_le_bytes(p_type.try_into().ok()?) == PT_INTERP {
            return Some(true);
        }
    }
    Some(false)
}

/// Checks that `path` is a static ELF executable.
pub fn check_static(path: &Path) -> Result<(), InitError> {
    let data = std::fs::read(path).map_err(|source| InitError::Read {
        path: path.to_owned(),
        source,
    })?;
    match elf_is_dynamic(&data) {
        Some(false) => Ok(()),
        Some(true) => Err(InitError::Dynamic {
            path: path.to_owned(),
        }),
        None => Err(InitError::NotElf {
            path: path.to_owned(),
        }),
    }
}

/// The init binary: `$BERTH_INIT_PATH` when set (it must then be usable), else the first
/// static `berth-init` next to the running program or in the usual library directories.
pub fn find() -> Result<PathBuf, InitError> {
    if let Some(p) = std::env::var_os(PATH_VAR).filter(|p| !p.is_empty()) {
        let p = PathBuf::from(p);
        check_static(&p)?;
        return Ok(p);
    }
    let mut candidates = Vec::new();
    if let Some(dir) = std::env::current_exe()
        .ok()
        .and_then(|e| e.parent().map(Path::to_owned))
    {
        candidates.push(dir.join("berth-init"));
    }
    for d in [
        "/usr/local/libexec/berth",
        "/usr/libexec/berth",
        "/usr/local/lib/berth",
        "/usr/lib/berth",
    ] {
        candidates.push(Path::new(d).join("berth-init"));
    }
    let mut first_problem = None;
    for c in &candidates {
        if !c.is_file() {
            continue;
        }
        match check_static(c) {
            Ok(()) => return Ok(c.clone()),
            Err(e) => {
                first_problem.get_or_insert(e);
            }
        }
    }
    Err(first_problem.unwrap_or_else(|| InitError::NotFound {
        searched: candidates
            .iter()
            .map(|c| c.display().to_string())
            .collect::<Vec<_>>()
            .join(", "),
    }))
}

/// Puts the init in front of the container's process and binds it in read-only.
pub fn apply(spec: &mut serde_json::Value, binary: &Path) {
    if let Some(args) = spec["process"]["args"].as_array_mut() {
        args.insert(0, json!("--"));
        args.insert(0, json!(CONTAINER_PATH));
    }
    let mount = json!({
        "destination": CONTAINER_PATH,
        "type": "bind",
        "source": binary,
        "options": ["bind", "ro", "nosuid", "nodev", "rprivate"],
    });
    match spec["mounts"].as_array_mut() {
        Some(m) => m.push(mount),
        None => spec["mounts"] = json!([mount]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn elf(interp: bool) -> Vec<u8> {
        let mut d = vec![0u8; 64 + 2 * 56];
        d[..6].copy_from_slice(b"\x7fELF\x02\x01");
        d[0x20..0x28].copy_from_slice(&64u64.to_le_bytes());
        d[0x36..0x38].copy_from_slice(&56u16.to_le_bytes());
        d[0x38..0x3a].copy_from_slice(&2u16.to_le_bytes());
        d[64..68].copy_from_slice(&1u32.to_le_bytes()); // PT_LOAD
        let second = if interp { 3u32 } else { 1 };
        d[120..124].copy_from_slice(&second.to_le_bytes());
        d
    }

    #[test]
    fn elf_interpreter_tells_dynamic_from_static() {
        assert_eq!(elf_is_dynamic(&elf(true)), Some(true));
        assert_eq!(elf_is_dynamic(&elf(false)), Some(false));
        assert_eq!(elf_is_dynamic(b"#!/bin/sh\n"), None);
        // Program headers pointing past the end are not trusted.
        let mut bad = elf(false);
        bad[0x20..0x28].copy_from_slice(&u64::MAX.to_le_bytes());
        assert_eq!(elf_is_dynamic(&bad), None);
        // The host's own shell is dynamic on Debian.
        if let Ok(d) = std::fs::read("/bin/bash") {
            assert_eq!(elf_is_dynamic(&d), Some(true));
        }
    }

    #[test]
    fn init_goes_in_front_and_is_bound_read_only() {
        let mut spec = json!({"process": {"args": ["sh", "-c", "x"]}, "mounts": []});
        apply(&mut spec, Path::new("/usr/libexec/berth/berth-init"));
        assert_eq!(
            spec["process"]["args"],
            json!([CONTAINER_PATH, "--", "sh", "-c", "x"])
        );
        assert_eq!(spec["mounts"][0]["destination"], CONTAINER_PATH);
        assert!(spec["mounts"][0]["options"]
            .as_array()
            .unwrap()
            .contains(&json!("ro")));
    }
}

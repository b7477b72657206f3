//! Verified access to procfs.
//!
//! Every write to `/proc` (uid/gid maps, `oom_score_adj`, sysctls, LSM labels) goes through a
//! file descriptor whose filesystem `fstatfs` reports as procfs, opened without crossing a mount
//! point or following a magic link. A bind mount over `/proc/sys/...` or a symlinked `/proc`
//! therefore cannot redirect the write (CVE-2019-16884, CVE-2019-19921, CVE-2025-52881).

use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::{openat2, OFlag, OpenHow, ResolveFlag};
use nix::sys::stat::Mode;
use nix::sys::statfs::{fstatfs, PROC_SUPER_MAGIC};

/// A procfs access failed, or what was opened is not procfs.
#[derive(Debug, thiserror::Error)]
pub enum ProcfsError {
    /// Opening `/proc` itself, or a file below it, failed.
    #[error("opening {path}")]
    Open {
        path: PathBuf,
        #[source]
        source: Errno,
    },
    /// The file descriptor is not on a procfs filesystem: something is mounted over it.
    #[error("{path} is not on procfs (something is mounted over it)")]
    NotProcfs { path: PathBuf },
    /// Writing the value failed; the kernel refused it.
    #[error("writing {value:?} to {path}")]
    Write {
        path: PathBuf,
        value: String,
        #[source]
        source: Errno,
    },
}

/// An open, verified handle on a procfs mount.
#[derive(Debug)]
pub struct ProcFs {
    root: OwnedFd,
    mount: PathBuf,
}

fn check_procfs(fd: impl AsFd, path: &Path) -> Result<(), ProcfsError> {
    let st = fstatfs(fd).map_err(|source| ProcfsError::Open {
        path: path.to_owned(),
        source,
    })?;
    if st.filesystem_type() != PROC_SUPER_MAGIC {
        return Err(ProcfsError::NotProcfs {
            path: path.to_owned(),
        });
    }
    Ok(())
}

impl ProcFs {
    /// Opens the procfs mounted at `mount` (normally `/proc`), refusing a symlink or
    /// anything that is not procfs.
    pub fn open(mount: &Path) -> Result<Self, ProcfsError> {
        let how = OpenHow::new()
            .flags(OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC | OFlag::O_NOFOLLOW)
            .resolve(ResolveFlag::RESOLVE_NO_SYMLINKS);
        let root =
            openat2(nix::fcntl::AT_FDCWD, mount, how).map_err(|source| ProcfsError::Open {
                path: mount.to_owned(),
                source,
            })?;
        check_procfs(&root, mount)?;
        Ok(Self {
            root,
            mount: mount.to_owned(),
        })
    }

    /// Opens the procfs at `/proc`.
    pub fn host() -> Result<Self, ProcfsError> {
        Self::open(Path::new("/proc"))
    }

    /// Opens `rel` (e.g. `self/attr/exec`, `12/uid_map`, `sys/net/ipv4/ip_forward`) below this
    /// procfs: no magic links, no crossing into another mount, and the result must itself be
    /// on procfs.
    pub fn open_file(&self, rel: &str, flags: OFlag) -> Result<OwnedFd, ProcfsError> {
        let path = self.mount.join(rel);
        let how = OpenHow::new()
            .flags(flags | OFlag::O_CLOEXEC | OFlag::O_NOFOLLOW)
            .mode(Mode::empty())
            .resolve(
                ResolveFlag::RESOLVE_NO_MAGICLINKS
                    | ResolveFlag::RESOLVE_NO_XDEV
                    | ResolveFlag::RESOLVE_BENEATH,
            );
        let fd = openat2(&self.root, rel, how).map_err(|source| ProcfsError::Open {
            path: path.clone(),
            source,
        })?;
        check_procfs(&fd, &path)?;
        Ok(fd)
    }

    /// Writes `value` to the procfs file `rel` in a single `write(2)`, as procfs expects.
    pub fn write(&self, rel: &str, value: &str) -> Result<(), ProcfsError> {
        let fd = self.open_file(rel, OFlag::O_WRONLY)?;
        let written =
            nix::unistd::write(&fd, value.as_bytes()).map_err(|source| ProcfsError::Write {
                path: self.mount.join(rel),
                value: value.to_owned(),
                source,
            })?;
        if written != value.len() {
            return Err(ProcfsError::Write {
                path: self.mount.join(rel),
                value: value.to_owned(),
                source: Errno::EIO,
            });
        }
        Ok(())
    }

    /// Reads the whole procfs file `rel`.
    pub fn read(&self, rel: &str) -> Result<String, ProcfsError> {
        let fd = self.open_file(rel, OFlag::O_RDONLY)?;
        let mut file = std::fs::File::from(fd);
        let mut out = String::new();
        std::io::Read::read_to_string(&mut file, &mut out).map_err(|e| ProcfsError::Open {
            path: self.mount.join(rel),
            source: Errno::from_raw(e.raw_os_error().unwrap_or(libc::EIO)),
        })?;
        Ok(out)
    }
}

/// Undoes `/proc/PID/mountinfo`'s octal escapes (`\040` for a space; proc(5)).
pub fn unescape_mountinfo(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\'
            && i + 3 < b.len()
            && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c))
        {
            let v = (b[i + 1] - b'0') * 64 + (b[i + 2] - b'0') * 8 + (b[i + 3] - b'0');
            out.push(v);
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_own_status_through_verified_fd() {
        let proc = ProcFs::host().unwrap();
        let status = proc.read("self/status").unwrap();
        assert!(status.contains("Pid:"));
    }

    #[test]
    fn refuses_a_directory_that_is_not_procfs() {
        let dir = tempfile::tempdir().unwrap();
        match ProcFs::open(dir.path()) {
            Err(ProcfsError::NotProcfs { .. }) => {}
            other => panic!("expected NotProcfs, got {other:?}"),
        }
    }

    #[test]
    fn refuses_a_symlink_to_proc() {
        let dir = tempfile::tempdir().unwrap();
        let link = dir.path().join("proc");
        std::os::unix::fs::symlink("/proc", &link).unwrap();
        assert!(ProcFs::open(&link).is_err());
    }
}

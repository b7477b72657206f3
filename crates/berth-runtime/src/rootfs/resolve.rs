//! Resolving paths inside a rootfs that an attacker may control.
//!
//! A path is always resolved relative to a directory fd that stands for the rootfs, as if that
//! directory were `/`: `..` stops at it and absolute symlinks restart from it. The kernel does
//! this for us with `openat2(RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS)` (Linux 5.6,
//! openat2(2)); on older kernels an `O_PATH|O_NOFOLLOW` walk does the same one component at a
//! time, reading each symlink and resolving its target again inside the root.
//!
//! The result is an `O_PATH` descriptor: mounts are then done on that descriptor, so a symlink
//! swapped in after the check cannot move the mount outside the rootfs (CVE-2021-30465).

use std::collections::VecDeque;
use std::ffi::OsString;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::{openat, openat2, readlinkat, OFlag, OpenHow, ResolveFlag};
use nix::sys::stat::{fstat, mkdirat, Mode, SFlag};

/// Linux's limit on symlinks followed during one lookup (path_resolution(7)).
const MAX_SYMLINKS: usize = 40;

/// What the resolved path must be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Want {
    /// Anything.
    Any,
    /// A directory.
    Dir,
}

/// How symlinks inside the root are treated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Symlinks {
    /// Followed, but kept inside the root.
    Contain,
    /// Refused with `ELOOP` (for `/proc`, `/sys`, `/dev` and below).
    Refuse,
}

/// Lexically normalises an absolute container path: drops `.`, applies `..` (never above
/// `/`), and removes repeated slashes. The result starts with `/`.
pub fn normalize(path: &Path) -> PathBuf {
    let mut out = PathBuf::from("/");
    for c in path.components() {
        match c {
            Component::Normal(n) => out.push(n),
            Component::ParentDir => {
                out.pop();
            }
            Component::RootDir | Component::CurDir | Component::Prefix(_) => {}
        }
    }
    out
}

fn path_flags(want: Want) -> OFlag {
    let mut flags = OFlag::O_PATH | OFlag::O_CLOEXEC;
    if want == Want::Dir {
        flags |= OFlag::O_DIRECTORY;
    }
    flags
}

/// Opens `path` (absolute, as seen inside the container) below `root` as an `O_PATH`
/// descriptor, never leaving `root`.
pub fn open_in_root(
    root: BorrowedFd<'_>,
    path: &Path,
    want: Want,
    symlinks: Symlinks,
) -> Result<OwnedFd, Errno> {
    let rel = relative(path);
    let mut resolve = ResolveFlag::RESOLVE_IN_ROOT | ResolveFlag::RESOLVE_NO_MAGICLINKS;
    if symlinks == Symlinks::Refuse {
        resolve |= ResolveFlag::RESOLVE_NO_SYMLINKS;
    }
    let how = OpenHow::new().flags(path_flags(want)).resolve(resolve);
    // RESOLVE_IN_ROOT answers EAGAIN when a rename or mount anywhere on the host raced a `..`
    // step of the lookup (openat2(2)): a retry is the documented answer, and a busy host
    // (other containers starting) makes one likely sooner or later.
    let mut tries = 0;
    loop {
        match openat2(root, rel.as_path(), how) {
            Err(Errno::ENOSYS) => return walk_in_root(root, path, want, symlinks),
            Err(Errno::EAGAIN) if tries < 64 => tries += 1,
            other => return other,
        }
    }
}

fn relative(path: &Path) -> PathBuf {
    let n = normalize(path);
    match n.strip_prefix("/") {
        Ok(p) if !p.as_os_str().is_empty() => p.to_owned(),
        _ => PathBuf::from("."),
    }
}

/// The fallback for kernels without `openat2`: one `O_PATH|O_NOFOLLOW` open per component,
/// with symlinks read by `readlinkat` and resolved again inside the root.
pub fn walk_in_root(
    root: BorrowedFd<'_>,
    path: &Path,
    want: Want,
    symlinks: Symlinks,
) -> Result<OwnedFd, Errno> {
    // The stack of directories walked so far; its bottom is the root, so `..` cannot leave it.
    let mut stack: Vec<OwnedFd> = vec![root.try_clone_to_owned().map_err(io_errno)?];
    let mut todo: VecDeque<OsString> = components(path.as_os_str().as_bytes());
    let mut followed = 0usize;
    while let Some(name) = todo.pop_front() {
        if name == ".." {
            if stack.len() > 1 {
                stack.pop();
            }
            continue;
        }
        let top = stack.last().expect("the stack always holds the root");
        let fd = openat(
            top,
            name.as_os_str(),
            OFlag::O_PATH | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
            Mode::empty(),
        )?;
        let st = fstat(&fd)?;
        let kind = SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT;
        if kind == SFlag::S_IFLNK {
            if symlinks == Symlinks::Refuse {
                return Err(Errno::ELOOP);
            }
            followed += 1;
            if followed > MAX_SYMLINKS {
                return Err(Errno::ELOOP);
            }
            // An empty name reads the link the O_PATH descriptor refers to.
            let target = readlinkat(&fd, "")?;
            let bytes = target.as_bytes();
            if bytes.first() == Some(&b'/') {
                stack.truncate(1);
            }
            for (i, c) in components(bytes).into_iter().enumerate() {
                todo.insert(i, c);
            }
            continue;
        }
        if !todo.is_empty() && kind != SFlag::S_IFDIR {
            return Err(Errno::ENOTDIR);
        }
        stack.push(fd);
    }
    let fd = stack.pop().expect("the stack always holds the root");
    if want == Want::Dir {
        let st = fstat(&fd)?;
        if SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT != SFlag::S_IFDIR {
            return Err(Errno::ENOTDIR);
        }
    }
    Ok(fd)
}

fn components(bytes: &[u8]) -> VecDeque<OsString> {
    bytes
        .split(|&b| b == b'/')
        .filter(|c| !c.is_empty() && *c != b".")
        .map(|c| OsString::from(std::ffi::OsStr::from_bytes(c)))
        .collect()
}

fn io_errno(e: std::io::Error) -> Errno {
    Errno::from_raw(e.raw_os_error().unwrap_or(libc::EIO))
}

/// What to create when a mount target is missing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Create {
    /// A directory (mode 0755).
    Dir,
    /// An empty regular file (mode 0644), for a file bind mount.
    File,
}

/// Opens `path` below `root` like [`open_in_root`], creating it (and its missing parents, as
/// directories) when it does not exist. Each new entry is created relative to the descriptor
/// of its resolved parent with `O_NOFOLLOW`/`mkdirat`, so creation never happens outside the
/// root either (CVE-2024-45310).
pub fn ensure_in_root(
    root: BorrowedFd<'_>,
    path: &Path,
    create: Create,
    symlinks: Symlinks,
) -> Result<OwnedFd, Errno> {
    let want = match create {
        Create::Dir => Want::Dir,
        Create::File => Want::Any,
    };
    match open_in_root(root, path, want, symlinks) {
        Err(Errno::ENOENT) => {}
        other => return other,
    }
    let path = normalize(path);
    let (Some(parent), Some(name)) = (path.parent(), path.file_name()) else {
        // "/" always exists; ENOENT on it means the root itself is gone.
        return Err(Errno::ENOENT);
    };
    let parent_fd = ensure_in_root(root, parent, Create::Dir, symlinks)?;
    match create {
        Create::Dir => match mkdirat(&parent_fd, name, Mode::from_bits_truncate(0o755)) {
            Ok(()) | Err(Errno::EEXIST) => {}
            Err(e) => return Err(e),
        },
        Create::File => match openat(
            &parent_fd,
            name,
            OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_NOFOLLOW | OFlag::O_WRONLY | OFlag::O_CLOEXEC,
            Mode::from_bits_truncate(0o644),
        ) {
            Ok(fd) => drop(fd),
            Err(Errno::EEXIST) => {}
            Err(e) => return Err(e),
        },
    }
    // Resolve again from the root: if something replaced the new entry with a symlink in the
    // meantime, the lookup still stays inside the root.
    open_in_root(root, &path, want, symlinks)
}

/// `/proc/self/fd/N` for a descriptor, to hand to calls that only take a path (mount(2),
/// chmod(2)). The kernel resolves this magic link to the very file the descriptor refers to.
pub(crate) fn fd_path(fd: impl AsFd) -> String {
    use std::os::fd::AsRawFd;
    format!("/proc/self/fd/{}", fd.as_fd().as_raw_fd())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    fn same(a: &OwnedFd, b: &Path) -> bool {
        let sa = fstat(a).unwrap();
        let sb = nix::sys::stat::lstat(b).unwrap();
        sa.st_dev == sb.st_dev && sa.st_ino == sb.st_ino
    }

    fn open_dir(p: &Path) -> OwnedFd {
        nix::fcntl::open(
            p,
            OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
            Mode::empty(),
        )
        .unwrap()
    }

    /// A root with `link -> /`, `up -> ../../..`, `abs -> /a/b`, `a/b/`, `f`.
    fn fixture() -> tempfile::TempDir {
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(d.path().join("a/b")).unwrap();
        std::fs::write(d.path().join("f"), b"x").unwrap();
        symlink("/", d.path().join("link")).unwrap();
        symlink("../../..", d.path().join("a/up")).unwrap();
        symlink("/a/b", d.path().join("abs")).unwrap();
        d
    }

    #[test]
    fn normalize_is_lexical_and_clamped_at_root() {
        assert_eq!(normalize(Path::new("/a/./b/../c//d")), Path::new("/a/c/d"));
        assert_eq!(normalize(Path::new("/../../etc")), Path::new("/etc"));
        assert_eq!(normalize(Path::new("/")), Path::new("/"));
    }

    #[test]
    fn symlinks_and_dotdot_stay_inside_the_root_both_ways() {
        let d = fixture();
        let root = open_dir(d.path());
        for resolve in [open_in_root, walk_in_root] {
            let cases = [
                ("/link/a/b", "a/b"),
                ("/a/up/a", "a"),
                ("/abs", "a/b"),
                ("/link/link/abs/../../f", "f"),
                ("/../../../f", "f"),
                ("/", ""),
            ];
            for (path, expect) in cases {
                let fd = resolve(root.as_fd(), Path::new(path), Want::Any, Symlinks::Contain)
                    .unwrap_or_else(|e| panic!("{path}: {e}"));
                assert!(same(&fd, &d.path().join(expect)), "{path} -> {expect}");
            }
        }
    }

    #[test]
    fn refused_symlinks_give_eloop_both_ways() {
        let d = fixture();
        let root = open_dir(d.path());
        for resolve in [open_in_root, walk_in_root] {
            let r = resolve(
                root.as_fd(),
                Path::new("/link/a"),
                Want::Any,
                Symlinks::Refuse,
            );
            assert_eq!(r.unwrap_err(), Errno::ELOOP);
        }
    }

    #[test]
    fn symlink_loops_end_with_eloop() {
        let d = tempfile::tempdir().unwrap();
        symlink("/loop", d.path().join("loop")).unwrap();
        let root = open_dir(d.path());
        for resolve in [open_in_root, walk_in_root] {
            let r = resolve(
                root.as_fd(),
                Path::new("/loop"),
                Want::Any,
                Symlinks::Contain,
            );
            assert_eq!(r.unwrap_err(), Errno::ELOOP);
        }
    }

    #[test]
    fn want_dir_refuses_a_file() {
        let d = fixture();
        let root = open_dir(d.path());
        for resolve in [open_in_root, walk_in_root] {
            let r = resolve(root.as_fd(), Path::new("/f"), Want::Dir, Symlinks::Contain);
            assert_eq!(r.unwrap_err(), Errno::ENOTDIR);
        }
    }

    #[test]
    fn ensure_creates_through_symlinks_inside_the_root_only() {
        let d = fixture();
        let outside = tempfile::tempdir().unwrap();
        // A symlink to the absolute host path of another directory: inside the root it means
        // <root>/<that path>, which does not exist; nothing is created through it, and
        // certainly not in the host directory.
        symlink(outside.path(), d.path().join("host")).unwrap();
        let root = open_dir(d.path());
        let r = ensure_in_root(
            root.as_fd(),
            Path::new("/host/new/dir"),
            Create::Dir,
            Symlinks::Contain,
        );
        assert_eq!(r.unwrap_err(), Errno::ENOENT);
        assert_eq!(std::fs::read_dir(outside.path()).unwrap().count(), 0);

        // Through a symlink to "/" and an absolute one, creation lands inside the root.
        let fd = ensure_in_root(
            root.as_fd(),
            Path::new("/link/abs/new/dir"),
            Create::Dir,
            Symlinks::Contain,
        )
        .unwrap();
        assert!(same(&fd, &d.path().join("a/b/new/dir")));
        let f = ensure_in_root(
            root.as_fd(),
            Path::new("/a/up/x/file"),
            Create::File,
            Symlinks::Contain,
        )
        .unwrap();
        assert!(same(&f, &d.path().join("x/file")));
        assert!(d.path().join("x/file").is_file());
        // Refusing symlinks refuses creation through them too.
        let r = ensure_in_root(
            root.as_fd(),
            Path::new("/link/y"),
            Create::Dir,
            Symlinks::Refuse,
        );
        assert_eq!(r.unwrap_err(), Errno::ELOOP);
        assert!(!d.path().join("y").exists());
    }
}

//! `-u user[:group]` resolved against the image's `/etc/passwd` and `/etc/group`, with
//! Docker's rules (moby `pkg/user` / runc `libcontainer/user`): names are looked up, numeric ids
//! need not exist, a user without a group gets its passwd group (or 0), and supplementary groups
//! come from `/etc/group` membership.

use std::io::Read;
use std::path::Path;

/// The ids the container process runs with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolvedUser {
    pub uid: u32,
    pub gid: u32,
    pub additional_gids: Vec<u32>,
}

/// Why a user could not be resolved.
#[derive(Debug, thiserror::Error)]
pub enum UserError {
    #[error("unable to find user {0}: no matching entries in passwd file")]
    NoUser(String),
    #[error("unable to find group {0}: no matching entries in group file")]
    NoGroup(String),
}

struct Passwd<'a> {
    name: &'a str,
    uid: u32,
    gid: u32,
}

fn passwd_entries(text: &str) -> impl Iterator<Item = Passwd<'_>> {
    text.lines().filter_map(|l| {
        let f: Vec<&str> = l.split(':').collect();
        if f.len() < 4 || l.starts_with('#') {
            return None;
        }
        Some(Passwd {
            name: f[0],
            uid: f[2].parse().ok()?,
            gid: f[3].parse().ok()?,
        })
    })
}

struct Group<'a> {
    name: &'a str,
    gid: u32,
    members: Vec<&'a str>,
}

fn group_entries(text: &str) -> impl Iterator<Item = Group<'_>> {
    text.lines().filter_map(|l| {
        let f: Vec<&str> = l.split(':').collect();
        if f.len() < 3 || l.starts_with('#') {
            return None;
        }
        Some(Group {
            name: f[0],
            gid: f[2].parse().ok()?,
            members: f
                .get(3)
                .map(|m| m.split(',').filter(|s| !s.is_empty()).collect())
                .unwrap_or_default(),
        })
    })
}

/// Resolves `spec` (`""`, `name`, `uid`, `name:group`, `uid:gid`, ...).
pub fn resolve(
    spec: &str,
    passwd: Option<&str>,
    group: Option<&str>,
) -> Result<ResolvedUser, UserError> {
    let (u, g) = match spec.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (spec, None),
    };
    let passwd = passwd.unwrap_or("");
    let group = group.unwrap_or("");
    let u = if u.is_empty() { "0" } else { u };
    let (uid, mut gid, name) = if let Ok(uid) = u.parse::<u32>() {
        match passwd_entries(passwd).find(|p| p.uid == uid) {
            Some(p) => (uid, p.gid, Some(p.name.to_owned())),
            None => (uid, 0, None),
        }
    } else {
        let p = passwd_entries(passwd)
            .find(|p| p.name == u)
            .ok_or_else(|| UserError::NoUser(u.to_owned()))?;
        (p.uid, p.gid, Some(p.name.to_owned()))
    };
    let mut additional_gids = Vec::new();
    match g {
        Some(g) if !g.is_empty() => {
            gid = match g.parse::<u32>() {
                Ok(n) => n,
                Err(_) => {
                    group_entries(group)
                        .find(|e| e.name == g)
                        .ok_or_else(|| UserError::NoGroup(g.to_owned()))?
                        .gid
                }
            };
        }
        _ => {
            // Only an explicit group replaces the supplementary groups (runc GetExecUser).
            if let Some(name) = &name {
                for e in group_entries(group) {
                    if e.members.contains(&name.as_str())
                        && e.gid != gid
                        && !additional_gids.contains(&e.gid)
                    {
                        additional_gids.push(e.gid);
                    }
                }
            }
        }
    }
    Ok(ResolvedUser {
        uid,
        gid,
        additional_gids,
    })
}

/// Reads `rel` inside `root` with every path component resolved as if `root` were `/`
/// (`openat2(2)` `RESOLVE_IN_ROOT`), so a symlinked `/etc/passwd` in an image cannot make us
/// read a host file. Missing or unreadable files give `None`, as Docker treats them.
pub fn read_in_root(root: &Path, rel: &str) -> Option<String> {
    use rustix::fs::{Mode, OFlags, ResolveFlags};
    let dir = rustix::fs::open(
        root,
        OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .ok()?;
    let fd = rustix::fs::openat2(
        &dir,
        rel,
        OFlags::RDONLY | OFlags::CLOEXEC | OFlags::NOCTTY | OFlags::NONBLOCK,
        Mode::empty(),
        ResolveFlags::IN_ROOT | ResolveFlags::NO_MAGICLINKS | ResolveFlags::NO_XDEV,
    )
    .ok()?;
    let st = rustix::fs::fstat(&fd).ok()?;
    if rustix::fs::FileType::from_raw_mode(st.st_mode) != rustix::fs::FileType::RegularFile {
        return None;
    }
    let mut s = String::new();
    // A passwd file bigger than 1 MiB is not one Berth will parse.
    std::fs::File::from(fd)
        .take(1 << 20)
        .read_to_string(&mut s)
        .ok()?;
    Some(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    const PASSWD: &str = "root:x:0:0:root:/root:/bin/sh\n\
        daemon:x:1:1::/:/bin/false\n\
        app:x:1000:1000::/home/app:/bin/sh\n";
    const GROUP: &str = "root:x:0:\nwheel:x:10:app,root\napp:x:1000:\nstaff:x:50:app\n";

    fn r(spec: &str) -> Result<ResolvedUser, UserError> {
        resolve(spec, Some(PASSWD), Some(GROUP))
    }

    #[test]
    fn docker_user_rules() {
        assert_eq!(
            r("").unwrap(),
            ResolvedUser {
                uid: 0,
                gid: 0,
                additional_gids: vec![10]
            }
        );
        assert_eq!(
            r("app").unwrap(),
            ResolvedUser {
                uid: 1000,
                gid: 1000,
                additional_gids: vec![10, 50]
            }
        );
        assert_eq!(r("1000").unwrap().gid, 1000);
        assert_eq!(
            r("4242").unwrap(),
            ResolvedUser {
                uid: 4242,
                gid: 0,
                additional_gids: vec![]
            }
        );
        assert_eq!(
            r("app:staff").unwrap(),
            ResolvedUser {
                uid: 1000,
                gid: 50,
                additional_gids: vec![]
            }
        );
        assert_eq!(
            r("1:7").unwrap(),
            ResolvedUser {
                uid: 1,
                gid: 7,
                additional_gids: vec![]
            }
        );
        assert!(matches!(r("nobody"), Err(UserError::NoUser(_))));
        assert!(matches!(r("app:nogroup"), Err(UserError::NoGroup(_))));
        assert_eq!(resolve("5:6", None, None).unwrap().uid, 5);
    }

    #[test]
    fn reading_in_root_does_not_follow_links_out() {
        let t = tempfile::tempdir().unwrap();
        let root = t.path().join("root");
        std::fs::create_dir_all(root.join("etc")).unwrap();
        let outside = t.path().join("host-passwd");
        std::fs::write(&outside, "evil:x:0:0::/:/bin/sh\n").unwrap();
        std::os::unix::fs::symlink(&outside, root.join("etc/passwd")).unwrap();
        // The absolute link target is resolved inside root, where it does not exist.
        assert_eq!(read_in_root(&root, "etc/passwd"), None);
        std::fs::remove_file(root.join("etc/passwd")).unwrap();
        std::fs::write(root.join("etc/passwd"), PASSWD).unwrap();
        assert_eq!(read_in_root(&root, "etc/passwd").as_deref(), Some(PASSWD));
    }
}

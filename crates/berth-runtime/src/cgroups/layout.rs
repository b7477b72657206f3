//! Which cgroup hierarchies this host mounts (v1, v2 or both: "hybrid") and where the calling
//! process sits in each of them.
//!
//! Detection reads `/proc/self/mountinfo` (proc(5)) rather than guessing from
//! `/sys/fs/cgroup`: a hierarchy may be mounted elsewhere, several v1 controllers may share one
//! mount (`cpu,cpuacct`), and inside a cgroup namespace or a bind mount the mount's root is not
//! the hierarchy's root (field 4 of mountinfo). Everything here is data parsed from text, so the
//! unit tests feed it a mountinfo that points into a temporary directory laid out like a cgroupfs.

use std::fs;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::CgroupError;

/// cgroup v1 (one hierarchy per controller set) or cgroup v2 (the unified hierarchy).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Version {
    V1,
    V2,
}

/// The host's overall layout.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LayoutKind {
    /// Only cgroup2 is mounted (every current distribution).
    Unified,
    /// Only v1 controller hierarchies.
    Legacy,
    /// v1 controllers plus a cgroup2 mount (usually at `/sys/fs/cgroup/unified`) that carries
    /// the controllers no v1 hierarchy claimed, often none.
    Hybrid,
}

/// One mounted hierarchy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hierarchy {
    pub version: Version,
    /// Where it is mounted, e.g. `/sys/fs/cgroup/memory`.
    pub mount_point: PathBuf,
    /// The cgroup that is mounted there (mountinfo field 4), `/` unless the mount is a bind
    /// mount of a sub-cgroup or sits inside a cgroup namespace.
    pub mount_root: String,
    /// v1: the controllers bound to this hierarchy (from the super options). v2: the
    /// controllers listed in `cgroup.controllers` at the mount point.
    pub controllers: Vec<String>,
}

impl Hierarchy {
    /// The directory of cgroup `cgroup_path` (absolute inside the hierarchy) under this mount.
    pub fn dir_of(&self, cgroup_path: &str) -> Result<PathBuf, CgroupError> {
        let rel = if self.mount_root == "/" {
            cgroup_path.trim_start_matches('/')
        } else {
            match cgroup_path.strip_prefix(self.mount_root.as_str()) {
                Some(rest) if rest.is_empty() || rest.starts_with('/') => {
                    rest.trim_start_matches('/')
                }
                _ => {
                    return Err(CgroupError::NotVisible {
                        path: cgroup_path.to_owned(),
                        mount_point: self.mount_point.clone(),
                        mount_root: self.mount_root.clone(),
                    })
                }
            }
        };
        Ok(if rel.is_empty() {
            self.mount_point.clone()
        } else {
            self.mount_point.join(rel)
        })
    }

    pub fn has(&self, controller: &str) -> bool {
        self.controllers.iter().any(|c| c == controller)
    }
}

/// All cgroup hierarchies mounted on this host.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Layout {
    pub kind: LayoutKind,
    pub hierarchies: Vec<Hierarchy>,
}

impl Layout {
    /// Detects the layout from `/proc/self/mountinfo`.
    pub fn detect() -> Result<Self, CgroupError> {
        let path = Path::new("/proc/self/mountinfo");
        let text = fs::read_to_string(path).map_err(|source| CgroupError::Read {
            path: path.to_owned(),
            source,
        })?;
        Self::from_mountinfo(&text)
    }

    /// Parses a mountinfo text. For the cgroup2 mount, `cgroup.controllers` is read from its
    /// mount point (a missing file means no controllers).
    pub fn from_mountinfo(text: &str) -> Result<Self, CgroupError> {
        let mut hierarchies: Vec<Hierarchy> = Vec::new();
        for line in text.lines() {
            let Some(m) = MountLine::parse(line) else {
                continue;
            };
            let hierarchy = match m.fstype {
                "cgroup2" => {
                    let controllers = fs::read_to_string(m.mount_point.join("cgroup.controllers"))
                        .map(|s| s.split_whitespace().map(str::to_owned).collect())
                        .unwrap_or_default();
                    Hierarchy {
                        version: Version::V2,
                        mount_point: m.mount_point,
                        mount_root: m.root,
                        controllers,
                    }
                }
                "cgroup" => {
                    let mut controllers: Vec<String> = m
                        .super_options
                        .split(',')
                        .filter(|o| !matches!(*o, "rw" | "ro") && !o.contains('='))
                        .filter(|o| !o.starts_with("noprefix") && !o.starts_with("clone_children"))
                        .filter(|o| !matches!(*o, "xattr" | "cpuset_v2_mode"))
                        .map(str::to_owned)
                        .collect();
                    // A named hierarchy without controllers (`name=systemd`) limits nothing,
                    // but runc places containers in it too (systemd inside a container and
                    // tools reading /proc/PID/cgroup expect it), so it is kept under its name,
                    // spelled as /proc/PID/cgroup spells it.
                    if controllers.is_empty() {
                        match m.super_options.split(',').find(|o| o.starts_with("name=")) {
                            Some(name) => controllers.push(name.to_owned()),
                            None => continue,
                        }
                    }
                    Hierarchy {
                        version: Version::V1,
                        mount_point: m.mount_point,
                        mount_root: m.root,
                        controllers,
                    }
                }
                _ => continue,
            };
            // The same hierarchy can be mounted twice (bind mounts); the first mount wins.
            let duplicate = hierarchies
                .iter()
                .any(|h| h.version == hierarchy.version && h.controllers == hierarchy.controllers);
            if !duplicate {
                hierarchies.push(hierarchy);
            }
        }
        let has_v1 = hierarchies.iter().any(|h| h.version == Version::V1);
        let has_v2 = hierarchies.iter().any(|h| h.version == Version::V2);
        let kind = match (has_v1, has_v2) {
            (true, true) => LayoutKind::Hybrid,
            (true, false) => LayoutKind::Legacy,
            (false, true) => LayoutKind::Unified,
            (false, false) => return Err(CgroupError::NoHierarchy),
        };
        // Only the first cgroup2 mount counts: there is one unified hierarchy.
        let mut seen_v2 = false;
        hierarchies.retain(|h| {
            if h.version == Version::V2 {
                let keep = !seen_v2;
                seen_v2 = true;
                keep
            } else {
                true
            }
        });
        Ok(Layout { kind, hierarchies })
    }

    /// The unified (cgroup2) hierarchy, if mounted.
    pub fn unified(&self) -> Option<&Hierarchy> {
        self.hierarchies.iter().find(|h| h.version == Version::V2)
    }

    /// The v1 hierarchy that carries `controller`.
    pub fn v1(&self, controller: &str) -> Option<&Hierarchy> {
        self.hierarchies
            .iter()
            .find(|h| h.version == Version::V1 && h.has(controller))
    }

    /// Whether `controller` is available anywhere (a v1 hierarchy or the unified one).
    pub fn has_controller(&self, controller: &str) -> bool {
        self.hierarchies.iter().any(|h| h.has(controller))
    }
}

/// The fields of one mountinfo line that matter here (proc(5), "/proc/pid/mountinfo").
struct MountLine<'a> {
    root: String,
    mount_point: PathBuf,
    fstype: &'a str,
    super_options: &'a str,
}

impl<'a> MountLine<'a> {
    fn parse(line: &'a str) -> Option<Self> {
        let (left, right) = line.split_once(" - ")?;
        let fields: Vec<&str> = left.split(' ').collect();
        let mut right = right.split(' ');
        let fstype = right.next()?;
        let _source = right.next()?;
        let super_options = right.next().unwrap_or("");
        Some(MountLine {
            root: unescape(fields.get(3)?),
            mount_point: PathBuf::from(unescape(fields.get(4)?)),
            fstype,
            super_options,
        })
    }
}

/// mountinfo escapes space, tab, newline and backslash as `\ooo` octal.
fn unescape(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\' && i + 4 <= bytes.len() {
            let octal = std::str::from_utf8(&bytes[i + 1..i + 4]).ok();
            if let Some(v) = octal.and_then(|o| u8::from_str_radix(o, 8).ok()) {
                out.push(v);
                i += 4;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Where a process sits in each hierarchy, from `/proc/<pid>/cgroup` (cgroups(7)):
/// `hierarchy-ID:controller-list:cgroup-path`, with `0::/path` for cgroup v2.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Membership {
    v1: Vec<(Vec<String>, String)>,
    v2: Option<String>,
}

impl Membership {
    /// The calling process's membership.
    pub fn of_self() -> Result<Self, CgroupError> {
        let path = Path::new("/proc/self/cgroup");
        let text = fs::read_to_string(path).map_err(|source| CgroupError::Read {
            path: path.to_owned(),
            source,
        })?;
        Ok(Self::parse(&text))
    }

    pub fn parse(text: &str) -> Self {
        let mut m = Membership::default();
        for line in text.lines() {
            let mut parts = line.splitn(3, ':');
            let (Some(id), Some(controllers), Some(path)) =
                (parts.next(), parts.next(), parts.next())
            else {
                continue;
            };
            if id == "0" && controllers.is_empty() {
                m.v2 = Some(path.to_owned());
            } else {
                let list = controllers
                    .split(',')
                    .filter(|c| !c.is_empty())
                    .map(str::to_owned)
                    .collect();
                m.v1.push((list, path.to_owned()));
            }
        }
        m
    }

    /// The caller's cgroup in `hierarchy`.
    pub fn path_in(&self, hierarchy: &Hierarchy) -> Option<&str> {
        match hierarchy.version {
            Version::V2 => self.v2.as_deref(),
            Version::V1 => self
                .v1
                .iter()
                .find(|(list, _)| hierarchy.controllers.iter().any(|c| list.contains(c)))
                .map(|(_, p)| p.as_str()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HYBRID: &str = "\
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
33 31 0:30 / /sys/fs/cgroup/cpuacct rw,relatime - cgroup cgroup rw,cpuacct
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,name=systemd
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
";

    #[test]
    fn hybrid_host_is_detected_and_named_hierarchies_kept() {
        let layout = Layout::from_mountinfo(HYBRID).unwrap();
        assert_eq!(layout.kind, LayoutKind::Hybrid);
        assert_eq!(layout.hierarchies.len(), 5);
        assert!(layout
            .hierarchies
            .iter()
            .any(|h| h.controllers == ["name=systemd"]));
        assert_eq!(
            layout.v1("memory").unwrap().mount_point,
            Path::new("/sys/fs/cgroup/memory")
        );
        assert!(layout.v1("pids").is_none());
        assert_eq!(
            layout.unified().unwrap().mount_point,
            Path::new("/sys/fs/cgroup/unified")
        );
    }

    #[test]
    fn comounted_controllers_share_a_hierarchy() {
        let text = "1 0 0:1 / /cg/cpu,cpuacct rw - cgroup cgroup rw,cpu,cpuacct\n";
        let layout = Layout::from_mountinfo(text).unwrap();
        assert_eq!(layout.kind, LayoutKind::Legacy);
        assert_eq!(
            layout.v1("cpuacct").unwrap().controllers,
            ["cpu", "cpuacct"]
        );
    }

    #[test]
    fn no_cgroup_mount_is_an_error() {
        let err = Layout::from_mountinfo("1 0 0:1 / / rw - ext4 /dev/sda rw\n").unwrap_err();
        assert!(matches!(err, CgroupError::NoHierarchy));
    }

    #[test]
    fn escaped_mount_points_are_decoded() {
        assert_eq!(unescape(r"/a\040b"), "/a b");
        assert_eq!(unescape(r"/plain"), "/plain");
        assert_eq!(unescape(r"/trail\04"), r"/trail\04");
    }

    #[test]
    fn membership_maps_each_hierarchy_to_the_callers_cgroup() {
        let layout = Layout::from_mountinfo(HYBRID).unwrap();
        let m = Membership::parse("4:memory:/process_api/x\n1:cpu:/\n0::/u\n9:name=systemd:/\n");
        assert_eq!(
            m.path_in(layout.v1("memory").unwrap()),
            Some("/process_api/x")
        );
        assert_eq!(m.path_in(layout.v1("cpu").unwrap()), Some("/"));
        assert_eq!(m.path_in(layout.unified().unwrap()), Some("/u"));
    }

    #[test]
    fn a_bind_mounted_sub_cgroup_maps_paths_below_its_root() {
        let h = Hierarchy {
            version: Version::V2,
            mount_point: "/sys/fs/cgroup".into(),
            mount_root: "/outer".into(),
            controllers: vec![],
        };
        assert_eq!(h.dir_of("/outer/c").unwrap(), Path::new("/sys/fs/cgroup/c"));
        assert_eq!(h.dir_of("/outer").unwrap(), Path::new("/sys/fs/cgroup"));
        assert!(matches!(
            h.dir_of("/outerx/c"),
            Err(CgroupError::NotVisible { .. })
        ));
    }
}

//! The isolation report (`berth inspect --isolation`): what a running container is made of,
//! read from the kernel rather than from what Berth asked for: its namespaces from
//! `/proc/PID/ns` (and which other Berth containers share them), its cgroup from
//! `/proc/PID/cgroup` with the limits and usage in the cgroup files, seccomp, capabilities and
//! `no_new_privs` from `/proc/PID/status` (proc(5)), the LSM label from `/proc/PID/attr/current`,
//! the id maps, the overlay layers and every mount from `/proc/PID/mountinfo`. The bundle's
//! seccomp profile adds what the kernel does not show (the rules of the filter).
//!
//! The parsers are pure functions over the text of those files, unit-tested without root.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use berth_image::snapshot::Snapshotter;
use berth_image::store::Store;
use berth_runtime::cgroups::layout::Version;
use berth_runtime::cgroups::Placement;
use serde::{Deserialize, Serialize};

use crate::record::{RecordError, Status};
use crate::Engine;

/// The namespace kinds of `/proc/PID/ns`, in namespaces(7)'s order.
pub const NAMESPACE_KINDS: &[&str] = &["cgroup", "ipc", "mnt", "net", "pid", "time", "user", "uts"];

/// Why the report could not be made.
#[derive(Debug, thiserror::Error)]
pub enum IsolationError {
    #[error(transparent)]
    Record(#[from] RecordError),
    #[error("container {0} is not running: the isolation report describes a running container")]
    NotRunning(String),
    #[error("reading {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("reading the runtime state of container {id}")]
    State {
        id: String,
        #[source]
        source: berth_runtime::state::StateError,
    },
}

/// One namespace of the container's init.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Namespace {
    /// `net`, `pid`, ... (the file name in `/proc/PID/ns`).
    pub kind: String,
    pub inode: u64,
    /// Whether it is the namespace Berth itself runs in (what `--network host` etc. give).
    pub host: bool,
    /// Names of the other running Berth containers whose init is in the same namespace.
    pub shared_with: Vec<String>,
}

/// Limits and usage of the memory controller, in bytes; `None` limits are unlimited.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemoryReport {
    pub limit: Option<u64>,
    pub reservation: Option<u64>,
    /// Memory plus swap (v1 `memsw`) or swap alone (v2 `memory.swap.max`), as the host has it.
    pub swap_limit: Option<u64>,
    pub usage: Option<u64>,
    pub peak: Option<u64>,
}

/// The cpu, cpuacct and cpuset controllers.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct CpuReport {
    /// CFS quota and period in microseconds; no quota is unlimited.
    pub quota_us: Option<u64>,
    pub period_us: Option<u64>,
    /// quota / period, as `--cpus` gives it.
    pub cpus: Option<f64>,
    /// v1 `cpu.shares`.
    pub shares: Option<u64>,
    /// v2 `cpu.weight`.
    pub weight: Option<u64>,
    pub cpuset_cpus: Option<String>,
    pub cpuset_mems: Option<String>,
    /// CPU time used, nanoseconds.
    pub usage_ns: Option<u64>,
}

/// The pids controller.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PidsReport {
    pub limit: Option<u64>,
    pub current: Option<u64>,
}

/// The blkio (v1) or io (v2) controller.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct IoReport {
    pub weight: Option<u64>,
    pub read_bytes: Option<u64>,
    pub write_bytes: Option<u64>,
}

/// The container's cgroup, with the directory of each hierarchy it sits in.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct CgroupReport {
    /// The path in the hierarchies (from `/proc/PID/cgroup`).
    pub path: String,
    /// Directory per controller (`unified` for cgroup v2).
    pub dirs: BTreeMap<String, PathBuf>,
    pub memory: MemoryReport,
    pub cpu: CpuReport,
    pub pids: PidsReport,
    pub io: IoReport,
    /// v1 `devices.list` (cgroup v2 keeps the rules in a BPF program, not readable as text).
    pub devices: Option<Vec<String>>,
}

/// Seccomp as the kernel applies it, and the profile it came from.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SeccompReport {
    /// `disabled`, `strict` or `filter` (`Seccomp:` of `/proc/PID/status`).
    pub mode: String,
    /// Filters attached to the process (`Seccomp_filters:`).
    pub filters: u64,
    /// The profile's default action, when the bundle has one.
    pub default_action: Option<String>,
    /// Syscalls named by the profile's rules (with an action other than the default).
    pub filtered_syscalls: usize,
    /// Those syscalls per action (`SCMP_ACT_ALLOW`: 300, ...).
    pub by_action: BTreeMap<String, usize>,
}

/// One capability set: its mask and the names of its capabilities.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CapSet {
    /// 16 hex digits, as `/proc/PID/status` shows it.
    pub hex: String,
    pub names: Vec<String>,
}

/// The five capability sets of capabilities(7).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Capabilities {
    pub effective: CapSet,
    pub permitted: CapSet,
    pub bounding: CapSet,
    pub inheritable: CapSet,
    pub ambient: CapSet,
}

/// One line of `uid_map`/`gid_map`: `size` ids from `container` map to `host`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct IdMap {
    pub container: u64,
    pub host: u64,
    pub size: u64,
}

/// One mount of the container's mount namespace (`/proc/PID/mountinfo`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Mount {
    pub destination: String,
    pub fstype: String,
    pub source: String,
    /// The part of the source filesystem mounted there (field 4; `/` for a whole filesystem).
    pub root: String,
    /// Per-mount options (`ro,nosuid,...`).
    pub options: String,
    /// Filesystem options (`lowerdir=...`, `size=...`).
    pub super_options: String,
}

/// One image layer of the root filesystem, top first (overlay's order).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Layer {
    pub chain_id: Option<String>,
    pub diff_id: Option<String>,
    pub dir: PathBuf,
}

/// The root filesystem: the overlay's layers as mounted, and the snapshot's own directories.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RootfsReport {
    pub fstype: String,
    pub read_only: bool,
    pub image: String,
    pub image_id: String,
    pub layers: Vec<Layer>,
    pub upperdir: Option<PathBuf>,
    pub workdir: Option<PathBuf>,
}

/// The whole report.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IsolationReport {
    pub id: String,
    pub name: String,
    pub pid: i32,
    pub namespaces: Vec<Namespace>,
    pub cgroup: CgroupReport,
    pub seccomp: SeccompReport,
    pub capabilities: Capabilities,
    pub no_new_privs: bool,
    /// `/proc/PID/attr/current`; `None` when no LSM is active.
    pub lsm_label: Option<String>,
    /// The AppArmor profile and SELinux label the bundle asked for.
    pub apparmor_profile: Option<String>,
    pub selinux_label: Option<String>,
    pub uid_map: Vec<IdMap>,
    pub gid_map: Vec<IdMap>,
    pub rootfs: RootfsReport,
    pub mounts: Vec<Mount>,
}

fn read(path: impl AsRef<Path>) -> Result<String, IsolationError> {
    let path = path.as_ref();
    std::fs::read_to_string(path).map_err(|source| IsolationError::Read {
        path: path.to_owned(),
        source,
    })
}

/// The inode of a namespace link target such as `net:[4026532181]`.
pub fn ns_inode(link: &str) -> Option<u64> {
    link.split_once(":[")?.1.strip_suffix(']')?.parse().ok()
}

/// The inode of namespace `kind` of process `pid` (`self` for Berth itself).
pub fn namespace_of(pid: &str, kind: &str) -> Option<u64> {
    let link = std::fs::read_link(format!("/proc/{pid}/ns/{kind}")).ok()?;
    ns_inode(link.to_str()?)
}

/// The `Key:\tvalue` fields of `/proc/PID/status`.
pub fn status_fields(text: &str) -> BTreeMap<String, String> {
    text.lines()
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.to_owned(), v.trim().to_owned()))
        .collect()
}

/// A capability set from its hex mask.
pub fn cap_set(hex: &str) -> CapSet {
    let mask = u64::from_str_radix(hex.trim(), 16).unwrap_or(0);
    CapSet {
        hex: format!("{mask:016x}"),
        names: berth_runtime::security::caps::names_of(mask)
            .into_iter()
            .map(String::from)
            .collect(),
    }
}

/// `uid_map`/`gid_map` text (user_namespaces(7)).
pub fn id_maps(text: &str) -> Vec<IdMap> {
    text.lines()
        .filter_map(|l| {
            let mut f = l.split_whitespace().map(|x| x.parse::<u64>());
            Some(IdMap {
                container: f.next()?.ok()?,
                host: f.next()?.ok()?,
                size: f.next()?.ok()?,
            })
        })
        .collect()
}

/// The mounts of a `mountinfo` text, in its order.
pub fn parse_mountinfo(text: &str) -> Vec<Mount> {
    text.lines()
        .filter_map(|l| {
            let (left, right) = l.split_once(" - ")?;
            let f: Vec<&str> = left.split(' ').collect();
            let r: Vec<&str> = right.splitn(3, ' ').collect();
            if f.len() < 6 || r.len() < 2 {
                return None;
            }
            Some(Mount {
                destination: berth_runtime::procfs::unescape_mountinfo(f[4]),
                root: berth_runtime::procfs::unescape_mountinfo(f[3]),
                options: f[5].to_owned(),
                fstype: r[0].to_owned(),
                source: berth_runtime::procfs::unescape_mountinfo(r[1]),
                super_options: r
                    .get(2)
                    .map(|s| berth_runtime::procfs::unescape_mountinfo(s))
                    .unwrap_or_default(),
            })
        })
        .collect()
}

/// The overlay options of a mount: lower directories (top first; `lowerdir=a:b` or the
/// `lowerdir+=` form of the new mount API), upper and work directories.
pub fn overlay_dirs(super_options: &str) -> (Vec<PathBuf>, Option<PathBuf>, Option<PathBuf>) {
    let (mut lower, mut upper, mut work) = (Vec::new(), None, None);
    for o in super_options.split(',') {
        if let Some(v) = o.strip_prefix("lowerdir+=") {
            lower.push(PathBuf::from(v));
        } else if let Some(v) = o.strip_prefix("lowerdir=") {
            lower.extend(v.split(':').filter(|x| !x.is_empty()).map(PathBuf::from));
        } else if let Some(v) = o.strip_prefix("upperdir=") {
            upper = Some(PathBuf::from(v));
        } else if let Some(v) = o.strip_prefix("workdir=") {
            work = Some(PathBuf::from(v));
        }
    }
    (lower, upper, work)
}

/// A cgroup value: a number, or `None` for `max` and v1's "unlimited" (a page-rounded
/// `i64::MAX`, or `-1`).
pub fn limit_value(s: &str) -> Option<u64> {
    let s = s.trim();
    if s == "max" || s == "-1" {
        return None;
    }
    let n: u64 = s.parse().ok()?;
    (n < (i64::MAX as u64) - 4096 * 1024).then_some(n)
}

/// `key value` lines.
fn keyed(text: &str) -> BTreeMap<String, u64> {
    text.lines()
        .filter_map(|l| {
            let (k, v) = l.split_once(' ')?;
            Some((k.to_owned(), v.trim().parse().ok()?))
        })
        .collect()
}

/// v1 `blkio.throttle.io_service_bytes`: the Read and Write totals over all devices.
pub fn blkio_bytes(text: &str) -> (u64, u64) {
    let (mut r, mut w) = (0, 0);
    for l in text.lines() {
        let f: Vec<&str> = l.split_whitespace().collect();
        if let [_, op, v] = f.as_slice() {
            let v: u64 = v.parse().unwrap_or(0);
            match *op {
                "Read" => r += v,
                "Write" => w += v,
                _ => {}
            }
        }
    }
    (r, w)
}

/// v2 `io.stat`: `MAJ:MIN rbytes=N wbytes=N ...` summed over devices.
pub fn io_stat_bytes(text: &str) -> (u64, u64) {
    let (mut r, mut w) = (0, 0);
    for kv in text.split_whitespace() {
        if let Some(v) = kv.strip_prefix("rbytes=") {
            r += v.parse().unwrap_or(0);
        } else if let Some(v) = kv.strip_prefix("wbytes=") {
            w += v.parse().unwrap_or(0);
        }
    }
    (r, w)
}

/// The directory serving `controller`: its v1 hierarchy, else the v2 one when it offers it.
fn dir_for<'a>(placements: &'a [Placement], controller: &str) -> Option<(Version, &'a Path)> {
    placements
        .iter()
        .find(|p| p.version == Version::V1 && p.controllers.iter().any(|c| c == controller))
        .or_else(|| {
            placements
                .iter()
                .find(|p| p.version == Version::V2 && p.controllers.iter().any(|c| c == controller))
        })
        .map(|p| (p.version, p.dir.as_path()))
}

/// Limits and usage from the cgroup files of `placements`.
pub fn cgroup_report(path: &str, placements: &[Placement]) -> CgroupReport {
    let get = |dir: &Path, f: &str| std::fs::read_to_string(dir.join(f)).ok();
    let num = |dir: &Path, f: &str| get(dir, f).and_then(|s| s.trim().parse::<u64>().ok());
    let lim = |dir: &Path, f: &str| get(dir, f).and_then(|s| limit_value(&s));
    let mut r = CgroupReport {
        path: path.to_owned(),
        ..Default::default()
    };
    for p in placements {
        let key = match p.version {
            Version::V2 => "unified".to_owned(),
            Version::V1 => p.controllers.join(","),
        };
        r.dirs.insert(key, p.dir.clone());
    }
    match dir_for(placements, "memory") {
        Some((Version::V1, d)) => {
            r.memory = MemoryReport {
                limit: lim(d, "memory.limit_in_bytes"),
                reservation: lim(d, "memory.soft_limit_in_bytes"),
                swap_limit: lim(d, "memory.memsw.limit_in_bytes"),
                usage: num(d, "memory.usage_in_bytes"),
                peak: num(d, "memory.max_usage_in_bytes"),
            }
        }
        Some((Version::V2, d)) => {
            r.memory = MemoryReport {
                limit: lim(d, "memory.max"),
                reservation: lim(d, "memory.low").filter(|v| *v > 0),
                swap_limit: lim(d, "memory.swap.max"),
                usage: num(d, "memory.current"),
                peak: num(d, "memory.peak"),
            }
        }
        None => {}
    }
    match dir_for(placements, "cpu") {
        Some((Version::V1, d)) => {
            r.cpu.quota_us = get(d, "cpu.cfs_quota_us").and_then(|s| limit_value(&s));
            r.cpu.period_us = num(d, "cpu.cfs_period_us");
            r.cpu.shares = num(d, "cpu.shares");
        }
        Some((Version::V2, d)) => {
            if let Some(t) = get(d, "cpu.max") {
                let mut f = t.split_whitespace();
                r.cpu.quota_us = f.next().and_then(limit_value);
                r.cpu.period_us = f.next().and_then(|p| p.parse().ok());
            }
            r.cpu.weight = num(d, "cpu.weight");
            r.cpu.usage_ns = get(d, "cpu.stat")
                .and_then(|t| keyed(&t).get("usage_usec").copied())
                .map(|us| us * 1000);
        }
        None => {}
    }
    if let (Some(q), Some(p)) = (r.cpu.quota_us, r.cpu.period_us) {
        if p > 0 {
            r.cpu.cpus = Some(q as f64 / p as f64);
        }
    }
    if let Some((Version::V1, d)) = dir_for(placements, "cpuacct") {
        r.cpu.usage_ns = num(d, "cpuacct.usage");
    }
    if let Some((v, d)) = dir_for(placements, "cpuset") {
        let (cpus, mems) = match v {
            Version::V1 => ("cpuset.cpus", "cpuset.mems"),
            Version::V2 => ("cpuset.cpus.effective", "cpuset.mems.effective"),
        };
        r.cpu.cpuset_cpus = get(d, cpus).map(|s| s.trim().to_owned());
        r.cpu.cpuset_mems = get(d, mems).map(|s| s.trim().to_owned());
    }
    if let Some((_, d)) = dir_for(placements, "pids") {
        r.pids = PidsReport {
            limit: lim(d, "pids.max"),
            current: num(d, "pids.current"),
        };
    }
    match dir_for(placements, "blkio") {
        Some((_, d)) => {
            r.io.weight = num(d, "blkio.weight").or_else(|| num(d, "blkio.bfq.weight"));
            let (rd, wr) = get(d, "blkio.throttle.io_service_bytes")
                .map(|t| blkio_bytes(&t))
                .unwrap_or_default();
            r.io.read_bytes = Some(rd);
            r.io.write_bytes = Some(wr);
        }
        None => {
            if let Some((_, d)) = dir_for(placements, "io") {
                // `default 100` then per-device `MAJ:MIN weight` lines.
                r.io.weight = get(d, "io.weight")
                    .and_then(|t| keyed(&t).get("default").copied())
                    .or_else(|| {
                        get(d, "io.bfq.weight")
                            .and_then(|t| t.split_whitespace().nth(1)?.parse().ok())
                    });
                let (rd, wr) = get(d, "io.stat")
                    .map(|t| io_stat_bytes(&t))
                    .unwrap_or_default();
                r.io.read_bytes = Some(rd);
                r.io.write_bytes = Some(wr);
            }
        }
    }
    if let Some((Version::V1, d)) = dir_for(placements, "devices") {
        r.devices = get(d, "devices.list").map(|t| t.lines().map(String::from).collect());
    }
    r
}

/// The seccomp part: the kernel's view (`status`) and the rules of the bundle's profile.
pub fn seccomp_report(
    status: &BTreeMap<String, String>,
    profile: Option<&oci_spec::runtime::LinuxSeccomp>,
) -> SeccompReport {
    let mode = match status.get("Seccomp").map(String::as_str) {
        Some("0") => "disabled",
        Some("1") => "strict",
        Some("2") => "filter",
        _ => "unknown",
    };
    let mut r = SeccompReport {
        mode: mode.to_owned(),
        filters: status
            .get("Seccomp_filters")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0),
        ..Default::default()
    };
    if let Some(p) = profile {
        let default = p.default_action();
        r.default_action =
            Some(berth_runtime::security::seccomp::action_spec_name(default).to_owned());
        let mut names = std::collections::BTreeSet::new();
        for s in p.syscalls().iter().flatten() {
            if s.action() == default {
                continue;
            }
            let action = berth_runtime::security::seccomp::action_spec_name(s.action()).to_owned();
            for n in s.names() {
                if names.insert(n.clone()) {
                    *r.by_action.entry(action.clone()).or_default() += 1;
                }
            }
        }
        r.filtered_syscalls = names.len();
    }
    r
}

impl Engine {
    /// The isolation report of running container `what`.
    pub fn isolation(&self, what: &str) -> Result<IsolationReport, IsolationError> {
        let rec = self.reconcile(self.find(what)?);
        if rec.state.status != Status::Running || rec.state.pid <= 0 {
            return Err(IsolationError::NotRunning(what.to_owned()));
        }
        let (_, st, _) = self
            .runtime
            .load(&rec.id)
            .map_err(|source| IsolationError::State {
                id: rec.id.clone(),
                source,
            })?;
        if !st.init_alive() {
            return Err(IsolationError::NotRunning(what.to_owned()));
        }
        let pid = st.pid;
        let proc_dir = PathBuf::from(format!("/proc/{pid}"));
        let status = status_fields(&read(proc_dir.join("status"))?);

        // Other running containers' namespaces, to tell which are shared.
        let others: Vec<(String, i32)> = self
            .list()?
            .into_iter()
            .filter(|r| r.id != rec.id && r.state.status == Status::Running && r.state.pid > 0)
            .map(|r| (r.name, r.state.pid))
            .collect();
        let mut namespaces = Vec::new();
        for kind in NAMESPACE_KINDS {
            let Some(inode) = namespace_of(&pid.to_string(), kind) else {
                continue;
            };
            namespaces.push(Namespace {
                kind: (*kind).to_owned(),
                inode,
                host: namespace_of("self", kind) == Some(inode),
                shared_with: others
                    .iter()
                    .filter(|(_, p)| namespace_of(&p.to_string(), kind) == Some(inode))
                    .map(|(n, _)| n.clone())
                    .collect(),
            });
        }

        // The cgroup the init really is in, located in the hierarchies the runtime recorded.
        let membership = read(proc_dir.join("cgroup"))?;
        let cg_path = membership
            .lines()
            .find_map(|l| {
                let mut f = l.splitn(3, ':');
                let (_, ctl, path) = (f.next()?, f.next()?, f.next()?);
                (ctl.split(',').any(|c| c == "pids" || c == "memory") || ctl.is_empty())
                    .then(|| path.to_owned())
            })
            .unwrap_or_else(|| rec.cgroup_path.clone());
        let placements = st
            .cgroup
            .as_ref()
            .map(|c| c.placements.clone())
            .unwrap_or_default();
        let cgroup = cgroup_report(&cg_path, &placements);

        let linux = st.spec.linux().as_ref();
        let seccomp = seccomp_report(&status, linux.and_then(|l| l.seccomp().as_ref()));
        let field = |k: &str| status.get(k).map(String::as_str).unwrap_or("0");
        let capabilities = Capabilities {
            effective: cap_set(field("CapEff")),
            permitted: cap_set(field("CapPrm")),
            bounding: cap_set(field("CapBnd")),
            inheritable: cap_set(field("CapInh")),
            ambient: cap_set(field("CapAmb")),
        };
        // EINVAL when no LSM provides the attribute.
        let lsm_label = std::fs::read_to_string(proc_dir.join("attr/current"))
            .ok()
            .map(|s| s.trim_end_matches(['\n', '\0']).to_owned())
            .filter(|s| !s.is_empty());
        let process = st.spec.process().as_ref();

        let mounts = parse_mountinfo(&read(proc_dir.join("mountinfo"))?);
        let rootfs = self.rootfs_report(&rec, &mounts);
        Ok(IsolationReport {
            id: rec.id.clone(),
            name: rec.name.clone(),
            pid,
            namespaces,
            cgroup,
            seccomp,
            capabilities,
            no_new_privs: field("NoNewPrivs") == "1",
            lsm_label,
            apparmor_profile: process.and_then(|p| p.apparmor_profile().clone()),
            selinux_label: process.and_then(|p| p.selinux_label().clone()),
            uid_map: id_maps(&read(proc_dir.join("uid_map"))?),
            gid_map: id_maps(&read(proc_dir.join("gid_map"))?),
            rootfs,
            mounts,
        })
    }

    /// The root mount as the container sees it, its layers named by the image store.
    fn rootfs_report(&self, rec: &crate::ContainerRecord, mounts: &[Mount]) -> RootfsReport {
        let Some(root) = mounts.iter().rev().find(|m| m.destination == "/") else {
            return RootfsReport::default();
        };
        let (lower, upper, work) = overlay_dirs(&root.super_options);
        // chain id -> diff id of the image's layers, when the store still has the image.
        let store = Store::open(&self.root).ok();
        let chains: Vec<(String, String)> = store
            .as_ref()
            .and_then(|s| s.record(&rec.image_id.parse().ok()?).ok())
            .map(|img| {
                img.layers
                    .iter()
                    .map(|l| (l.chain_id.to_string(), l.diff_id.to_string()))
                    .collect()
            })
            .unwrap_or_default();
        let layer_dirs: Vec<(String, PathBuf)> = store
            .as_ref()
            .and_then(|s| Snapshotter::new(s.clone()).get(&rec.id).ok())
            .map(|(r, _)| {
                r.chain_ids
                    .iter()
                    .map(|c| (c.to_string(), store.as_ref().expect("store").layer_diff(c)))
                    .collect()
            })
            .unwrap_or_default();
        let layers = lower
            .into_iter()
            .map(|dir| {
                let chain_id = layer_dirs
                    .iter()
                    .find(|(_, d)| *d == dir)
                    .map(|(c, _)| c.clone());
                let diff_id = chain_id
                    .as_ref()
                    .and_then(|c| chains.iter().find(|(ch, _)| ch == c))
                    .map(|(_, d)| d.clone());
                Layer {
                    chain_id,
                    diff_id,
                    dir,
                }
            })
            .collect();
        RootfsReport {
            fstype: root.fstype.clone(),
            read_only: root.options.split(',').any(|o| o == "ro"),
            image: rec.image.clone(),
            image_id: rec.image_id.clone(),
            layers,
            upperdir: upper,
            workdir: work,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn namespace_links_and_status_fields() {
        assert_eq!(ns_inode("net:[4026532181]"), Some(4026532181));
        assert_eq!(ns_inode("net:4026532181"), None);
        let s = status_fields("Name:\tsleep\nCapEff:\t00000000a80425fb\nSeccomp:\t2\n");
        assert_eq!(s["CapEff"], "00000000a80425fb");
        let c = cap_set(&s["CapEff"]);
        assert_eq!(c.names.len(), 14);
        assert!(c.names.contains(&"CAP_KILL".to_owned()));
        assert!(!c.names.contains(&"CAP_SYS_ADMIN".to_owned()));
        assert!(cap_set("0000000000000000").names.is_empty());
    }

    #[test]
    fn id_maps_and_limits() {
        assert_eq!(
            id_maps("         0          0 4294967295\n"),
            vec![IdMap {
                container: 0,
                host: 0,
                size: 4294967295
            }]
        );
        assert_eq!(limit_value("max"), None);
        assert_eq!(limit_value("-1"), None);
        assert_eq!(limit_value("9223372036854771712\n"), None);
        assert_eq!(limit_value("67108864\n"), Some(64 << 20));
        assert_eq!(
            blkio_bytes("8:0 Read 10\n8:0 Write 4\n8:0 Total 14\nTotal 14\n"),
            (10, 4)
        );
        assert_eq!(
            io_stat_bytes("8:0 rbytes=5 wbytes=7 rios=1\n8:16 rbytes=1 wbytes=0\n"),
            (6, 7)
        );
    }

    #[test]
    fn mountinfo_and_overlay_layers() {
        let text = "68 45 0:39 / / rw,relatime - overlay none rw,lowerdir+=/l/b/diff,lowerdir+=/l/a/diff,upperdir=/s/upper,workdir=/s/work,uuid=on\n\
                    86 68 254:0 /x/my\\040file /etc/hostname rw,relatime - ext4 /dev/vda rw\n";
        let m = parse_mountinfo(text);
        assert_eq!(m.len(), 2);
        assert_eq!(m[0].destination, "/");
        assert_eq!(m[0].fstype, "overlay");
        assert_eq!(m[1].root, "/x/my file");
        let (lower, upper, work) = overlay_dirs(&m[0].super_options);
        assert_eq!(
            lower,
            vec![PathBuf::from("/l/b/diff"), PathBuf::from("/l/a/diff")]
        );
        assert_eq!(upper, Some(PathBuf::from("/s/upper")));
        assert_eq!(work, Some(PathBuf::from("/s/work")));
        let (lower, _, _) = overlay_dirs("lowerdir=/a:/b,upperdir=/u");
        assert_eq!(lower.len(), 2);
    }

    #[test]
    fn seccomp_counts_rules_other_than_the_default() {
        let profile = berth_runtime::security::seccomp::default_seccomp_for_caps(
            crate::bundle::DOCKER_DEFAULT_CAPS,
        )
        .unwrap();
        let st = status_fields("Seccomp:\t2\nSeccomp_filters:\t1\n");
        let r = seccomp_report(&st, Some(&profile));
        assert_eq!(r.mode, "filter");
        assert_eq!(r.filters, 1);
        assert_eq!(r.default_action.as_deref(), Some("SCMP_ACT_ERRNO"));
        assert!(r.filtered_syscalls > 250, "{}", r.filtered_syscalls);
        assert_eq!(r.by_action.values().sum::<usize>(), r.filtered_syscalls);
        let none = seccomp_report(&status_fields("Seccomp:\t0\n"), None);
        assert_eq!(none.mode, "disabled");
        assert_eq!(none.filtered_syscalls, 0);
    }

    fn placement(version: Version, controllers: &[&str], dir: &Path) -> Placement {
        Placement {
            version,
            controllers: controllers.iter().map(|c| c.to_string()).collect(),
            mount_point: dir.to_owned(),
            dir: dir.to_owned(),
        }
    }

    fn files(dir: &Path, list: &[(&str, &str)]) {
        std::fs::create_dir_all(dir).unwrap();
        for (f, v) in list {
            std::fs::write(dir.join(f), v).unwrap();
        }
    }

    #[test]
    fn cgroup_v2_files() {
        let t = tempfile::tempdir().unwrap();
        files(
            t.path(),
            &[
                ("memory.max", "67108864\n"),
                ("memory.low", "0\n"),
                ("memory.swap.max", "max\n"),
                ("memory.current", "4096\n"),
                ("memory.peak", "8192\n"),
                ("cpu.max", "50000 100000\n"),
                ("cpu.weight", "100\n"),
                ("cpu.stat", "usage_usec 1500\nuser_usec 1000\n"),
                ("cpuset.cpus.effective", "0-1\n"),
                ("pids.max", "max\n"),
                ("pids.current", "3\n"),
                ("io.weight", "default 100\n8:0 200\n"),
                ("io.stat", "8:0 rbytes=10 wbytes=20 rios=1 wios=2\n"),
            ],
        );
        let all = ["cpuset", "cpu", "io", "memory", "pids"];
        let r = cgroup_report("/b/x", &[placement(Version::V2, &all, t.path())]);
        assert_eq!(r.memory.limit, Some(64 << 20));
        assert_eq!(r.memory.reservation, None);
        assert_eq!(r.memory.swap_limit, None);
        assert_eq!((r.memory.usage, r.memory.peak), (Some(4096), Some(8192)));
        assert_eq!(
            (r.cpu.quota_us, r.cpu.period_us),
            (Some(50_000), Some(100_000))
        );
        assert_eq!(r.cpu.cpus, Some(0.5));
        assert_eq!((r.cpu.weight, r.cpu.shares), (Some(100), None));
        assert_eq!(r.cpu.usage_ns, Some(1_500_000));
        assert_eq!(r.cpu.cpuset_cpus.as_deref(), Some("0-1"));
        assert_eq!((r.pids.limit, r.pids.current), (None, Some(3)));
        assert_eq!(r.io.weight, Some(100));
        assert_eq!((r.io.read_bytes, r.io.write_bytes), (Some(10), Some(20)));
        assert_eq!(r.devices, None);
        assert!(r.dirs.contains_key("unified"));
    }

    #[test]
    fn cgroup_v1_files() {
        let t = tempfile::tempdir().unwrap();
        let (mem, cpu, pids, dev) = (
            t.path().join("memory"),
            t.path().join("cpu"),
            t.path().join("pids"),
            t.path().join("devices"),
        );
        files(
            &mem,
            &[
                ("memory.limit_in_bytes", "9223372036854771712\n"),
                ("memory.usage_in_bytes", "4096\n"),
            ],
        );
        files(
            &cpu,
            &[
                ("cpu.cfs_quota_us", "-1\n"),
                ("cpu.cfs_period_us", "100000\n"),
                ("cpu.shares", "512\n"),
                ("cpuacct.usage", "777\n"),
            ],
        );
        files(&pids, &[("pids.max", "100\n"), ("pids.current", "1\n")]);
        files(&dev, &[("devices.list", "c 1:3 rwm\nc 10:229 r\n")]);
        let r = cgroup_report(
            "/b/x",
            &[
                placement(Version::V1, &["memory"], &mem),
                placement(Version::V1, &["cpu", "cpuacct"], &cpu),
                placement(Version::V1, &["pids"], &pids),
                placement(Version::V1, &["devices"], &dev),
                placement(Version::V2, &[], t.path()),
            ],
        );
        assert_eq!(r.memory.limit, None);
        assert_eq!(r.memory.usage, Some(4096));
        assert_eq!((r.cpu.quota_us, r.cpu.cpus), (None, None));
        assert_eq!((r.cpu.shares, r.cpu.usage_ns), (Some(512), Some(777)));
        assert_eq!((r.pids.limit, r.pids.current), (Some(100), Some(1)));
        assert_eq!(
            r.devices,
            Some(vec!["c 1:3 rwm".to_owned(), "c 10:229 r".to_owned()])
        );
        assert_eq!(r.dirs.len(), 5);
    }
}

//! The spawn plan: everything the forked processes will do, computed as data before cloning
//! (ARCHITECTURE.md, "plan, then apply"). Bad input fails here, before anything exists.

use std::path::{Path, PathBuf};

use oci_spec::runtime::{Hook, LinuxNamespaceType, PosixRlimitType, Process, Spec};
use serde::{Deserialize, Serialize};

use crate::rootfs::{self, RootfsOptions, RootfsPlan};
use crate::security::{self, SecurityPlan};

/// A namespace kind, with its clone flag and its name under `/proc/PID/ns`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum NsKind {
    User,
    Mount,
    Uts,
    Ipc,
    Network,
    Pid,
    Cgroup,
    Time,
}

impl NsKind {
    /// Every kind, in the order they are joined: user first (it grants the privileges for
    /// the others), mount last (it changes what paths mean).
    pub const JOIN_ORDER: [NsKind; 8] = [
        NsKind::User,
        NsKind::Ipc,
        NsKind::Uts,
        NsKind::Network,
        NsKind::Pid,
        NsKind::Cgroup,
        NsKind::Time,
        NsKind::Mount,
    ];

    pub fn from_spec(t: LinuxNamespaceType) -> Self {
        match t {
            LinuxNamespaceType::Mount => NsKind::Mount,
            LinuxNamespaceType::Cgroup => NsKind::Cgroup,
            LinuxNamespaceType::Uts => NsKind::Uts,
            LinuxNamespaceType::Ipc => NsKind::Ipc,
            LinuxNamespaceType::User => NsKind::User,
            LinuxNamespaceType::Pid => NsKind::Pid,
            LinuxNamespaceType::Network => NsKind::Network,
            LinuxNamespaceType::Time => NsKind::Time,
        }
    }

    /// The `CLONE_NEW*` flag.
    pub fn clone_flag(self) -> libc::c_int {
        match self {
            NsKind::User => libc::CLONE_NEWUSER,
            NsKind::Mount => libc::CLONE_NEWNS,
            NsKind::Uts => libc::CLONE_NEWUTS,
            NsKind::Ipc => libc::CLONE_NEWIPC,
            NsKind::Network => libc::CLONE_NEWNET,
            NsKind::Pid => libc::CLONE_NEWPID,
            NsKind::Cgroup => libc::CLONE_NEWCGROUP,
            NsKind::Time => libc::CLONE_NEWTIME,
        }
    }

    /// The file name under `/proc/PID/ns/`.
    pub fn proc_name(self) -> &'static str {
        match self {
            NsKind::User => "user",
            NsKind::Mount => "mnt",
            NsKind::Uts => "uts",
            NsKind::Ipc => "ipc",
            NsKind::Network => "net",
            NsKind::Pid => "pid",
            NsKind::Cgroup => "cgroup",
            NsKind::Time => "time",
        }
    }
}

/// One namespace: new (`path: None`) or joined from `path`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NsPlan {
    pub kind: NsKind,
    pub path: Option<PathBuf>,
}

/// What the spawned process is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Role {
    /// A new container's init: builds the rootfs and waits on the exec fifo.
    Init,
    /// An extra process in a running container (`exec`).
    Exec,
}

/// One resource limit to set.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rlimit {
    pub name: String,
    pub resource: i32,
    pub soft: u64,
    pub hard: u64,
}

/// Everything the forked processes do, decided up front.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SpawnPlan {
    pub role: Role,
    /// Namespaces in join order.
    pub namespaces: Vec<NsPlan>,
    /// `uid_map` content for a new user namespace.
    pub uid_map: Option<String>,
    /// `gid_map` content for a new user namespace.
    pub gid_map: Option<String>,
    /// `timens_offsets` content for a new time namespace.
    pub time_offsets: Option<String>,
    pub hostname: Option<String>,
    pub domainname: Option<String>,
    /// (procfs path below `/proc`, value).
    pub sysctl: Vec<(String, String)>,
    pub rlimits: Vec<Rlimit>,
    pub oom_score_adj: Option<i32>,
    pub args: Vec<String>,
    pub env: Vec<String>,
    pub cwd: PathBuf,
    pub terminal: bool,
    /// (rows, cols).
    pub console_size: Option<(u16, u16)>,
    /// Descriptors 3..3+N are passed to the process.
    pub preserve_fds: i32,
    pub rootfs: Option<RootfsPlan>,
    pub security: SecurityPlan,
    pub create_container_hooks: Vec<Hook>,
    pub start_container_hooks: Vec<Hook>,
    /// Name of the session keyring the init joins (`None` with `--no-new-keyring`).
    pub session_keyring: Option<String>,
}

/// Why a plan could not be made.
#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    #[error("invalid {field}: {reason}")]
    Invalid { field: &'static str, reason: String },
    #[error("root filesystem")]
    Rootfs(#[from] rootfs::RootfsError),
    #[error("process security")]
    Security(#[from] security::SecurityError),
}

fn invalid(field: &'static str, reason: impl Into<String>) -> PlanError {
    PlanError::Invalid {
        field,
        reason: reason.into(),
    }
}

/// Options that come from the command line rather than the spec.
#[derive(Debug, Clone, Default)]
pub struct SpawnOptions {
    pub no_pivot: bool,
    pub preserve_fds: i32,
    /// Session keyring to join, e.g. `_ses.<id>`; `None` keeps the caller's.
    pub session_keyring: Option<String>,
}

fn rlimit_of(t: PosixRlimitType) -> (&'static str, i32) {
    use PosixRlimitType::*;
    let (name, r) = match t {
        RlimitCpu => ("RLIMIT_CPU", libc::RLIMIT_CPU),
        RlimitFsize => ("RLIMIT_FSIZE", libc::RLIMIT_FSIZE),
        RlimitData => ("RLIMIT_DATA", libc::RLIMIT_DATA),
        RlimitStack => ("RLIMIT_STACK", libc::RLIMIT_STACK),
        RlimitCore => ("RLIMIT_CORE", libc::RLIMIT_CORE),
        RlimitRss => ("RLIMIT_RSS", libc::RLIMIT_RSS),
        RlimitNproc => ("RLIMIT_NPROC", libc::RLIMIT_NPROC),
        RlimitNofile => ("RLIMIT_NOFILE", libc::RLIMIT_NOFILE),
        RlimitMemlock => ("RLIMIT_MEMLOCK", libc::RLIMIT_MEMLOCK),
        RlimitAs => ("RLIMIT_AS", libc::RLIMIT_AS),
        RlimitLocks => ("RLIMIT_LOCKS", libc::RLIMIT_LOCKS),
        RlimitSigpending => ("RLIMIT_SIGPENDING", libc::RLIMIT_SIGPENDING),
        RlimitMsgqueue => ("RLIMIT_MSGQUEUE", libc::RLIMIT_MSGQUEUE),
        RlimitNice => ("RLIMIT_NICE", libc::RLIMIT_NICE),
        RlimitRtprio => ("RLIMIT_RTPRIO", libc::RLIMIT_RTPRIO),
        RlimitRttime => ("RLIMIT_RTTIME", libc::RLIMIT_RTTIME),
    };
    (name, r as i32)
}

fn id_map(maps: &[oci_spec::runtime::LinuxIdMapping]) -> Option<String> {
    if maps.is_empty() {
        return None;
    }
    Some(
        maps.iter()
            .map(|m| format!("{} {} {}\n", m.container_id(), m.host_id(), m.size()))
            .collect(),
    )
}

/// Plans the process-level part shared by `create` and `exec`.
fn plan_process(process: &Process, plan: &mut SpawnPlan) -> Result<(), PlanError> {
    plan.args = process.args().clone().unwrap_or_default();
    if plan.args.is_empty() {
        return Err(invalid("process.args", "missing or empty"));
    }
    plan.env = process.env().clone().unwrap_or_default();
    plan.cwd = process.cwd().clone();
    if !plan.cwd.is_absolute() {
        return Err(invalid(
            "process.cwd",
            format!("{:?} is not an absolute path", plan.cwd),
        ));
    }
    plan.terminal = process.terminal().unwrap_or(false);
    plan.console_size = process
        .console_size()
        .as_ref()
        .map(|c| (c.height() as u16, c.width() as u16));
    let mut seen = Vec::new();
    for r in process.rlimits().iter().flatten() {
        let (name, resource) = rlimit_of(r.typ());
        if seen.contains(&resource) {
            return Err(invalid(
                "process.rlimits",
                format!("{name} is listed twice"),
            ));
        }
        seen.push(resource);
        if r.soft() > r.hard() {
            return Err(invalid(
                "process.rlimits",
                format!(
                    "{name}: soft limit {} is above hard limit {}",
                    r.soft(),
                    r.hard()
                ),
            ));
        }
        plan.rlimits.push(Rlimit {
            name: name.to_owned(),
            resource,
            soft: r.soft(),
            hard: r.hard(),
        });
    }
    plan.oom_score_adj = process.oom_score_adj();
    if let Some(adj) = plan.oom_score_adj {
        if !(-1000..=1000).contains(&adj) {
            return Err(invalid(
                "process.oomScoreAdj",
                format!("{adj} is outside -1000..1000"),
            ));
        }
    }
    Ok(())
}

fn empty_plan(role: Role, security: SecurityPlan) -> SpawnPlan {
    SpawnPlan {
        role,
        namespaces: Vec::new(),
        uid_map: None,
        gid_map: None,
        time_offsets: None,
        hostname: None,
        domainname: None,
        sysctl: Vec::new(),
        rlimits: Vec::new(),
        oom_score_adj: None,
        args: Vec::new(),
        env: Vec::new(),
        cwd: PathBuf::from("/"),
        terminal: false,
        console_size: None,
        preserve_fds: 0,
        rootfs: None,
        security,
        create_container_hooks: Vec::new(),
        start_container_hooks: Vec::new(),
        session_keyring: None,
    }
}

/// Plans a new container's init from its spec. `bundle` must be absolute.
pub fn plan_init(spec: &Spec, bundle: &Path, opts: &SpawnOptions) -> Result<SpawnPlan, PlanError> {
    let process = spec
        .process()
        .as_ref()
        .ok_or_else(|| invalid("process", "missing"))?;
    let linux = spec
        .linux()
        .as_ref()
        .ok_or_else(|| invalid("linux", "missing"))?;
    let security = security::plan_for_spec(spec)?;
    let mut plan = empty_plan(Role::Init, security);
    plan_process(process, &mut plan)?;
    plan.preserve_fds = opts.preserve_fds;
    plan.session_keyring = opts.session_keyring.clone();

    let mut namespaces: Vec<NsPlan> = linux
        .namespaces()
        .iter()
        .flatten()
        .map(|ns| NsPlan {
            kind: NsKind::from_spec(ns.typ()),
            path: ns.path().clone(),
        })
        .collect();
    for ns in &namespaces {
        if let Some(p) = &ns.path {
            if !p.is_absolute() {
                return Err(invalid(
                    "linux.namespaces",
                    format!(
                        "{} namespace path {p:?} is not absolute",
                        ns.kind.proc_name()
                    ),
                ));
            }
        }
    }
    namespaces.sort_by_key(|ns| NsKind::JOIN_ORDER.iter().position(|k| *k == ns.kind));
    let kinds: Vec<NsKind> = namespaces.iter().map(|n| n.kind).collect();
    let has = |k: NsKind| kinds.contains(&k);
    let new_user = namespaces
        .iter()
        .any(|n| n.kind == NsKind::User && n.path.is_none());
    if new_user {
        plan.uid_map = id_map(linux.uid_mappings().as_deref().unwrap_or_default());
        plan.gid_map = id_map(linux.gid_mappings().as_deref().unwrap_or_default());
        if plan.uid_map.is_none() || plan.gid_map.is_none() {
            return Err(invalid(
                "linux.uidMappings",
                "a new user namespace needs uidMappings and gidMappings",
            ));
        }
    }
    if !has(NsKind::Mount) {
        return Err(invalid(
            "linux.namespaces",
            "a mount namespace is required (the runtime builds the rootfs in it)",
        ));
    }
    if let Some(offsets) = linux.time_offsets() {
        if namespaces
            .iter()
            .any(|n| n.kind == NsKind::Time && n.path.is_some())
        {
            return Err(invalid(
                "linux.timeOffsets",
                "offsets cannot be set on a joined time namespace",
            ));
        }
        let mut s = String::new();
        let mut clocks: Vec<_> = offsets.iter().collect();
        clocks.sort_by(|a, b| a.0.cmp(b.0));
        for (clock, off) in clocks {
            if clock != "monotonic" && clock != "boottime" {
                return Err(invalid(
                    "linux.timeOffsets",
                    format!("unknown clock {clock:?} (monotonic or boottime)"),
                ));
            }
            s.push_str(&format!(
                "{clock} {} {}\n",
                off.secs().unwrap_or(0),
                off.nanosecs().unwrap_or(0)
            ));
        }
        plan.time_offsets = Some(s);
    }
    plan.namespaces = namespaces;

    plan.hostname = spec.hostname().clone();
    plan.domainname = spec.domainname().clone();
    if (plan.hostname.is_some() || plan.domainname.is_some()) && !has(NsKind::Uts) {
        return Err(invalid(
            "hostname",
            "hostname/domainname set without a uts namespace",
        ));
    }
    if let Some(sysctl) = linux.sysctl() {
        let mut keys: Vec<_> = sysctl.iter().collect();
        keys.sort();
        for (k, v) in keys {
            if k.is_empty()
                || k.contains("..")
                || k.starts_with('/')
                || k.contains('/') && k.contains('.')
            {
                return Err(invalid("linux.sysctl", format!("bad key {k:?}")));
            }
            plan.sysctl
                .push((format!("sys/{}", k.replace('.', "/")), v.clone()));
        }
    }
    plan.rootfs = Some(rootfs::plan(
        spec,
        bundle,
        &RootfsOptions {
            no_pivot: opts.no_pivot,
        },
    )?);
    if let Some(hooks) = spec.hooks() {
        plan.create_container_hooks = hooks.create_container().clone().unwrap_or_default();
        plan.start_container_hooks = hooks.start_container().clone().unwrap_or_default();
    }
    Ok(plan)
}

/// Plans an `exec` into the container whose init is `init_pid`, created from `spec`.
/// Every namespace the container has is joined from the init.
pub fn plan_exec(
    spec: &Spec,
    process: &Process,
    init_pid: i32,
    preserve_fds: i32,
) -> Result<SpawnPlan, PlanError> {
    let linux = spec
        .linux()
        .as_ref()
        .ok_or_else(|| invalid("linux", "missing"))?;
    let security = security::plan(process, linux.seccomp().as_ref())?;
    let mut plan = empty_plan(Role::Exec, security);
    plan_process(process, &mut plan)?;
    plan.preserve_fds = preserve_fds;
    let mut kinds: Vec<NsKind> = linux
        .namespaces()
        .iter()
        .flatten()
        .map(|ns| NsKind::from_spec(ns.typ()))
        .collect();
    kinds.sort_by_key(|k| NsKind::JOIN_ORDER.iter().position(|j| j == k));
    plan.namespaces = kinds
        .into_iter()
        .map(|kind| NsPlan {
            kind,
            path: Some(PathBuf::from(format!(
                "/proc/{init_pid}/ns/{}",
                kind.proc_name()
            ))),
        })
        .collect();
    Ok(plan)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn join_order_puts_user_first_and_mount_last() {
        assert_eq!(NsKind::JOIN_ORDER[0], NsKind::User);
        assert_eq!(NsKind::JOIN_ORDER[7], NsKind::Mount);
    }

    #[test]
    fn clone_flags_match_spec_discriminants() {
        for t in [
            LinuxNamespaceType::Mount,
            LinuxNamespaceType::Cgroup,
            LinuxNamespaceType::Uts,
            LinuxNamespaceType::Ipc,
            LinuxNamespaceType::User,
            LinuxNamespaceType::Pid,
            LinuxNamespaceType::Network,
            LinuxNamespaceType::Time,
        ] {
            assert_eq!(NsKind::from_spec(t).clone_flag(), t as i32);
        }
    }

    #[test]
    fn id_maps_format_one_line_per_range() {
        let m = oci_spec::runtime::LinuxIdMappingBuilder::default()
            .container_id(0u32)
            .host_id(100000u32)
            .size(65536u32)
            .build()
            .unwrap();
        assert_eq!(id_map(&[m]).unwrap(), "0 100000 65536\n");
        assert_eq!(id_map(&[]), None);
    }

    #[test]
    fn rlimit_names_map_to_resources() {
        assert_eq!(
            rlimit_of(PosixRlimitType::RlimitNofile),
            ("RLIMIT_NOFILE", libc::RLIMIT_NOFILE as i32)
        );
    }
}

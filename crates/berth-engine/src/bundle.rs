//! From "an image plus run options" to an OCI `config.json`: a pure function, unit-tested
//! without root. The defaults are Docker's (moby `oci/defaults.go` and
//! `daemon/oci_linux.go`): its capability set, masked and read-only paths, the default seccomp
//! profile resolved for the capabilities, and a private network namespace (which the engine
//! attaches to a bridge network, or leaves with loopback only for `--network none`).

use std::path::Path;

use serde::Deserialize;
use serde_json::{json, Value};

use crate::user::{self, ResolvedUser, UserError};

/// Docker's default capabilities (moby `oci/caps/defaults.go`).
pub const DOCKER_DEFAULT_CAPS: &[&str] = &[
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_FSETID",
    "CAP_FOWNER",
    "CAP_MKNOD",
    "CAP_NET_RAW",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETFCAP",
    "CAP_SETPCAP",
    "CAP_NET_BIND_SERVICE",
    "CAP_SYS_CHROOT",
    "CAP_KILL",
    "CAP_AUDIT_WRITE",
];

/// Docker's masked paths (moby `oci/defaults.go`).
pub const MASKED_PATHS: &[&str] = &[
    "/proc/asound",
    "/proc/acpi",
    "/proc/interrupts",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/proc/scsi",
    "/sys/firmware",
    "/sys/devices/virtual/powercap",
];

/// Docker's read-only paths (moby `oci/defaults.go`).
pub const READONLY_PATHS: &[&str] = &[
    "/proc/bus",
    "/proc/fs",
    "/proc/irq",
    "/proc/sys",
    "/proc/sysrq-trigger",
];

const DEFAULT_PATH: &str = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// The part of an image config (`config` in the OCI image config) a container uses.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ImageConfig {
    #[serde(default)]
    pub entrypoint: Option<Vec<String>>,
    #[serde(default)]
    pub cmd: Option<Vec<String>>,
    #[serde(default)]
    pub env: Option<Vec<String>>,
    #[serde(default)]
    pub working_dir: Option<String>,
    #[serde(default)]
    pub user: Option<String>,
    #[serde(default)]
    pub stop_signal: Option<String>,
    /// `{"/path": {}}`: an anonymous volume per path.
    #[serde(default)]
    pub volumes: Option<std::collections::BTreeMap<String, Value>>,
    /// `{"80/tcp": {}}`: what `-P` publishes.
    #[serde(default)]
    pub exposed_ports: Option<std::collections::BTreeMap<String, Value>>,
}

impl ImageConfig {
    /// Reads `config` from an image config document (a missing `config` is an empty one).
    pub fn from_image_json(doc: &Value) -> Result<Self, serde_json::Error> {
        match doc.get("config") {
            Some(c) if !c.is_null() => serde_json::from_value(c.clone()),
            _ => Ok(Self::default()),
        }
    }
}

/// `docker run` options that shape the bundle, as given on the command line.
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    pub image: String,
    pub name: Option<String>,
    /// Arguments after the image: replace the image's `Cmd`.
    pub command: Vec<String>,
    /// `--entrypoint`: replaces the image's `Entrypoint` (and drops its `Cmd`); `""` clears it.
    pub entrypoint: Option<String>,
    pub env: Vec<String>,
    pub workdir: Option<String>,
    pub user: Option<String>,
    pub hostname: Option<String>,
    pub tty: bool,
    pub interactive: bool,
    pub auto_remove: bool,
    pub read_only: bool,
    /// `--tmpfs PATH[:OPTIONS]`.
    pub tmpfs: Vec<String>,
    /// `-v SRC:DST[:OPTS]`, `-v NAME:DST[:OPTS]`, `-v DST`.
    pub volumes: Vec<String>,
    /// `--mount type=bind|volume|tmpfs,...`.
    pub mounts: Vec<String>,
    /// `--volumes-from CONTAINER[:ro|rw]`: that container's volumes and bind mounts.
    pub volumes_from: Vec<String>,
    pub memory: Option<String>,
    pub cpus: Option<String>,
    pub pids_limit: Option<i64>,
    pub cap_add: Vec<String>,
    pub cap_drop: Vec<String>,
    pub privileged: bool,
    /// `bridge` (the default), a network's name, `none`, `host`, `container:X`.
    pub network: Option<String>,
    /// `-p [hostIP:][hostPort:]containerPort[/proto]`.
    pub publish: Vec<String>,
    /// `-P`: publish every port the image exposes on an ephemeral host port.
    pub publish_all: bool,
    /// `--ip`: a static address on the network.
    pub ip: Option<String>,
    /// Further `--network` flags: more bridge networks (`eth1`...).
    pub extra_networks: Vec<String>,
    /// `--network-alias`: more names for the container on a user-defined network.
    pub network_aliases: Vec<String>,
    /// Absolute cgroup under which `<id>` is created (default `/berth`).
    pub cgroup_parent: Option<String>,
    /// `--pid host|container:X`.
    pub pid: Option<String>,
    /// `--ipc private|shareable|host|container:X`.
    pub ipc: Option<String>,
    /// `--uts host`.
    pub uts: Option<String>,
    /// `--stop-signal`: overrides the image's `StopSignal`.
    pub stop_signal: Option<String>,
    /// `--stop-timeout` in seconds (Docker's default 10).
    pub stop_timeout: Option<u64>,
    /// `--label KEY=VALUE`.
    pub labels: Vec<String>,
    /// `--restart no|on-failure[:N]|always|unless-stopped`.
    pub restart: Option<String>,
    /// `--log-driver json-file|none`.
    pub log_driver: Option<String>,
    /// `--log-opt max-size=10m`, `--log-opt max-file=3`.
    pub log_opts: Vec<String>,
    /// `--memory-swap` (memory + swap; `-1`: unlimited).
    pub memory_swap: Option<String>,
    /// `--memory-reservation` (soft limit).
    pub memory_reservation: Option<String>,
    /// `--cpu-shares` (relative weight, 1024 by default).
    pub cpu_shares: Option<u64>,
    /// `--cpuset-cpus` (`0-1`, `0,2`).
    pub cpuset_cpus: Option<String>,
    /// `--blkio-weight` (10 to 1000).
    pub blkio_weight: Option<u16>,
    /// `--ulimit NAME=SOFT[:HARD]`.
    pub ulimits: Vec<String>,
    /// `--security-opt` (`no-new-privileges[=true|false]`, `seccomp=unconfined`,
    /// `apparmor=PROFILE`, `label=...`).
    pub security_opts: Vec<String>,
    /// `--add-host NAME:IP`.
    pub add_hosts: Vec<String>,
    /// `--dns IP`.
    pub dns: Vec<String>,
    /// `--device HOST[:CONTAINER[:PERMS]]` (see [`crate::devices`]).
    pub devices: Vec<String>,
    /// `--userns`: only `host` (the default: no user namespace) is supported.
    pub userns: Option<String>,
    /// `--platform os/arch[/variant]`: the image must be for this platform.
    pub platform: Option<String>,
    /// `--init`: run the command under Berth's minimal init (see [`crate::init`]).
    pub init: bool,
    /// `--dns-search DOMAIN`.
    pub dns_search: Vec<String>,
    /// `--dns-option OPTION`.
    pub dns_options: Vec<String>,
}

/// `/etc/hosts` for the container: Docker's defaults, the host name, then `--add-host NAME:IP`.
pub fn hosts_file(hostname: &str, opts: &RunOptions) -> Result<String, BundleError> {
    let mut s = format!(
        "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n127.0.1.1\t{hostname}\n"
    );
    for h in &opts.add_hosts {
        let bad = || BundleError::AddHost(h.clone());
        // NAME:IP, where an IPv6 address has colons of its own.
        let (name, ip) = h.split_once(':').ok_or_else(bad)?;
        let ip: std::net::IpAddr = ip.trim_matches(['[', ']']).parse().map_err(|_| bad())?;
        if name.is_empty() || name.contains(char::is_whitespace) {
            return Err(bad());
        }
        s.push_str(&format!("{ip}\t{name}\n"));
    }
    Ok(s)
}

/// `/etc/resolv.conf` for the container, or `None` to leave the image's (a joined network
/// namespace without `--dns` flags): the host's, with `--dns`, `--dns-search` and
/// `--dns-option` replacing its nameserver, search and options lines.
pub fn resolv_conf(opts: &RunOptions) -> Result<Option<String>, BundleError> {
    let host = std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default();
    resolv_conf_from(&host, opts)
}

/// [`resolv_conf`] from the host's file `host`. Outside the host's network namespace a
/// loopback resolver (127.0.0.53 of systemd-resolved, a local dnsmasq) is unreachable, so
/// those lines are dropped, and with none left Docker's fallback (8.8.8.8, 8.8.4.4) is used.
pub fn resolv_conf_from(host: &str, opts: &RunOptions) -> Result<Option<String>, BundleError> {
    let mode = opts.network.as_deref().unwrap_or("bridge");
    let joined = mode.starts_with("container:");
    let flags = !opts.dns.is_empty() || !opts.dns_search.is_empty() || !opts.dns_options.is_empty();
    if joined && !flags {
        return Ok(None);
    }
    let own_ns = mode != "host";
    let mut servers = Vec::new();
    for d in &opts.dns {
        let ip: std::net::IpAddr = d.parse().map_err(|_| BundleError::Dns(d.clone()))?;
        servers.push(ip.to_string());
    }
    let mut search = opts.dns_search.join(" ");
    let mut options = opts.dns_options.join(" ");
    if servers.is_empty() {
        for l in host.lines() {
            let mut w = l.split_whitespace();
            if w.next() == Some("nameserver") {
                if let Some(ip) = w.next().and_then(|a| a.parse::<std::net::IpAddr>().ok()) {
                    if !(own_ns && ip.is_loopback()) {
                        servers.push(ip.to_string());
                    }
                }
            }
        }
        if servers.is_empty() && own_ns {
            servers = vec!["8.8.8.8".into(), "8.8.4.4".into()];
        }
    }
    let host_line = |key: &str| {
        host.lines()
            .filter_map(|l| l.strip_prefix(key))
            .map(|r| r.trim().to_owned())
            .next_back()
            .unwrap_or_default()
    };
    if opts.dns_search.is_empty() {
        search = host_line("search ");
    }
    if opts.dns_options.is_empty() {
        options = host_line("options ");
    }
    let mut s = String::new();
    if !search.is_empty() && search != "." {
        s.push_str(&format!("search {search}\n"));
    }
    for n in &servers {
        s.push_str(&format!("nameserver {n}\n"));
    }
    if !options.is_empty() {
        s.push_str(&format!("options {options}\n"));
    }
    Ok(Some(s))
}

/// `--ulimit nofile=1024:2048` as an OCI rlimit (`RLIMIT_NOFILE`, soft, hard).
pub fn parse_ulimit(s: &str) -> Result<(String, u64, u64), BundleError> {
    let bad = || BundleError::Ulimit(s.to_owned());
    let (name, vals) = s.split_once('=').ok_or_else(bad)?;
    const NAMES: &[&str] = &[
        "core",
        "cpu",
        "data",
        "fsize",
        "locks",
        "memlock",
        "msgqueue",
        "nice",
        "nofile",
        "nproc",
        "rss",
        "rtprio",
        "rttime",
        "sigpending",
        "stack",
        "as",
    ];
    if !NAMES.contains(&name) {
        return Err(bad());
    }
    let num = |v: &str| -> Result<u64, BundleError> {
        if v == "-1" || v == "unlimited" {
            Ok(u64::MAX)
        } else {
            v.parse().map_err(|_| bad())
        }
    };
    let (soft, hard) = match vals.split_once(':') {
        Some((a, b)) => (num(a)?, num(b)?),
        None => (num(vals)?, num(vals)?),
    };
    if soft > hard {
        return Err(bad());
    }
    Ok((format!("RLIMIT_{}", name.to_ascii_uppercase()), soft, hard))
}

/// The effect of `--security-opt` values.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SecurityOpts {
    pub no_new_privileges: bool,
    pub seccomp_unconfined: bool,
    /// `seccomp=FILE`: the file and its content (a profile in Docker's format).
    pub seccomp_profile: Option<(String, String)>,
    pub apparmor: Option<String>,
}

/// Parses `--security-opt` values (also Docker's old `key:value` form).
pub fn security_opts(opts: &RunOptions) -> Result<SecurityOpts, BundleError> {
    let mut out = SecurityOpts::default();
    for o in &opts.security_opts {
        let bad = || BundleError::SecurityOpt(o.clone());
        let (k, v) = o
            .split_once('=')
            .or_else(|| o.split_once(':'))
            .unwrap_or((o.as_str(), ""));
        match (k, v) {
            ("no-new-privileges", "" | "true") => out.no_new_privileges = true,
            ("no-new-privileges", "false") => out.no_new_privileges = false,
            ("seccomp", "unconfined") => {
                out.seccomp_unconfined = true;
                out.seccomp_profile = None;
            }
            ("seccomp", "builtin") => {
                out.seccomp_unconfined = false;
                out.seccomp_profile = None;
            }
            ("seccomp", "") => return Err(bad()),
            ("seccomp", path) => {
                // Read now, as the Docker CLI does: the bundle carries the resolved profile, so
                // later changes to the file do not change the container.
                let json =
                    std::fs::read_to_string(path).map_err(|source| BundleError::SeccompFile {
                        path: path.to_owned(),
                        source,
                    })?;
                berth_runtime::security::seccomp::profile_for_caps::<&str>(&json, &[]).map_err(
                    |source| BundleError::SeccompProfile {
                        path: path.to_owned(),
                        source,
                    },
                )?;
                out.seccomp_unconfined = false;
                out.seccomp_profile = Some((path.to_owned(), json));
            }
            ("apparmor", "unconfined") => out.apparmor = None,
            ("apparmor", p) if !p.is_empty() => out.apparmor = Some(p.to_owned()),
            // SELinux labels: accepted, as Docker does on a host without SELinux.
            ("label", _) => {}
            _ => return Err(bad()),
        }
    }
    Ok(out)
}

/// The log driver and json-file rotation from `--log-driver` and `--log-opt`.
pub fn log_config(opts: &RunOptions) -> Result<(String, crate::logs::Rotation), BundleError> {
    let driver = opts
        .log_driver
        .clone()
        .unwrap_or_else(|| "json-file".into());
    if driver != "json-file" && driver != "none" {
        return Err(BundleError::LogDriver(driver));
    }
    let mut rot = crate::logs::Rotation::default();
    for o in &opts.log_opts {
        let bad = || BundleError::LogOpt(o.clone());
        match o.split_once('=') {
            Some(("max-size", v)) => rot.max_size = parse_bytes(v).ok_or_else(bad)? as u64,
            Some(("max-file", v)) => {
                rot.max_file = v.parse().ok().filter(|n: &u32| *n >= 1).ok_or_else(bad)?
            }
            _ => return Err(bad()),
        }
    }
    Ok((driver, rot))
}

/// Checks `--restart` (Docker's policies; `--rm` excludes restarting).
pub fn restart_policy(opts: &RunOptions) -> Result<String, BundleError> {
    let p = opts.restart.clone().unwrap_or_else(|| "no".into());
    let valid = match p.split_once(':') {
        Some(("on-failure", n)) => n.parse::<u32>().is_ok(),
        None => matches!(
            p.as_str(),
            "no" | "on-failure" | "always" | "unless-stopped"
        ),
        _ => false,
    };
    if !valid {
        return Err(BundleError::Restart(p));
    }
    if p != "no" && opts.auto_remove {
        return Err(BundleError::RestartWithRm);
    }
    Ok(p)
}

/// How a container gets one kind of namespace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NsMode {
    /// Its own, new namespace.
    Private,
    /// The host's: no namespace of that kind in the spec.
    Host,
    /// Another container's (by id, name or prefix), joined by path.
    Container(String),
}

/// The namespace modes of `opts`, as (OCI namespace type, flag, mode).
pub fn namespace_modes(opts: &RunOptions) -> Result<Vec<(&'static str, NsMode)>, BundleError> {
    let parse =
        |flag: &'static str, v: Option<&str>, private: &[&str]| -> Result<NsMode, BundleError> {
            match v {
                None => Ok(NsMode::Private),
                Some(v) if private.contains(&v) => Ok(NsMode::Private),
                Some("host") => Ok(NsMode::Host),
                Some(v) => match v.strip_prefix("container:") {
                    Some(c) if !c.is_empty() => Ok(NsMode::Container(c.to_owned())),
                    _ => Err(BundleError::NamespaceMode {
                        flag,
                        value: v.to_owned(),
                    }),
                },
            }
        };
    let net = match opts.network.as_deref() {
        // A bridge network (the default one or a named one): a namespace of its own, which
        // the engine attaches between create and start.
        Some(n) if n != "host" && !n.starts_with("container:") => {
            if !valid_network_name(n) {
                return Err(BundleError::Network(n.to_owned()));
            }
            NsMode::Private
        }
        n => parse("--network", n, &[])?,
    };
    // Docker accepts only "host" per container (remapping is a daemon setting); podman's
    // private/auto/keep-id/nomap need a uid range Berth does not allocate.
    match opts.userns.as_deref() {
        None | Some("") | Some("host") => {}
        Some(v) => return Err(BundleError::Userns(v.to_owned())),
    }
    if let (Some(p), Some(n)) = (opts.publish.first(), opts.network.as_deref()) {
        if n == "none" || n == "host" || n.starts_with("container:") {
            return Err(BundleError::PortsNeedBridge(p.clone(), n.to_owned()));
        }
    }
    let uts = match opts.uts.as_deref() {
        None | Some("host") => parse("--uts", opts.uts.as_deref(), &[])?,
        Some(v) => {
            return Err(BundleError::NamespaceMode {
                flag: "--uts",
                value: v.to_owned(),
            })
        }
    };
    Ok(vec![
        ("network", net),
        ("pid", parse("--pid", opts.pid.as_deref(), &[])?),
        (
            "ipc",
            parse("--ipc", opts.ipc.as_deref(), &["private", "shareable"])?,
        ),
        ("uts", uts),
    ])
}

/// Docker's rule for network names: `[a-zA-Z0-9][a-zA-Z0-9_.-]*`.
pub fn valid_network_name(n: &str) -> bool {
    n.chars().next().is_some_and(|c| c.is_ascii_alphanumeric())
        && n.chars()
            .all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c))
}

/// Why a bundle could not be generated from the options.
#[derive(Debug, thiserror::Error)]
pub enum BundleError {
    #[error("invalid --memory value {0:?}: expected a number with an optional b, k, m or g unit")]
    Memory(String),
    #[error("invalid --cpus value {0:?}: expected a positive decimal number")]
    Cpus(String),
    #[error("invalid --pids-limit value {0}")]
    PidsLimit(i64),
    #[error(transparent)]
    Mount(#[from] crate::mountspec::MountSpecError),
    #[error("invalid --volumes-from {0:?}: expected CONTAINER[:ro|rw]")]
    VolumesFrom(String),
    #[error("invalid volume path {path:?} in the image config: it must be absolute, without ..")]
    ImageVolume { path: String },
    #[error("unknown capability {0:?}")]
    Capability(String),
    #[error(
        "conflicting options: publishing ports (-p {0}) needs a bridge network, not --network {1}"
    )]
    PortsNeedBridge(String, String),
    #[error("invalid --network {0:?}: a network name has letters, digits, '_', '.' and '-' only")]
    Network(String),
    #[error("invalid --restart policy {0:?} (no, on-failure[:N], always, unless-stopped)")]
    Restart(String),
    #[error(
        "invalid --ulimit {0:?}: expected NAME=SOFT[:HARD] with a known NAME and SOFT <= HARD"
    )]
    Ulimit(String),
    #[error("invalid --add-host {0:?}: expected NAME:IP")]
    AddHost(String),
    #[error("invalid --dns {0:?}: expected an IP address")]
    Dns(String),
    #[error("invalid --security-opt {0:?}")]
    SecurityOpt(String),
    #[error("reading the seccomp profile {path}")]
    SeccompFile {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("invalid seccomp profile {path}")]
    SeccompProfile {
        path: String,
        #[source]
        source: berth_runtime::security::seccomp::SeccompError,
    },
    #[error("invalid --{flag} value {value:?}")]
    Resource { flag: &'static str, value: String },
    #[error("log driver {0:?} is not supported (json-file, none)")]
    LogDriver(String),
    #[error("invalid --log-opt {0:?} (max-size=SIZE, max-file=N)")]
    LogOpt(String),
    #[error("conflicting options: --restart and --rm")]
    RestartWithRm,
    #[error("--userns {0:?}: user namespace remapping is not supported (only --userns host)")]
    Userns(String),
    #[error("invalid {flag} value {value:?}")]
    NamespaceMode { flag: &'static str, value: String },
    #[error("--cgroup-parent {0:?} must be an absolute cgroup path")]
    CgroupParent(String),
    #[error("no command specified: the image has no Entrypoint or Cmd and none was given")]
    NoCommand,
    #[error("--workdir {0:?} must be an absolute path")]
    Workdir(String),
    #[error(transparent)]
    User(#[from] UserError),
    #[error("resolving the default seccomp profile")]
    Seccomp(#[source] berth_runtime::security::seccomp::SeccompError),
    #[error("the generated spec does not parse")]
    Spec(#[source] serde_json::Error),
}

/// Parses Docker's memory sizes: `512m`, `1g`, `1048576`, `64mb`.
pub fn parse_bytes(s: &str) -> Option<i64> {
    let t = s.trim().to_ascii_lowercase();
    let t = t.strip_suffix('b').unwrap_or(&t);
    let (num, mult) = match t.chars().last()? {
        'k' => (&t[..t.len() - 1], 1i64 << 10),
        'm' => (&t[..t.len() - 1], 1 << 20),
        'g' => (&t[..t.len() - 1], 1 << 30),
        't' => (&t[..t.len() - 1], 1 << 40),
        _ => (t, 1),
    };
    let n: f64 = num.parse().ok()?;
    if !n.is_finite() || n <= 0.0 {
        return None;
    }
    let v = n * mult as f64;
    (v < i64::MAX as f64).then_some(v as i64)
}

/// `--cpus 1.5` as nano-CPUs (Docker's `NanoCPUs`).
pub fn parse_cpus(s: &str) -> Option<i64> {
    let n: f64 = s.trim().parse().ok()?;
    (n.is_finite() && n > 0.0 && n < 1e6).then(|| (n * 1e9).round() as i64)
}

/// The bounding set of this process (`CapBnd` of `/proc/self/status`); every capability when
/// it cannot be read.
pub fn caller_bounding_set() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("CapBnd:"))
                .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
        })
        .unwrap_or(u64::MAX)
}

/// Capability set after `--cap-add`/`--cap-drop` over Docker's defaults (`ALL` allowed on
/// either side; drop wins over the defaults, add wins over drop as in moby `caps.TweakCapabilities`).
pub fn capabilities(
    add: &[String],
    drop: &[String],
    privileged: bool,
) -> Result<Vec<String>, BundleError> {
    let norm = |c: &str| -> Result<String, BundleError> {
        let up = c.trim().to_ascii_uppercase();
        if up == "ALL" {
            return Ok(up);
        }
        let full = if up.starts_with("CAP_") {
            up
        } else {
            format!("CAP_{up}")
        };
        berth_runtime::security::caps::cap_number(&full)
            .map_err(|_| BundleError::Capability(c.to_owned()))?;
        Ok(full)
    };
    // "All" is every capability Berth itself may hold, as podman does: a capability outside
    // the caller's bounding set cannot be given to a child (capabilities(7)), and asking for
    // it would fail the container's start with EPERM.
    let bounding = caller_bounding_set();
    let all: Vec<String> = (0..=63u32)
        .filter(|n| bounding & (1u64 << n) != 0)
        .filter_map(berth_runtime::security::caps::cap_name)
        .map(|n| {
            if n.starts_with("CAP_") {
                n.to_owned()
            } else {
                format!("CAP_{n}")
            }
        })
        .collect();
    if privileged {
        return Ok(all);
    }
    let add: Vec<String> = add.iter().map(|c| norm(c)).collect::<Result<_, _>>()?;
    let drop: Vec<String> = drop.iter().map(|c| norm(c)).collect::<Result<_, _>>()?;
    let mut caps: Vec<String> = if drop.iter().any(|c| c == "ALL") {
        Vec::new()
    } else {
        DOCKER_DEFAULT_CAPS
            .iter()
            .map(|c| c.to_string())
            .filter(|c| !drop.contains(c))
            .collect()
    };
    if add.iter().any(|c| c == "ALL") {
        return Ok(all.into_iter().filter(|c| !drop.contains(c)).collect());
    }
    for c in add {
        if !caps.contains(&c) {
            caps.push(c);
        }
    }
    Ok(caps)
}

/// The process arguments: Docker's rules for `--entrypoint`, `Entrypoint` and `Cmd`.
pub fn process_args(img: &ImageConfig, opts: &RunOptions) -> Result<Vec<String>, BundleError> {
    let entrypoint: Vec<String> = match &opts.entrypoint {
        Some(e) if e.is_empty() => Vec::new(),
        Some(e) => vec![e.clone()],
        None => img.entrypoint.clone().unwrap_or_default(),
    };
    let cmd: Vec<String> = if !opts.command.is_empty() {
        opts.command.clone()
    } else if opts.entrypoint.is_some() {
        // moby: a new entrypoint resets the image's Cmd.
        Vec::new()
    } else {
        img.cmd.clone().unwrap_or_default()
    };
    let args: Vec<String> = entrypoint.into_iter().chain(cmd).collect();
    if args.is_empty() {
        return Err(BundleError::NoCommand);
    }
    Ok(args)
}

/// The environment: a default PATH, the image's `Env`, then `-e` (later wins per key; `-e KEY`
/// without `=` is dropped, as Docker does when the caller has no such variable).
pub fn environment(img: &ImageConfig, opts: &RunOptions, hostname: &str) -> Vec<String> {
    let mut env: Vec<String> = vec![DEFAULT_PATH.to_owned(), format!("HOSTNAME={hostname}")];
    let mut set = |kv: String| {
        let key = kv.split('=').next().unwrap_or("").to_owned();
        env.retain(|e| e.split('=').next() != Some(key.as_str()));
        env.push(kv);
    };
    for kv in img.env.clone().unwrap_or_default() {
        set(kv);
    }
    for kv in &opts.env {
        if kv.contains('=') {
            set(kv.clone());
        } else if let Ok(v) = std::env::var(kv) {
            set(format!("{kv}={v}"));
        }
    }
    if opts.tty && !env.iter().any(|e| e.starts_with("TERM=")) {
        env.push("TERM=xterm".into());
    }
    env
}

/// The mounts a container gets beyond the runtime's defaults, as records (`-v`, `--mount`,
/// `--tmpfs`); volumes have no source yet.
pub fn user_mounts(opts: &RunOptions) -> Result<Vec<crate::record::MountRecord>, BundleError> {
    Ok(crate::mountspec::parse_all(
        &opts.volumes,
        &opts.mounts,
        &opts.tmpfs,
    )?)
}

/// The image's `Volumes` that no mount of the user covers, as anonymous volume mounts
/// (Docker's semantics), in path order. A path that is relative or climbs with `..` is refused
/// (CVE-2022-23648).
pub fn image_volumes(
    img: &ImageConfig,
    user: &[crate::record::MountRecord],
) -> Result<Vec<crate::record::MountRecord>, BundleError> {
    let mut out: Vec<crate::record::MountRecord> = Vec::new();
    for path in img.volumes.iter().flat_map(|v| v.keys()) {
        let destination = crate::volume::clean_container_path(path)
            .ok_or_else(|| BundleError::ImageVolume { path: path.clone() })?;
        if user
            .iter()
            .chain(out.iter())
            .any(|m| m.destination == destination)
        {
            continue;
        }
        out.push(crate::record::MountRecord {
            kind: "volume".into(),
            destination,
            rw: true,
            anonymous: true,
            ..Default::default()
        });
    }
    Ok(out)
}

/// Everything the spec needs that the engine decided or looked up.
#[derive(Debug, Clone)]
pub struct SpecInputs<'a> {
    pub id: &'a str,
    pub hostname: &'a str,
    pub args: &'a [String],
    pub env: &'a [String],
    pub cwd: &'a str,
    pub user: &'a ResolvedUser,
    pub mounts: &'a [crate::record::MountRecord],
    /// `/etc/hostname` and `/etc/hosts` files to bind into the container.
    pub etc_files: &'a [(std::path::PathBuf, &'static str)],
    pub cgroups_path: &'a str,
    /// Namespaces joined by path (`--network container:X` ...): OCI type and path.
    pub joined: &'a [(&'static str, std::path::PathBuf)],
}

/// Builds the container's `config.json` over the runtime's defaults.
pub fn build_spec(
    opts: &RunOptions,
    inp: &SpecInputs<'_>,
) -> Result<berth_runtime::Spec, BundleError> {
    let modes = namespace_modes(opts)?;
    let caps = capabilities(&opts.cap_add, &opts.cap_drop, opts.privileged)?;
    let base = berth_runtime::ops::spec::default_spec_without_seccomp(false);
    let mut s = serde_json::to_value(&base).map_err(BundleError::Spec)?;

    s["hostname"] = json!(inp.hostname);
    s["root"] = json!({"path": "rootfs", "readonly": opts.read_only});
    let mut process = json!({
        "terminal": opts.tty,
        "user": {"uid": inp.user.uid, "gid": inp.user.gid},
        "args": inp.args,
        "env": inp.env,
        "cwd": inp.cwd,
        "capabilities": {
            "bounding": caps, "effective": caps, "permitted": caps,
        },
        "noNewPrivileges": false,
    });
    if !inp.user.additional_gids.is_empty() {
        process["user"]["additionalGids"] = json!(inp.user.additional_gids);
    }
    if !opts.ulimits.is_empty() {
        let mut rl = Vec::new();
        for u in &opts.ulimits {
            let (typ, soft, hard) = parse_ulimit(u)?;
            rl.push(json!({"type": typ, "soft": soft, "hard": hard}));
        }
        process["rlimits"] = json!(rl);
    }
    let sec = security_opts(opts)?;
    if sec.no_new_privileges {
        process["noNewPrivileges"] = json!(true);
    }
    if let Some(p) = &sec.apparmor {
        process["apparmorProfile"] = json!(p);
    }
    s["process"] = process;

    let mounts = s["mounts"].as_array_mut().expect("default spec has mounts");
    if opts.privileged {
        // Docker mounts /sys and the cgroup filesystem read-write for privileged containers
        // (moby daemon/oci_linux.go WithMounts).
        for m in mounts.iter_mut() {
            if m["destination"] == "/sys" || m["type"] == "cgroup" {
                if let Some(o) = m["options"].as_array_mut() {
                    o.retain(|x| x != "ro");
                }
            }
        }
    }
    for (path, dest) in inp.etc_files {
        mounts.push(json!({
            "destination": dest, "type": "bind", "source": path,
            "options": ["rbind", "rprivate"],
        }));
    }
    for m in inp.mounts {
        match (m.kind.as_str(), &m.fs) {
            // A volume with filesystem options: that filesystem, or with `o=bind` that device.
            ("volume", Some(fs)) => {
                let mut o: Vec<&str> = fs.options.split(',').filter(|x| !x.is_empty()).collect();
                let bind = o.iter().any(|x| *x == "bind" || *x == "rbind");
                if !m.rw {
                    o.push("ro");
                }
                let typ = if bind { "bind" } else { fs.fstype.as_str() };
                mounts.push(json!({
                    "destination": m.destination, "type": typ, "source": fs.device, "options": o,
                }));
            }
            ("bind" | "volume", _) => {
                let mut o = vec![if m.nonrecursive { "bind" } else { "rbind" }];
                o.push(if m.propagation.is_empty() {
                    "rprivate"
                } else {
                    m.propagation.as_str()
                });
                if !m.rw {
                    o.push("ro");
                }
                mounts.push(json!({
                    "destination": m.destination, "type": "bind", "source": m.source, "options": o,
                }));
            }
            _ => {
                // moby's default tmpfs options, then the user's.
                let mut o: Vec<String> = ["noexec", "nosuid", "nodev"].map(String::from).to_vec();
                o.extend(
                    m.source
                        .split(',')
                        .filter(|x| !x.is_empty())
                        .map(String::from),
                );
                mounts.push(json!({
                    "destination": m.destination, "type": "tmpfs", "source": "tmpfs", "options": o,
                }));
            }
        }
    }

    let linux = &mut s["linux"];
    linux["cgroupsPath"] = json!(inp.cgroups_path);
    linux["resources"] = resources(opts)?;
    if opts.privileged {
        linux["maskedPaths"] = json!([]);
        linux["readonlyPaths"] = json!([]);
        linux
            .as_object_mut()
            .expect("linux is an object")
            .remove("seccomp");
    } else if let Some((path, json)) = &sec.seccomp_profile {
        linux["maskedPaths"] = json!(MASKED_PATHS);
        linux["readonlyPaths"] = json!(READONLY_PATHS);
        let seccomp =
            berth_runtime::security::seccomp::profile_for_caps(json, &caps).map_err(|source| {
                BundleError::SeccompProfile {
                    path: path.clone(),
                    source,
                }
            })?;
        linux["seccomp"] = serde_json::to_value(seccomp).map_err(BundleError::Spec)?;
    } else if sec.seccomp_unconfined {
        linux["maskedPaths"] = json!(MASKED_PATHS);
        linux["readonlyPaths"] = json!(READONLY_PATHS);
        linux
            .as_object_mut()
            .expect("linux is an object")
            .remove("seccomp");
    } else {
        linux["maskedPaths"] = json!(MASKED_PATHS);
        linux["readonlyPaths"] = json!(READONLY_PATHS);
        let seccomp = berth_runtime::security::seccomp::default_seccomp_for_caps(&caps)
            .map_err(BundleError::Seccomp)?;
        linux["seccomp"] = serde_json::to_value(seccomp).map_err(BundleError::Spec)?;
    }
    if let Some(ns) = linux["namespaces"].as_array_mut() {
        for (typ, mode) in &modes {
            match mode {
                NsMode::Private => {}
                NsMode::Host => ns.retain(|n| n["type"] != *typ),
                NsMode::Container(_) => {
                    if let Some((_, path)) = inp.joined.iter().find(|(t, _)| t == typ) {
                        for n in ns.iter_mut().filter(|n| n["type"] == *typ) {
                            n["path"] = json!(path);
                        }
                    }
                }
            }
        }
    }
    if modes.contains(&("uts", NsMode::Host)) {
        // Without a UTS namespace of its own the container cannot have a host name.
        s.as_object_mut()
            .expect("spec is an object")
            .remove("hostname");
    }
    serde_json::from_value(s).map_err(BundleError::Spec)
}

/// The user the process runs as: `-u`, else the image's `User`, resolved against the image's
/// `/etc/passwd` and `/etc/group` read inside `rootfs` (never following links out of it).
pub fn resolve_user(
    rootfs: &Path,
    img: &ImageConfig,
    opts: &RunOptions,
) -> Result<ResolvedUser, BundleError> {
    let spec = opts
        .user
        .clone()
        .or_else(|| img.user.clone())
        .unwrap_or_default();
    let passwd = user::read_in_root(rootfs, "etc/passwd");
    let group = user::read_in_root(rootfs, "etc/group");
    Ok(user::resolve(&spec, passwd.as_deref(), group.as_deref())?)
}

/// `linux.resources` from the limit flags (`--memory`, `--cpus`, `--pids-limit`, ...), each
/// value checked: a bad one is an error naming the flag, before anything is created.
pub fn resources(opts: &RunOptions) -> Result<Value, BundleError> {
    let mut resources = json!({});
    if let Some(m) = &opts.memory {
        let b = parse_bytes(m).ok_or_else(|| BundleError::Memory(m.clone()))?;
        resources["memory"] = json!({"limit": b});
    }
    if let Some(c) = &opts.cpus {
        let nano = parse_cpus(c).ok_or_else(|| BundleError::Cpus(c.clone()))?;
        // moby: quota = NanoCPUs * period / 1e9 with a 100ms period.
        resources["cpu"] = json!({"period": 100_000u64, "quota": nano / 10_000});
    }
    if let Some(p) = opts.pids_limit {
        if p == 0 || p < -1 {
            return Err(BundleError::PidsLimit(p));
        }
        resources["pids"] = json!({"limit": p});
    }
    if let Some(m) = &opts.memory_swap {
        let v = if m == "-1" {
            -1
        } else {
            parse_bytes(m).ok_or_else(|| BundleError::Resource {
                flag: "memory-swap",
                value: m.clone(),
            })?
        };
        resources["memory"]["swap"] = json!(v);
    }
    if let Some(m) = &opts.memory_reservation {
        let b = parse_bytes(m).ok_or_else(|| BundleError::Resource {
            flag: "memory-reservation",
            value: m.clone(),
        })?;
        resources["memory"]["reservation"] = json!(b);
    }
    if let Some(sh) = opts.cpu_shares {
        resources["cpu"]["shares"] = json!(sh);
    }
    if let Some(c) = &opts.cpuset_cpus {
        let ok = !c.is_empty()
            && c.split(',').all(|r| {
                let mut it = r.splitn(2, '-');
                it.all(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
            });
        if !ok {
            return Err(BundleError::Resource {
                flag: "cpuset-cpus",
                value: c.clone(),
            });
        }
        resources["cpu"]["cpus"] = json!(c);
    }
    if let Some(w) = opts.blkio_weight {
        if !(10..=1000).contains(&w) {
            return Err(BundleError::Resource {
                flag: "blkio-weight",
                value: w.to_string(),
            });
        }
        resources["blockIO"] = json!({"weight": w});
    }
    resources["devices"] = if opts.privileged {
        json!([{"allow": true, "access": "rwm"}])
    } else {
        json!([{"allow": false, "access": "rwm"}])
    };
    Ok(resources)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::user::ResolvedUser;

    fn img() -> ImageConfig {
        ImageConfig {
            entrypoint: None,
            cmd: Some(vec!["sh".into()]),
            env: Some(vec!["PATH=/bin".into(), "A=1".into()]),
            working_dir: None,
            user: None,
            stop_signal: None,
            ..Default::default()
        }
    }

    fn spec_for(opts: &RunOptions) -> Result<berth_runtime::Spec, BundleError> {
        let user = ResolvedUser {
            uid: 0,
            gid: 0,
            additional_gids: vec![],
        };
        let args = vec!["sh".to_string()];
        build_spec(
            opts,
            &SpecInputs {
                id: "x",
                hostname: "abc",
                args: &args,
                env: &[],
                cwd: "/",
                user: &user,
                mounts: &user_mounts(opts)?,
                etc_files: &[],
                cgroups_path: "/berth/x",
                joined: &[("network", "/proc/7/ns/net".into())],
            },
        )
    }

    #[test]
    fn entrypoint_and_cmd_follow_docker() {
        let mut i = img();
        let mut o = RunOptions::default();
        assert_eq!(process_args(&i, &o).unwrap(), vec!["sh"]);
        o.command = vec!["echo".into(), "hi".into()];
        assert_eq!(process_args(&i, &o).unwrap(), vec!["echo", "hi"]);
        i.entrypoint = Some(vec!["/init".into()]);
        assert_eq!(process_args(&i, &o).unwrap(), vec!["/init", "echo", "hi"]);
        o.command.clear();
        o.entrypoint = Some("/bin/true".into());
        assert_eq!(process_args(&i, &o).unwrap(), vec!["/bin/true"]);
        o.entrypoint = Some(String::new());
        assert!(matches!(process_args(&i, &o), Err(BundleError::NoCommand)));
    }

    #[test]
    fn env_overrides_by_key() {
        let o = RunOptions {
            env: vec!["A=2".into(), "B=3".into()],
            ..Default::default()
        };
        let e = environment(&img(), &o, "h");
        assert_eq!(e, vec!["HOSTNAME=h", "PATH=/bin", "A=2", "B=3"]);
    }

    #[test]
    fn sizes_and_cpus() {
        assert_eq!(parse_bytes("512m"), Some(512 << 20));
        assert_eq!(parse_bytes("1G"), Some(1 << 30));
        assert_eq!(parse_bytes("64mb"), Some(64 << 20));
        assert_eq!(parse_bytes("1024"), Some(1024));
        assert_eq!(parse_bytes("12zz"), None);
        assert_eq!(parse_bytes("-1m"), None);
        assert_eq!(parse_cpus("1.5"), Some(1_500_000_000));
        assert_eq!(parse_cpus("0"), None);
    }

    #[test]
    fn caps_over_docker_defaults() {
        let c = capabilities(&["NET_ADMIN".into()], &["chown".into()], false).unwrap();
        assert!(c.contains(&"CAP_NET_ADMIN".to_string()));
        assert!(!c.contains(&"CAP_CHOWN".to_string()));
        assert!(c.contains(&"CAP_KILL".to_string()));
        let none = capabilities(&[], &["ALL".into()], false).unwrap();
        assert!(none.is_empty());
        let some = capabilities(&["KILL".into()], &["ALL".into()], false).unwrap();
        assert_eq!(some, vec!["CAP_KILL"]);
        assert!(capabilities(&["NOPE".into()], &[], false).is_err());
        assert!(capabilities(&[], &[], true)
            .unwrap()
            .contains(&"CAP_SYS_ADMIN".to_string()));
    }

    #[test]
    fn spec_has_resources_mounts_and_security_defaults() {
        let o = RunOptions {
            memory: Some("64m".into()),
            cpus: Some("0.5".into()),
            pids_limit: Some(100),
            read_only: true,
            volumes: vec!["/tmp:/data:ro".into()],
            tmpfs: vec!["/run:size=1m".into()],
            ..Default::default()
        };
        let s = spec_for(&o).unwrap();
        let v = serde_json::to_value(&s).unwrap();
        assert_eq!(v["linux"]["resources"]["memory"]["limit"], 64 << 20);
        assert_eq!(v["linux"]["resources"]["cpu"]["quota"], 50_000);
        assert_eq!(v["linux"]["resources"]["pids"]["limit"], 100);
        assert_eq!(v["linux"]["cgroupsPath"], "/berth/x");
        assert_eq!(v["root"]["readonly"], true);
        assert!(v["linux"]["seccomp"]["syscalls"].as_array().unwrap().len() > 10);
        assert!(v["linux"]["maskedPaths"]
            .as_array()
            .unwrap()
            .contains(&json!("/proc/kcore")));
        let ns: Vec<&str> = v["linux"]["namespaces"]
            .as_array()
            .unwrap()
            .iter()
            .map(|n| n["type"].as_str().unwrap())
            .collect();
        assert!(ns.contains(&"network"));
        let m = v["mounts"].as_array().unwrap();
        let data = m.iter().find(|m| m["destination"] == "/data").unwrap();
        assert!(data["options"].as_array().unwrap().contains(&json!("ro")));
        let run = m.iter().find(|m| m["destination"] == "/run").unwrap();
        assert_eq!(run["type"], "tmpfs");
        assert!(run["options"]
            .as_array()
            .unwrap()
            .contains(&json!("size=1m")));
    }

    #[test]
    fn bad_inputs_are_refused_with_the_value() {
        let e = |o: RunOptions| spec_for(&o).unwrap_err().to_string();
        assert!(e(RunOptions {
            memory: Some("12zz".into()),
            ..Default::default()
        })
        .contains("12zz"));
        assert!(e(RunOptions {
            publish: vec!["80:80".into()],
            network: Some("none".into()),
            ..Default::default()
        })
        .contains("conflicting options"));
        assert!(e(RunOptions {
            network: Some("my net".into()),
            ..Default::default()
        })
        .contains("invalid --network"));
        assert!(e(RunOptions {
            volumes: vec!["vol:/data:bogus".into()],
            ..Default::default()
        })
        .contains("invalid mode: bogus"));
    }

    #[test]
    fn image_volumes_become_anonymous_unless_covered() {
        let mut i = img();
        i.volumes = Some(
            [("/data/", json!({})), ("/logs", json!({}))]
                .into_iter()
                .map(|(k, v)| (k.to_string(), v))
                .collect(),
        );
        let user = user_mounts(&RunOptions {
            volumes: vec!["named:/data".into()],
            ..Default::default()
        })
        .unwrap();
        let v = image_volumes(&i, &user).unwrap();
        assert_eq!(v.len(), 1);
        assert_eq!(v[0].destination, "/logs");
        assert!(v[0].anonymous && v[0].kind == "volume");
        i.volumes = Some(
            [("/../../../etc/shadow".to_string(), json!({}))]
                .into_iter()
                .collect(),
        );
        assert!(matches!(
            image_volumes(&i, &[]),
            Err(BundleError::ImageVolume { .. })
        ));
    }

    #[test]
    fn volume_mounts_in_the_spec() {
        let mounts = vec![
            crate::record::MountRecord {
                kind: "volume".into(),
                source: "/var/lib/berth/volumes/v/_data".into(),
                destination: "/v".into(),
                rw: false,
                name: "v".into(),
                ..Default::default()
            },
            crate::record::MountRecord {
                kind: "volume".into(),
                source: "tmpfs".into(),
                destination: "/t".into(),
                rw: true,
                name: "t".into(),
                fs: Some(crate::volume::FsMount {
                    fstype: "tmpfs".into(),
                    device: "tmpfs".into(),
                    options: "size=1m".into(),
                }),
                ..Default::default()
            },
            crate::record::MountRecord {
                kind: "bind".into(),
                source: "/srv".into(),
                destination: "/srv".into(),
                rw: true,
                propagation: "rshared".into(),
                nonrecursive: true,
                ..Default::default()
            },
        ];
        let user = ResolvedUser {
            uid: 0,
            gid: 0,
            additional_gids: vec![],
        };
        let args = vec!["sh".to_string()];
        let s = build_spec(
            &RunOptions::default(),
            &SpecInputs {
                id: "x",
                hostname: "abc",
                args: &args,
                env: &[],
                cwd: "/",
                user: &user,
                mounts: &mounts,
                etc_files: &[],
                cgroups_path: "/berth/x",
                joined: &[],
            },
        )
        .unwrap();
        let v = serde_json::to_value(&s).unwrap();
        let m = v["mounts"].as_array().unwrap();
        let find = |d: &str| m.iter().find(|m| m["destination"] == d).unwrap().clone();
        assert_eq!(
            find("/v"),
            json!({"destination": "/v", "type": "bind", "source": "/var/lib/berth/volumes/v/_data", "options": ["rbind", "rprivate", "ro"]})
        );
        assert_eq!(
            find("/t"),
            json!({"destination": "/t", "type": "tmpfs", "source": "tmpfs", "options": ["size=1m"]})
        );
        assert_eq!(find("/srv")["options"], json!(["bind", "rshared"]));
    }

    #[test]
    fn namespace_modes_host_and_container() {
        let o = RunOptions {
            network: Some("container:db".into()),
            pid: Some("host".into()),
            uts: Some("host".into()),
            ..Default::default()
        };
        let v = serde_json::to_value(spec_for(&o).unwrap()).unwrap();
        let ns = v["linux"]["namespaces"].as_array().unwrap();
        assert!(!ns.iter().any(|n| n["type"] == "pid" || n["type"] == "uts"));
        let net = ns.iter().find(|n| n["type"] == "network").unwrap();
        assert_eq!(net["path"], "/proc/7/ns/net");
        assert!(v["hostname"].is_null());
        let bad = RunOptions {
            ipc: Some("container:".into()),
            ..Default::default()
        };
        assert!(matches!(
            namespace_modes(&bad),
            Err(BundleError::NamespaceMode { .. })
        ));
    }

    #[test]
    fn resources_ulimits_and_security_opts() {
        let o = RunOptions {
            memory: Some("64m".into()),
            memory_swap: Some("-1".into()),
            memory_reservation: Some("32m".into()),
            cpu_shares: Some(512),
            cpuset_cpus: Some("0-1".into()),
            blkio_weight: Some(300),
            ulimits: vec!["nofile=100:200".into(), "core=0".into()],
            security_opts: vec![
                "no-new-privileges".into(),
                "seccomp=unconfined".into(),
                "label=disable".into(),
            ],
            ..Default::default()
        };
        let v = serde_json::to_value(spec_for(&o).unwrap()).unwrap();
        let r = &v["linux"]["resources"];
        assert_eq!(r["memory"]["limit"], 64 << 20);
        assert_eq!(r["memory"]["swap"], -1);
        assert_eq!(r["memory"]["reservation"], 32 << 20);
        assert_eq!(r["cpu"]["shares"], 512);
        assert_eq!(r["cpu"]["cpus"], "0-1");
        assert_eq!(r["blockIO"]["weight"], 300);
        let rl = v["process"]["rlimits"].as_array().unwrap();
        assert!(rl.contains(&json!({"type": "RLIMIT_NOFILE", "soft": 100, "hard": 200})));
        assert!(rl.contains(&json!({"type": "RLIMIT_CORE", "soft": 0, "hard": 0})));
        assert_eq!(v["process"]["noNewPrivileges"], true);
        assert!(v["linux"]["seccomp"].is_null());
        assert!(parse_ulimit("nofile=2:1").is_err());
        assert!(parse_ulimit("bogus=1").is_err());
        let e = |o: RunOptions| spec_for(&o).unwrap_err().to_string();
        assert!(e(RunOptions {
            security_opts: vec!["seccomp=/berth-no-such-profile.json".into()],
            ..Default::default()
        })
        .contains("/berth-no-such-profile.json"));
        assert!(e(RunOptions {
            blkio_weight: Some(5),
            ..Default::default()
        })
        .contains("blkio-weight"));
        assert!(e(RunOptions {
            cpuset_cpus: Some("a".into()),
            ..Default::default()
        })
        .contains("cpuset-cpus"));
    }

    #[test]
    fn hosts_and_resolv_conf() {
        let o = RunOptions {
            add_hosts: vec!["db:10.0.0.2".into(), "v6:[::1]".into()],
            dns: vec!["9.9.9.9".into()],
            ..Default::default()
        };
        let h = hosts_file("abc", &o).unwrap();
        assert!(h.contains("127.0.1.1\tabc\n10.0.0.2\tdb\n::1\tv6\n"), "{h}");
        let host = "# generated\nsearch corp.example\nnameserver 127.0.0.53\nnameserver 10.1.1.1\noptions edns0\n";
        assert_eq!(
            resolv_conf_from(host, &o).unwrap().unwrap(),
            "search corp.example\nnameserver 9.9.9.9\noptions edns0\n"
        );
        // Loopback resolvers are unreachable from the container's namespace.
        assert_eq!(
            resolv_conf_from(host, &RunOptions::default())
                .unwrap()
                .unwrap(),
            "search corp.example\nnameserver 10.1.1.1\noptions edns0\n"
        );
        assert_eq!(
            resolv_conf_from("nameserver 127.0.0.1\n", &RunOptions::default())
                .unwrap()
                .unwrap(),
            "nameserver 8.8.8.8\nnameserver 8.8.4.4\n"
        );
        let flags = RunOptions {
            dns_search: vec!["a.test".into()],
            dns_options: vec!["ndots:2".into()],
            network: Some("host".into()),
            ..Default::default()
        };
        assert_eq!(
            resolv_conf_from("nameserver 127.0.0.53\n", &flags)
                .unwrap()
                .unwrap(),
            "search a.test\nnameserver 127.0.0.53\noptions ndots:2\n"
        );
        let joined = RunOptions {
            network: Some("container:db".into()),
            ..Default::default()
        };
        assert!(resolv_conf_from(host, &joined).unwrap().is_none());
        let bad = RunOptions {
            add_hosts: vec!["nohost".into()],
            ..Default::default()
        };
        assert!(hosts_file("abc", &bad).is_err());
    }

    #[test]
    fn privileged_drops_confinement() {
        let o = RunOptions {
            privileged: true,
            ..Default::default()
        };
        let v = serde_json::to_value(spec_for(&o).unwrap()).unwrap();
        assert!(v["linux"]["seccomp"].is_null());
        let masked = &v["linux"]["maskedPaths"];
        assert!(masked.is_null() || masked.as_array().is_some_and(|a| a.is_empty()));
        assert!(v["process"]["capabilities"]["bounding"]
            .as_array()
            .unwrap()
            .contains(&json!("CAP_SYS_ADMIN")));
    }
}

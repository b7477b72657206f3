//! The verbs and their flags, as runc spells them.

use std::io::Write;
use std::path::{Path, PathBuf};

use berth_runtime::ops::{self, create::CreateOptions, exec::ExecOptions, Runtime};
use berth_runtime::state::OciState;
use clap::{Parser, Subcommand};
use oci_spec::runtime::Process;

use crate::log::{chain, LogFormat, Logger};

type Result<T> = std::result::Result<T, Box<dyn std::error::Error + 'static>>;

/// An OCI runtime with runc's command line.
#[derive(Debug, Parser)]
#[command(name = "berth-runc", version, about)]
pub struct Cli {
    /// Root directory for container state (tmpfs recommended).
    #[arg(long, global = true, default_value = "/run/berth-runc")]
    pub root: PathBuf,
    /// Also write messages to this file.
    #[arg(long, global = true)]
    pub log: Option<PathBuf>,
    /// Format of --log.
    #[arg(long, global = true, value_enum, default_value = "text")]
    pub log_format: LogFormat,
    /// Debug logging.
    #[arg(long, global = true)]
    pub debug: bool,
    /// Use systemd to manage cgroups (not supported yet: refused).
    #[arg(long, global = true)]
    pub systemd_cgroup: bool,
    /// runc's rootless mode selector; rootless containers are detected from the spec.
    #[arg(long, hide = true)]
    pub rootless: Option<String>,
    /// Path to criu (checkpointing is not supported; accepted for compatibility).
    #[arg(long, global = true, hide = true)]
    pub criu: Option<PathBuf>,
    #[command(subcommand)]
    pub cmd: Cmd,
}

#[derive(Debug, Subcommand)]
pub enum Cmd {
    /// Create a container from a bundle; its process waits for `start`.
    Create(CreateArgs),
    /// Start a created container.
    Start { id: String },
    /// Create and start a container; wait for it unless --detach.
    Run {
        #[command(flatten)]
        create: CreateArgs,
        /// Do not wait for the container.
        #[arg(short, long)]
        detach: bool,
        /// Keep the container's state after it exits.
        #[arg(long)]
        keep: bool,
    },
    /// Print the state of a container as JSON.
    State { id: String },
    /// Send a signal to a container's init (default SIGTERM).
    Kill {
        id: String,
        #[arg(default_value = "SIGTERM")]
        signal: String,
        /// Signal every process in the container.
        #[arg(short, long)]
        all: bool,
    },
    /// Delete a container and everything it holds.
    Delete {
        id: String,
        /// Kill the container first if it is running.
        #[arg(short, long)]
        force: bool,
    },
    /// List containers.
    #[command(alias = "ls")]
    List {
        #[arg(short, long, default_value = "table")]
        format: String,
        /// Only ids.
        #[arg(short, long)]
        quiet: bool,
    },
    /// List the processes of a container (`ps` options may follow the id).
    Ps {
        #[arg(short, long, default_value = "table")]
        format: String,
        id: String,
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        ps_args: Vec<String>,
    },
    /// Write a default config.json.
    Spec {
        #[arg(short, long, default_value = ".")]
        bundle: PathBuf,
        /// A spec an unprivileged user can run.
        #[arg(long)]
        rootless: bool,
    },
    /// Run a new process in a running container.
    Exec(ExecArgs),
    /// Print the features this runtime supports as JSON.
    Features,
    /// Change the resource limits of a running container.
    Update(UpdateArgs),
    /// Freeze every process of a container.
    Pause { id: String },
    /// Thaw a paused container.
    Resume { id: String },
    /// Print resource statistics and OOM events as JSON lines.
    Events {
        /// Print one stats event and exit.
        #[arg(long)]
        stats: bool,
        /// Interval between stats events (e.g. 5s, 500ms).
        #[arg(long, default_value = "5s")]
        interval: String,
        id: String,
    },
}

#[derive(Debug, clap::Args)]
pub struct UpdateArgs {
    pub id: String,
    /// A linux.resources JSON document ("-" for stdin); flags are applied on top.
    #[arg(short, long)]
    pub r: Option<PathBuf>,
    /// Memory limit (bytes, or with k/m/g suffix; -1 unlimited).
    #[arg(long)]
    pub memory: Option<String>,
    /// Memory plus swap limit.
    #[arg(long)]
    pub memory_swap: Option<String>,
    /// Memory soft limit.
    #[arg(long)]
    pub memory_reservation: Option<String>,
    #[arg(long)]
    pub cpu_shares: Option<u64>,
    #[arg(long)]
    pub cpu_quota: Option<i64>,
    #[arg(long)]
    pub cpu_period: Option<u64>,
    #[arg(long)]
    pub cpuset_cpus: Option<String>,
    #[arg(long)]
    pub cpuset_mems: Option<String>,
    #[arg(long)]
    pub pids_limit: Option<i64>,
    #[arg(long)]
    pub blkio_weight: Option<u16>,
}

#[derive(Debug, clap::Args)]
pub struct CreateArgs {
    pub id: String,
    /// The bundle directory (default: the current directory).
    #[arg(short, long, default_value = ".")]
    pub bundle: PathBuf,
    /// Write the init's pid here.
    #[arg(long)]
    pub pid_file: Option<PathBuf>,
    /// Unix socket to send the pty master to (for terminal: true).
    #[arg(long)]
    pub console_socket: Option<PathBuf>,
    /// Pass N extra descriptors (3..3+N) to the process.
    #[arg(long, default_value_t = 0)]
    pub preserve_fds: i32,
    /// Use MS_MOVE + chroot instead of pivot_root.
    #[arg(long)]
    pub no_pivot: bool,
    /// Do not create a new session keyring.
    #[arg(long)]
    pub no_new_keyring: bool,
}

#[derive(Debug, clap::Args)]
pub struct ExecArgs {
    /// A process.json to run instead of the command line.
    #[arg(short, long)]
    pub process: Option<PathBuf>,
    /// Allocate a pty.
    #[arg(short, long)]
    pub tty: bool,
    #[arg(long)]
    pub console_socket: Option<PathBuf>,
    /// Working directory.
    #[arg(long)]
    pub cwd: Option<PathBuf>,
    /// KEY=VALUE, repeatable.
    #[arg(short, long)]
    pub env: Vec<String>,
    /// UID[:GID].
    #[arg(short, long)]
    pub user: Option<String>,
    /// Extra group ids.
    #[arg(short = 'g', long)]
    pub additional_gids: Vec<u32>,
    /// Add a capability (bounding, effective, permitted; never inheritable).
    #[arg(short, long)]
    pub cap: Vec<String>,
    /// Set no_new_privs.
    #[arg(long)]
    pub no_new_privs: bool,
    /// AppArmor profile.
    #[arg(long)]
    pub apparmor: Option<String>,
    /// SELinux process label.
    #[arg(long)]
    pub process_label: Option<String>,
    /// Do not wait for the process.
    #[arg(short, long)]
    pub detach: bool,
    #[arg(long)]
    pub pid_file: Option<PathBuf>,
    #[arg(long, default_value_t = 0)]
    pub preserve_fds: i32,
    pub id: String,
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    pub command: Vec<String>,
}

#[derive(Debug, thiserror::Error)]
enum CliError {
    #[error("--systemd-cgroup: the systemd cgroup driver is not supported yet (use the default cgroupfs driver)")]
    Systemd,
    #[error("unknown --format {0:?} (table or json)")]
    Format(String),
    #[error("exec needs a command or --process")]
    NoCommand,
    #[error("reading {path}")]
    ProcessFile {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("parsing {path}")]
    ProcessJson {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    #[error("invalid --user {0:?}: expected UID[:GID] as numbers")]
    User(String),
    #[error("process.terminal is true and the container is detached: give --console-socket to receive its pty")]
    NeedConsoleSocket,
    #[error("writing {path}")]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path} already exists")]
    SpecExists { path: PathBuf },
    #[error("running ps")]
    Ps(#[source] std::io::Error),
    #[error("waiting for the container process")]
    Wait(#[source] nix::errno::Errno),
    #[error("invalid --interval {0:?} (e.g. 5s, 500ms)")]
    Interval(String),
    #[error("reading resources from {path}")]
    Resources {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("parsing resources from {path}")]
    ResourcesJson {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
}

fn parse_interval(s: &str) -> Result<std::time::Duration> {
    let bad = || CliError::Interval(s.to_owned());
    let (num, unit) = match s.find(|c: char| !c.is_ascii_digit() && c != '.') {
        Some(i) => (&s[..i], &s[i..]),
        None => (s, "s"),
    };
    let n: f64 = num.parse().map_err(|_| bad())?;
    let secs = match unit {
        "ms" => n / 1000.0,
        "s" => n,
        "m" => n * 60.0,
        _ => return Err(bad().into()),
    };
    if secs <= 0.0 {
        return Err(bad().into());
    }
    Ok(std::time::Duration::from_secs_f64(secs))
}

/// The resources document `update` applies: `-r FILE` with the flags on top.
fn update_patch(a: &UpdateArgs) -> Result<oci_spec::runtime::LinuxResources> {
    use berth_runtime::ops::resources::parse_size;
    let mut doc = match &a.r {
        Some(path) => {
            let data = if path.as_os_str() == "-" {
                let mut buf = Vec::new();
                std::io::Read::read_to_end(&mut std::io::stdin(), &mut buf).map_err(|source| {
                    CliError::Resources {
                        path: path.clone(),
                        source,
                    }
                })?;
                buf
            } else {
                std::fs::read(path).map_err(|source| CliError::Resources {
                    path: path.clone(),
                    source,
                })?
            };
            serde_json::from_slice::<serde_json::Value>(&data).map_err(|source| {
                CliError::ResourcesJson {
                    path: path.clone(),
                    source,
                }
            })?
        }
        None => serde_json::json!({}),
    };
    let mut set = |section: &str, key: &str, v: serde_json::Value| {
        doc[section][key] = v;
    };
    if let Some(m) = &a.memory {
        set("memory", "limit", parse_size(m)?.into());
    }
    if let Some(m) = &a.memory_swap {
        set("memory", "swap", parse_size(m)?.into());
    }
    if let Some(m) = &a.memory_reservation {
        set("memory", "reservation", parse_size(m)?.into());
    }
    if let Some(v) = a.cpu_shares {
        set("cpu", "shares", v.into());
    }
    if let Some(v) = a.cpu_quota {
        set("cpu", "quota", v.into());
    }
    if let Some(v) = a.cpu_period {
        set("cpu", "period", v.into());
    }
    if let Some(v) = &a.cpuset_cpus {
        set("cpu", "cpus", v.clone().into());
    }
    if let Some(v) = &a.cpuset_mems {
        set("cpu", "mems", v.clone().into());
    }
    if let Some(v) = a.pids_limit {
        set("pids", "limit", v.into());
    }
    if let Some(v) = a.blkio_weight {
        set("blockIO", "weight", v.into());
    }
    let path = a.r.clone().unwrap_or_else(|| PathBuf::from("(flags)"));
    Ok(serde_json::from_value(doc).map_err(|source| CliError::ResourcesJson { path, source })?)
}

pub fn dispatch(cli: Cli, log: &Logger) -> Result<u8> {
    if cli.systemd_cgroup {
        return Err(CliError::Systemd.into());
    }
    let rt = Runtime::new(&cli.root);
    // Compiled seccomp filters are cached by content hash next to the container state.
    berth_runtime::security::seccomp::use_cache_dir(cli.root.join("seccomp-cache"));
    match cli.cmd {
        Cmd::Create(a) => {
            let created = ops::create::create(&rt, &a.id, &create_options(&a))?;
            for w in created.warnings {
                log.warn(&w.to_string());
            }
            Ok(0)
        }
        Cmd::Start { id } => {
            for w in ops::start::start(&rt, &id)? {
                log.warn(&chain(&w));
            }
            Ok(0)
        }
        Cmd::Run {
            create,
            detach,
            keep,
        } => run(&rt, &create, detach, keep, log),
        Cmd::State { id } => {
            let s = ops::list::state(&rt, &id)?;
            println!("{}", serde_json::to_string_pretty(&s)?);
            Ok(0)
        }
        Cmd::Kill { id, signal, all } => {
            let sig = ops::kill::parse_signal(&signal)?;
            ops::kill::kill(&rt, &id, sig, all)?;
            Ok(0)
        }
        Cmd::Delete { id, force } => {
            for w in ops::delete::delete(&rt, &id, force)? {
                log.warn(&chain(&w));
            }
            Ok(0)
        }
        Cmd::List { format, quiet } => {
            let all = ops::list::list(&rt)?;
            print_list(&all, &format, quiet)?;
            Ok(0)
        }
        Cmd::Ps {
            format,
            id,
            ps_args,
        } => ps(&rt, &id, &format, &ps_args),
        Cmd::Spec { bundle, rootless } => {
            let path = bundle.join("config.json");
            if path.exists() {
                return Err(CliError::SpecExists { path }.into());
            }
            let spec = ops::spec::default_spec(rootless);
            let data = serde_json::to_string_pretty(&spec)?;
            std::fs::write(&path, data + "\n").map_err(|source| CliError::Write {
                path: path.clone(),
                source,
            })?;
            Ok(0)
        }
        Cmd::Exec(a) => exec(&rt, a),
        Cmd::Update(a) => {
            let patch = update_patch(&a)?;
            for w in ops::resources::update(&rt, &a.id, &patch)? {
                log.warn(&w.to_string());
            }
            Ok(0)
        }
        Cmd::Pause { id } => {
            ops::resources::pause(&rt, &id)?;
            Ok(0)
        }
        Cmd::Resume { id } => {
            ops::resources::resume(&rt, &id)?;
            Ok(0)
        }
        Cmd::Events {
            stats,
            interval,
            id,
        } => {
            if stats {
                println!("{}", ops::resources::stats_event(&rt, &id)?);
                return Ok(0);
            }
            let every = parse_interval(&interval)?;
            ops::resources::stream_events(&rt, &id, every, &mut |ev| {
                let mut out = std::io::stdout().lock();
                let _ = writeln!(out, "{ev}");
                let _ = out.flush();
            })?;
            Ok(0)
        }
        Cmd::Features => {
            println!(
                "{}",
                serde_json::to_string_pretty(&ops::features::features())?
            );
            Ok(0)
        }
    }
}

fn create_options(a: &CreateArgs) -> CreateOptions<'static> {
    CreateOptions {
        bundle: a.bundle.clone(),
        pid_file: a.pid_file.clone(),
        console_socket: a.console_socket.clone(),
        console_fd: None,
        preserve_fds: a.preserve_fds,
        no_pivot: a.no_pivot,
        no_new_keyring: a.no_new_keyring,
        // Standalone, `delete` removes every cgroup directory `create` made, parents too.
        keep_cgroup_parents: false,
        namespaces_ready: None,
    }
}

fn run(rt: &Runtime, a: &CreateArgs, detach: bool, keep: bool, log: &Logger) -> Result<u8> {
    if !detach {
        ops::wait::become_subreaper().map_err(CliError::Wait)?;
    }
    // Block forwarded signals before the container exists so none is lost.
    let set = if detach {
        None
    } else {
        Some(ops::wait::block_signals().map_err(CliError::Wait)?)
    };
    // terminal: true without a console socket: serve the pty ourselves (foreground only).
    let wants_tty = a.console_socket.is_none()
        && berth_runtime::spec::load(&a.bundle)
            .ok()
            .and_then(|s| s.process().as_ref().and_then(|p| p.terminal()))
            .unwrap_or(false);
    if wants_tty && detach {
        return Err(CliError::NeedConsoleSocket.into());
    }
    let mut opts = create_options(a);
    let console = if wants_tty {
        let (ours, theirs) = ops::console::socket_pair()?;
        opts.console_fd = Some(theirs);
        Some(ours)
    } else {
        None
    };
    let created = ops::create::create(rt, &a.id, &opts);
    drop(opts);
    let pid = match created {
        Ok(created) => {
            for w in created.warnings {
                log.warn(&w.to_string());
            }
            created.pid
        }
        Err(e) => {
            if let Some(s) = &set {
                ops::wait::unblock_signals(s);
            }
            return Err(e.into());
        }
    };
    match ops::start::start(rt, &a.id) {
        Ok(warnings) => {
            for w in warnings {
                log.warn(&chain(&w));
            }
        }
        Err(e) => {
            let _ = ops::delete::delete(rt, &a.id, true);
            return Err(e.into());
        }
    }
    let Some(set) = set else { return Ok(0) };
    let code: Result<i32> = match console {
        Some(ours) => ops::console::receive_master(&ours)
            .and_then(|master| ops::console::serve(pid, master, &set))
            .map_err(Into::into),
        None => ops::wait::wait_forwarding(pid, &set).map_err(|e| CliError::Wait(e).into()),
    };
    ops::wait::unblock_signals(&set);
    if !keep {
        match ops::delete::delete(rt, &a.id, true) {
            Ok(warnings) => {
                for w in warnings {
                    log.warn(&chain(&w));
                }
            }
            Err(e) => log.warn(&chain(&e)),
        }
    }
    Ok(code? as u8)
}

fn print_list(all: &[OciState], format: &str, quiet: bool) -> Result<()> {
    let mut out = std::io::stdout().lock();
    if quiet {
        for s in all {
            writeln!(out, "{}", s.id)?;
        }
        return Ok(());
    }
    match format {
        "json" => {
            writeln!(out, "{}", serde_json::to_string(all)?)?;
        }
        "table" => {
            let rows: Vec<[String; 6]> = all
                .iter()
                .map(|s| {
                    [
                        s.id.clone(),
                        s.pid.to_string(),
                        s.status.to_string(),
                        s.bundle.display().to_string(),
                        s.created.clone(),
                        s.owner.clone(),
                    ]
                })
                .collect();
            let header = ["ID", "PID", "STATUS", "BUNDLE", "CREATED", "OWNER"].map(String::from);
            let mut widths = header.clone().map(|h| h.len());
            for r in &rows {
                for (w, c) in widths.iter_mut().zip(r) {
                    *w = (*w).max(c.len());
                }
            }
            for r in std::iter::once(&header).chain(rows.iter()) {
                let line: Vec<String> = r
                    .iter()
                    .zip(widths)
                    .map(|(c, w)| format!("{c:<w$}"))
                    .collect();
                writeln!(out, "{}", line.join("   ").trim_end())?;
            }
        }
        other => return Err(CliError::Format(other.to_owned()).into()),
    }
    Ok(())
}

fn ps(rt: &Runtime, id: &str, format: &str, ps_args: &[String]) -> Result<u8> {
    let (_dir, st, _status) = rt.load(id)?;
    let pids = match &st.cgroup {
        Some(cg) => cg.pids()?,
        None => Vec::new(),
    };
    match format {
        "json" => {
            println!("{}", serde_json::to_string(&pids)?);
            return Ok(0);
        }
        "table" => {}
        other => return Err(CliError::Format(other.to_owned()).into()),
    }
    let args: Vec<String> = if ps_args.is_empty() {
        vec!["-ef".into()]
    } else {
        ps_args.to_vec()
    };
    let out = std::process::Command::new("ps")
        .args(&args)
        .output()
        .map_err(CliError::Ps)?;
    let text = String::from_utf8_lossy(&out.stdout);
    let mut lines = text.lines();
    let Some(header) = lines.next() else {
        return Ok(0);
    };
    let pid_col = header.split_whitespace().position(|c| c == "PID");
    println!("{header}");
    for line in lines {
        let pid = pid_col
            .and_then(|i| line.split_whitespace().nth(i))
            .and_then(|p| p.parse::<i32>().ok());
        if pid.is_some_and(|p| pids.contains(&p)) {
            println!("{line}");
        }
    }
    Ok(0)
}

fn exec(rt: &Runtime, a: ExecArgs) -> Result<u8> {
    let process = match &a.process {
        Some(path) => read_process(path)?,
        None => {
            if a.command.is_empty() {
                return Err(CliError::NoCommand.into());
            }
            let (_dir, st, _) = rt.load(&a.id)?;
            process_from_args(st.spec.process().clone().unwrap_or_default(), &a)?
        }
    };
    let wants_tty = process.terminal().unwrap_or(false) && a.console_socket.is_none();
    if wants_tty && a.detach {
        return Err(CliError::NeedConsoleSocket.into());
    }
    let (console, console_fd) = if wants_tty {
        let (ours, theirs) = ops::console::socket_pair()?;
        (Some(ours), Some(theirs))
    } else {
        (None, None)
    };
    if !a.detach {
        ops::wait::become_subreaper().map_err(CliError::Wait)?;
    }
    let set = if a.detach {
        None
    } else {
        Some(ops::wait::block_signals().map_err(CliError::Wait)?)
    };
    let pid = ops::exec::exec(
        rt,
        &a.id,
        ExecOptions {
            process,
            console_socket: a.console_socket.clone(),
            console_fd,
            pid_file: a.pid_file.clone(),
            preserve_fds: a.preserve_fds,
            no_seccomp: false,
        },
    );
    let pid = match pid {
        Ok(p) => p,
        Err(e) => {
            if let Some(s) = &set {
                ops::wait::unblock_signals(s);
            }
            return Err(e.into());
        }
    };
    let Some(set) = set else { return Ok(0) };
    let code = match console {
        Some(ours) => ops::console::receive_master(&ours)
            .and_then(|master| ops::console::serve(pid, master, &set))
            .map_err(Box::<dyn std::error::Error>::from),
        None => ops::wait::wait_forwarding(pid, &set)
            .map_err(|e| Box::<dyn std::error::Error>::from(CliError::Wait(e))),
    };
    ops::wait::unblock_signals(&set);
    Ok(code? as u8)
}

fn read_process(path: &Path) -> Result<Process> {
    let data = std::fs::read(path).map_err(|source| CliError::ProcessFile {
        path: path.to_owned(),
        source,
    })?;
    Ok(
        serde_json::from_slice(&data).map_err(|source| CliError::ProcessJson {
            path: path.to_owned(),
            source,
        })?,
    )
}

/// runc's `newProcess`: the container's process as the base, the command line on top.
fn process_from_args(mut p: Process, a: &ExecArgs) -> Result<Process> {
    p.set_args(Some(a.command.clone()));
    p.set_terminal(Some(a.tty));
    if let Some(cwd) = &a.cwd {
        p.set_cwd(cwd.clone());
    }
    if !a.env.is_empty() {
        let mut env = p.env().clone().unwrap_or_default();
        for kv in &a.env {
            let key = kv.split('=').next().unwrap_or(kv);
            env.retain(|e| e.split('=').next() != Some(key));
            env.push(kv.clone());
        }
        p.set_env(Some(env));
    }
    if let Some(u) = &a.user {
        let (uid, gid) = match u.split_once(':') {
            Some((u1, g)) => (u1.parse().ok(), g.parse().ok()),
            None => (u.parse().ok(), Some(0)),
        };
        let (Some(uid), Some(gid)) = (uid, gid) else {
            return Err(CliError::User(u.clone()).into());
        };
        let mut user = p.user().clone();
        user.set_uid(uid);
        user.set_gid(gid);
        p.set_user(user);
    }
    if !a.additional_gids.is_empty() {
        let mut user = p.user().clone();
        user.set_additional_gids(Some(a.additional_gids.clone()));
        p.set_user(user);
    }
    if !a.cap.is_empty() {
        let mut caps = p.capabilities().clone().unwrap_or_default();
        for name in &a.cap {
            // oci-spec parses the bare name (NET_RAW); runc's flag takes CAP_NET_RAW too.
            let bare = name
                .to_ascii_uppercase()
                .trim_start_matches("CAP_")
                .to_owned();
            let cap: oci_spec::runtime::Capability = bare
                .parse()
                .map_err(|_| format!("unknown capability {name:?} in --cap"))?;
            let add = |set: Option<oci_spec::runtime::Capabilities>| {
                let mut s = set.unwrap_or_default();
                s.insert(cap);
                Some(s)
            };
            caps.set_bounding(add(caps.bounding().clone()));
            caps.set_effective(add(caps.effective().clone()));
            caps.set_permitted(add(caps.permitted().clone()));
            // Ambient needs inheritable, and --cap never grants inheritable (CVE-2022-29162).
            if caps
                .inheritable()
                .as_ref()
                .is_some_and(|i| i.contains(&cap))
            {
                caps.set_ambient(add(caps.ambient().clone()));
            }
        }
        p.set_capabilities(Some(caps));
    }
    if a.no_new_privs {
        p.set_no_new_privileges(Some(true));
    }
    if let Some(profile) = &a.apparmor {
        p.set_apparmor_profile(Some(profile.clone()));
    }
    if let Some(label) = &a.process_label {
        p.set_selinux_label(Some(label.clone()));
    }
    Ok(p)
}

//! The container commands: `run`, `create`, `start`, `ps`, `logs`, `stop`, `kill`, `rm`,
//! `exec`, `inspect`, `wait`, and the hidden `container-monitor`.
//!
//! Exit codes follow Docker: 125 when Berth itself fails, 126/127 when the container's command
//! cannot be executed or is not found (the runtime's init exits with them), otherwise the
//! container's own exit code.

use std::io::{IsTerminal, Write};
use std::path::Path;
use std::time::Duration;

use berth_engine::exec::{chain, ExecOptions};
use berth_engine::lifecycle::{human_duration, status_text, StartError};
use berth_engine::logs::LogsOptions;
use berth_engine::manage::Limits;
use berth_engine::{ContainerRecord, Engine, MonitorCommand, RunOptions, Status};
use berth_image::pull::{self, PullOptions};
use berth_image::registry::RegistryOptions;
use berth_image::store::{Store, StoreError};
use berth_image::Reference;
use serde_json::{json, Value};

type Res = Result<(), Box<dyn std::error::Error>>;

/// Docker's exit code for an error of the engine itself.
const ENGINE_ERROR: u8 = 125;

#[derive(clap::Subcommand)]
pub enum EngineCmd {
    /// Create and run a new container from an image.
    Run(Box<RunArgs>),
    /// Create a new container.
    Create(Box<RunArgs>),
    /// Start one or more stopped containers.
    Start(StartArgs),
    /// List containers.
    #[command(alias = "list")]
    Ps(PsArgs),
    /// Fetch the logs of a container.
    Logs(LogsArgs),
    /// Stop one or more running containers.
    Stop(StopArgs),
    /// Kill one or more running containers.
    Kill(KillArgs),
    /// Remove one or more containers.
    Rm(RmArgs),
    /// Run a command in a running container.
    Exec(ExecArgs),
    /// Show low-level information on containers as JSON.
    Inspect(InspectArgs),
    /// Block until containers stop, then print their exit codes.
    Wait {
        #[arg(required = true)]
        containers: Vec<String>,
    },
    /// Restart one or more containers (stop, then start detached).
    Restart(StopArgs),
    /// Rename a container.
    Rename { container: String, new_name: String },
    /// Pause all processes within one or more containers.
    Pause {
        #[arg(required = true)]
        containers: Vec<String>,
    },
    /// Unpause all processes within one or more containers.
    Unpause {
        #[arg(required = true)]
        containers: Vec<String>,
    },
    /// Update the resource limits of one or more containers, live.
    Update(UpdateArgs),
    /// Display the running processes of a container (host `ps` columns, `ps` options).
    Top {
        container: String,
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        ps_args: Vec<String>,
    },
    /// List a container's published ports, or the host address of one (PORT[/PROTO]).
    Port {
        container: String,
        private_port: Option<String>,
    },
    /// Manage networks.
    #[command(subcommand)]
    Network(crate::cmd_network::NetworkCmd),
    /// Manage containers.
    #[command(subcommand)]
    Container(ContainerCmd),
    /// Manage volumes.
    #[command(subcommand)]
    Volume(crate::cmd_volume::VolumeCmd),
    /// Attach local standard input, output, and error streams to a running container.
    Attach(AttachArgs),
    /// Supervise one container (started by `run -d`/`start`; not for direct use).
    #[command(name = "container-monitor", hide = true)]
    ContainerMonitor { id: String },
}

#[derive(clap::Subcommand)]
pub enum ContainerCmd {
    /// Remove all stopped containers.
    Prune {
        /// Do not ask (Berth never asks; accepted for Docker compatibility).
        #[arg(short, long)]
        force: bool,
    },
    #[command(flatten)]
    Fs(crate::cmd_fs::FsCmd),
}

#[derive(clap::Args)]
pub struct UpdateArgs {
    #[arg(short, long)]
    memory: Option<String>,
    #[arg(long)]
    cpus: Option<String>,
    #[arg(long, allow_hyphen_values = true)]
    pids_limit: Option<i64>,
    #[arg(required = true)]
    containers: Vec<String>,
}

#[derive(clap::Args)]
pub struct RunArgs {
    /// Run in the background and print the container ID.
    #[arg(short, long)]
    detach: bool,
    /// Keep STDIN open.
    #[arg(short, long)]
    interactive: bool,
    /// Allocate a pseudo-TTY.
    #[arg(short, long)]
    tty: bool,
    /// Remove the container when it exits.
    #[arg(long)]
    rm: bool,
    #[arg(long)]
    name: Option<String>,
    /// Set environment variables (KEY=VALUE, or KEY to copy ours).
    #[arg(short, long = "env")]
    env: Vec<String>,
    /// Read environment variables from a file.
    #[arg(long = "env-file")]
    env_file: Vec<std::path::PathBuf>,
    /// Working directory inside the container.
    #[arg(short, long)]
    workdir: Option<String>,
    /// user[:group], names resolved in the image's /etc/passwd and /etc/group.
    #[arg(short, long)]
    user: Option<String>,
    /// Overwrite the image's ENTRYPOINT.
    #[arg(long)]
    entrypoint: Option<String>,
    /// Container host name (default: the short ID).
    #[arg(long)]
    hostname: Option<String>,
    /// Mount the container's root filesystem read-only.
    #[arg(long)]
    read_only: bool,
    /// Mount a tmpfs: PATH[:OPTIONS].
    #[arg(long)]
    tmpfs: Vec<String>,
    /// Bind mount or volume: /host/path:/ctr/path[:OPTS], NAME:/ctr/path[:OPTS] or /ctr/path
    /// (an anonymous volume); OPTS: ro, rw, z, Z, nocopy, propagation.
    #[arg(short, long = "volume")]
    volume: Vec<String>,
    /// Attach a filesystem mount: type=bind|volume|tmpfs,source=..,target=..[,readonly][,...].
    #[arg(long)]
    mount: Vec<String>,
    /// Mount the volumes and bind mounts of another container: CONTAINER[:ro|rw].
    #[arg(long)]
    volumes_from: Vec<String>,
    /// Memory limit (e.g. 256m).
    #[arg(short, long)]
    memory: Option<String>,
    /// Number of CPUs (e.g. 1.5).
    #[arg(long)]
    cpus: Option<String>,
    /// Process limit (-1: unlimited).
    #[arg(long, allow_hyphen_values = true)]
    pids_limit: Option<i64>,
    #[arg(long)]
    cap_add: Vec<String>,
    #[arg(long)]
    cap_drop: Vec<String>,
    /// Give extended privileges (all capabilities, no seccomp, no masked paths).
    #[arg(long)]
    privileged: bool,
    /// bridge (the default), a network's name, none (loopback only), host or container:NAME;
    /// repeated: several bridge networks (eth0, eth1...).
    #[arg(long, alias = "net")]
    network: Vec<String>,
    /// Publish a port: [hostIP:][hostPort[-end]:]containerPort[-end][/tcp|/udp|/sctp].
    #[arg(short, long)]
    publish: Vec<String>,
    /// Publish every port the image exposes on an ephemeral host port.
    #[arg(short = 'P', long)]
    publish_all: bool,
    /// A static IPv4 address on the network.
    #[arg(long)]
    ip: Option<String>,
    /// Another name for the container on a user-defined network.
    #[arg(long = "network-alias", alias = "net-alias")]
    network_alias: Vec<String>,
    /// Absolute cgroup under which the container's cgroup is created (default /berth).
    #[arg(long)]
    cgroup_parent: Option<String>,
    /// PID namespace: host or container:NAME (default: a new one).
    #[arg(long)]
    pid: Option<String>,
    /// IPC namespace: private, shareable, host or container:NAME.
    #[arg(long)]
    ipc: Option<String>,
    /// UTS namespace: host.
    #[arg(long)]
    uts: Option<String>,
    /// Signal that `stop` sends first (default: the image's StopSignal, else SIGTERM).
    #[arg(long)]
    stop_signal: Option<String>,
    /// Seconds `stop` waits before SIGKILL (default 10).
    #[arg(long)]
    stop_timeout: Option<u64>,
    /// Total memory + swap limit (-1: unlimited swap).
    #[arg(long, allow_hyphen_values = true)]
    memory_swap: Option<String>,
    /// Memory soft limit.
    #[arg(long)]
    memory_reservation: Option<String>,
    /// CPU shares (relative weight).
    #[arg(short = 'c', long)]
    cpu_shares: Option<u64>,
    /// CPUs in which to allow execution (0-3, 0,1).
    #[arg(long)]
    cpuset_cpus: Option<String>,
    /// Block IO weight (10 to 1000).
    #[arg(long)]
    blkio_weight: Option<u16>,
    /// Ulimit: NAME=SOFT[:HARD] (e.g. nofile=1024:2048).
    #[arg(long)]
    ulimit: Vec<String>,
    /// Security options: no-new-privileges, seccomp=unconfined, apparmor=PROFILE, label=...
    #[arg(long)]
    security_opt: Vec<String>,
    /// Add a host-to-IP mapping (NAME:IP) to /etc/hosts.
    #[arg(long)]
    add_host: Vec<String>,
    /// DNS server for /etc/resolv.conf.
    #[arg(long)]
    dns: Vec<String>,
    /// Add a host device: HOST[:CONTAINER[:PERMISSIONS]] (permissions: r, w, m; default rwm).
    #[arg(long)]
    device: Vec<String>,
    /// User namespace: host (the default; remapping is not supported).
    #[arg(long)]
    userns: Option<String>,
    /// os/arch[/variant] of the image: selects the manifest on pull, refuses another local one.
    #[arg(long)]
    platform: Option<String>,
    /// DNS search domain for /etc/resolv.conf.
    #[arg(long)]
    dns_search: Vec<String>,
    /// DNS option for /etc/resolv.conf (e.g. ndots:2).
    #[arg(long = "dns-option", alias = "dns-opt")]
    dns_option: Vec<String>,
    /// Logging driver: json-file (default) or none.
    #[arg(long)]
    log_driver: Option<String>,
    /// json-file options: max-size=SIZE (default 10m), max-file=N (default 3).
    #[arg(long)]
    log_opt: Vec<String>,
    /// Restart policy: no, on-failure[:N], always, unless-stopped.
    #[arg(long)]
    restart: Option<String>,
    /// Set metadata: KEY=VALUE.
    #[arg(short, long = "label")]
    label: Vec<String>,
    /// Override the key sequence for detaching a tty container (default ctrl-p,ctrl-q).
    #[arg(long)]
    detach_keys: Option<String>,
    /// Run an init inside the container that forwards signals and reaps processes.
    #[arg(long)]
    init: bool,
    /// Pull the image first: missing (when not in the store), always, never.
    #[arg(long, default_value = "missing", value_parser = ["missing", "always", "never"])]
    pull: String,
    image: String,
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    command: Vec<String>,
}

#[derive(clap::Args)]
pub struct AttachArgs {
    /// Do not attach STDIN.
    #[arg(long)]
    no_stdin: bool,
    /// Proxy all received signals to the process (not with a tty).
    #[arg(
        long,
        default_value = "true",
        action = clap::ArgAction::Set,
        num_args = 0..=1,
        require_equals = true,
        default_missing_value = "true"
    )]
    sig_proxy: bool,
    /// Override the key sequence for detaching a container (default ctrl-p,ctrl-q).
    #[arg(long)]
    detach_keys: Option<String>,
    container: String,
}

#[derive(clap::Args)]
pub struct StartArgs {
    /// Attach stdout/stderr and forward signals (the container runs in this process).
    #[arg(short, long)]
    attach: bool,
    /// Override the key sequence for detaching a tty container (default ctrl-p,ctrl-q).
    #[arg(long)]
    detach_keys: Option<String>,
    /// Attach stdin.
    #[arg(short, long)]
    interactive: bool,
    #[arg(required = true)]
    containers: Vec<String>,
}

#[derive(clap::Args)]
pub struct PsArgs {
    /// Show all containers (default: only running ones).
    #[arg(short, long)]
    all: bool,
    /// Only display container IDs.
    #[arg(short, long)]
    quiet: bool,
    /// Do not truncate output.
    #[arg(long)]
    no_trunc: bool,
    /// Filter: status=, name=, id=, label=KEY[=VALUE], ancestor= (repeatable; same keys OR,
    /// different keys AND, as Docker).
    #[arg(short, long)]
    filter: Vec<String>,
    /// `json`, `table TEMPLATE` or a template: {{.ID}} {{.Image}} {{.Command}} {{.CreatedAt}}
    /// {{.RunningFor}} {{.Status}} {{.State}} {{.Names}} {{.Labels}} {{.Ports}}.
    #[arg(long)]
    format: Option<String>,
    /// Show the latest created container.
    #[arg(short = 'l', long)]
    latest: bool,
    /// Display total file sizes (the writable layer, and with the image's: "virtual").
    #[arg(short, long)]
    size: bool,
}

/// Whether `r` passes Docker's `ps --filter` rules.
fn ps_matches(r: &ContainerRecord, filters: &[(String, String)]) -> bool {
    let mut keys: Vec<&str> = filters.iter().map(|(k, _)| k.as_str()).collect();
    keys.sort();
    keys.dedup();
    keys.iter().all(|key| {
        filters
            .iter()
            .filter(|(k, _)| k == key)
            .any(|(_, v)| match *key {
                "status" => {
                    (r.state.status.to_string() == *v && !r.state.restarting)
                        || (v == "paused" && r.state.paused)
                        || (v == "restarting" && r.state.restarting)
                }
                "name" => r.name.contains(v.as_str()),
                "id" => r.id.starts_with(v.as_str()),
                "ancestor" => {
                    r.image == *v
                        || r.image_id
                            .trim_start_matches("sha256:")
                            .starts_with(v.trim_start_matches("sha256:"))
                }
                // A volume's name, or any mount's destination or bind source (Docker's).
                "volume" => r.mounts.iter().any(|m| {
                    m.kind != "tmpfs" && (m.name == *v || m.destination == *v || m.source == *v)
                }),
                "label" => r.labels.iter().any(|l| match v.split_once('=') {
                    Some(_) => l == v,
                    None => l.split('=').next() == Some(v.as_str()),
                }),
                _ => false,
            })
    })
}

#[derive(clap::Args)]
pub struct LogsArgs {
    /// Follow log output.
    #[arg(short, long)]
    follow: bool,
    /// Number of lines to show from the end ("all" for everything).
    #[arg(short = 'n', long, default_value = "all")]
    tail: String,
    /// Show timestamps.
    #[arg(short, long)]
    timestamps: bool,
    /// Only logs since a time (RFC 3339, Unix seconds, or relative: 10m, 2h).
    #[arg(long)]
    since: Option<String>,
    /// Only logs before a time (same forms as --since).
    #[arg(long)]
    until: Option<String>,
    container: String,
}

#[derive(clap::Args)]
pub struct StopArgs {
    /// Seconds to wait before killing the container (default: its --stop-timeout, 10).
    #[arg(short, long = "time", alias = "timeout")]
    time: Option<u64>,
    #[arg(required = true)]
    containers: Vec<String>,
}

#[derive(clap::Args)]
pub struct KillArgs {
    #[arg(short, long, default_value = "KILL")]
    signal: String,
    #[arg(required = true)]
    containers: Vec<String>,
}

#[derive(clap::Args)]
pub struct RmArgs {
    /// Force the removal of a running container (SIGKILL).
    #[arg(short, long)]
    force: bool,
    /// Remove the container's anonymous volumes too.
    #[arg(short, long)]
    volumes: bool,
    #[arg(required = true)]
    containers: Vec<String>,
}

#[derive(clap::Args)]
pub struct ExecArgs {
    #[arg(short, long)]
    detach: bool,
    #[arg(short, long)]
    interactive: bool,
    #[arg(short, long)]
    tty: bool,
    #[arg(short, long = "env")]
    env: Vec<String>,
    #[arg(short, long)]
    workdir: Option<String>,
    #[arg(short, long)]
    user: Option<String>,
    /// Give the process every capability and no seccomp filter.
    #[arg(long)]
    privileged: bool,
    container: String,
    #[arg(trailing_var_arg = true, allow_hyphen_values = true, required = true)]
    command: Vec<String>,
}

#[derive(clap::Args)]
pub struct InspectArgs {
    /// A Go-template-like format ({{.State.Status}}, {{json .Config}}); with --isolation,
    /// `json` or a template over the report's JSON.
    #[arg(short, long)]
    format: Option<String>,
    /// Show the isolation report of running containers (namespaces, cgroup, seccomp,
    /// capabilities, LSM label, id maps, rootfs layers, mounts).
    #[arg(long)]
    isolation: bool,
    #[arg(required = true)]
    containers: Vec<String>,
}

/// Runs an engine command and exits with Docker's codes; never returns.
pub fn dispatch(root: &Path, cmd: EngineCmd, registry: RegistryOptions) -> ! {
    exit_with(run(root, cmd, &registry))
}

/// Reports `res` (an error once, with its causes, as exit code 125) and exits.
pub fn exit_with(res: Result<u8, Box<dyn std::error::Error>>) -> ! {
    let code = match res {
        Ok(code) => code,
        Err(e) => {
            eprintln!("berth: {}", chain(e.as_ref()));
            ENGINE_ERROR
        }
    };
    let _ = std::io::stdout().flush();
    std::process::exit(code as i32)
}

pub fn engine(root: &Path) -> Result<Engine, Box<dyn std::error::Error>> {
    let (config, file) = crate::config();
    let mut e = Engine::open_with(root, config, file.clone())?;
    let mut args = vec!["--root".into(), root.as_os_str().to_owned()];
    // The monitor must see the same configuration (run_root, event log bound).
    if let Some(f) = file {
        args.push("--config".into());
        args.push(f.as_os_str().to_owned());
    }
    args.push("container-monitor".into());
    e.monitor = Some(MonitorCommand {
        program: std::env::current_exe()?,
        args,
    });
    Ok(e)
}

fn run(
    root: &Path,
    cmd: EngineCmd,
    registry: &RegistryOptions,
) -> Result<u8, Box<dyn std::error::Error>> {
    let e = engine(root)?;
    match cmd {
        EngineCmd::Run(a) => {
            pull_if_needed(root, &a, registry)?;
            cmd_run(&e, *a)
        }
        EngineCmd::Create(a) => {
            pull_if_needed(root, &a, registry)?;
            let rec = e.create(&run_options(&a)?, false)?;
            println!("{}", rec.id);
            Ok(0)
        }
        EngineCmd::Start(a) => cmd_start(&e, a),
        EngineCmd::Attach(a) => cmd_attach(&e, a),
        EngineCmd::Ps(a) => cmd_ps(&e, a).map(|()| 0),
        EngineCmd::Logs(a) => cmd_logs(&e, a).map(|()| 0),
        EngineCmd::Stop(a) => each(&a.containers, |c| {
            e.stop(c, a.time.map(Duration::from_secs))?;
            Ok(())
        }),
        EngineCmd::Kill(a) => each(&a.containers, |c| {
            e.kill(c, &a.signal)?;
            Ok(())
        }),
        EngineCmd::Rm(a) => each(&a.containers, |c| {
            e.remove_with_volumes(c, a.force, a.volumes)?;
            Ok(())
        }),
        EngineCmd::Exec(a) => {
            let opts = ExecOptions {
                command: a.command,
                env: a.env,
                workdir: a.workdir,
                user: a.user,
                tty: a.tty,
                interactive: a.interactive,
                detach: a.detach,
                privileged: a.privileged,
            };
            match e.exec(&a.container, &opts) {
                Ok(code) => Ok(code as u8),
                Err(err) => match err.command_exit_code() {
                    Some(code) => {
                        eprintln!("berth: {}", chain(&err));
                        Ok(code)
                    }
                    None => Err(err.into()),
                },
            }
        }
        EngineCmd::Inspect(a) => cmd_inspect(&e, a),
        EngineCmd::Wait { containers } => {
            let mut failed = false;
            for c in &containers {
                match e.wait(c) {
                    Ok(code) => println!("{code}"),
                    Err(err) => {
                        eprintln!("berth: {}", chain(&err));
                        failed = true;
                    }
                }
            }
            Ok(if failed { 1 } else { 0 })
        }
        EngineCmd::Restart(a) => each(&a.containers, |c| {
            e.restart(c, a.time.map(Duration::from_secs))?;
            Ok(())
        }),
        EngineCmd::Rename {
            container,
            new_name,
        } => {
            e.rename(&container, &new_name)?;
            Ok(0)
        }
        EngineCmd::Pause { containers } => each(&containers, |c| {
            e.pause(c)?;
            Ok(())
        }),
        EngineCmd::Unpause { containers } => each(&containers, |c| {
            e.unpause(c)?;
            Ok(())
        }),
        EngineCmd::Update(a) => {
            let limits = Limits {
                memory: a.memory.clone(),
                cpus: a.cpus.clone(),
                pids_limit: a.pids_limit,
            };
            each(&a.containers, |c| {
                e.update(c, &limits)?;
                Ok(())
            })
        }
        EngineCmd::Top { container, ps_args } => cmd_top(&e, &container, &ps_args),
        EngineCmd::Network(c) => crate::cmd_network::run(&e, c),
        EngineCmd::Port {
            container,
            private_port,
        } => cmd_port(&e, &container, private_port.as_deref()),
        EngineCmd::Container(ContainerCmd::Prune { force: _ }) => {
            let removed = e.prune()?;
            if !removed.is_empty() {
                println!("Deleted Containers:");
                for id in &removed {
                    println!("{id}");
                }
                println!();
            }
            println!("Total reclaimed space: 0B");
            Ok(0)
        }
        EngineCmd::Container(ContainerCmd::Fs(c)) => crate::cmd_fs::dispatch(root, c),
        EngineCmd::Volume(v) => crate::cmd_volume::run(&e, v),
        EngineCmd::ContainerMonitor { id } => Ok(berth_engine::monitor::run(&e, &id) as u8),
    }
}

/// Applies `f` to each named container, echoing the name as Docker does; a failure is reported
/// and the rest continue, and the command then exits 1.
fn each(
    items: &[String],
    mut f: impl FnMut(&str) -> Res,
) -> Result<u8, Box<dyn std::error::Error>> {
    let mut failed = false;
    for c in items {
        match f(c) {
            Ok(()) => println!("{c}"),
            Err(err) => {
                eprintln!("berth: {}", chain(err.as_ref()));
                failed = true;
            }
        }
    }
    Ok(if failed { 1 } else { 0 })
}

/// `--pull`: Docker pulls a missing image before `run`/`create`, telling so on stderr (stdout
/// stays the container's, or the id with `-d`).
fn pull_if_needed(root: &Path, a: &RunArgs, registry: &RegistryOptions) -> Res {
    let store = Store::open(root)?;
    let wanted = match a.pull.as_str() {
        "always" => true,
        "never" => false,
        _ => matches!(store.resolve(&a.image), Err(StoreError::NotFound { .. })),
    };
    if !wanted {
        return Ok(());
    }
    // A bad flag fails before the download, not after it, checked with berth.toml's defaults
    // applied as `create` will apply them.
    let mut checked = run_options(a)?;
    crate::config().0.apply(&mut checked);
    berth_engine::Engine::check_options(&checked)?;
    let reference: Reference = a.image.parse()?;
    if a.pull != "always" {
        eprintln!("Unable to find image '{reference}' locally");
    }
    let mut opts = PullOptions {
        registry: registry.clone(),
        ..PullOptions::default()
    };
    if let Some(p) = &a.platform {
        opts.platform = p
            .parse()
            .map_err(|e| format!("invalid --platform {p:?}: {e}"))?;
    }
    let rec = pull::pull(&store, &reference, &opts, &pull::NoProgress)?;
    let r = reference.to_string();
    crate::image_event(&berth_engine::events::EventLog::new(root), "pull", &r, &r);
    eprintln!("Digest: {}", rec.manifest_digest);
    eprintln!("Status: downloaded image for {reference}");
    Ok(())
}

fn run_options(a: &RunArgs) -> Result<RunOptions, Box<dyn std::error::Error>> {
    let mut env = Vec::new();
    for f in &a.env_file {
        let text = std::fs::read_to_string(f)
            .map_err(|e| format!("reading the env file {}: {e}", f.display()))?;
        env.extend(
            text.lines()
                .map(str::trim)
                .filter(|l| !l.is_empty() && !l.starts_with('#'))
                .map(String::from),
        );
    }
    env.extend(a.env.iter().cloned());
    Ok(RunOptions {
        image: a.image.clone(),
        name: a.name.clone(),
        command: a.command.clone(),
        entrypoint: a.entrypoint.clone(),
        env,
        workdir: a.workdir.clone(),
        user: a.user.clone(),
        hostname: a.hostname.clone(),
        tty: a.tty,
        interactive: a.interactive,
        auto_remove: a.rm,
        read_only: a.read_only,
        tmpfs: a.tmpfs.clone(),
        volumes: a
            .volume
            .iter()
            .map(|v| crate::cmd_volume::absolute_bind_source(v))
            .collect(),
        mounts: a.mount.clone(),
        volumes_from: a.volumes_from.clone(),
        memory: a.memory.clone(),
        cpus: a.cpus.clone(),
        pids_limit: a.pids_limit,
        cap_add: a.cap_add.clone(),
        cap_drop: a.cap_drop.clone(),
        privileged: a.privileged,
        network: a.network.first().cloned(),
        extra_networks: a.network.iter().skip(1).cloned().collect(),
        publish: a.publish.clone(),
        publish_all: a.publish_all,
        ip: a.ip.clone(),
        network_aliases: a.network_alias.clone(),
        cgroup_parent: a.cgroup_parent.clone(),
        pid: a.pid.clone(),
        ipc: a.ipc.clone(),
        uts: a.uts.clone(),
        stop_signal: a.stop_signal.clone(),
        stop_timeout: a.stop_timeout,
        labels: a.label.clone(),
        restart: a.restart.clone(),
        log_driver: a.log_driver.clone(),
        log_opts: a.log_opt.clone(),
        memory_swap: a.memory_swap.clone(),
        memory_reservation: a.memory_reservation.clone(),
        cpu_shares: a.cpu_shares,
        cpuset_cpus: a.cpuset_cpus.clone(),
        blkio_weight: a.blkio_weight,
        ulimits: a.ulimit.clone(),
        security_opts: a.security_opt.clone(),
        add_hosts: a.add_host.clone(),
        dns: a.dns.clone(),
        devices: a.device.clone(),
        userns: a.userns.clone(),
        platform: a.platform.clone(),
        init: a.init,
        dns_search: a.dns_search.clone(),
        dns_options: a.dns_option.clone(),
    })
}

fn cmd_run(e: &Engine, a: RunArgs) -> Result<u8, Box<dyn std::error::Error>> {
    let opts = run_options(&a)?;
    let detach_keys = parse_detach_keys(a.detach_keys.as_deref())?;
    if a.tty && a.interactive && !a.detach && !std::io::stdin().is_terminal() {
        return Err(berth_engine::attach::AttachError::NotATty.into());
    }
    let rec = e.create(&opts, true)?;
    if a.tty && !a.detach {
        // A terminal is served by the monitor and we attach to it from the first byte, as
        // Docker's client does: the detach keys leave the container running.
        let sock = match e.start_attached(&rec.id) {
            Ok(s) => s,
            Err(err) => {
                let _ = e.remove_with_volumes(&rec.id, true, true);
                return start_failed(err);
            }
        };
        return attached(e, &rec, sock, a.interactive, detach_keys);
    }
    if a.detach {
        if let Err(err) = e.start_detached(&rec.id) {
            // `run` made this container; a failed start must not leave it behind.
            let _ = e.remove_with_volumes(&rec.id, true, true);
            return start_failed(err);
        }
        println!("{}", rec.id);
        return Ok(0);
    }
    match e.start_foreground(&rec.id) {
        Ok(code) => Ok(code as u8),
        Err(err) => {
            let _ = e.remove_with_volumes(&rec.id, true, true);
            start_failed(err)
        }
    }
}

/// A start that failed because the command cannot run exits 126/127, as Docker's does.
fn start_failed(err: StartError) -> Result<u8, Box<dyn std::error::Error>> {
    match err.command_exit_code() {
        Some(code) => {
            eprintln!("berth: {}", chain(&err));
            Ok(code)
        }
        None => Err(err.into()),
    }
}

fn cmd_start(e: &Engine, a: StartArgs) -> Result<u8, Box<dyn std::error::Error>> {
    if a.attach || a.interactive {
        if a.containers.len() != 1 {
            return Err("you cannot start and attach multiple containers at once".into());
        }
        let rec = e.find(&a.containers[0])?;
        let id = rec.id.clone();
        let detach_keys = parse_detach_keys(a.detach_keys.as_deref())?;
        if rec.tty {
            if a.interactive && rec.open_stdin && !std::io::stdin().is_terminal() {
                return Err(berth_engine::attach::AttachError::NotATty.into());
            }
            let sock = match e.start_attached(&id) {
                Ok(s) => s,
                Err(err) => return start_failed(err),
            };
            return attached(e, &rec, sock, a.interactive, detach_keys);
        }
        return match e.start_foreground(&id) {
            Ok(code) => Ok(code as u8),
            Err(err) => start_failed(err),
        };
    }
    each(&a.containers, |c| {
        let id = e.find(c)?.id;
        e.start_detached(&id)?;
        Ok(())
    })
}

fn parse_detach_keys(keys: Option<&str>) -> Result<Vec<u8>, Box<dyn std::error::Error>> {
    Ok(berth_engine::attach::parse_detach_keys(
        keys.unwrap_or(berth_engine::attach::DEFAULT_DETACH_KEYS),
    )?)
}

/// `run -t`/`start -a` of a tty container: our terminal on the container the monitor runs.
/// The container's exit code, or 0 when the user detaches.
fn attached(
    e: &Engine,
    rec: &ContainerRecord,
    sock: std::os::fd::OwnedFd,
    stdin: bool,
    detach_keys: Vec<u8>,
) -> Result<u8, Box<dyn std::error::Error>> {
    let opts = berth_engine::attach::AttachOptions {
        stdin,
        // Signals sent to us (not typed: those are bytes on the pty) go to the container.
        sig_proxy: true,
        detach_keys,
    };
    match e.attach_stream(rec, sock, &opts)? {
        berth_engine::attach::AttachEnd::Exited(code) => Ok(code as u8),
        berth_engine::attach::AttachEnd::Detached => {
            eprintln!("read escape sequence");
            Ok(0)
        }
    }
}

/// Docker's `attach`: the container's exit code when it exits, 0 when the user detaches,
/// 1 when attaching fails (Docker's CLI code for a daemon error).
fn cmd_attach(e: &Engine, a: AttachArgs) -> Result<u8, Box<dyn std::error::Error>> {
    let keys = a
        .detach_keys
        .as_deref()
        .unwrap_or(berth_engine::attach::DEFAULT_DETACH_KEYS);
    let opts = berth_engine::attach::AttachOptions {
        stdin: !a.no_stdin,
        sig_proxy: a.sig_proxy,
        detach_keys: match berth_engine::attach::parse_detach_keys(keys) {
            Ok(k) => k,
            Err(err) => {
                eprintln!("berth: {err}");
                return Ok(1);
            }
        },
    };
    match e.attach(&a.container, &opts) {
        Ok(berth_engine::attach::AttachEnd::Exited(code)) => Ok(code as u8),
        Ok(berth_engine::attach::AttachEnd::Detached) => {
            // What Docker's client says when the detach keys were read.
            eprintln!("read escape sequence");
            Ok(0)
        }
        Err(err) => {
            eprintln!("berth: {}", chain(&err));
            Ok(1)
        }
    }
}

/// Docker runs `ps` on the host with the given options (default `-ef`) and keeps the lines of
/// the container's pids.
fn cmd_top(e: &Engine, what: &str, ps_args: &[String]) -> Result<u8, Box<dyn std::error::Error>> {
    let pids = e.pids(what)?;
    let args: Vec<String> = if ps_args.is_empty() {
        vec!["-ef".into()]
    } else {
        ps_args.to_vec()
    };
    let out = std::process::Command::new("ps")
        .args(&args)
        .output()
        .map_err(|err| format!("running ps: {err}"))?;
    if !out.status.success() {
        return Err(format!(
            "ps {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        )
        .into());
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let mut lines = text.lines();
    let header = lines.next().unwrap_or("");
    let pid_col = header
        .split_whitespace()
        .position(|c| c == "PID")
        .ok_or("ps output has no PID column")?;
    println!("{header}");
    for l in lines {
        let pid = l
            .split_whitespace()
            .nth(pid_col)
            .and_then(|p| p.parse::<i32>().ok());
        if pid.is_some_and(|p| pids.contains(&p)) {
            println!("{l}");
        }
    }
    Ok(0)
}

fn command_text(rec: &ContainerRecord) -> String {
    let mut parts = vec![rec.path.clone()];
    parts.extend(rec.args.iter().cloned());
    parts.join(" ")
}

fn truncate(s: &str, n: usize) -> String {
    if s.chars().count() <= n {
        s.to_owned()
    } else {
        let mut t: String = s.chars().take(n - 1).collect();
        t.push('…');
        t
    }
}

fn print_table(header: &[&str], rows: &[Vec<String>]) {
    let _ = std::io::stdout()
        .lock()
        .write_all(table_text(header, rows).as_bytes());
}

/// Docker's tables: columns three spaces apart, no trailing blanks.
pub fn table_text(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for r in rows {
        for (i, c) in r.iter().enumerate() {
            widths[i] = widths[i].max(c.chars().count());
        }
    }
    let mut out = String::new();
    let line = |cells: Vec<String>| {
        let last = cells.len() - 1;
        let mut s = String::new();
        for (i, c) in cells.into_iter().enumerate() {
            if i == last {
                s.push_str(&c);
            } else {
                let pad = widths[i] + 3 - c.chars().count();
                s.push_str(&c);
                s.push_str(&" ".repeat(pad));
            }
        }
        s.trim_end().to_owned()
    };
    out.push_str(&line(header.iter().map(|h| h.to_string()).collect()));
    out.push('\n');
    for r in rows {
        out.push_str(&line(r.clone()));
        out.push('\n');
    }
    out
}

fn cmd_ps(e: &Engine, a: PsArgs) -> Res {
    let now = berth_engine::now_secs();
    let mut filters = Vec::new();
    for f in &a.filter {
        let (k, v) = f
            .split_once('=')
            .ok_or_else(|| format!("bad format of filter (expected name=value): {f:?}"))?;
        if !["status", "name", "id", "label", "ancestor", "volume"].contains(&k) {
            return Err(format!("invalid filter {k:?}").into());
        }
        filters.push((k.to_owned(), v.to_owned()));
    }
    // A status filter, or -l, looks at every container, as Docker's.
    let everything = a.all || a.latest || filters.iter().any(|(k, _)| k == "status");
    let mut all: Vec<ContainerRecord> = e
        .list()?
        .into_iter()
        // Docker counts a restarting container as running (State.Running stays true).
        .filter(|r| everything || r.state.status == Status::Running || r.state.restarting)
        .filter(|r| ps_matches(r, &filters))
        .collect();
    if a.latest {
        all.truncate(1);
    }
    if a.quiet {
        for r in &all {
            println!("{}", if a.no_trunc { &r.id } else { r.short_id() });
        }
        return Ok(());
    }
    let row_json = |r: &ContainerRecord| {
        let cmd = command_text(r);
        let size = if a.size {
            let (rw, virt) = e.container_size(r);
            format!(
                "{} (virtual {})",
                crate::format::human(rw),
                crate::format::human(virt)
            )
        } else {
            String::new()
        };
        json!({
            "Size": size,
            "ID": if a.no_trunc { r.id.clone() } else { r.short_id().to_owned() },
            "Image": r.image,
            "Command": format!("\"{}\"", if a.no_trunc { cmd } else { truncate(&cmd, 20) }),
            "CreatedAt": berth_engine::lifecycle::format_time(r.created),
            "RunningFor": format!("{} ago", human_duration(now - r.created)),
            "Status": status_text(r, now),
            "State": if r.state.restarting { "restarting".to_string() } else { r.state.status.to_string() },
            "Names": r.name,
            "Labels": r.labels.join(","),
            "Ports": "",
            // Docker: each mount's volume name or source, truncated to 15 characters.
            "Mounts": r.mounts.iter().filter(|m| m.kind != "tmpfs").map(|m| {
                let n = if m.name.is_empty() { &m.source } else { &m.name };
                if a.no_trunc { n.clone() } else { truncate(n, 15) }
            }).collect::<Vec<_>>().join(","),
        })
    };
    match a.format.as_deref() {
        Some("json") => {
            for r in &all {
                println!("{}", row_json(r));
            }
            return Ok(());
        }
        Some(f) if !f.starts_with("table") => {
            for r in &all {
                println!("{}", crate::format::render(f, &row_json(r)));
            }
            return Ok(());
        }
        Some(f) if f.trim() != "table" => {
            // `table TEMPLATE`: a header line naming each field as Docker does.
            let t = f.trim_start_matches("table").trim_start();
            let names = json!({
                "ID": "CONTAINER ID", "Image": "IMAGE", "Command": "COMMAND",
                "CreatedAt": "CREATED AT", "RunningFor": "CREATED", "Status": "STATUS",
                "State": "STATE", "Names": "NAMES", "Labels": "LABELS", "Ports": "PORTS",
                "Mounts": "MOUNTS",
                "Size": "SIZE",
            });
            println!("{}", crate::format::render(t, &names));
            for r in &all {
                println!("{}", crate::format::render(t, &row_json(r)));
            }
            return Ok(());
        }
        _ => {}
    }
    let mut keys = vec![
        "ID",
        "Image",
        "Command",
        "RunningFor",
        "Status",
        "Ports",
        "Names",
    ];
    let mut header = vec![
        "CONTAINER ID",
        "IMAGE",
        "COMMAND",
        "CREATED",
        "STATUS",
        "PORTS",
        "NAMES",
    ];
    if a.size {
        keys.push("Size");
        header.push("SIZE");
    }
    let rows: Vec<Vec<String>> = all
        .iter()
        .map(|r| {
            let v = row_json(r);
            keys.iter()
                .map(|k| v[k].as_str().unwrap_or("").to_owned())
                .collect()
        })
        .collect();
    print_table(&header, &rows);
    Ok(())
}

fn cmd_logs(e: &Engine, a: LogsArgs) -> Res {
    let tail = match a.tail.as_str() {
        "all" | "-1" => None,
        n => Some(
            n.parse::<usize>()
                .map_err(|_| format!("invalid --tail value {n:?}"))?,
        ),
    };
    let now = berth_engine::now_secs();
    let time = |flag: &str, v: &Option<String>| -> Result<Option<String>, String> {
        v.as_ref()
            .map(|s| {
                berth_engine::logs::parse_time(s, now)
                    .ok_or_else(|| format!("invalid {flag} value {s:?}"))
            })
            .transpose()
    };
    let opts = LogsOptions {
        follow: a.follow,
        tail,
        since: time("--since", &a.since)?,
        until: time("--until", &a.until)?,
    };
    let stdout = std::io::stdout();
    let stderr = std::io::stderr();
    e.logs(&a.container, opts, &mut |entry| {
        let mut line = Vec::with_capacity(entry.log.len() + 32);
        if a.timestamps {
            line.extend_from_slice(entry.time.as_bytes());
            line.push(b' ');
        }
        line.extend_from_slice(entry.log.as_bytes());
        if entry.stream == "stderr" {
            let mut w = stderr.lock();
            w.write_all(&line)?;
            w.flush()
        } else {
            let mut w = stdout.lock();
            w.write_all(&line)?;
            w.flush()
        }
    })?;
    Ok(())
}

fn rfc3339(secs: i64) -> String {
    if secs == 0 {
        "0001-01-01T00:00:00Z".into()
    } else {
        berth_engine::lifecycle::format_time(secs)
    }
}

/// Docker's `inspect` shape for the fields Berth has.
fn inspect_json(r: &ContainerRecord) -> Value {
    let running = r.state.status == Status::Running;
    let binds: Vec<String> = r
        .mounts
        .iter()
        .filter(|m| m.kind == "bind" || (m.kind == "volume" && !m.anonymous))
        .map(|m| {
            format!(
                "{}:{}{}",
                if m.kind == "bind" { &m.source } else { &m.name },
                m.destination,
                if m.rw { "" } else { ":ro" }
            )
        })
        .collect();
    let tmpfs: serde_json::Map<String, Value> = r
        .mounts
        .iter()
        .filter(|m| m.kind == "tmpfs")
        .map(|m| (m.destination.clone(), json!(m.source)))
        .collect();
    json!({
        "Id": r.id,
        "RestartCount": r.restart_count,
        "Created": rfc3339(r.created),
        "Path": r.path,
        "Args": r.args,
        "State": {
            "Status": if r.state.restarting { "restarting".to_string() } else { r.state.status.to_string() },
            "Running": running || r.state.restarting,
            "Paused": false,
            "Restarting": r.state.restarting,
            "OOMKilled": false,
            "Dead": false,
            "Pid": r.state.pid,
            "ExitCode": r.state.exit_code,
            "Error": r.state.error,
            "StartedAt": rfc3339(r.state.started_at),
            "FinishedAt": rfc3339(r.state.finished_at),
        },
        "Image": r.image_id,
        "Name": format!("/{}", r.name),
        "Driver": "overlay",
        "HostConfig": {
            "Binds": binds,
            "NetworkMode": r.network_mode,
            "AutoRemove": r.auto_remove,
            "Init": r.init,
            "CapAdd": r.cap_add,
            "CapDrop": r.cap_drop,
            "Privileged": r.privileged,
            "Devices": r.security.devices.iter().filter_map(|d| berth_engine::devices::parse(d).ok()).map(|d| json!({
                "PathOnHost": d.host, "PathInContainer": d.container, "CgroupPermissions": d.perms,
            })).collect::<Vec<_>>(),
            "SecurityOpt": r.security.security_opt,
            "UsernsMode": r.security.userns_mode,
            "ReadonlyRootfs": r.read_only,
            "Tmpfs": tmpfs,
            "CgroupParent": r.cgroup_path.rsplit_once('/').map(|(p, _)| p).unwrap_or(""),
            "Memory": r.memory,
            "NanoCpus": r.nano_cpus,
            "PidsLimit": r.pids_limit,
            "LogConfig": {
                "Type": r.log_driver,
                "Config": if r.log_driver == "json-file" {
                    json!({"max-size": r.log_max_size.to_string(), "max-file": r.log_max_file.to_string()})
                } else {
                    json!({})
                },
            },
            "RestartPolicy": {
                "Name": r.restart_policy.split(':').next().unwrap_or("no"),
                "MaximumRetryCount": r.restart_policy.split_once(':').and_then(|(_, n)| n.parse::<u32>().ok()).unwrap_or(0),
            },
        },
        "Mounts": r.mounts.iter().map(|m| {
            let mut j = json!({
                "Type": m.kind,
                "Source": m.source,
                "Destination": m.destination,
                "Mode": if m.rw { "" } else { "ro" },
                "RW": m.rw,
                "Propagation": match m.kind.as_str() {
                    "bind" if m.propagation.is_empty() => "rprivate",
                    "bind" => m.propagation.as_str(),
                    _ => "",
                },
            });
            if m.kind == "volume" {
                j["Name"] = json!(m.name);
                j["Driver"] = json!("local");
                j["Mode"] = json!(if m.rw { "z" } else { "ro" });
            }
            j
        }).collect::<Vec<_>>(),
        "Config": {
            "Hostname": r.hostname,
            "User": r.user,
            "Tty": r.tty,
            "OpenStdin": r.open_stdin,
            "Env": r.env,
            "Cmd": std::iter::once(r.path.clone()).chain(r.args.iter().cloned()).collect::<Vec<_>>(),
            "Image": r.image,
            "WorkingDir": r.working_dir,
            "StopSignal": r.stop_signal,
            "StopTimeout": r.stop_timeout,
            // Docker: the image's and `-v /path` anonymous volumes.
            "Volumes": r.mounts.iter().filter(|m| m.kind == "volume" && m.anonymous)
                .map(|m| (m.destination.clone(), json!({})))
                .collect::<serde_json::Map<String, Value>>(),
            "Labels": r.labels.iter().map(|l| {
                let (k, v) = l.split_once('=').unwrap_or((l.as_str(), ""));
                (k.to_owned(), json!(v))
            }).collect::<serde_json::Map<String, Value>>(),
        },
    })
}

fn cmd_inspect(e: &Engine, a: InspectArgs) -> Result<u8, Box<dyn std::error::Error>> {
    if a.isolation {
        return crate::cmd_isolation::inspect(e, &a.containers, a.format.as_deref());
    }
    let mut out = Vec::new();
    let mut failed = false;
    for c in &a.containers {
        match e.find(c) {
            Ok(r) => {
                let r = e.reconcile(r);
                let mut v = inspect_json(&r);
                v["NetworkSettings"] = network_settings(e, &r.id);
                out.push(v);
            }
            Err(err) => {
                eprintln!("berth: {}", chain(&err));
                failed = true;
            }
        }
    }
    match &a.format {
        Some(f) => {
            for v in &out {
                println!("{}", crate::format::render(f, v));
            }
        }
        None => println!("{}", serde_json::to_string_pretty(&Value::Array(out))?),
    }
    Ok(if failed { 1 } else { 0 })
}

/// `berth port`: Docker's `80/tcp -> 0.0.0.0:8080` lines, or the host addresses of one port.
fn cmd_port(
    e: &Engine,
    container: &str,
    private: Option<&str>,
) -> Result<u8, Box<dyn std::error::Error>> {
    let mut maps = e.ports(container)?;
    maps.sort_by_key(|m| (m.container_port, m.proto.clone(), m.host_port));
    let host = |m: &berth_engine::berth_net::nft::PortMap| {
        format!(
            "{}:{}",
            m.host_ip
                .map(|i| i.to_string())
                .unwrap_or_else(|| "0.0.0.0".into()),
            m.host_port
        )
    };
    match private {
        None => {
            for m in &maps {
                println!("{}/{} -> {}", m.container_port, m.proto, host(m));
            }
            Ok(0)
        }
        Some(p) => {
            let (port, proto) = p.split_once('/').unwrap_or((p, "tcp"));
            let port: u16 = port
                .parse()
                .map_err(|_| format!("invalid port {p:?}: expected PORT[/PROTO]"))?;
            let hits: Vec<_> = maps
                .iter()
                .filter(|m| m.container_port == port && m.proto == proto)
                .collect();
            if hits.is_empty() {
                return Err(
                    format!("no public port '{port}/{proto}' published for {container}").into(),
                );
            }
            for m in hits {
                println!("{}", host(m));
            }
            Ok(0)
        }
    }
}

/// Docker's `NetworkSettings`: the addresses and published ports a running container holds.
fn network_settings(e: &Engine, id: &str) -> Value {
    let leases = e.attachments(id);
    let mut networks = serde_json::Map::new();
    let mut ports = serde_json::Map::new();
    for l in &leases {
        let cfg = e.networks().and_then(|n| n.get(&l.network)).ok();
        networks.insert(
            l.network.clone(),
            json!({
                "IPAddress": l.ip.to_string(),
                "IPPrefixLen": cfg.as_ref().map(|c| c.subnet.prefix).unwrap_or(0),
                "Gateway": cfg.as_ref().map(|c| c.gateway.to_string()).unwrap_or_default(),
                "MacAddress": berth_engine::berth_net::bridge::mac_string(
                    berth_engine::berth_net::bridge::mac_for(l.ip)
                ),
                "NetworkID": cfg.as_ref().map(|c| c.id.clone()).unwrap_or_default(),
            }),
        );
        for p in &l.ports {
            let key = format!("{}/{}", p.container_port, p.proto);
            let entry = ports.entry(key).or_insert_with(|| json!([]));
            if let Some(a) = entry.as_array_mut() {
                a.push(json!({
                    "HostIp": p.host_ip.map(|i| i.to_string()).unwrap_or_else(|| "0.0.0.0".into()),
                    "HostPort": p.host_port.to_string(),
                }));
            }
        }
    }
    // Docker fills the top-level (legacy) fields from the default bridge only; a container on
    // user networks alone has them empty, its addresses under Networks.
    let bridge = networks
        .get(berth_engine::network::DEFAULT_MODE)
        .cloned()
        .unwrap_or(json!({}));
    json!({
        "IPAddress": bridge["IPAddress"].as_str().unwrap_or(""),
        "Gateway": bridge["Gateway"].as_str().unwrap_or(""),
        "MacAddress": bridge["MacAddress"].as_str().unwrap_or(""),
        "Ports": ports,
        "Networks": networks,
    })
}

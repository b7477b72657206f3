//! `berth`: Berth's Docker-like command line. For now, the image commands.
//!
//! Thin by design: parse arguments, call one `berth-image` function, report. Errors are printed
//! once with their cause chain (`berth: pulling x: layer sha256:..: fetching: ...`).
//! Exit codes: 0 success, 1 the command failed, 2 usage error (from clap).

mod cmd_fs;
mod cmd_isolation;
mod cmd_network;
mod cmd_observe;
mod cmd_run;
mod cmd_system;
mod cmd_volume;
mod format;
mod progress;

use std::io::{self, BufRead, IsTerminal, Read, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use berth_engine::config::Config;
use berth_engine::events::{Event, EventLog};
use berth_image::archive;
use berth_image::auth::{self, Credentials};
use berth_image::extract::ExtractOptions;
use berth_image::pull::{self, PullOptions};
use berth_image::registry::{Client, RegistryOptions};
use berth_image::store::Store;
use berth_image::{Platform, Reference};
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "berth", version, about = "A daemonless container engine")]
struct Cli {
    #[command(flatten)]
    globals: Globals,
    #[command(subcommand)]
    cmd: Cmd,
}

/// The options every command takes (before or after its name).
#[derive(clap::Args)]
struct Globals {
    /// Root of Berth's storage (default: berth.toml's `root`, else /var/lib/berth).
    #[arg(long, global = true)]
    root: Option<PathBuf>,
    /// Configuration file (default: $BERTH_CONFIG, else /etc/berth/berth.toml if it exists).
    #[arg(long, global = true)]
    config: Option<PathBuf>,
    /// A registry (host:port) that may be reached over plain HTTP (repeatable).
    #[arg(long = "insecure-registry", global = true)]
    insecure: Vec<String>,
    /// Directory of per-registry CA certificates (HOST:PORT/ca.crt), replacing the defaults
    /// /etc/berth/certs.d and /etc/docker/certs.d (repeatable).
    #[arg(long = "certs-dir", global = true)]
    certs_dirs: Vec<PathBuf>,
}

#[derive(Subcommand)]
enum Cmd {
    /// Download an image from a registry.
    Pull(PullArgs),
    /// Upload an image to a registry.
    Push(PushArgs),
    /// List images.
    Images(ImagesArgs),
    /// Remove images.
    Rmi(RmiArgs),
    /// Give an image another name.
    Tag { source: String, target: String },
    /// Show the history of an image.
    History(HistoryArgs),
    /// Log in to a registry.
    Login(LoginArgs),
    /// Log out from a registry.
    Logout { registry: String },
    /// Write images to a tarball (OCI layout + docker-archive in one).
    Save(SaveArgs),
    /// Load images from a docker-archive or OCI archive tarball.
    Load(LoadArgs),
    /// Create an image from a root filesystem tarball (`-` for stdin).
    Import(ImportArgs),
    /// Manage images.
    #[command(subcommand)]
    Image(ImageCmd),
    /// Manage Berth.
    #[command(subcommand)]
    System(SystemCmd),
    /// Display a live stream of container resource usage.
    Stats(cmd_observe::StatsArgs),
    /// Show the Berth version information.
    Version(cmd_system::FormatArgs),
    /// Display system-wide information.
    Info(cmd_system::FormatArgs),
    /// Show what happens to containers and images (follows unless --until is given).
    Events(cmd_observe::EventsArgs),
    #[command(flatten)]
    Engine(cmd_run::EngineCmd),
    #[command(flatten)]
    Fs(cmd_fs::FsCmd),
}

#[derive(Subcommand)]
enum ImageCmd {
    Pull(PullArgs),
    Push(PushArgs),
    #[command(alias = "list")]
    Ls(ImagesArgs),
    Rm(RmiArgs),
    Tag {
        source: String,
        target: String,
    },
    History(HistoryArgs),
    Save(SaveArgs),
    Load(LoadArgs),
    Import(ImportArgs),
    /// Show details of images as JSON.
    Inspect {
        #[arg(short, long)]
        format: Option<String>,
        #[arg(required = true)]
        images: Vec<String>,
    },
    /// Remove unused images, layers and blobs.
    Prune {
        /// Remove all images no container uses, not only untagged ones.
        #[arg(short, long)]
        all: bool,
        /// Do not ask (Berth never asks; accepted for Docker compatibility).
        #[arg(short, long)]
        force: bool,
    },
}

#[derive(Subcommand)]
enum SystemCmd {
    /// Show disk usage.
    Df {
        #[arg(long)]
        format: Option<String>,
    },
    /// Remove stopped containers and dangling (with -a: unused) images.
    Prune(cmd_system::PruneArgs),
    /// Remove everything: all containers (running ones too), images, volumes and networks;
    /// Berth's firewall table and ip_forward as they were before Berth.
    Reset(cmd_system::ResetArgs),
    /// Display system-wide information.
    Info(cmd_system::FormatArgs),
    /// Show the events (as `berth events`).
    Events(cmd_observe::EventsArgs),
}

#[derive(clap::Args)]
struct PullArgs {
    image: String,
    /// os/arch[/variant] to pick from a multi-platform image (default: this host's).
    #[arg(long)]
    platform: Option<String>,
    /// Print only the image reference.
    #[arg(short, long)]
    quiet: bool,
}

#[derive(clap::Args)]
struct PushArgs {
    image: String,
    /// Where to push (default: the image's own name).
    destination: Option<String>,
    #[arg(short, long)]
    quiet: bool,
}

#[derive(clap::Args)]
struct ImagesArgs {
    /// Show only image IDs.
    #[arg(short, long)]
    quiet: bool,
    /// Show digests.
    #[arg(long)]
    digests: bool,
    /// `json`, or a template with {{.Repository}} {{.Tag}} {{.ID}} {{.Digest}} {{.Size}} ...
    #[arg(long)]
    format: Option<String>,
    /// Show untagged images too (they are always shown; accepted for compatibility).
    #[arg(short, long)]
    all: bool,
    /// Do not truncate IDs.
    #[arg(long)]
    no_trunc: bool,
}

#[derive(clap::Args)]
struct SaveArgs {
    /// Write to this file instead of standard output.
    #[arg(short, long)]
    output: Option<PathBuf>,
    #[arg(required = true)]
    images: Vec<String>,
}

#[derive(clap::Args)]
struct LoadArgs {
    /// Read from this file instead of standard input.
    #[arg(short, long)]
    input: Option<PathBuf>,
    #[arg(short, long)]
    quiet: bool,
}

#[derive(clap::Args)]
struct ImportArgs {
    /// A tarball, or `-` for standard input.
    file: String,
    /// Name for the new image.
    reference: Option<String>,
    /// Dockerfile instruction to apply: CMD, ENTRYPOINT, ENV, WORKDIR, USER, LABEL, EXPOSE,
    /// VOLUME.
    #[arg(short, long)]
    change: Vec<String>,
}

#[derive(clap::Args)]
struct RmiArgs {
    #[arg(short, long)]
    force: bool,
    #[arg(required = true)]
    images: Vec<String>,
}

#[derive(clap::Args)]
struct HistoryArgs {
    image: String,
    #[arg(short, long)]
    quiet: bool,
    #[arg(long)]
    format: Option<String>,
    #[arg(long)]
    no_trunc: bool,
}

#[derive(clap::Args)]
struct LoginArgs {
    registry: String,
    #[arg(short, long)]
    username: Option<String>,
    #[arg(short, long)]
    password: Option<String>,
    /// Read the password from standard input.
    #[arg(long)]
    password_stdin: bool,
}

type Res = Result<(), Box<dyn std::error::Error>>;

/// berth.toml as found at startup, and its path.
static CONFIG: std::sync::OnceLock<(Config, Option<PathBuf>)> = std::sync::OnceLock::new();

/// The configuration (defaults when none was loaded).
pub(crate) fn config() -> &'static (Config, Option<PathBuf>) {
    CONFIG.get_or_init(|| (Config::default(), None))
}

/// The subcommand named on the command line, after the global options; `None` when the line
/// asks for something else first (`--help`, `--version`, an unknown option).
fn subcommand_name(args: &[std::ffi::OsString]) -> Option<&str> {
    let mut it = args.iter().skip(1).map(|a| a.to_str());
    while let Some(a) = it.next() {
        let a = a?;
        match a {
            "--root" | "--config" | "--insecure-registry" | "--certs-dir" => {
                it.next()?;
            }
            _ if a.starts_with("--") && a.contains('=') => {}
            _ if a.starts_with('-') => return None,
            _ => return Some(a),
        }
    }
    None
}

/// The hot commands (`run`, `exec`, `ps`, `rm`) parsed with only their own subcommand built:
/// clap builds every subcommand's arguments before it parses, 0.3-0.5 ms of each command on
/// the test VM. Whatever this cannot parse (help, errors, other commands) goes through the full
/// parser, so the output is the same; a line it parses gives the same [`Cli`].
fn parse_fast(args: &[std::ffi::OsString]) -> Option<Cli> {
    use clap::FromArgMatches;
    let m = fast_matches(args)?;
    Some(Cli {
        globals: Globals::from_arg_matches(&m).ok()?,
        cmd: Cmd::from_arg_matches(&m).ok()?,
    })
}

fn fast_matches(args: &[std::ffi::OsString]) -> Option<clap::ArgMatches> {
    use clap::{Args, Command};
    let sub = match subcommand_name(args)? {
        "run" => cmd_run::RunArgs::augment_args(Command::new("run")),
        "exec" => cmd_run::ExecArgs::augment_args(Command::new("exec")),
        "ps" => cmd_run::PsArgs::augment_args(Command::new("ps")),
        "rm" => cmd_run::RmArgs::augment_args(Command::new("rm")),
        _ => return None,
    };
    Globals::augment_args(Command::new("berth"))
        .subcommand(sub)
        .try_get_matches_from(args)
        .ok()
}

fn main() -> ExitCode {
    let args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    let mut cli = parse_fast(&args).unwrap_or_else(|| Cli::parse_from(&args));
    match Config::locate(cli.globals.config.as_deref()) {
        Ok(c) => {
            let _ = CONFIG.set(c);
        }
        Err(e) => {
            // Nothing runs on a configuration Berth cannot honour.
            eprintln!("berth: {}", berth_engine::exec::chain(&e));
            return ExitCode::from(125);
        }
    }
    if cli.globals.root.is_none() {
        cli.globals.root = Some(
            config()
                .0
                .root
                .clone()
                .unwrap_or_else(|| berth_engine::DEFAULT_ROOT.into()),
        );
    }
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            let mut msg = format!("berth: {e}");
            let mut src = e.source();
            while let Some(s) = src {
                msg.push_str(&format!(": {s}"));
                src = s.source();
            }
            eprintln!("{msg}");
            ExitCode::from(1)
        }
    }
}

/// The command line's registry options over berth.toml's `[registries]`.
fn registry_options(cli: &Cli) -> RegistryOptions {
    let file = &config().0.registries;
    let mut insecure = cli.globals.insecure.clone();
    insecure.extend(file.insecure.iter().cloned());
    let mut o = RegistryOptions {
        insecure,
        ..RegistryOptions::default()
    };
    if !cli.globals.certs_dirs.is_empty() {
        o.cert_dirs = cli.globals.certs_dirs.clone();
    } else if !file.certs_dirs.is_empty() {
        o.cert_dirs = file.certs_dirs.clone();
    }
    o
}

/// Records an image event (`berth events --filter type=image`). Best effort, as the engine's.
pub(crate) fn image_event(ev: &EventLog, action: &str, id: &str, name: &str) {
    // Docker names images the short way: `busybox:latest`, not `docker.io/library/...`.
    let familiar = |s: &str| match s.parse::<Reference>() {
        Ok(r) if !s.starts_with("sha256:") => {
            let mut f = r.familiar_name();
            if let Some(t) = r.tag.as_deref() {
                f = format!("{f}:{t}");
            } else if let Some(d) = &r.digest {
                f = format!("{f}@{d}");
            }
            f
        }
        _ => s.to_string(),
    };
    let (id, name) = (familiar(id), familiar(name));
    let attrs = [("name".to_string(), name)].into_iter().collect();
    let id = id.as_str();
    let _ = ev.append(&Event::new("image", action, id, attrs));
}

fn run(cli: Cli) -> Res {
    let reg = registry_options(&cli);
    let root = cli.globals.root.clone().expect("main resolved the root");
    let store = || Store::open(&root);
    let ev = EventLog::new(&root);
    match cli.cmd {
        Cmd::Pull(a) | Cmd::Image(ImageCmd::Pull(a)) => {
            let name = a.image.clone();
            cmd_pull(&store()?, a, reg)?;
            image_event(&ev, "pull", &name, &name);
            Ok(())
        }
        Cmd::Push(a) | Cmd::Image(ImageCmd::Push(a)) => {
            let name = a.destination.clone().unwrap_or(a.image.clone());
            cmd_push(&store()?, a, &reg)?;
            image_event(&ev, "push", &name, &name);
            Ok(())
        }
        Cmd::Images(a) | Cmd::Image(ImageCmd::Ls(a)) => format::images(&store()?, &a),
        Cmd::Rmi(a) | Cmd::Image(ImageCmd::Rm(a)) => cmd_rmi(&store()?, a, &ev),
        Cmd::Tag { source, target } | Cmd::Image(ImageCmd::Tag { source, target }) => {
            let target: Reference = target.parse()?;
            let s = store()?;
            s.tag(&source, &target)?;
            let id = s
                .resolve(&source)
                .map(|r| r.id.to_string())
                .unwrap_or(source);
            image_event(&ev, "tag", &id, &target.to_string());
            Ok(())
        }
        Cmd::History(a) | Cmd::Image(ImageCmd::History(a)) => format::history(&store()?, &a),
        Cmd::Image(ImageCmd::Inspect { format, images }) => {
            format::inspect(&store()?, &images, format.as_deref())
        }
        Cmd::Image(ImageCmd::Prune { all, force: _ }) => cmd_prune(&store()?, all, &ev),
        Cmd::System(SystemCmd::Df { format }) => cmd_run::exit_with(
            cmd_run::engine(&root).and_then(|e| cmd_system::df(&e, format.as_deref())),
        ),
        Cmd::System(SystemCmd::Reset(a)) => {
            cmd_run::exit_with(cmd_run::engine(&root).and_then(|e| cmd_system::reset(&e, a)))
        }
        Cmd::System(SystemCmd::Prune(a)) => {
            cmd_run::exit_with(cmd_run::engine(&root).and_then(|e| cmd_system::prune(&e, a)))
        }
        Cmd::Info(a) | Cmd::System(SystemCmd::Info(a)) => {
            cmd_run::exit_with(cmd_run::engine(&root).and_then(|e| cmd_system::info(&e, &reg, a)))
        }
        Cmd::Version(a) => {
            cmd_run::exit_with(cmd_run::engine(&root).and_then(|e| cmd_system::version(&e, a)))
        }
        Cmd::System(SystemCmd::Events(a)) => {
            cmd_run::exit_with(cmd_run::engine(&root).and_then(|e| cmd_observe::events(&e, a)))
        }
        Cmd::Save(a) | Cmd::Image(ImageCmd::Save(a)) => cmd_save(&store()?, a),
        Cmd::Load(a) | Cmd::Image(ImageCmd::Load(a)) => cmd_load(&store()?, a, &ev),
        Cmd::Import(a) | Cmd::Image(ImageCmd::Import(a)) => cmd_import(&store()?, a, &ev),
        Cmd::Login(a) => cmd_login(a, reg),
        Cmd::Logout { registry } => cmd_logout(&registry),
        Cmd::Engine(c) => cmd_run::dispatch(&root, c, reg),
        Cmd::Fs(c) => cmd_fs::dispatch(&root, c),
        Cmd::Stats(a) => {
            cmd_run::exit_with(cmd_run::engine(&root).and_then(|e| cmd_observe::stats(&e, a)))
        }
        Cmd::Events(a) => {
            cmd_run::exit_with(cmd_run::engine(&root).and_then(|e| cmd_observe::events(&e, a)))
        }
    }
}

fn cmd_pull(store: &Store, a: PullArgs, registry: RegistryOptions) -> Res {
    let reference: Reference = a.image.parse()?;
    let mut opts = PullOptions {
        registry,
        ..PullOptions::default()
    };
    if let Some(p) = &a.platform {
        opts.platform = p.parse::<Platform>()?;
    }
    let rec = if a.quiet {
        pull::pull(store, &reference, &opts, &pull::NoProgress)?
    } else if io::stderr().is_terminal() {
        let p = progress::Bars::new();
        pull::pull(store, &reference, &opts, &p)?
    } else {
        pull::pull(store, &reference, &opts, &progress::Lines)?
    };
    if !a.quiet {
        println!("Digest: {}", rec.manifest_digest);
        println!(
            "Status: image {reference} is in the store as {}",
            rec.id.short()
        );
    }
    println!("{reference}");
    Ok(())
}

fn cmd_push(store: &Store, a: PushArgs, reg: &RegistryOptions) -> Res {
    let target: Reference = a.destination.as_deref().unwrap_or(&a.image).parse()?;
    let quiet = a.quiet;
    let report = berth_image::push::push(store, &a.image, &target, reg, |d, sent| {
        if !quiet {
            let what = if sent {
                "Pushed"
            } else {
                "Layer already exists"
            };
            println!("{}: {what}", d.short());
        }
    })?;
    if let Some(d) = report.manifest {
        println!("{target}: digest: {d}");
    }
    Ok(())
}

fn cmd_rmi(store: &Store, a: RmiArgs, ev: &EventLog) -> Res {
    let mut failed = None;
    for img in &a.images {
        match store.remove_image(img, a.force) {
            Ok((untagged, deleted)) => {
                for t in untagged {
                    println!("Untagged: {t}");
                    image_event(ev, "untag", &t.to_string(), &t.to_string());
                }
                if let Some(id) = deleted {
                    println!("Deleted: {id}");
                    image_event(ev, "delete", &id.to_string(), img);
                }
            }
            Err(e) => {
                eprintln!("berth: {e}");
                failed = Some(e);
            }
        }
    }
    // Layers no image uses any more go now, so the space really comes back.
    store.gc()?;
    match failed {
        Some(e) => Err(e.into()),
        None => Ok(()),
    }
}

fn cmd_prune(store: &Store, all: bool, ev: &EventLog) -> Res {
    let (removed, st) = cmd_system::prune_images(store, all)?;
    for id in &removed {
        println!("Deleted: {id}");
        image_event(ev, "delete", id, id);
    }
    println!(
        "Deleted images: {}, layers: {}, blobs: {}",
        removed.len(),
        st.layers_removed,
        st.blobs_removed
    );
    println!(
        "Total reclaimed space: {}",
        format::human(st.bytes_reclaimed)
    );
    Ok(())
}

fn cmd_save(store: &Store, a: SaveArgs) -> Res {
    match &a.output {
        Some(p) => {
            // Written beside the target and renamed, so a failed save leaves no half file.
            let tmp = p.with_extension("berth-partial");
            let f = std::fs::File::create(&tmp)?;
            let r = archive::save(store, &a.images, io::BufWriter::new(f));
            match r {
                Ok(()) => std::fs::rename(&tmp, p)?,
                Err(e) => {
                    let _ = std::fs::remove_file(&tmp);
                    return Err(e.into());
                }
            }
        }
        None => {
            if io::stdout().is_terminal() {
                return Err("refusing to write an image archive to a terminal; use -o".into());
            }
            archive::save(store, &a.images, io::BufWriter::new(io::stdout().lock()))?
        }
    }
    Ok(())
}

fn cmd_load(store: &Store, a: LoadArgs, ev: &EventLog) -> Res {
    let opts = ExtractOptions::default();
    let names = match &a.input {
        Some(p) => archive::load(store, io::BufReader::new(std::fs::File::open(p)?), &opts)?,
        None => archive::load(store, io::stdin().lock(), &opts)?,
    };
    for n in names {
        image_event(ev, "load", &n.to_string(), &n.to_string());
        if a.quiet {
            println!("{n}");
        } else {
            println!("Loaded image: {n}");
        }
    }
    Ok(())
}

fn cmd_import(store: &Store, a: ImportArgs, ev: &EventLog) -> Res {
    let name = a
        .reference
        .as_deref()
        .map(str::parse::<Reference>)
        .transpose()?;
    let opts = ExtractOptions::default();
    let rec = if a.file == "-" {
        archive::import(store, io::stdin().lock(), &a.change, name.as_ref(), &opts)?
    } else {
        let f = io::BufReader::new(std::fs::File::open(&a.file)?);
        archive::import(store, f, &a.change, name.as_ref(), &opts)?
    };
    let name = name.map(|n| n.to_string()).unwrap_or_default();
    image_event(ev, "import", &rec.id.to_string(), &name);
    println!("{}", rec.id);
    Ok(())
}

fn registry_of(arg: &str) -> String {
    let a = arg
        .trim_start_matches("https://")
        .trim_start_matches("http://")
        .trim_end_matches('/');
    match a {
        "index.docker.io/v1" | "index.docker.io" | "registry-1.docker.io" | "docker.io" => {
            berth_image::reference::DOCKER_HUB.into()
        }
        other => other.into(),
    }
}

fn cmd_login(a: LoginArgs, mut reg: RegistryOptions) -> Res {
    let registry = registry_of(&a.registry);
    let username = match a.username {
        Some(u) => u,
        None => {
            eprint!("Username: ");
            let mut u = String::new();
            io::stdin().lock().read_line(&mut u)?;
            u.trim().to_string()
        }
    };
    let password = if a.password_stdin {
        let mut p = String::new();
        io::stdin().read_to_string(&mut p)?;
        p.trim_end_matches(['\n', '\r']).to_string()
    } else if let Some(p) = a.password {
        p
    } else {
        eprint!("Password: ");
        io::stderr().flush()?;
        let mut p = String::new();
        io::stdin().lock().read_line(&mut p)?;
        p.trim_end_matches(['\n', '\r']).to_string()
    };
    let creds = Credentials { username, password };
    reg.credentials = Some(creds.clone());
    let host = if registry == berth_image::reference::DOCKER_HUB {
        berth_image::reference::DOCKER_HUB_API.to_string()
    } else {
        registry.clone()
    };
    // Verify before saving: a wrong password fails here, not at the next pull.
    Client::for_registry(&registry, &host, &reg)?.ping()?;
    let file = auth::login_file()?;
    auth::store_credentials(&file, &registry, &creds)?;
    println!("Login Succeeded");
    Ok(())
}

fn cmd_logout(registry: &str) -> Res {
    let registry = registry_of(registry);
    let file = auth::login_file()?;
    if auth::remove_credentials(&file, &registry)? {
        println!("Removing login credentials for {registry}");
    } else {
        println!("Not logged in to {registry}");
    }
    Ok(())
}

#[cfg(test)]
mod fast_parse_tests {
    use super::*;
    use clap::CommandFactory;

    fn argv(line: &str) -> Vec<std::ffi::OsString> {
        line.split(' ').map(Into::into).collect()
    }

    #[test]
    fn the_fast_path_matches_what_the_full_parser_matches() {
        for line in [
            "berth run --rm busybox true",
            "berth --root /tmp/r run -d --name x -e A=1 -v /a:/b:ro --network none busybox sh -c x",
            "berth run --root /tmp/r -it --memory 64m --cap-drop ALL busybox",
            "berth --root=/tmp/r --insecure-registry r:5000 exec -it -u 1 -w /tmp x env",
            "berth exec x sh -c --not-an-option",
            "berth ps -a -q --no-trunc --filter status=exited --format {{.ID}}",
            "berth rm -f -v a b c",
            "berth --certs-dir /c --config /x.toml rm a",
        ] {
            let args = argv(line);
            let fast = fast_matches(&args).unwrap_or_else(|| panic!("{line}: not taken"));
            let full = Cli::command().try_get_matches_from(&args).unwrap();
            let (name, sub) = fast.subcommand().unwrap();
            let (full_name, full_sub) = full.subcommand().unwrap();
            assert_eq!(name, full_name, "{line}");
            assert_eq!(format!("{sub:?}"), format!("{full_sub:?}"), "{line}");
            for g in ["root", "config", "insecure", "certs_dirs"] {
                assert_eq!(
                    format!("{:?}", fast.get_raw(g).map(|v| v.collect::<Vec<_>>())),
                    format!("{:?}", full.get_raw(g).map(|v| v.collect::<Vec<_>>())),
                    "{line}: {g}"
                );
            }
            assert!(parse_fast(&args).is_some(), "{line}");
        }
    }

    #[test]
    fn help_errors_and_other_commands_take_the_full_parser() {
        for line in [
            "berth --help",
            "berth --version",
            "berth run --help",
            "berth run",
            "berth run --no-such-flag busybox",
            "berth images",
            "berth list",
            "berth --root",
        ] {
            assert!(parse_fast(&argv(line)).is_none(), "{line}");
        }
    }
}

//! `berth version`, `berth info`, `berth system prune` and `berth system df`.

use std::io::{BufRead, Write};

use berth_engine::{Engine, Status};
use berth_image::registry::RegistryOptions;
use berth_image::snapshot::Snapshotter;
use berth_image::store::Store;
use berth_runtime::cgroups::{Layout, LayoutKind};
use serde_json::{json, Value};

use crate::cmd_observe::bytes_size;

type Res = Result<u8, Box<dyn std::error::Error>>;

const VERSION: &str = env!("CARGO_PKG_VERSION");

#[derive(clap::Args)]
pub struct FormatArgs {
    /// `json` or a template (`{{.Server.Version}}`, `{{.KernelVersion}}`, `{{json .}}`).
    #[arg(short, long)]
    format: Option<String>,
}

#[derive(clap::Args)]
pub struct PruneArgs {
    /// Remove all images no container uses, not only dangling ones.
    #[arg(short, long)]
    all: bool,
    /// Do not ask for confirmation.
    #[arg(short, long)]
    force: bool,
    /// Prune volumes too: anonymous volumes no container uses (as Docker since API 1.42).
    #[arg(long)]
    volumes: bool,
}

#[derive(clap::Args)]
pub struct ResetArgs {
    /// Do not ask for confirmation.
    #[arg(short, long)]
    force: bool,
}

/// Docker's confirmation: the list of what goes, then `[y/N]` on standard input. `false` (with
/// a "cancelled" line naming `command`) unless the answer is yes.
fn confirm(list: &str, command: &str) -> std::io::Result<bool> {
    eprint!("WARNING! This will remove:\n{list}\nAre you sure you want to continue? [y/N] ");
    let _ = std::io::stderr().flush();
    let mut answer = String::new();
    std::io::stdin().lock().read_line(&mut answer)?;
    let yes = matches!(answer.trim(), "y" | "Y" | "yes");
    if !yes {
        eprintln!("berth: {command} cancelled");
    }
    Ok(yes)
}

/// `berth system reset` (podman's): every container, image, volume and network gone, and
/// what Berth changed on the host (firewall table, `ip_forward`, its cgroup parent) undone.
pub fn reset(e: &Engine, a: ResetArgs) -> Res {
    if !a.force
        && !confirm(
            "  - all containers (running ones are killed)\n  - all images\n  - all volumes\n  \
             - all networks, Berth's firewall table, and ip_forward if Berth turned it on\n",
            "system reset",
        )?
    {
        return Ok(1);
    }
    let mut problems = e.reset();
    match Store::open(&e.root) {
        Ok(store) => {
            if let Err(err) = prune_images(&store, true) {
                problems.push(err.to_string());
            }
        }
        Err(err) => problems.push(berth_engine::exec::chain(&err)),
    }
    if problems.is_empty() {
        Ok(0)
    } else {
        for p in &problems {
            eprintln!("berth: system reset: {p}");
        }
        Ok(125)
    }
}

fn read(path: &str) -> String {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .trim()
        .to_owned()
}

/// Go's architecture names, which Docker prints.
fn go_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "386",
        "powerpc64" => "ppc64le",
        other => other,
    }
}

fn print_value(v: &Value, format: Option<&str>, text: impl FnOnce() -> String) {
    match format.map(str::trim) {
        Some("json") | Some("{{json .}}") => println!("{v}"),
        Some(f) => println!("{}", crate::format::render(f, v)),
        None => print!("{}", text()),
    }
}

fn check_format(format: &Option<String>) -> Result<(), Box<dyn std::error::Error>> {
    if format.as_deref().is_some_and(|f| f.trim().is_empty()) {
        return Err("--format must not be empty".into());
    }
    Ok(())
}

/// `berth version`.
pub fn version(e: &Engine, a: FormatArgs) -> Res {
    check_format(&a.format)?;
    let os_arch = format!("linux/{}", go_arch());
    let kernel = read("/proc/sys/kernel/osrelease");
    let v = json!({
        "Client": {"Version": VERSION, "Os": "linux", "Arch": go_arch()},
        "Server": {
            "Version": VERSION,
            "Os": "linux",
            "Arch": go_arch(),
            "KernelVersion": kernel,
            "Daemonless": true,
            "Components": [
                {"Name": "Engine", "Version": VERSION},
                {"Name": "berth-runtime", "Version": VERSION, "Details": {"OciSpec": "1.2"}},
            ],
            "Root": e.root.display().to_string(),
        },
    });
    print_value(&v, a.format.as_deref(), || {
        format!(
            "Client: Berth\n Version:           {VERSION}\n OS/Arch:           {os_arch}\n\n\
             Server: Berth Engine (daemonless)\n Engine:\n  Version:          {VERSION}\n  \
             OS/Arch:          {os_arch}\n  Kernel:           {kernel}\n berth-runtime \
             (built in):\n  Version:          {VERSION}\n  OCI runtime spec: 1.2\n"
        )
    });
    Ok(0)
}

/// `berth info`.
pub fn info(e: &Engine, registry: &RegistryOptions, a: FormatArgs) -> Res {
    check_format(&a.format)?;
    let all = e.list()?;
    let running = all
        .iter()
        .filter(|r| r.state.status == Status::Running && !r.state.paused)
        .count();
    let paused = all.iter().filter(|r| r.state.paused).count();
    let images = Store::open(&e.root)?.records()?.len();
    let layout = Layout::detect().ok();
    let cgroup_version = match layout.as_ref().map(|l| l.kind) {
        Some(LayoutKind::Unified) => "2",
        Some(LayoutKind::Legacy) | Some(LayoutKind::Hybrid) => "1",
        None => "",
    };
    let hybrid = layout
        .as_ref()
        .is_some_and(|l| l.kind == LayoutKind::Hybrid);
    let mut security = vec!["name=seccomp,profile=builtin".to_string()];
    if read("/sys/module/apparmor/parameters/enabled").starts_with('Y') {
        security.insert(0, "name=apparmor".into());
    }
    if std::path::Path::new("/sys/fs/selinux/enforce").exists() {
        security.push("name=selinux".into());
    }
    if !rustix::process::geteuid().is_root() {
        security.push("name=rootless".into());
    }
    if cgroup_version == "2" {
        security.push("name=cgroupns".into());
    }
    let os = read("/etc/os-release")
        .lines()
        .find_map(|l| l.strip_prefix("PRETTY_NAME="))
        .map(|s| s.trim_matches('"').to_owned())
        .unwrap_or_else(|| "Linux".into());
    let mem_total = berth_engine::stats::parse_mem_total(&read("/proc/meminfo"));
    let ncpu = std::thread::available_parallelism().map_or(1, |n| n.get());
    let driver = if Snapshotter::overlay_supported() {
        "overlay"
    } else {
        "copy"
    };
    let v = json!({
        "Containers": all.len(),
        "ContainersRunning": running,
        "ContainersPaused": paused,
        "ContainersStopped": all.len() - running - paused,
        "Images": images,
        "Driver": driver,
        "LoggingDriver": e.default_log_driver(),
        "CgroupDriver": "cgroupfs",
        "CgroupVersion": cgroup_version,
        "CgroupLayout": match layout.as_ref().map(|l| l.kind) {
            Some(LayoutKind::Unified) => "unified",
            Some(LayoutKind::Legacy) => "legacy",
            Some(LayoutKind::Hybrid) => "hybrid",
            None => "unknown",
        },
        "KernelVersion": read("/proc/sys/kernel/osrelease"),
        "OperatingSystem": os,
        "OSType": "linux",
        "Architecture": std::env::consts::ARCH,
        "NCPU": ncpu,
        "MemTotal": mem_total,
        "Name": read("/proc/sys/kernel/hostname"),
        "ServerVersion": VERSION,
        "DockerRootDir": e.root.display().to_string(),
        "RunRoot": e.run_root.display().to_string(),
        "DefaultRuntime": "berth",
        "Runtimes": {"berth": {"path": "built in (berth-runtime)"}},
        "SecurityOptions": security,
        "RegistryConfig": {
            "InsecureRegistries": registry.insecure,
            "CertsDirs": registry.cert_dirs.iter().map(|p| p.display().to_string()).collect::<Vec<_>>(),
            "Mirrors": [],
        },
        "ConfigFile": e.config_file.as_ref().map(|p| p.display().to_string()).unwrap_or_default(),
    });
    print_value(&v, a.format.as_deref(), || {
        let mut s = String::new();
        let mut line = |t: String| {
            s.push_str(&t);
            s.push('\n');
        };
        line("Server:".into());
        line(format!(" Containers: {}", v["Containers"]));
        line(format!("  Running: {running}"));
        line(format!("  Paused: {paused}"));
        line(format!("  Stopped: {}", v["ContainersStopped"]));
        line(format!(" Images: {images}"));
        line(format!(" Server Version: {VERSION}"));
        line(format!(" Storage Driver: {driver}"));
        line(format!(" Logging Driver: {}", e.default_log_driver()));
        line(" Cgroup Driver: cgroupfs".into());
        line(format!(
            " Cgroup Version: {cgroup_version}{}",
            if hybrid {
                " (hybrid: v1 controllers and a cgroup2 mount)"
            } else {
                ""
            }
        ));
        line(" Runtimes: berth (built in)".into());
        line(" Default Runtime: berth".into());
        line(" Security Options:".into());
        for o in &security {
            let mut parts = o.split(',');
            line(format!(
                "  {}",
                parts.next().unwrap_or("").trim_start_matches("name=")
            ));
            for p in parts {
                if let Some((k, val)) = p.split_once('=') {
                    let mut k = k.to_owned();
                    k[..1].make_ascii_uppercase();
                    line(format!("   {k}: {val}"));
                }
            }
        }
        line(format!(
            " Kernel Version: {}",
            v["KernelVersion"].as_str().unwrap_or("")
        ));
        line(format!(
            " Operating System: {}",
            v["OperatingSystem"].as_str().unwrap_or("")
        ));
        line(" OSType: linux".into());
        line(format!(" Architecture: {}", std::env::consts::ARCH));
        line(format!(" CPUs: {ncpu}"));
        line(format!(" Total Memory: {}", bytes_size(mem_total)));
        line(format!(" Name: {}", v["Name"].as_str().unwrap_or("")));
        line(format!(" Berth Root Dir: {}", e.root.display()));
        line(format!(" Run Root: {}", e.run_root.display()));
        if let Some(c) = &e.config_file {
            line(format!(" Config File: {}", c.display()));
        }
        line(" Insecure Registries:".into());
        line("  127.0.0.0/8".into());
        for r in &registry.insecure {
            line(format!("  {r}"));
        }
        s
    });
    Ok(0)
}

/// Removes images no container uses (only untagged ones unless `all`), then collects
/// unreferenced layers and blobs; returns the removed ids and the bytes reclaimed.
pub fn prune_images(
    store: &Store,
    all: bool,
) -> Result<(Vec<String>, berth_image::store::GcStats), Box<dyn std::error::Error>> {
    let tags = store.tags()?;
    let mut removed = Vec::new();
    for rec in store.records()? {
        let tagged = tags.values().any(|v| *v == rec.id);
        if (tagged && !all) || !store.snapshot_users(&rec.id)?.is_empty() {
            continue;
        }
        let (_, deleted) = store.remove_image(&rec.id.to_string(), true)?;
        if let Some(id) = deleted {
            removed.push(id.to_string());
        }
    }
    let st = store.gc()?;
    Ok((removed, st))
}

/// `berth system prune`.
pub fn prune(e: &Engine, a: PruneArgs) -> Res {
    if !a.force {
        let list = format!(
            "  - all stopped containers\n{}  - all {}\n",
            if a.volumes {
                "  - all anonymous volumes not used by at least one container\n"
            } else {
                ""
            },
            if a.all {
                "images without at least one container associated to them"
            } else {
                "dangling images"
            }
        );
        if !confirm(&list, "system prune")? {
            return Ok(1);
        }
    }
    // The writable layers go with their containers: measure them first.
    let mut reclaimed = 0u64;
    let sizes: std::collections::HashMap<String, u64> = e
        .list()?
        .iter()
        .filter(|r| r.state.status != Status::Running)
        .map(|r| (r.id.clone(), e.container_size(r).0))
        .collect();
    let containers = e.prune()?;
    for id in &containers {
        reclaimed += sizes.get(id).copied().unwrap_or(0);
    }
    let volumes = if a.volumes {
        let (names, bytes) = e.volume_prune(false, |_| false)?;
        reclaimed += bytes;
        names
    } else {
        Vec::new()
    };
    let store = Store::open(&e.root)?;
    let (images, st) = prune_images(&store, a.all)?;
    reclaimed += st.bytes_reclaimed;
    let ev = e.events();
    for id in &images {
        crate::image_event(&ev, "delete", id, id);
    }
    if !containers.is_empty() {
        println!("Deleted Containers:");
        for id in &containers {
            println!("{id}");
        }
        println!();
    }
    if !volumes.is_empty() {
        println!("Deleted Volumes:");
        for n in &volumes {
            println!("{n}");
        }
        println!();
    }
    if !images.is_empty() {
        println!("Deleted Images:");
        for id in &images {
            println!("deleted: {id}");
        }
        println!();
    }
    println!("Total reclaimed space: {}", crate::format::human(reclaimed));
    Ok(0)
}

/// `berth system df`: images (shared layers counted once) and containers (writable layers).
pub fn df(e: &Engine, format: Option<&str>) -> Res {
    let store = Store::open(&e.root)?;
    let du = store.disk_usage()?;
    let records = store.records()?;
    let active_images = records
        .iter()
        .filter(|r| {
            store
                .snapshot_users(&r.id)
                .map(|u| !u.is_empty())
                .unwrap_or(false)
        })
        .count();
    let all = e.list()?;
    let mut c_size = 0;
    let mut c_reclaim = 0;
    for r in &all {
        let (rw, _) = e.container_size(r);
        c_size += rw;
        if r.state.status != Status::Running {
            c_reclaim += rw;
        }
    }
    let c_active = all
        .iter()
        .filter(|r| r.state.status == Status::Running)
        .count();
    let h = crate::format::human;
    let rows = [
        json!({
            "Type": "Images",
            "TotalCount": du.images,
            "Active": active_images,
            "Size": h(du.layer_bytes + du.blob_bytes),
            "Reclaimable": h(du.reclaimable_bytes),
            "Layers": du.layers,
            "LayersSize": du.layer_bytes,
            "BlobsSize": du.blob_bytes,
            "ReclaimableBytes": du.reclaimable_bytes,
        }),
        json!({
            "Type": "Containers",
            "TotalCount": all.len(),
            "Active": c_active,
            "Size": h(c_size),
            "Reclaimable": h(c_reclaim),
            "SizeBytes": c_size,
            "ReclaimableBytes": c_reclaim,
        }),
    ];
    if let Some(f) = format {
        check_format(&Some(f.to_owned()))?;
        crate::format::print_rows(&rows, f);
        return Ok(0);
    }
    let table: Vec<Vec<String>> = rows
        .iter()
        .map(|r| {
            ["Type", "TotalCount", "Active", "Size", "Reclaimable"]
                .iter()
                .map(|k| match &r[k] {
                    Value::String(s) => s.clone(),
                    other => other.to_string(),
                })
                .collect()
        })
        .collect();
    print!(
        "{}",
        crate::cmd_run::table_text(&["TYPE", "TOTAL", "ACTIVE", "SIZE", "RECLAIMABLE"], &table)
    );
    Ok(0)
}

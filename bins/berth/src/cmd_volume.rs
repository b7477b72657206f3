//! `berth volume create|ls|inspect|rm|prune`: Docker's volume commands over
//! `berth_engine::volume`.
//!
//! Exit codes: 0, 1 when one of several named volumes failed (`rm`, `inspect`, each reported),
//! 125 when the command as a whole failed (a bad option, a name already used differently).

use berth_engine::exec::chain;
use berth_engine::volume::{CreateOptions, VolumeRecord};
use berth_engine::Engine;
use serde_json::{json, Value};

type Res = Result<u8, Box<dyn std::error::Error>>;

#[derive(clap::Subcommand)]
pub enum VolumeCmd {
    /// Create a volume.
    Create(CreateArgs),
    /// List volumes.
    #[command(alias = "list")]
    Ls(LsArgs),
    /// Show details of volumes as JSON.
    Inspect {
        #[arg(short, long)]
        format: Option<String>,
        #[arg(required = true)]
        volumes: Vec<String>,
    },
    /// Remove volumes (refused while a container uses them).
    #[command(alias = "remove")]
    Rm {
        /// Do not fail on a volume that does not exist.
        #[arg(short, long)]
        force: bool,
        #[arg(required = true)]
        volumes: Vec<String>,
    },
    /// Remove unused anonymous volumes (all unused ones with -a).
    Prune {
        /// Remove unused named volumes too.
        #[arg(short, long)]
        all: bool,
        /// Do not ask (Berth never asks; accepted for Docker compatibility).
        #[arg(short, long)]
        force: bool,
        /// `label=KEY[=VALUE]` or `label!=KEY[=VALUE]`.
        #[arg(long)]
        filter: Vec<String>,
    },
}

#[derive(clap::Args)]
pub struct CreateArgs {
    /// The volume's name (default: a random one).
    name: Option<String>,
    /// Volume driver (only `local`).
    #[arg(short, long)]
    driver: Option<String>,
    /// KEY=VALUE label (repeatable).
    #[arg(long)]
    label: Vec<String>,
    /// Driver option: type=FSTYPE, device=DEVICE, o=MOUNT-OPTIONS (repeatable).
    #[arg(short, long = "opt")]
    opt: Vec<String>,
}

#[derive(clap::Args)]
pub struct LsArgs {
    /// Only the names.
    #[arg(short, long)]
    quiet: bool,
    /// `dangling=true|false`, `driver=`, `label=KEY[=VALUE]`, `name=` (repeatable).
    #[arg(short, long)]
    filter: Vec<String>,
    /// `json`, a template ({{.Name}} {{.Driver}} {{.Mountpoint}} {{.Labels}} {{.Scope}}), or
    /// `table TEMPLATE`.
    #[arg(long)]
    format: Option<String>,
}

pub fn run(e: &Engine, cmd: VolumeCmd) -> Res {
    match cmd {
        VolumeCmd::Create(a) => {
            let v = e.volume_create(&CreateOptions {
                name: a.name,
                driver: a.driver,
                labels: a.label,
                options: a.opt,
            })?;
            println!("{}", v.name);
            Ok(0)
        }
        VolumeCmd::Ls(a) => ls(e, a),
        VolumeCmd::Inspect { format, volumes } => {
            let vols = e.volumes();
            let mut out = Vec::new();
            let mut failed = false;
            for name in &volumes {
                match vols.load(name) {
                    Ok(v) => out.push(inspect_json(e, &v)),
                    Err(err) => {
                        eprintln!("berth: {}", chain(&err));
                        failed = true;
                    }
                }
            }
            match format {
                Some(f) => {
                    for v in &out {
                        println!("{}", crate::format::render(&f, v));
                    }
                }
                None => println!("{}", serde_json::to_string_pretty(&Value::Array(out))?),
            }
            Ok(if failed { 1 } else { 0 })
        }
        VolumeCmd::Rm { force, volumes } => {
            let mut failed = false;
            for name in &volumes {
                match e.volume_remove(name, force) {
                    Ok(()) => println!("{name}"),
                    Err(err) => {
                        eprintln!("berth: {}", chain(&err));
                        failed = true;
                    }
                }
            }
            Ok(if failed { 1 } else { 0 })
        }
        VolumeCmd::Prune {
            all,
            force: _,
            filter,
        } => {
            let mut labels = Vec::new();
            for f in &filter {
                match f.split_once('=') {
                    Some(("label", v)) => labels.push((true, v.to_owned())),
                    Some(("label!", v)) => labels.push((false, v.to_owned())),
                    Some(("all", v)) => {
                        if v != "true" && v != "1" && v != "false" && v != "0" {
                            return Err(format!("invalid filter value {f:?}").into());
                        }
                    }
                    _ => return Err(format!("invalid filter {f:?} (label=, label!=)").into()),
                }
            }
            let all = all || filter.iter().any(|f| f == "all=true" || f == "all=1");
            let (removed, bytes) = e.volume_prune(all, |v| {
                !labels.iter().all(|(want, l)| label_matches(v, l) == *want)
            })?;
            if !removed.is_empty() {
                println!("Deleted Volumes:");
                for n in &removed {
                    println!("{n}");
                }
                println!();
            }
            println!("Total reclaimed space: {}", crate::format::human(bytes));
            Ok(0)
        }
    }
}

fn label_matches(v: &VolumeRecord, want: &str) -> bool {
    match want.split_once('=') {
        Some((k, val)) => v.labels.get(k).is_some_and(|x| x == val),
        None => v.labels.contains_key(want),
    }
}

fn inspect_json(e: &Engine, v: &VolumeRecord) -> Value {
    json!({
        // Docker's volumes carry RFC 3339 without fractions (containers have nanoseconds).
        "CreatedAt": berth_engine::lifecycle::format_time(v.created).replace(".000000000", ""),
        "Driver": v.driver,
        "Labels": v.labels,
        "Mountpoint": e.volumes().mountpoint(&v.name),
        "Name": v.name,
        "Options": v.options,
        "Scope": "local",
    })
}

fn ls(e: &Engine, a: LsArgs) -> Res {
    let mut filters = Vec::new();
    for f in &a.filter {
        let (k, v) = f
            .split_once('=')
            .ok_or_else(|| format!("bad format of filter (expected name=value): {f:?}"))?;
        if !["dangling", "driver", "label", "name"].contains(&k) {
            return Err(format!("invalid filter {k:?}").into());
        }
        if k == "dangling" && !["true", "false", "1", "0"].contains(&v) {
            return Err(format!("invalid filter 'dangling={v}'").into());
        }
        filters.push((k.to_owned(), v.to_owned()));
    }
    let all = e.volumes().list()?;
    let used: Vec<String> = if filters.iter().any(|(k, _)| k == "dangling") {
        e.records
            .list()?
            .into_iter()
            .flat_map(|r| r.mounts.into_iter())
            .filter(|m| m.kind == "volume")
            .map(|m| m.name)
            .collect()
    } else {
        Vec::new()
    };
    // Filters of one key: any matches; of different keys: all match (Docker's rule).
    let mut keys: Vec<&str> = filters.iter().map(|(k, _)| k.as_str()).collect();
    keys.sort();
    keys.dedup();
    let shown: Vec<&VolumeRecord> = all
        .iter()
        .filter(|v| {
            keys.iter().all(|key| {
                filters
                    .iter()
                    .filter(|(k, _)| k == key)
                    .any(|(_, val)| match *key {
                        "dangling" => {
                            let dangling = val == "true" || val == "1";
                            used.contains(&v.name) != dangling
                        }
                        "driver" => v.driver == *val,
                        "label" => label_matches(v, val),
                        "name" => v.name.contains(val.as_str()),
                        _ => false,
                    })
            })
        })
        .collect();
    if a.quiet {
        for v in &shown {
            println!("{}", v.name);
        }
        return Ok(0);
    }
    let row = |v: &VolumeRecord| {
        let mut j = inspect_json(e, v);
        j["Labels"] = json!(v
            .labels
            .iter()
            .map(|(k, x)| format!("{k}={x}"))
            .collect::<Vec<_>>()
            .join(","));
        j
    };
    match a.format.as_deref() {
        Some("json") => {
            for v in &shown {
                println!("{}", row(v));
            }
            return Ok(0);
        }
        Some(f) if !f.starts_with("table") => {
            for v in &shown {
                println!("{}", crate::format::render(f, &row(v)));
            }
            return Ok(0);
        }
        Some(f) if f.trim() != "table" => {
            let t = f.trim_start_matches("table").trim_start();
            let names = json!({
                "Name": "VOLUME NAME", "Driver": "DRIVER", "Mountpoint": "MOUNTPOINT",
                "Labels": "LABELS", "Scope": "SCOPE", "CreatedAt": "CREATED AT",
            });
            println!("{}", crate::format::render(t, &names));
            for v in &shown {
                println!("{}", crate::format::render(t, &row(v)));
            }
            return Ok(0);
        }
        _ => {}
    }
    // Docker's tabwriter: cells at least 10 wide, 3 spaces of padding.
    let width = (shown
        .iter()
        .map(|v| v.driver.len())
        .max()
        .unwrap_or(0)
        .max("DRIVER".len())
        + 3)
    .max(10);
    println!("{:<width$}VOLUME NAME", "DRIVER");
    for v in &shown {
        println!("{:<width$}{}", v.driver, v.name);
    }
    Ok(0)
}

/// `-v ./dir:/path` and `-v ../dir:/path`: a relative host path made absolute against the
/// current directory, as the Docker CLI does (since 23.0); other specs are returned as given.
pub fn absolute_bind_source(spec: &str) -> String {
    let (src, rest) = spec.split_once(':').unwrap_or((spec, ""));
    let relative = src == "." || src == ".." || src.starts_with("./") || src.starts_with("../");
    if !relative || rest.is_empty() {
        return spec.to_owned();
    }
    let Ok(cwd) = std::env::current_dir() else {
        return spec.to_owned();
    };
    let mut abs = std::path::PathBuf::from("/");
    for c in cwd.join(src).components() {
        match c {
            std::path::Component::Normal(n) => abs.push(n),
            std::path::Component::ParentDir => {
                abs.pop();
            }
            _ => {}
        }
    }
    format!("{}:{rest}", abs.display())
}

#[cfg(test)]
mod tests {
    use super::absolute_bind_source;

    #[test]
    fn relative_bind_sources_become_absolute() {
        let cwd = std::env::current_dir().unwrap();
        let parent = cwd.parent().unwrap_or(&cwd).display().to_string();
        assert_eq!(
            absolute_bind_source("./d:/x:ro"),
            format!("{}/d:/x:ro", cwd.display())
        );
        assert_eq!(absolute_bind_source("..:/x"), format!("{parent}:/x"));
        assert_eq!(absolute_bind_source("name:/x"), "name:/x");
        assert_eq!(absolute_bind_source("/abs:/x"), "/abs:/x");
        assert_eq!(absolute_bind_source("./only"), "./only");
    }
}

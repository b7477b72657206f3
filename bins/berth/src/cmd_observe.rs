//! `berth stats` and `berth events`: Docker's output from the engine's samples and event log.

use std::collections::HashMap;
use std::io::{IsTerminal, Write};
use std::time::Duration;

use berth_engine::events::{Event, Filter};
use berth_engine::stats::{Sample, Usage};
use berth_engine::{ContainerRecord, Engine, Status};
use serde_json::{json, Value};

type Res = Result<u8, Box<dyn std::error::Error>>;

/// How often `stats` samples (Docker's collector interval).
const INTERVAL: Duration = Duration::from_secs(1);

#[derive(clap::Args)]
pub struct StatsArgs {
    /// Show all containers (default: only running ones).
    #[arg(short, long)]
    all: bool,
    /// Print one result and exit instead of redrawing every second.
    #[arg(long)]
    no_stream: bool,
    /// Do not truncate output.
    #[arg(long)]
    no_trunc: bool,
    /// `table` (default), `json`, `table TEMPLATE` or a template: {{.Container}} {{.ID}}
    /// {{.Name}} {{.CPUPerc}} {{.MemUsage}} {{.MemPerc}} {{.NetIO}} {{.BlockIO}} {{.PIDs}}.
    #[arg(long)]
    format: Option<String>,
    /// Containers (default: every running one, or every one with -a).
    containers: Vec<String>,
}

#[derive(clap::Args)]
pub struct EventsArgs {
    /// Show events since a time (RFC 3339, Unix seconds, or relative: 10m, 2h).
    #[arg(long)]
    since: Option<String>,
    /// Stop at a time (same forms); without it, events are followed until interrupted.
    #[arg(long)]
    until: Option<String>,
    /// type=container|image, container=NAME|ID, event=ACTION, image=NAME, label=KEY[=VALUE]
    /// (same key: either; different keys: all).
    #[arg(short, long)]
    filter: Vec<String>,
    /// `json` or a template ({{.Type}} {{.Action}} {{.Actor.ID}} {{.Actor.Attributes.name}}
    /// {{.Time}} {{.TimeNano}} {{json .}}).
    #[arg(long)]
    format: Option<String>,
}

/// Docker's `units.BytesSize`: binary units, 4 significant digits.
pub fn bytes_size(n: u64) -> String {
    crate::format::custom_size(
        n as f64,
        1024.0,
        &["B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"],
        4,
    )
}

/// One row of `stats`, keyed by Docker's template field names.
fn stats_row(label: &str, rec: &ContainerRecord, u: &Usage, no_trunc: bool) -> Value {
    let id = if no_trunc {
        rec.id.clone()
    } else {
        rec.short_id().to_owned()
    };
    json!({
        "Container": if label.is_empty() { id.clone() } else { label.to_owned() },
        "ID": id,
        "Name": rec.name,
        "CPUPerc": format!("{:.2}%", u.cpu_percent),
        "MemUsage": format!("{} / {}", bytes_size(u.memory_usage), bytes_size(u.memory_limit)),
        "MemPerc": format!("{:.2}%", u.memory_percent),
        "NetIO": format!("{} / {}", crate::format::human(u.net_rx), crate::format::human(u.net_tx)),
        "BlockIO": format!("{} / {}", crate::format::human(u.block_read), crate::format::human(u.block_write)),
        "PIDs": u.pids.to_string(),
    })
}

const STATS_HEADER: &[(&str, &str)] = &[
    ("ID", "CONTAINER ID"),
    ("Name", "NAME"),
    ("CPUPerc", "CPU %"),
    ("MemUsage", "MEM USAGE / LIMIT"),
    ("MemPerc", "MEM %"),
    ("NetIO", "NET I/O"),
    ("BlockIO", "BLOCK I/O"),
    ("PIDs", "PIDS"),
];

fn render_stats(rows: &[Value], format: Option<&str>) -> String {
    let mut out = String::new();
    match format.map(str::trim) {
        Some("json") => {
            for r in rows {
                out.push_str(&format!("{r}\n"));
            }
        }
        Some(f) if !f.starts_with("table") => {
            for r in rows {
                out.push_str(&crate::format::render(f, r));
                out.push('\n');
            }
        }
        Some(f) if f != "table" => {
            let t = f.trim_start_matches("table").trim_start();
            let mut names = json!({"Container": "CONTAINER"});
            for (k, h) in STATS_HEADER {
                names[*k] = json!(h);
            }
            out.push_str(&crate::format::render(t, &names));
            out.push('\n');
            for r in rows {
                out.push_str(&crate::format::render(t, r));
                out.push('\n');
            }
        }
        _ => {
            let table: Vec<Vec<String>> = rows
                .iter()
                .map(|r| {
                    STATS_HEADER
                        .iter()
                        .map(|(k, _)| r[k].as_str().unwrap_or("").to_owned())
                        .collect()
                })
                .collect();
            let header: Vec<&str> = STATS_HEADER.iter().map(|(_, h)| *h).collect();
            out.push_str(&crate::cmd_run::table_text(&header, &table));
        }
    }
    out
}

/// `berth stats`.
pub fn stats(e: &Engine, a: StatsArgs) -> Res {
    if let Some(f) = &a.format {
        if f.trim().is_empty() {
            return Err("--format must not be empty".into());
        }
    }
    // Named containers must all exist (checked before the first sample, as Docker does).
    let named: Vec<(String, String)> = a
        .containers
        .iter()
        .map(|c| e.find(c).map(|r| (c.clone(), r.id)))
        .collect::<Result<_, _>>()?;
    let targets =
        |e: &Engine| -> Result<Vec<(String, ContainerRecord)>, Box<dyn std::error::Error>> {
            if named.is_empty() {
                Ok(e.list()?
                    .into_iter()
                    .filter(|r| a.all || r.state.status == Status::Running)
                    .map(|r| (String::new(), r))
                    .collect())
            } else {
                // A named container removed meanwhile drops out of the table.
                Ok(named
                    .iter()
                    .filter_map(|(label, id)| {
                        e.records
                            .load(id)
                            .ok()
                            .map(|r| (label.clone(), e.reconcile(r)))
                    })
                    .collect())
            }
        };
    let mut prev: HashMap<String, Sample> = HashMap::new();
    for (_, r) in targets(e)? {
        prev.insert(r.id.clone(), e.sample(&r));
    }
    let mut stdout = std::io::stdout().lock();
    loop {
        std::thread::sleep(INTERVAL);
        let mut rows = Vec::new();
        let mut next = HashMap::new();
        for (label, r) in targets(e)? {
            let cur = e.sample(&r);
            // A container seen for the first time has no CPU delta yet: 0 %, as Docker.
            let before = prev.get(&r.id).unwrap_or(&cur);
            rows.push(stats_row(
                &label,
                &r,
                &Usage::between(before, &cur),
                a.no_trunc,
            ));
            next.insert(r.id.clone(), cur);
        }
        prev = next;
        let mut frame = String::new();
        if !a.no_stream {
            // Docker clears the screen and homes the cursor before each frame.
            frame.push_str("\x1b[2J\x1b[H");
        }
        frame.push_str(&render_stats(&rows, a.format.as_deref()));
        if stdout
            .write_all(frame.as_bytes())
            .and_then(|()| stdout.flush())
            .is_err()
        {
            // The reader went away (a closed pipe): nothing more to show.
            return Ok(0);
        }
        if a.no_stream {
            return Ok(0);
        }
    }
}

/// The fields Docker's templates see (Go's names) as well as the JSON ones.
fn event_value(ev: &Event) -> Value {
    let mut v = serde_json::to_value(ev).expect("an event serialises");
    v["Status"] = json!(ev.status);
    v["ID"] = json!(ev.id);
    v["From"] = json!(ev.from);
    v["Scope"] = json!(ev.scope);
    v["Time"] = json!(ev.time);
    v["TimeNano"] = json!(ev.time_nano);
    v
}

/// `berth events`.
pub fn events(e: &Engine, a: EventsArgs) -> Res {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    let time = |flag: &str, v: &Option<String>| -> Result<Option<String>, String> {
        v.as_ref()
            .map(|s| {
                // Docker's `SECONDS.NANOSECONDS` form (what `{{.TimeNano}}` divides into).
                if let Some((secs, frac)) = s.trim().split_once('.') {
                    if let (Ok(secs), true) = (
                        secs.parse::<i64>(),
                        !frac.is_empty()
                            && frac.len() <= 9
                            && frac.bytes().all(|b| b.is_ascii_digit()),
                    ) {
                        let nanos: u32 = format!("{frac:0<9}").parse().unwrap_or(0);
                        return Ok(berth_runtime::state::format_rfc3339(secs, nanos));
                    }
                }
                let t = berth_engine::logs::parse_time(s, now.as_secs() as i64)
                    .ok_or_else(|| format!("invalid {flag} value {s:?}"))?;
                // A duration ago keeps now's nanoseconds: `--until 0s` is this very moment,
                // not the start of this second.
                if s.trim().ends_with(['s', 'm', 'h']) {
                    let secs = t.get(..19).unwrap_or_default();
                    return Ok(format!("{secs}.{:09}Z", now.subsec_nanos()));
                }
                Ok(t)
            })
            .transpose()
    };
    let since = time("--since", &a.since)?;
    let until = time("--until", &a.until)?;
    if let (Some(s), Some(u)) = (&since, &until) {
        if s > u {
            return Err(format!("--since ({s}) is after --until ({u})").into());
        }
    }
    let filter = Filter::parse(&a.filter)?;
    let format = a.format.clone();
    if format.as_deref().is_some_and(|f| f.trim().is_empty()) {
        return Err("--format must not be empty".into());
    }
    let mut stdout = std::io::stdout().lock();
    let tty = std::io::stdout().is_terminal();
    e.events().stream(
        &filter,
        since.as_deref(),
        until.as_deref(),
        true,
        &mut |ev| {
            let line = match format.as_deref().map(str::trim) {
                None => ev.line(),
                Some("json") | Some("{{json .}}") => serde_json::to_string(ev)?,
                Some(f) => crate::format::render(f, &event_value(ev)),
            };
            writeln!(stdout, "{line}")?;
            // Followers read line by line; a terminal is line-buffered anyway.
            if !tty {
                stdout.flush()?;
            }
            Ok(())
        },
    )?;
    let _ = stdout.flush();
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn docker_units() {
        assert_eq!(bytes_size(0), "0B");
        assert_eq!(bytes_size(1024), "1KiB");
        assert_eq!(bytes_size(1_589_248), "1.516MiB");
        assert_eq!(bytes_size(8_232_407_040), "7.667GiB");
        assert_eq!(crate::format::human(0), "0B");
        assert_eq!(crate::format::human(999), "999B");
        assert_eq!(crate::format::human(1234), "1.23kB");
        assert_eq!(crate::format::human(45_600_000), "45.6MB");
        assert_eq!(crate::format::human(120_000), "120kB");
    }
}

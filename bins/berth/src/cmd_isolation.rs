//! `berth inspect --isolation`: the isolation report of running containers, as text (default),
//! `--format json`, or a template over the JSON form (`{{.Seccomp.Mode}}` style keys are the
//! JSON's snake_case keys: `{{.seccomp.mode}}`).

use std::fmt::Write as _;

use berth_engine::exec::chain;
use berth_engine::isolation::{CapSet, IdMap, IsolationReport};
use berth_engine::Engine;

/// Prints the report of each container; a failure is reported and the rest continue (exit 1).
pub fn inspect(
    e: &Engine,
    containers: &[String],
    format: Option<&str>,
) -> Result<u8, Box<dyn std::error::Error>> {
    let mut failed = false;
    let mut reports = Vec::new();
    for c in containers {
        match e.isolation(c) {
            Ok(r) => reports.push(r),
            Err(err) => {
                eprintln!("berth: {}", chain(&err));
                failed = true;
            }
        }
    }
    match format {
        Some("json") => println!("{}", serde_json::to_string_pretty(&reports)?),
        Some(t) => {
            for r in &reports {
                println!("{}", crate::format::render(t, &serde_json::to_value(r)?));
            }
        }
        None => {
            for (i, r) in reports.iter().enumerate() {
                if i > 0 {
                    println!();
                }
                print!("{}", text(r));
            }
        }
    }
    Ok(if failed { 1 } else { 0 })
}

/// Binary units, as the cgroup files count.
fn bytes(n: u64) -> String {
    let units = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut i = 0;
    while v >= 1024.0 && i < units.len() - 1 {
        v /= 1024.0;
        i += 1;
    }
    if i == 0 {
        format!("{n}B")
    } else {
        format!("{v:.1}{}", units[i])
    }
}

fn limit(v: Option<u64>) -> String {
    v.map(bytes).unwrap_or_else(|| "unlimited".into())
}

fn opt<T: ToString>(v: &Option<T>) -> String {
    v.as_ref()
        .map(|x| x.to_string())
        .unwrap_or_else(|| "-".into())
}

fn caps(s: &CapSet) -> String {
    if s.names.is_empty() {
        format!("(none) [{}]", s.hex)
    } else {
        let names: Vec<&str> = s
            .names
            .iter()
            .map(|n| n.trim_start_matches("CAP_"))
            .collect();
        format!("{} [{}]", names.join(" "), s.hex)
    }
}

fn maps(m: &[IdMap]) -> String {
    if m.is_empty() {
        return "(none)".into();
    }
    m.iter()
        .map(|x| format!("{}->{} ({})", x.container, x.host, x.size))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Aligns rows of cells into columns three spaces apart, indented by two.
fn table(out: &mut String, rows: &[Vec<String>]) {
    let n = rows.iter().map(Vec::len).max().unwrap_or(0);
    let mut w = vec![0; n];
    for r in rows {
        for (i, c) in r.iter().enumerate() {
            w[i] = w[i].max(c.chars().count());
        }
    }
    for r in rows {
        let mut line = String::from("  ");
        for (i, c) in r.iter().enumerate() {
            line.push_str(c);
            if i + 1 < r.len() {
                line.push_str(&" ".repeat(w[i] + 3 - c.chars().count()));
            }
        }
        let _ = writeln!(out, "{}", line.trim_end());
    }
}

/// The text form.
pub fn text(r: &IsolationReport) -> String {
    let mut o = String::new();
    let _ = writeln!(o, "Container:  {} ({})", r.name, r.id);
    let _ = writeln!(o, "Init pid:   {}", r.pid);

    let _ = writeln!(o, "Namespaces:");
    let mut rows = vec![vec![
        "TYPE".to_owned(),
        "INODE".to_owned(),
        "HOST".to_owned(),
        "SHARED WITH".to_owned(),
    ]];
    for ns in &r.namespaces {
        rows.push(vec![
            ns.kind.clone(),
            ns.inode.to_string(),
            if ns.host { "yes" } else { "no" }.to_owned(),
            if ns.shared_with.is_empty() {
                "-".to_owned()
            } else {
                ns.shared_with.join(", ")
            },
        ]);
    }
    table(&mut o, &rows);

    let c = &r.cgroup;
    let _ = writeln!(o, "Cgroup:     {}", c.path);
    let mut rows = Vec::new();
    let m = &c.memory;
    rows.push(vec![
        "memory".to_owned(),
        format!(
            "limit {}, reservation {}, swap limit {}",
            limit(m.limit),
            limit(m.reservation),
            limit(m.swap_limit)
        ),
        format!(
            "usage {}, peak {}",
            m.usage.map(bytes).unwrap_or_else(|| "-".into()),
            m.peak.map(bytes).unwrap_or_else(|| "-".into())
        ),
    ]);
    let cpu = &c.cpu;
    let quota = match (cpu.cpus, cpu.quota_us, cpu.period_us) {
        (Some(n), Some(q), Some(p)) => format!("{n:.2} CPUs ({q}us per {p}us)"),
        _ => "unlimited".to_owned(),
    };
    let weight = match (cpu.shares, cpu.weight) {
        (Some(s), _) => format!("shares {s}"),
        (None, Some(w)) => format!("weight {w}"),
        _ => "shares -".to_owned(),
    };
    rows.push(vec![
        "cpu".to_owned(),
        format!("{quota}, {weight}, cpuset {}", opt(&cpu.cpuset_cpus)),
        format!(
            "usage {}",
            cpu.usage_ns
                .map(|n| format!("{:.3}s", n as f64 / 1e9))
                .unwrap_or_else(|| "-".into())
        ),
    ]);
    rows.push(vec![
        "pids".to_owned(),
        format!(
            "limit {}",
            c.pids
                .limit
                .map(|v| v.to_string())
                .unwrap_or_else(|| "unlimited".into())
        ),
        format!("current {}", opt(&c.pids.current)),
    ]);
    rows.push(vec![
        "io".to_owned(),
        format!("weight {}", opt(&c.io.weight)),
        format!(
            "read {}, written {}",
            c.io.read_bytes.map(bytes).unwrap_or_else(|| "-".into()),
            c.io.write_bytes.map(bytes).unwrap_or_else(|| "-".into())
        ),
    ]);
    table(&mut o, &rows);
    if let Some(d) = &c.devices {
        let _ = writeln!(
            o,
            "  devices  {}",
            if d.is_empty() {
                "(none allowed)".to_owned()
            } else {
                d.join(", ")
            }
        );
    }

    let s = &r.seccomp;
    let _ = write!(
        o,
        "Seccomp:    {} ({} filter{})",
        s.mode,
        s.filters,
        if s.filters == 1 { "" } else { "s" }
    );
    match &s.default_action {
        Some(d) => {
            let by: Vec<String> = s
                .by_action
                .iter()
                .map(|(a, n)| format!("{a} {n}"))
                .collect();
            let _ = writeln!(
                o,
                "; profile: default {d}, {} syscalls filtered ({})",
                s.filtered_syscalls,
                by.join(", ")
            );
        }
        None => {
            let _ = writeln!(o, "; no profile");
        }
    }
    let _ = writeln!(o, "Capabilities:");
    let k = &r.capabilities;
    table(
        &mut o,
        &[
            vec!["effective".into(), caps(&k.effective)],
            vec!["permitted".into(), caps(&k.permitted)],
            vec!["bounding".into(), caps(&k.bounding)],
            vec!["inheritable".into(), caps(&k.inheritable)],
            vec!["ambient".into(), caps(&k.ambient)],
        ],
    );
    let _ = writeln!(o, "NoNewPrivs: {}", r.no_new_privs);
    let _ = writeln!(
        o,
        "LSM label:  {}",
        r.lsm_label.as_deref().unwrap_or("(no LSM active)")
    );
    if let Some(p) = &r.apparmor_profile {
        let _ = writeln!(o, "AppArmor:   {p} (requested)");
    }
    if let Some(l) = &r.selinux_label {
        let _ = writeln!(o, "SELinux:    {l} (requested)");
    }
    let _ = writeln!(o, "Uid map:    {}", maps(&r.uid_map));
    let _ = writeln!(o, "Gid map:    {}", maps(&r.gid_map));

    let f = &r.rootfs;
    let _ = writeln!(
        o,
        "Rootfs:     {} ({}), image {} ({})",
        f.fstype,
        if f.read_only { "ro" } else { "rw" },
        f.image,
        f.image_id
    );
    let mut rows = Vec::new();
    for (i, l) in f.layers.iter().enumerate() {
        rows.push(vec![
            format!("layer {}", f.layers.len() - i),
            l.diff_id.clone().unwrap_or_else(|| "-".into()),
            l.dir.display().to_string(),
        ]);
    }
    if let Some(u) = &f.upperdir {
        rows.push(vec!["upper".into(), String::new(), u.display().to_string()]);
    }
    table(&mut o, &rows);

    let _ = writeln!(o, "Mounts:");
    let mut rows = vec![vec![
        "DESTINATION".to_owned(),
        "TYPE".to_owned(),
        "OPTIONS".to_owned(),
        "SOURCE".to_owned(),
    ]];
    for m in &r.mounts {
        let src = if m.root == "/" {
            m.source.clone()
        } else {
            format!("{}[{}]", m.source, m.root)
        };
        rows.push(vec![
            m.destination.clone(),
            m.fstype.clone(),
            m.options.clone(),
            src,
        ]);
    }
    table(&mut o, &rows);
    o
}

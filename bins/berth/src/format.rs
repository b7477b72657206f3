//! Output of the listing commands: tables, `--format json` and Go-template-like
//! `{{.Field}}` / `{{json .Field}}` templates evaluated over each row's JSON form.

use std::collections::BTreeSet;
use std::error::Error;

use berth_image::store::{ImageRecord, Store};
use berth_image::{Digest, Reference};
use serde_json::{json, Value};

use crate::{HistoryArgs, ImagesArgs};

type Res = Result<(), Box<dyn Error>>;

/// Bytes as Docker prints them: SI units, three significant digits (`units.HumanSize`).
pub fn human(n: u64) -> String {
    custom_size(
        n as f64,
        1000.0,
        &["B", "kB", "MB", "GB", "TB", "PB", "EB"],
        3,
    )
}

/// `v` in the largest unit of `units` (each `base` times the previous) it reaches, with
/// `digits` significant digits (Docker's `units.CustomSize`).
pub fn custom_size(mut v: f64, base: f64, units: &[&str], digits: usize) -> String {
    let mut i = 0;
    while v >= base && i < units.len() - 1 {
        v /= base;
        i += 1;
    }
    format!("{}{}", sig(v, digits), units[i])
}

/// Go's `%.Ng`: N significant digits, without trailing zeros.
fn sig(v: f64, digits: usize) -> String {
    if v == 0.0 {
        return "0".into();
    }
    let magnitude = v.abs().log10().floor() as i32;
    let decimals = (digits as i32 - 1 - magnitude).max(0) as usize;
    let s = format!("{v:.decimals$}");
    if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.').to_owned()
    } else {
        s
    }
}

/// Seconds since the epoch of an RFC 3339 timestamp (`2024-01-02T03:04:05.123Z`), UTC only
/// or with an offset.
fn parse_rfc3339(s: &str) -> Option<i64> {
    let b = s.as_bytes();
    if b.len() < 19 {
        return None;
    }
    let num = |r: std::ops::Range<usize>| s.get(r)?.parse::<i64>().ok();
    let (y, mo, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (h, mi, se) = (num(11..13)?, num(14..16)?, num(17..19)?);
    // days_from_civil (Howard Hinnant's algorithm)
    let y2 = if mo <= 2 { y - 1 } else { y };
    let era = y2.div_euclid(400);
    let yoe = y2 - era * 400;
    let doy = (153 * (mo + if mo > 2 { -3 } else { 9 }) + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146097 + doe - 719468;
    let mut t = days * 86400 + h * 3600 + mi * 60 + se;
    let rest = &s[19..];
    let rest = rest.trim_start_matches(|c: char| c == '.' || c.is_ascii_digit());
    if let Some(off) = rest.strip_prefix('+').or(rest.strip_prefix('-')) {
        let sign = if rest.starts_with('+') { 1 } else { -1 };
        let oh: i64 = off.get(0..2)?.parse().ok()?;
        let om: i64 = off.get(3..5)?.parse().ok()?;
        t -= sign * (oh * 3600 + om * 60);
    }
    Some(t)
}

fn since(created: Option<&str>) -> String {
    let Some(t) = created.and_then(parse_rfc3339) else {
        return "N/A".into();
    };
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0);
    let s = (now - t).max(0);
    let (n, unit) = match s {
        0..60 => return "Less than a minute ago".into(),
        60..3600 => (s / 60, "minute"),
        3600..86400 => (s / 3600, "hour"),
        86400..1_209_600 => (s / 86400, "day"),
        1_209_600..5_259_600 => (s / 604_800, "week"),
        5_259_600..63_115_200 => (s / 2_629_800, "month"),
        _ => (s / 31_557_600, "year"),
    };
    format!("{n} {unit}{} ago", if n == 1 { "" } else { "s" })
}

fn image_size(store: &Store, rec: &ImageRecord) -> u64 {
    let mut seen = BTreeSet::new();
    rec.layers
        .iter()
        .filter(|l| seen.insert(l.chain_id.clone()))
        .map(|l| store.layer_meta(&l.chain_id).map(|m| m.size).unwrap_or(0))
        .sum()
}

/// Evaluates a template over `v`: `{{.A.B}}`, `{{json .A}}`, `{{.}}`, `\t` and `\n` escapes.
pub fn render(template: &str, v: &Value) -> String {
    let t = template.replace("\\t", "\t").replace("\\n", "\n");
    let mut out = String::new();
    let mut rest = t.as_str();
    while let Some(start) = rest.find("{{") {
        out.push_str(&rest[..start]);
        let Some(end) = rest[start..].find("}}") else {
            out.push_str(&rest[start..]);
            return out;
        };
        let expr = rest[start + 2..start + end].trim();
        let (as_json, path) = match expr.strip_prefix("json ") {
            Some(p) => (true, p.trim()),
            None => (false, expr),
        };
        let mut cur = v;
        let null = Value::Null;
        for seg in path
            .trim_start_matches('.')
            .split('.')
            .filter(|s| !s.is_empty())
        {
            cur = cur.get(seg).unwrap_or(&null);
        }
        match (as_json, cur) {
            (false, Value::String(s)) => out.push_str(s),
            (false, Value::Null) => out.push_str("<no value>"),
            (false, Value::Array(a)) => {
                let parts: Vec<String> = a
                    .iter()
                    .map(|x| x.as_str().map(str::to_string).unwrap_or(x.to_string()))
                    .collect();
                out.push_str(&format!("[{}]", parts.join(" ")));
            }
            (_, other) => out.push_str(&other.to_string()),
        }
        rest = &rest[start + end + 2..];
    }
    out.push_str(rest);
    out
}

pub(crate) fn print_rows(rows: &[Value], format: &str) {
    if format == "json" {
        for r in rows {
            println!("{r}");
        }
        return;
    }
    let (table, tpl) = match format.strip_prefix("table") {
        Some(t) => (true, t.trim_start()),
        None => (false, format),
    };
    if table {
        // Header: the field names of the template, as Docker prints them.
        let names: Vec<&str> = tpl
            .split("{{")
            .skip(1)
            .filter_map(|s| s.split("}}").next())
            .map(|s| s.trim().trim_start_matches('.'))
            .collect();
        println!("{}", names.join("\t").to_uppercase());
    }
    for r in rows {
        println!("{}", render(tpl, r));
    }
}

fn trunc(d: &Digest, full: bool) -> String {
    if full {
        d.to_string()
    } else {
        d.short().to_string()
    }
}

/// `berth images`.
pub fn images(store: &Store, a: &ImagesArgs) -> Res {
    let tags = store.tags()?;
    let mut rows = Vec::new();
    let mut records = store.records()?;
    records.sort_by(|x, y| y.created.cmp(&x.created));
    for rec in &records {
        let size = image_size(store, rec);
        let mut names: Vec<(String, String)> = tags
            .iter()
            .filter(|(_, id)| **id == rec.id)
            .filter_map(|(n, _)| n.parse::<Reference>().ok())
            .map(|r| (r.familiar_name(), r.tag.clone().unwrap_or_default()))
            .collect();
        if names.is_empty() {
            names.push(("<none>".into(), "<none>".into()));
        }
        for (repo, tag) in names {
            let digest = rec
                .repo_digests
                .iter()
                .filter_map(|rd| rd.split_once('@'))
                .find(|(n, _)| {
                    n.parse::<Reference>()
                        .is_ok_and(|r| r.familiar_name() == repo)
                })
                .map(|(_, d)| d.to_string())
                .unwrap_or_else(|| "<none>".into());
            rows.push(json!({
                "Repository": repo,
                "Tag": tag,
                "Digest": digest,
                "ID": trunc(&rec.id, a.no_trunc),
                "CreatedAt": rec.created.clone().unwrap_or_default(),
                "CreatedSince": since(rec.created.as_deref()),
                "Size": human(size),
                "VirtualSize": human(size),
                "Containers": store.snapshot_users(&rec.id)?.len().to_string(),
            }));
        }
    }
    if a.quiet {
        let mut seen = BTreeSet::new();
        for r in &rows {
            let id = r["ID"].as_str().unwrap_or_default().to_string();
            if seen.insert(id.clone()) {
                println!("{id}");
            }
        }
        return Ok(());
    }
    if let Some(f) = &a.format {
        print_rows(&rows, f);
        return Ok(());
    }
    let mut table = vec![];
    for r in &rows {
        let mut line = vec![r["Repository"].clone(), r["Tag"].clone()];
        if a.digests {
            line.push(r["Digest"].clone());
        }
        line.extend([
            r["ID"].clone(),
            r["CreatedSince"].clone(),
            r["Size"].clone(),
        ]);
        table.push(
            line.iter()
                .map(|v| v.as_str().unwrap_or("").to_string())
                .collect(),
        );
    }
    let mut header = vec!["REPOSITORY", "TAG"];
    if a.digests {
        header.push("DIGEST");
    }
    header.extend(["IMAGE ID", "CREATED", "SIZE"]);
    print_table(&header, &table);
    Ok(())
}

fn print_table(header: &[&str], rows: &[Vec<String>]) {
    let mut w: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for r in rows {
        for (i, c) in r.iter().enumerate() {
            w[i] = w[i].max(c.chars().count());
        }
    }
    let line = |cells: Vec<String>| {
        let mut s = String::new();
        for (i, c) in cells.iter().enumerate() {
            if i + 1 == cells.len() {
                s.push_str(c);
            } else {
                s.push_str(&format!("{c:<width$}   ", width = w[i]));
            }
        }
        println!("{}", s.trim_end());
    };
    line(header.iter().map(|s| s.to_string()).collect());
    for r in rows {
        line(r.clone());
    }
}

/// The raw config JSON: Docker-only fields (`container_config`, `docker_version`) survive.
fn config_of(store: &Store, rec: &ImageRecord) -> Result<Value, Box<dyn Error>> {
    Ok(serde_json::from_slice(&store.read_blob(&rec.id)?)?)
}

/// `berth image inspect`: Docker's shape, as far as an image store knows it.
pub fn inspect(store: &Store, images: &[String], format: Option<&str>) -> Res {
    let mut out = Vec::new();
    for img in images {
        let rec = store.resolve(img)?;
        let cfg = config_of(store, &rec)?;
        let tags: Vec<String> = store
            .tags_of(&rec.id)?
            .iter()
            .filter_map(|t| t.parse::<Reference>().ok())
            .map(|r| format!("{}:{}", r.familiar_name(), r.tag.unwrap_or_default()))
            .collect();
        out.push(json!({
            "Id": rec.id.to_string(),
            "RepoTags": tags,
            "RepoDigests": rec.repo_digests,
            "Created": rec.created,
            "Author": cfg.get("author"),
            "Architecture": rec.platform.architecture,
            "Os": rec.platform.os,
            "Variant": rec.platform.variant,
            "Size": image_size(store, &rec),
            "Config": cfg.get("config").cloned().unwrap_or(Value::Null),
            "RootFS": {
                "Type": "layers",
                "Layers": rec.layers.iter().map(|l| l.diff_id.to_string()).collect::<Vec<_>>(),
            },
            "Manifest": {
                "Digest": rec.manifest_digest.to_string(),
                "MediaType": rec.manifest_media_type,
                "Layers": rec.layers,
            },
        }));
    }
    match format {
        Some(f) => {
            for v in &out {
                println!("{}", render(f, v));
            }
        }
        None => println!("{}", serde_json::to_string_pretty(&out)?),
    }
    Ok(())
}

/// `berth history`: the config's history, newest first, with the size of each layer.
pub fn history(store: &Store, a: &HistoryArgs) -> Res {
    let rec = store.resolve(&a.image)?;
    let cfg = config_of(store, &rec)?;
    let hist = cfg
        .get("history")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let mut layer = rec.layers.iter();
    let mut rows = Vec::new();
    for (i, h) in hist.iter().enumerate() {
        let empty = h
            .get("empty_layer")
            .and_then(Value::as_bool)
            .unwrap_or(false);
        let size = if empty {
            0
        } else {
            layer
                .next()
                .and_then(|l| store.layer_meta(&l.chain_id).ok())
                .map(|m| m.size)
                .unwrap_or(0)
        };
        let created = h.get("created").and_then(Value::as_str);
        let by = h.get("created_by").and_then(Value::as_str).unwrap_or("");
        let by = if a.no_trunc || by.chars().count() <= 45 {
            by.to_string()
        } else {
            by.chars().take(44).collect::<String>() + "…"
        };
        let id = if i + 1 == hist.len() {
            trunc(&rec.id, a.no_trunc)
        } else {
            "<missing>".into()
        };
        rows.push(json!({
            "ID": id,
            "CreatedAt": created.unwrap_or(""),
            "CreatedSince": since(created),
            "CreatedBy": by,
            "Size": human(size),
            "Comment": h.get("comment").and_then(Value::as_str).unwrap_or(""),
        }));
    }
    rows.reverse();
    if a.quiet {
        for r in &rows {
            println!("{}", r["ID"].as_str().unwrap_or_default());
        }
        return Ok(());
    }
    if let Some(f) = &a.format {
        print_rows(&rows, f);
        return Ok(());
    }
    let table: Vec<Vec<String>> = rows
        .iter()
        .map(|r| {
            ["ID", "CreatedSince", "CreatedBy", "Size", "Comment"]
                .iter()
                .map(|k| r[*k].as_str().unwrap_or("").to_string())
                .collect()
        })
        .collect();
    print_table(
        &["IMAGE", "CREATED", "CREATED BY", "SIZE", "COMMENT"],
        &table,
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn templates() {
        let v = json!({"Repository": "busybox", "Tag": "1", "Config": {"Env": ["A=1", "B=2"]}});
        assert_eq!(render("{{.Repository}}:{{.Tag}}", &v), "busybox:1");
        assert_eq!(
            render("{{ .Repository }}\\t{{.Missing}}", &v),
            "busybox\t<no value>"
        );
        assert_eq!(render("{{json .Config.Env}}", &v), r#"["A=1","B=2"]"#);
        assert_eq!(render("{{.Config.Env}}", &v), "[A=1 B=2]");
    }

    #[test]
    fn sizes_and_times() {
        assert_eq!(human(999), "999B");
        assert_eq!(human(4_260_000), "4.26MB");
        assert_eq!(human(1_000_000), "1MB");
        // Three significant digits, as `stats` prints them too.
        assert_eq!(human(123_456_789), "123MB");
        assert_eq!(human(0), "0B");
        assert_eq!(human(1234), "1.23kB");
        assert_eq!(parse_rfc3339("1970-01-02T00:00:00Z"), Some(86400));
        assert_eq!(parse_rfc3339("2000-03-01T00:00:00.5Z"), Some(951_868_800));
        assert_eq!(
            parse_rfc3339("2000-03-01T01:00:00+01:00"),
            Some(951_868_800)
        );
        assert_eq!(parse_rfc3339("garbage"), None);
    }
}

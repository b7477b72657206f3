//! `berth events`: what happened to containers and images, in Docker's event shape.
//!
//! There is no daemon to broadcast events, so every `berth` process that changes something
//! appends one JSON line to `<root>/events.log`. The log is bounded: when an append would take
//! it past [`EventLog::max_size`] bytes it is renamed to `events.log.1` (replacing the older
//! one) and a new file starts, so at most twice the limit is kept.
//!
//! Concurrency: appends and the rotation happen under an exclusive `flock(2)` on
//! `<root>/events.lock`, and each line is written with one `write(2)` on an `O_APPEND` file,
//! so lines never interleave. A reader that follows keeps the file it reads open: when the
//! path names a new file (a rotation), it first reads the old file to its end (nothing is
//! written to it after the rename, which happened under the lock), then goes on with the new one.

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::record::ContainerRecord;
use crate::Engine;

/// The default bound of the event log (per file; one older file is kept).
pub const DEFAULT_MAX_SIZE: u64 = 1024 * 1024;

/// Who an event is about.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Actor {
    #[serde(rename = "ID")]
    pub id: String,
    #[serde(rename = "Attributes", default)]
    pub attributes: BTreeMap<String, String>,
}

/// One event, serialised as Docker's `events --format '{{json .}}'` prints it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    /// Docker's legacy fields, for containers: the action, the id and the image.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub status: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub id: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub from: String,
    /// `container` or `image`.
    #[serde(rename = "Type")]
    pub kind: String,
    #[serde(rename = "Action")]
    pub action: String,
    #[serde(rename = "Actor")]
    pub actor: Actor,
    pub scope: String,
    /// Seconds since the epoch.
    pub time: i64,
    #[serde(rename = "timeNano")]
    pub time_nano: i64,
}

impl Event {
    /// A new event of `kind` about `id`, now.
    pub fn new(kind: &str, action: &str, id: &str, attributes: BTreeMap<String, String>) -> Self {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        let mut e = Event {
            status: String::new(),
            id: String::new(),
            from: String::new(),
            kind: kind.to_owned(),
            action: action.to_owned(),
            actor: Actor {
                id: id.to_owned(),
                attributes,
            },
            scope: "local".into(),
            time: now.as_secs() as i64,
            time_nano: now.as_nanos() as i64,
        };
        if kind == "container" {
            e.status = action.to_owned();
            e.id = id.to_owned();
            e.from = e.actor.attributes.get("image").cloned().unwrap_or_default();
        }
        e
    }

    /// An event about container `rec`: its image, name and labels as attributes (as Docker),
    /// plus `extra`.
    pub fn container(rec: &ContainerRecord, action: &str, extra: &[(&str, String)]) -> Self {
        let mut attrs = BTreeMap::new();
        for l in &rec.labels {
            let (k, v) = l.split_once('=').unwrap_or((l.as_str(), ""));
            attrs.insert(k.to_owned(), v.to_owned());
        }
        attrs.insert("image".into(), rec.image.clone());
        attrs.insert("name".into(), rec.name.clone());
        for (k, v) in extra {
            attrs.insert((*k).to_owned(), v.clone());
        }
        Self::new("container", action, &rec.id, attrs)
    }

    /// The time as RFC 3339 with nanoseconds (compares as text with `--since`/`--until`).
    pub fn rfc3339(&self) -> String {
        berth_runtime::state::format_rfc3339(
            self.time_nano.div_euclid(1_000_000_000),
            self.time_nano.rem_euclid(1_000_000_000) as u32,
        )
    }

    /// Docker's default line: `TIME TYPE ACTION ID (k=v, ...)`.
    pub fn line(&self) -> String {
        let attrs: Vec<String> = self
            .actor
            .attributes
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        let mut s = format!(
            "{} {} {} {}",
            self.rfc3339(),
            self.kind,
            self.action,
            self.actor.id
        );
        if !attrs.is_empty() {
            s.push_str(&format!(" ({})", attrs.join(", ")));
        }
        s
    }
}

/// Why the event log could not be written or read.
#[derive(Debug, thiserror::Error)]
pub enum EventError {
    #[error("{step} {path}")]
    Io {
        step: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error(
        "bad filter {0:?}: expected KEY=VALUE with KEY one of type, container, event, image, label"
    )]
    Filter(String),
    #[error(transparent)]
    Lock(#[from] crate::record::RecordError),
}

fn io_err(step: &'static str, path: &Path) -> impl FnOnce(io::Error) -> EventError {
    let path = path.to_owned();
    move |source| EventError::Io { step, path, source }
}

/// The append-only event log of one Berth root.
#[derive(Debug, Clone)]
pub struct EventLog {
    pub path: PathBuf,
    lock: PathBuf,
    pub max_size: u64,
}

impl EventLog {
    pub fn new(root: &Path) -> Self {
        Self {
            path: root.join("events.log"),
            lock: root.join("events.lock"),
            max_size: DEFAULT_MAX_SIZE,
        }
    }

    fn rotated(&self) -> PathBuf {
        self.path.with_extension("log.1")
    }

    /// Appends `event`, rotating first when the log would grow past its bound.
    pub fn append(&self, event: &Event) -> Result<(), EventError> {
        let mut line = serde_json::to_vec(event).expect("an event serialises");
        line.push(b'\n');
        let _lock = crate::record::lock_file(&self.lock)?;
        let size = std::fs::metadata(&self.path).map(|m| m.len()).unwrap_or(0);
        if size > 0 && size + line.len() as u64 > self.max_size {
            std::fs::rename(&self.path, self.rotated()).map_err(io_err("rotating", &self.path))?;
        }
        let mut f = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)
            .map_err(io_err("opening", &self.path))?;
        f.write_all(&line)
            .map_err(io_err("appending to", &self.path))
    }

    /// Every stored event, oldest first.
    pub fn read_all(&self) -> Result<Vec<Event>, EventError> {
        let mut out = Vec::new();
        for p in [self.rotated(), self.path.clone()] {
            match std::fs::read(&p) {
                Ok(b) => out.extend(parse_lines(&b)),
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(io_err("reading", &p)(e)),
            }
        }
        Ok(out)
    }

    /// Calls `sink` with every event `filter` accepts: the stored ones from `since` on (none
    /// without `since`), then, when `follow`, new ones as they are appended, until `until`
    /// passes or `sink` fails (a closed pipe). Times are RFC 3339 with nanoseconds.
    pub fn stream(
        &self,
        filter: &Filter,
        since: Option<&str>,
        until: Option<&str>,
        follow: bool,
        sink: &mut dyn FnMut(&Event) -> io::Result<()>,
    ) -> Result<(), EventError> {
        let in_range = |e: &Event| {
            let t = e.rfc3339();
            since.is_none_or(|s| t.as_str() >= s) && until.is_none_or(|u| t.as_str() <= u)
        };
        // Open the live file first, so nothing appended between the history and the follow
        // is lost or shown twice.
        let mut cur = open_live(&self.path)?;
        let mut pending = Vec::new();
        if since.is_some() {
            // Unless a rotation just made our live file the old one.
            let cur_ino = cur
                .as_ref()
                .and_then(|f| f.metadata().ok())
                .map(|m| m.ino());
            let old = std::fs::metadata(self.rotated()).ok().map(|m| m.ino());
            if let (Some(_), true) = (old, old != cur_ino) {
                let b = std::fs::read(self.rotated()).unwrap_or_default();
                for e in parse_lines(&b) {
                    if in_range(&e) && filter.accepts(&e) {
                        sink(&e).ok();
                    }
                }
            }
        } else if let Some(f) = cur.as_mut() {
            // Only new events: skip what is there now.
            f.seek(SeekFrom::End(0))
                .map_err(io_err("reading", &self.path))?;
        }
        loop {
            if let Some(f) = cur.as_mut() {
                let mut buf = Vec::new();
                f.read_to_end(&mut buf)
                    .map_err(io_err("reading", &self.path))?;
                pending.extend_from_slice(&buf);
                // Only complete lines; a partial one waits for its end.
                if let Some(end) = pending.iter().rposition(|b| *b == b'\n') {
                    let done: Vec<u8> = pending.drain(..=end).collect();
                    for e in parse_lines(&done) {
                        if until.is_some_and(|u| e.rfc3339().as_str() > u) {
                            return Ok(());
                        }
                        if in_range(&e) && filter.accepts(&e) && sink(&e).is_err() {
                            return Ok(());
                        }
                    }
                }
            }
            if !follow {
                return Ok(());
            }
            if let Some(u) = until {
                if berth_runtime::state::now_rfc3339().as_str() > u {
                    return Ok(());
                }
            }
            // A rotation: the old file is complete (see the module docs); read it to its
            // end on the next pass, then switch.
            let same = match (&cur, std::fs::metadata(&self.path)) {
                (Some(f), Ok(m)) => f.metadata().map(|fm| fm.ino() == m.ino()).unwrap_or(false),
                (None, Ok(_)) => false,
                (_, Err(_)) => true,
            };
            if !same {
                if let Some(f) = cur.as_mut() {
                    let mut buf = Vec::new();
                    f.read_to_end(&mut buf)
                        .map_err(io_err("reading", &self.path))?;
                    pending.extend_from_slice(&buf);
                    for e in parse_lines(&std::mem::take(&mut pending)) {
                        if in_range(&e) && filter.accepts(&e) && sink(&e).is_err() {
                            return Ok(());
                        }
                    }
                }
                cur = open_live(&self.path)?;
                continue;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

fn open_live(path: &Path) -> Result<Option<File>, EventError> {
    match File::open(path) {
        Ok(f) => Ok(Some(f)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(io_err("opening", path)(e)),
    }
}

fn parse_lines(buf: &[u8]) -> Vec<Event> {
    buf.split(|b| *b == b'\n')
        .filter(|l| !l.is_empty())
        .filter_map(|l| serde_json::from_slice(l).ok())
        .collect()
}

/// Docker's `events --filter`: the same key given twice means either value, different keys
/// must all match.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    pairs: Vec<(String, String)>,
}

impl Filter {
    /// Parses `KEY=VALUE` filters.
    pub fn parse(items: &[String]) -> Result<Self, EventError> {
        let mut pairs = Vec::new();
        for f in items {
            let (k, v) = f
                .split_once('=')
                .ok_or_else(|| EventError::Filter(f.clone()))?;
            if !["type", "container", "event", "image", "label"].contains(&k) || v.is_empty() {
                return Err(EventError::Filter(f.clone()));
            }
            pairs.push((k.to_owned(), v.to_owned()));
        }
        Ok(Self { pairs })
    }

    pub fn accepts(&self, e: &Event) -> bool {
        let mut keys: Vec<&str> = self.pairs.iter().map(|(k, _)| k.as_str()).collect();
        keys.sort();
        keys.dedup();
        let attr = |k: &str| e.actor.attributes.get(k).map(String::as_str);
        keys.iter().all(|key| {
            self.pairs
                .iter()
                .filter(|(k, _)| k == key)
                .any(|(_, v)| match *key {
                    "type" => e.kind == *v,
                    // Docker's `exec_start: sh -c ...` actions match by their first word.
                    "event" => e.action == *v || e.action.split(':').next() == Some(v.as_str()),
                    "container" => {
                        e.kind == "container"
                            && (e.actor.id.starts_with(v.as_str())
                                || attr("name") == Some(v.as_str()))
                    }
                    "image" => {
                        attr("image") == Some(v.as_str())
                            || (e.kind == "image"
                                && (e.actor.id == *v || attr("name") == Some(v.as_str())))
                    }
                    "label" => match v.split_once('=') {
                        Some((lk, lv)) => attr(lk) == Some(lv),
                        None => attr(v).is_some(),
                    },
                    _ => false,
                })
        })
    }
}

impl Engine {
    /// The event log of this root.
    pub fn events(&self) -> EventLog {
        let mut log = EventLog::new(&self.root);
        log.max_size = self.events_max_size;
        log
    }

    /// Records an event. Best effort: a failure to log never fails the operation it
    /// describes (the container did start), as with Docker's event service.
    pub fn emit(&self, event: Event) {
        let _ = self.events().append(&event);
    }

    /// [`Self::emit`] of a container event.
    pub fn emit_container(&self, rec: &ContainerRecord, action: &str, extra: &[(&str, String)]) {
        self.emit(Event::container(rec, action, extra));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(kind: &str, action: &str, id: &str, attrs: &[(&str, &str)]) -> Event {
        Event::new(
            kind,
            action,
            id,
            attrs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        )
    }

    #[test]
    fn filters_or_within_a_key_and_across_keys() {
        let start = ev(
            "container",
            "start",
            "abc123",
            &[("image", "busybox"), ("name", "web"), ("tier", "front")],
        );
        let pull = ev(
            "image",
            "pull",
            "busybox:latest",
            &[("name", "busybox:latest")],
        );
        let f = |s: &[&str]| {
            Filter::parse(&s.iter().map(|x| x.to_string()).collect::<Vec<_>>()).unwrap()
        };
        assert!(f(&[]).accepts(&start));
        assert!(f(&["type=container"]).accepts(&start));
        assert!(!f(&["type=container"]).accepts(&pull));
        assert!(f(&["event=stop", "event=start"]).accepts(&start));
        assert!(!f(&["event=start", "container=db"]).accepts(&start));
        assert!(f(&["container=web"]).accepts(&start));
        assert!(f(&["container=abc"]).accepts(&start));
        assert!(f(&["image=busybox"]).accepts(&start));
        assert!(f(&["image=busybox:latest"]).accepts(&pull));
        assert!(f(&["label=tier"]).accepts(&start));
        assert!(f(&["label=tier=front"]).accepts(&start));
        assert!(!f(&["label=tier=back"]).accepts(&start));
        assert!(Filter::parse(&["bogus=1".into()]).is_err());
        assert!(Filter::parse(&["type".into()]).is_err());
        assert_eq!(start.status, "start");
        assert_eq!(start.from, "busybox");
        assert!(start
            .line()
            .ends_with("container start abc123 (image=busybox, name=web, tier=front)"));
    }

    #[test]
    fn the_log_rotates_at_its_bound_and_keeps_one_old_file() {
        let t = tempfile::tempdir().unwrap();
        let mut log = EventLog::new(t.path());
        log.max_size = 2000;
        for i in 0..100 {
            log.append(&ev("container", "start", &format!("id{i}"), &[]))
                .unwrap();
        }
        let size = std::fs::metadata(&log.path).unwrap().len();
        let old = std::fs::metadata(log.rotated()).unwrap().len();
        assert!(size <= 2000 && old <= 2000, "{size} {old}");
        let all = log.read_all().unwrap();
        assert!(all.len() < 100);
        assert_eq!(all.last().unwrap().actor.id, "id99");
        // The oldest kept events are in order and contiguous.
        let first: usize = all[0].actor.id[2..].parse().unwrap();
        for (k, e) in all.iter().enumerate() {
            assert_eq!(e.actor.id, format!("id{}", first + k));
        }
        // Reading without follow from the beginning gives exactly those.
        let mut seen = Vec::new();
        log.stream(
            &Filter::default(),
            Some("1970-01-01T00:00:00.000000000Z"),
            None,
            false,
            &mut |e| {
                seen.push(e.actor.id.clone());
                Ok(())
            },
        )
        .unwrap();
        assert_eq!(seen.len(), all.len());
    }

    #[test]
    fn a_follower_sees_events_across_a_rotation() {
        let t = tempfile::tempdir().unwrap();
        let mut log = EventLog::new(t.path());
        // 42 lines of about 150 bytes: one rotation while the follower reads. (A follower
        // that falls a whole file behind loses events: the log is bounded.)
        log.max_size = 4000;
        log.append(&ev("container", "create", "before", &[]))
            .unwrap();
        let writer = log.clone();
        let h = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(200));
            for i in 0..40 {
                writer
                    .append(&ev("container", "start", &format!("n{i}"), &[]))
                    .unwrap();
            }
            writer
                .append(&ev("container", "destroy", "last", &[]))
                .unwrap();
        });
        let mut seen = Vec::new();
        log.stream(&Filter::default(), None, None, true, &mut |e| {
            seen.push(e.actor.id.clone());
            if e.actor.id == "last" {
                return Err(io::Error::other("done"));
            }
            Ok(())
        })
        .unwrap();
        h.join().unwrap();
        let want: Vec<String> = (0..40)
            .map(|i| format!("n{i}"))
            .chain(["last".to_string()])
            .collect();
        assert_eq!(seen, want, "no event lost or repeated, 'before' not shown");
        assert!(log.rotated().exists(), "the log rotated meanwhile");
    }
}

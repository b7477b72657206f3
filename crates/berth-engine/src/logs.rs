//! The `json-file` log format (Docker's): one JSON object per line,
//! `{"log":"text\n","stream":"stdout","time":"2026-01-01T00:00:00.000000000Z"}`.

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::record::{RecordError, Status};
use crate::Engine;

/// One log line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    pub log: String,
    pub stream: String,
    pub time: String,
}

/// Why logs could not be read.
#[derive(Debug, thiserror::Error)]
pub enum LogsError {
    #[error(transparent)]
    Record(#[from] RecordError),
    #[error("reading the log {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("writing the logs")]
    Write(#[source] io::Error),
    #[error("container {0} was created with --log-driver none: there are no logs to read")]
    NoLogs(String),
}

/// Splits a stream's bytes into log entries at newlines, keeping the newline (Docker's
/// json-file does), and writes them to a file.
#[derive(Debug)]
pub struct LineLogger {
    path: PathBuf,
    file: File,
    size: u64,
    rotation: Rotation,
    pending: [Vec<u8>; 2],
}

/// `--log-opt max-size=10m,max-file=3`: Docker's json-file rotation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rotation {
    /// Rotate once the file reaches this many bytes (0: never).
    pub max_size: u64,
    /// Files kept, the current one included (at least 1).
    pub max_file: u32,
}

impl Default for Rotation {
    /// Berth rotates by default (10 MB × 3); Docker's own default is unbounded.
    fn default() -> Self {
        Self {
            max_size: 10 << 20,
            max_file: 3,
        }
    }
}

/// The files of a log, oldest first: `<log>.N` ... `<log>.1`, `<log>`.
pub fn log_files(path: &Path, max_file: u32) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = (1..max_file.max(1))
        .rev()
        .map(|n| rotated(path, n))
        .collect();
    v.push(path.to_owned());
    v
}

fn rotated(path: &Path, n: u32) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(format!(".{n}"));
    PathBuf::from(s)
}

impl LineLogger {
    /// Appends to `path` (created 0640 if missing), rotating as `rotation` says.
    pub fn open(path: &Path, rotation: Rotation) -> io::Result<Self> {
        let file = Self::open_file(path)?;
        let size = file.metadata()?.len();
        Ok(Self {
            path: path.to_owned(),
            file,
            size,
            rotation,
            pending: [Vec::new(), Vec::new()],
        })
    }

    fn open_file(path: &Path) -> io::Result<File> {
        use std::os::unix::fs::OpenOptionsExt;
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .mode(0o640)
            .open(path)
    }

    /// `<log>.N-1` → `<log>.N`, ..., `<log>` → `<log>.1`, and a new `<log>`; the oldest goes.
    fn rotate(&mut self) -> io::Result<()> {
        let keep = self.rotation.max_file.max(1);
        if keep == 1 {
            self.file.set_len(0)?;
        } else {
            for n in (1..keep - 1).rev() {
                match std::fs::rename(rotated(&self.path, n), rotated(&self.path, n + 1)) {
                    Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
                    _ => {}
                }
            }
            std::fs::rename(&self.path, rotated(&self.path, 1))?;
            self.file = Self::open_file(&self.path)?;
        }
        self.size = 0;
        Ok(())
    }

    fn emit(&mut self, stream: usize, bytes: &[u8]) -> io::Result<()> {
        let e = Entry {
            log: String::from_utf8_lossy(bytes).into_owned(),
            stream: if stream == 0 { "stdout" } else { "stderr" }.into(),
            time: berth_runtime::state::now_rfc3339(),
        };
        let mut line = serde_json::to_vec(&e).expect("an entry serialises");
        line.push(b'\n');
        if self.rotation.max_size > 0
            && self.size > 0
            && self.size + line.len() as u64 > self.rotation.max_size
        {
            self.rotate()?;
        }
        self.file.write_all(&line)?;
        self.size += line.len() as u64;
        Ok(())
    }

    /// Takes bytes read from stream 0 (stdout) or 1 (stderr).
    pub fn feed(&mut self, stream: usize, data: &[u8]) -> io::Result<()> {
        self.pending[stream].extend_from_slice(data);
        while let Some(nl) = self.pending[stream].iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = self.pending[stream].drain(..=nl).collect();
            self.emit(stream, &line)?;
        }
        // A very long line is cut as Docker does (16 KiB pieces).
        while self.pending[stream].len() >= 16 * 1024 {
            let piece: Vec<u8> = self.pending[stream].drain(..16 * 1024).collect();
            self.emit(stream, &piece)?;
        }
        Ok(())
    }

    /// Writes what is left of stream `stream` (a last line without newline).
    pub fn flush(&mut self, stream: usize) -> io::Result<()> {
        if !self.pending[stream].is_empty() {
            let rest = std::mem::take(&mut self.pending[stream]);
            self.emit(stream, &rest)?;
        }
        Ok(())
    }
}

/// `logs` options.
#[derive(Debug, Clone, Default)]
pub struct LogsOptions {
    pub follow: bool,
    /// Only the last N lines.
    pub tail: Option<usize>,
    /// Only entries at or after this RFC 3339 time (see [`parse_time`]).
    pub since: Option<String>,
    /// Only entries before this time.
    pub until: Option<String>,
}

/// Docker's `--since`/`--until` values: an RFC 3339 time (`2026-01-02T03:04:05Z`), a Unix
/// timestamp (`1700000000`), or a duration before now (`10m`, `2h`, `30s`). Returns the
/// RFC 3339 form with nanoseconds, which compares as text with the log's `time` fields.
pub fn parse_time(s: &str, now: i64) -> Option<String> {
    let t = s.trim();
    if let Some((num, unit)) = t
        .char_indices()
        .last()
        .filter(|(_, c)| matches!(c, 's' | 'm' | 'h'))
        .map(|(i, c)| (&t[..i], c))
    {
        if let Ok(n) = num.parse::<i64>() {
            let mult = match unit {
                's' => 1,
                'm' => 60,
                _ => 3600,
            };
            return Some(berth_runtime::state::format_rfc3339(now - n * mult, 0));
        }
    }
    if let Ok(secs) = t.parse::<i64>() {
        return Some(berth_runtime::state::format_rfc3339(secs, 0));
    }
    // 2026-01-02T03:04:05[.frac]Z, normalised to nine fraction digits.
    let body = t.strip_suffix('Z')?;
    let (main, frac) = body.split_once('.').unwrap_or((body, ""));
    let ok = main.len() == 19
        && main.as_bytes()[10] == b'T'
        && frac.len() <= 9
        && frac.bytes().all(|b| b.is_ascii_digit());
    ok.then(|| format!("{main}.{frac:0<9}Z"))
}

fn parse_lines(buf: &[u8]) -> Vec<Entry> {
    buf.split(|b| *b == b'\n')
        .filter(|l| !l.is_empty())
        .filter_map(|l| serde_json::from_slice(l).ok())
        .collect()
}

impl Engine {
    /// Calls `sink` with every log entry of container `what` (the last `tail` first), and
    /// with `follow` keeps doing so until the container stops.
    pub fn logs(
        &self,
        what: &str,
        opts: LogsOptions,
        sink: &mut dyn FnMut(&Entry) -> io::Result<()>,
    ) -> Result<(), LogsError> {
        let rec = self.find(what)?;
        if rec.log_driver == "none" {
            return Err(LogsError::NoLogs(rec.id));
        }
        let id = rec.id.clone();
        let path = self.log_path(&id);
        let rerr = |p: &Path| {
            let p = p.to_owned();
            move |source| LogsError::Read { path: p, source }
        };
        let keep = |e: &Entry| {
            opts.since
                .as_ref()
                .is_none_or(|s| e.time.as_str() >= s.as_str())
                && opts
                    .until
                    .as_ref()
                    .is_none_or(|u| e.time.as_str() < u.as_str())
        };
        // Rotated files first (oldest first), then the current one, which follow keeps
        // reading.
        let mut entries = Vec::new();
        for p in log_files(&path, rec.log_max_file) {
            if p == path {
                break;
            }
            match std::fs::read(&p) {
                Ok(b) => entries.extend(parse_lines(&b)),
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(rerr(&p)(e)),
            }
        }
        let mut file = match File::open(&path) {
            Ok(f) => Some(f),
            Err(e) if e.kind() == io::ErrorKind::NotFound => None,
            Err(e) => return Err(rerr(&path)(e)),
        };
        let mut buf = Vec::new();
        if let Some(f) = &mut file {
            f.read_to_end(&mut buf).map_err(rerr(&path))?;
        }
        // Only whole lines; a line being written stays for the next read.
        let cut = buf.iter().rposition(|b| *b == b'\n').map_or(0, |p| p + 1);
        entries.extend(parse_lines(&buf[..cut]));
        let mut offset = cut as u64;
        entries.retain(|e| keep(e));
        if let Some(n) = opts.tail {
            let skip = entries.len().saturating_sub(n);
            entries.drain(..skip);
        }
        for e in &entries {
            sink(e).map_err(LogsError::Write)?;
        }
        if !opts.follow {
            return Ok(());
        }
        loop {
            let running = match self.records.load(&id) {
                Ok(r) => self.reconcile(r).state.status == Status::Running,
                Err(_) => false,
            };
            let mut more = Vec::new();
            if let Some(f) = &mut file {
                f.seek(SeekFrom::Start(offset)).map_err(rerr(&path))?;
                f.read_to_end(&mut more).map_err(rerr(&path))?;
            }
            let cut = more.iter().rposition(|b| *b == b'\n').map_or(0, |p| p + 1);
            for e in parse_lines(&more[..cut]).iter().filter(|e| keep(e)) {
                sink(e).map_err(LogsError::Write)?;
            }
            offset += cut as u64;
            // Rotated under us: the file we hold is now `<log>.1`, finished; go on with
            // the new one from its start.
            let current = std::fs::metadata(&path).ok().map(|m| m.ino());
            let ours = file
                .as_ref()
                .and_then(|f| f.metadata().ok())
                .map(|m| m.ino());
            if current.is_some() && current != ours {
                file = File::open(&path).ok();
                offset = 0;
                continue;
            }
            if !running {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rotation_keeps_max_file_files_of_about_max_size() {
        let t = tempfile::tempdir().unwrap();
        let p = t.path().join("x-json.log");
        let rot = Rotation {
            max_size: 400,
            max_file: 3,
        };
        let mut l = LineLogger::open(&p, rot).unwrap();
        for i in 0..100 {
            l.feed(0, format!("line {i}\n").as_bytes()).unwrap();
        }
        let files = log_files(&p, 3);
        assert_eq!(files.len(), 3);
        assert!(!rotated(&p, 3).exists());
        let mut all = Vec::new();
        for f in &files {
            let b = std::fs::read(f).unwrap();
            assert!(b.len() <= 400, "{} is {} bytes", f.display(), b.len());
            all.extend(parse_lines(&b));
        }
        // The newest lines survive, in order.
        assert_eq!(all.last().unwrap().log, "line 99\n");
        let nums: Vec<u32> = all
            .iter()
            .map(|e| e.log.trim().trim_start_matches("line ").parse().unwrap())
            .collect();
        assert!(nums.windows(2).all(|w| w[1] == w[0] + 1));
        assert!(nums[0] > 0);
    }

    #[test]
    fn docker_time_arguments() {
        let now = 1_800_000_000;
        assert_eq!(
            parse_time("10m", now).unwrap(),
            berth_runtime::state::format_rfc3339(now - 600, 0)
        );
        assert_eq!(
            parse_time("1700000000", now).unwrap(),
            "2023-11-14T22:13:20.000000000Z"
        );
        assert_eq!(
            parse_time("2026-01-02T03:04:05.5Z", now).unwrap(),
            "2026-01-02T03:04:05.500000000Z"
        );
        assert!(parse_time("yesterday", now).is_none());
    }

    #[test]
    fn lines_are_split_and_kept_apart_by_stream() {
        let t = tempfile::tempdir().unwrap();
        let p = t.path().join("x-json.log");
        let mut l = LineLogger::open(&p, Rotation::default()).unwrap();
        l.feed(0, b"hel").unwrap();
        l.feed(1, b"oops\n").unwrap();
        l.feed(0, b"lo\nwor").unwrap();
        l.flush(0).unwrap();
        l.flush(1).unwrap();
        let got = parse_lines(&std::fs::read(&p).unwrap());
        let pairs: Vec<(&str, &str)> = got
            .iter()
            .map(|e| (e.stream.as_str(), e.log.as_str()))
            .collect();
        assert_eq!(
            pairs,
            vec![
                ("stderr", "oops\n"),
                ("stdout", "hello\n"),
                ("stdout", "wor")
            ]
        );
        assert!(got[0].time.ends_with('Z'));
    }
}

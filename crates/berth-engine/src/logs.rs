//! The `json-file` log format (Docker's): one JSON object per line,
//! `{"log":"text\n","stream":"stdout","time":"2026-01-01T00:00:00.000000000Z"}`.

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom, Write};
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
}

/// Splits a stream's bytes into log entries at newlines, keeping the newline (Docker's
/// json-file does), and writes them to a file.
#[derive(Debug)]
pub struct LineLogger {
    file: File,
    pending: [Vec<u8>; 2],
}

impl LineLogger {
    /// Appends to `path` (created 0640 if missing).
    pub fn open(path: &Path) -> io::Result<Self> {
        use std::os::unix::fs::OpenOptionsExt;
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .mode(0o640)
            .open(path)?;
        Ok(Self {
            file,
            pending: [Vec::new(), Vec::new()],
        })
    }

    fn emit(&mut self, stream: usize, bytes: &[u8]) -> io::Result<()> {
        let e = Entry {
            log: String::from_utf8_lossy(bytes).into_owned(),
            stream: if stream == 0 { "stdout" } else { "stderr" }.into(),
            time: berth_runtime::state::now_rfc3339(),
        };
        let mut line = serde_json::to_vec(&e).expect("an entry serialises");
        line.push(b'\n');
        self.file.write_all(&line)
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
#[derive(Debug, Clone, Copy, Default)]
pub struct LogsOptions {
    pub follow: bool,
    /// Only the last N lines.
    pub tail: Option<usize>,
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
        let id = self.records.resolve(what)?;
        let path = self.log_path(&id);
        let rerr = |source| LogsError::Read {
            path: path.clone(),
            source,
        };
        let mut file = match File::open(&path) {
            Ok(f) => Some(f),
            Err(e) if e.kind() == io::ErrorKind::NotFound => None,
            Err(e) => return Err(rerr(e)),
        };
        let mut buf = Vec::new();
        if let Some(f) = &mut file {
            f.read_to_end(&mut buf).map_err(rerr)?;
        }
        // Only whole lines; a line being written stays for the next read.
        let cut = buf.iter().rposition(|b| *b == b'\n').map_or(0, |p| p + 1);
        let mut entries = parse_lines(&buf[..cut]);
        let mut offset = cut as u64;
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
            if file.is_none() {
                file = File::open(&path).ok();
            }
            if let Some(f) = &mut file {
                f.seek(SeekFrom::Start(offset)).map_err(rerr)?;
                let mut more = Vec::new();
                f.read_to_end(&mut more).map_err(rerr)?;
                let cut = more.iter().rposition(|b| *b == b'\n').map_or(0, |p| p + 1);
                for e in parse_lines(&more[..cut]) {
                    sink(&e).map_err(LogsError::Write)?;
                }
                offset += cut as u64;
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
    fn lines_are_split_and_kept_apart_by_stream() {
        let t = tempfile::tempdir().unwrap();
        let p = t.path().join("x-json.log");
        let mut l = LineLogger::open(&p).unwrap();
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

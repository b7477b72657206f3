//! runc-compatible logging: `--log FILE` with `--log-format text|json`. containerd's shim
//! reads the last error of `log.json`, so every failure is written there as well as to stderr.

use std::fs::OpenOptions;
use std::io::Write;
use std::path::PathBuf;

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

/// Where messages go.
#[derive(Debug)]
pub struct Logger {
    pub file: Option<PathBuf>,
    pub format: LogFormat,
    pub debug: bool,
}

impl Logger {
    fn write(&self, level: &str, msg: &str) {
        let Some(path) = &self.file else { return };
        let time = berth_runtime::state::now_rfc3339();
        let line = match self.format {
            LogFormat::Json => {
                serde_json::json!({"level": level, "msg": msg, "time": time}).to_string()
            }
            LogFormat::Text => format!("time={time:?} level={level} msg={msg:?}"),
        };
        if let Ok(mut f) = OpenOptions::new().create(true).append(true).open(path) {
            let _ = writeln!(f, "{line}");
        }
    }

    /// An error: to the log file and to stderr.
    pub fn error(&self, msg: &str) {
        self.write("error", msg);
        eprintln!("berth-runc: {msg}");
    }

    /// A warning (e.g. a failed poststart hook): to the log file and to stderr.
    pub fn warn(&self, msg: &str) {
        self.write("warning", msg);
        eprintln!("berth-runc: warning: {msg}");
    }

    /// Debug output, only with `--debug`.
    pub fn debug(&self, msg: &str) {
        if self.debug {
            self.write("debug", msg);
        }
    }
}

/// Formats an error and its causes as one line: "a: b: c", skipping a cause whose text the
/// message already ends with.
pub fn chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut out = err.to_string();
    let mut cur = err.source();
    while let Some(e) = cur {
        let s = e.to_string();
        if !out.ends_with(&s) {
            out.push_str(": ");
            out.push_str(&s);
        }
        cur = e.source();
    }
    out
}

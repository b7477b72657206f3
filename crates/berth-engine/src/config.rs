//! `/etc/berth/berth.toml`: defaults for every `berth` command.
//!
//! The file is found in this order: the `--config FILE` flag, the `BERTH_CONFIG` environment
//! variable, then `/etc/berth/berth.toml`. A file named by the flag or the variable must exist;
//! the default one may be missing (all defaults then). Command-line flags always win over the
//! file. Unknown keys are errors, so a typo does not silently do nothing, and settings Berth
//! cannot honour (an external runtime, registry mirrors) are refused by name.
//!
//! ```toml
//! root = "/var/lib/berth"          # storage root (--root)
//! run_root = "/run/berth"          # runtime state
//!
//! [runtime]
//! cgroup_parent = "/berth"         # --cgroup-parent default
//! default_ulimits = ["nofile=1024:2048"]
//!
//! [logs]
//! driver = "json-file"             # or "none"
//! opts = { max-size = "20m", max-file = "5" }
//!
//! [registries]
//! insecure = ["registry.local:5000"]
//! certs_dirs = ["/etc/berth/certs.d"]
//!
//! [events]
//! max_size = "1m"                  # bound of events.log (one older file is kept)
//! ```

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::bundle;

/// The default configuration file.
pub const DEFAULT_PATH: &str = "/etc/berth/berth.toml";
/// The environment variable naming another one.
pub const ENV: &str = "BERTH_CONFIG";

#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Storage root (images, containers, volumes).
    pub root: Option<PathBuf>,
    /// Runtime state root (default `/run/berth` for the default root, else `<root>/run`).
    pub run_root: Option<PathBuf>,
    #[serde(default)]
    pub runtime: RuntimeConfig,
    #[serde(default)]
    pub logs: LogsConfig,
    #[serde(default)]
    pub registries: RegistriesConfig,
    #[serde(default)]
    pub events: EventsConfig,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuntimeConfig {
    /// An external runtime binary: refused (Berth's runtime is a library, built in).
    pub path: Option<String>,
    /// Default `--cgroup-parent` (absolute).
    pub cgroup_parent: Option<String>,
    /// `--ulimit` defaults (`NAME=SOFT[:HARD]`); a container's own `--ulimit` of the same
    /// name wins.
    #[serde(default)]
    pub default_ulimits: Vec<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogsConfig {
    /// `json-file` or `none`.
    pub driver: Option<String>,
    /// `--log-opt` defaults (`max-size`, `max-file`), applied when the container uses this
    /// driver; its own `--log-opt` values win.
    #[serde(default)]
    pub opts: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegistriesConfig {
    /// Registries (`host:port`) that may be used over plain HTTP, besides 127.0.0.0/8.
    #[serde(default)]
    pub insecure: Vec<String>,
    /// Pull-through mirrors: refused (the registry client does not support them yet).
    #[serde(default)]
    pub mirrors: Vec<String>,
    /// Directories of per-registry CA certificates (`HOST:PORT/ca.crt`), replacing the
    /// defaults `/etc/berth/certs.d` and `/etc/docker/certs.d`.
    #[serde(default)]
    pub certs_dirs: Vec<PathBuf>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EventsConfig {
    /// Bound of the event log, e.g. `1m`.
    pub max_size: Option<String>,
}

/// Why the configuration could not be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("reading the configuration file {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("parsing the configuration file {path}")]
    Parse {
        path: PathBuf,
        #[source]
        source: toml::de::Error,
    },
    #[error("{path}: {key}: {message}")]
    Invalid {
        path: PathBuf,
        key: &'static str,
        message: String,
    },
}

impl Config {
    /// Finds and loads the configuration: `flag`, else `$BERTH_CONFIG`, else the default
    /// file if it exists. Returns it with the path it came from.
    pub fn locate(flag: Option<&Path>) -> Result<(Self, Option<PathBuf>), ConfigError> {
        let explicit = flag.map(Path::to_owned).or_else(|| {
            std::env::var_os(ENV)
                .filter(|v| !v.is_empty())
                .map(PathBuf::from)
        });
        let path = match explicit {
            Some(p) => p,
            None => {
                let p = PathBuf::from(DEFAULT_PATH);
                if !p.exists() {
                    return Ok((Self::default(), None));
                }
                p
            }
        };
        Ok((Self::load(&path)?, Some(path)))
    }

    /// Reads, parses and checks `path`.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        let cfg: Config = toml::from_str(&text).map_err(|source| ConfigError::Parse {
            path: path.to_owned(),
            source,
        })?;
        cfg.check(path)?;
        Ok(cfg)
    }

    fn check(&self, path: &Path) -> Result<(), ConfigError> {
        let bad = |key: &'static str, message: String| {
            Err(ConfigError::Invalid {
                path: path.to_owned(),
                key,
                message,
            })
        };
        for (key, p) in [("root", &self.root), ("run_root", &self.run_root)] {
            if let Some(p) = p {
                if !p.is_absolute() {
                    return bad(key, format!("{} is not an absolute path", p.display()));
                }
            }
        }
        if let Some(p) = &self.runtime.path {
            return bad(
                "runtime.path",
                format!("external runtimes ({p}) are not supported: Berth's runtime is built in"),
            );
        }
        if let Some(c) = &self.runtime.cgroup_parent {
            if !c.starts_with('/') || c.split('/').any(|x| x == "..") {
                return bad(
                    "runtime.cgroup_parent",
                    format!("{c:?} is not an absolute cgroup path"),
                );
            }
        }
        for u in &self.runtime.default_ulimits {
            if let Err(e) = bundle::parse_ulimit(u) {
                return bad("runtime.default_ulimits", e.to_string());
            }
        }
        let opts = bundle::RunOptions {
            log_driver: self.logs.driver.clone(),
            log_opts: self.log_opts(),
            ..Default::default()
        };
        if let Err(e) = bundle::log_config(&opts) {
            return bad("logs", e.to_string());
        }
        if !self.registries.mirrors.is_empty() {
            return bad(
                "registries.mirrors",
                "registry mirrors are not supported yet".into(),
            );
        }
        if let Some(s) = &self.events.max_size {
            if bundle::parse_bytes(s).is_none_or(|b| b <= 0) {
                return bad("events.max_size", format!("invalid size {s:?}"));
            }
        }
        Ok(())
    }

    /// The `[logs] opts` as `--log-opt` values.
    pub fn log_opts(&self) -> Vec<String> {
        self.logs
            .opts
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect()
    }

    /// `opts` with this file's defaults where the command line gave none: the cgroup parent,
    /// the log driver and its options (the command line's `--log-opt` come last and win),
    /// and default ulimits not set by `--ulimit`.
    pub fn apply(&self, opts: &mut bundle::RunOptions) {
        if opts.cgroup_parent.is_none() {
            opts.cgroup_parent = self.runtime.cgroup_parent.clone();
        }
        let default_driver = self.logs.driver.as_deref().unwrap_or("json-file");
        match &opts.log_driver {
            None => {
                opts.log_driver = self.logs.driver.clone();
                let mut merged = self.log_opts();
                merged.append(&mut opts.log_opts);
                opts.log_opts = merged;
            }
            Some(d) if d == default_driver => {
                let mut merged = self.log_opts();
                merged.append(&mut opts.log_opts);
                opts.log_opts = merged;
            }
            Some(_) => {}
        }
        let name = |u: &str| u.split('=').next().unwrap_or("").to_owned();
        let given: Vec<String> = opts.ulimits.iter().map(|u| name(u)).collect();
        let mut ulimits: Vec<String> = self
            .runtime
            .default_ulimits
            .iter()
            .filter(|u| !given.contains(&name(u)))
            .cloned()
            .collect();
        ulimits.append(&mut opts.ulimits);
        opts.ulimits = ulimits;
    }

    /// The event log bound in bytes.
    pub fn events_max_size(&self) -> u64 {
        self.events
            .max_size
            .as_deref()
            .and_then(bundle::parse_bytes)
            .map(|b| b as u64)
            .unwrap_or(crate::events::DEFAULT_MAX_SIZE)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(text: &str) -> Result<Config, ConfigError> {
        let t = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(t.path(), text).unwrap();
        Config::load(t.path())
    }

    #[test]
    fn a_full_file_parses_and_flags_win() {
        let c = load(
            r#"
root = "/srv/berth"
[runtime]
cgroup_parent = "/ci"
default_ulimits = ["nofile=1024:2048", "nproc=500"]
[logs]
driver = "json-file"
opts = { max-size = "1m", max-file = "2" }
[registries]
insecure = ["reg.local:5000"]
[events]
max_size = "64k"
"#,
        )
        .unwrap();
        assert_eq!(c.root.as_deref(), Some(Path::new("/srv/berth")));
        assert_eq!(c.events_max_size(), 64 * 1024);
        let mut o = bundle::RunOptions {
            log_opts: vec!["max-file=9".into()],
            ulimits: vec!["nofile=10:20".into()],
            ..Default::default()
        };
        c.apply(&mut o);
        assert_eq!(o.cgroup_parent.as_deref(), Some("/ci"));
        assert_eq!(o.log_opts, ["max-file=2", "max-size=1m", "max-file=9"]);
        assert_eq!(o.ulimits, ["nproc=500", "nofile=10:20"]);
        // Another driver on the command line: the file's options are not for it.
        let mut o = bundle::RunOptions {
            log_driver: Some("none".into()),
            cgroup_parent: Some("/mine".into()),
            ..Default::default()
        };
        c.apply(&mut o);
        assert!(o.log_opts.is_empty());
        assert_eq!(o.cgroup_parent.as_deref(), Some("/mine"));
    }

    #[test]
    fn bad_files_name_the_problem() {
        let msg = |t: &str| {
            let e = load(t).unwrap_err();
            crate::exec::chain(&e)
        };
        assert!(msg("rooot = \"/x\"").contains("unknown field `rooot`"));
        assert!(msg("root = \"relative\"").contains("root: relative is not an absolute path"));
        assert!(msg("[runtime]\npath = \"/usr/bin/runc\"").contains("external runtimes"));
        assert!(
            msg("[registries]\nmirrors = [\"https://m\"]").contains("mirrors are not supported")
        );
        assert!(msg("[logs]\ndriver = \"syslog\"").contains("logs:"));
        assert!(msg("[runtime]\ndefault_ulimits = [\"bogus\"]").contains("default_ulimits"));
        assert!(msg("[events]\nmax_size = \"12zz\"").contains("events.max_size"));
        assert!(msg("root = ").contains("parsing the configuration file"));
        assert!(matches!(
            Config::load(Path::new("/nonexistent/berth.toml")),
            Err(ConfigError::Read { .. })
        ));
    }
}

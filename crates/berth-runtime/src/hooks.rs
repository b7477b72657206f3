//! OCI lifecycle hooks: run a hook binary with the container state on stdin, honour `timeout`.
//!
//! runtime-spec config.md#posix-platform-hooks: each hook is `path` (absolute), `args`
//! (args[0] included), `env`, `timeout` (seconds). The state JSON goes to its stdin.

use std::io::Write;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use oci_spec::runtime::Hook;

/// Which lifecycle point a hook belongs to (for messages).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum HookKind {
    Prestart,
    CreateRuntime,
    CreateContainer,
    StartContainer,
    Poststart,
    Poststop,
}

impl std::fmt::Display for HookKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            HookKind::Prestart => "prestart",
            HookKind::CreateRuntime => "createRuntime",
            HookKind::CreateContainer => "createContainer",
            HookKind::StartContainer => "startContainer",
            HookKind::Poststart => "poststart",
            HookKind::Poststop => "poststop",
        })
    }
}

/// A hook failed.
#[derive(Debug, thiserror::Error)]
pub enum HookError {
    #[error("{kind} hook #{index} ({path}): cannot start")]
    Spawn {
        kind: HookKind,
        index: usize,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{kind} hook #{index} ({path}) exited with {status}{stderr}")]
    Failed {
        kind: HookKind,
        index: usize,
        path: PathBuf,
        status: String,
        stderr: String,
    },
    #[error("{kind} hook #{index} ({path}) timed out after {secs} s and was killed")]
    Timeout {
        kind: HookKind,
        index: usize,
        path: PathBuf,
        secs: i64,
    },
}

/// Runs `hooks` one after the other; the first failure stops the sequence.
pub fn run(kind: HookKind, hooks: &[Hook], state_json: &str) -> Result<(), HookError> {
    for (index, hook) in hooks.iter().enumerate() {
        run_one(kind, index, hook, state_json)?;
    }
    Ok(())
}

fn run_one(kind: HookKind, index: usize, hook: &Hook, state_json: &str) -> Result<(), HookError> {
    let path = hook.path().clone();
    let mut cmd = Command::new(&path);
    if let Some(args) = hook.args() {
        if let Some(argv0) = args.first() {
            cmd.arg0(argv0);
        }
        cmd.args(args.iter().skip(1));
    }
    cmd.env_clear();
    for kv in hook.env().iter().flatten() {
        if let Some((k, v)) = kv.split_once('=') {
            cmd.env(k, v);
        }
    }
    cmd.stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().map_err(|source| HookError::Spawn {
        kind,
        index,
        path: path.clone(),
        source,
    })?;
    if let Some(mut stdin) = child.stdin.take() {
        // A hook may exit without reading its stdin; a broken pipe is not a failure.
        let _ = stdin.write_all(state_json.as_bytes());
    }
    let deadline = hook
        .timeout()
        .filter(|t| *t > 0)
        .map(|t| (t, Instant::now() + Duration::from_secs(t as u64)));
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) => {}
            Err(source) => {
                return Err(HookError::Spawn {
                    kind,
                    index,
                    path,
                    source,
                })
            }
        }
        if let Some((secs, at)) = deadline {
            if Instant::now() >= at {
                let _ = child.kill();
                let _ = child.wait();
                return Err(HookError::Timeout {
                    kind,
                    index,
                    path,
                    secs,
                });
            }
        }
        std::thread::sleep(Duration::from_millis(2));
    };
    if status.success() {
        return Ok(());
    }
    let mut stderr = String::new();
    if let Some(mut err) = child.stderr.take() {
        let _ = std::io::Read::read_to_string(&mut err, &mut stderr);
    }
    let stderr = stderr.trim();
    Err(HookError::Failed {
        kind,
        index,
        path,
        status: status.to_string(),
        stderr: if stderr.is_empty() {
            String::new()
        } else {
            format!(": {stderr}")
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use oci_spec::runtime::HookBuilder;

    fn hook(args: &[&str], timeout: Option<i64>) -> Hook {
        let mut b = HookBuilder::default()
            .path("/bin/sh")
            .args(args.iter().map(|s| s.to_string()).collect::<Vec<_>>());
        if let Some(t) = timeout {
            b = b.timeout(t);
        }
        b.build().unwrap()
    }

    #[test]
    fn hook_gets_state_on_stdin() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("out");
        let h = hook(&["sh", "-c", &format!("cat > {}", out.display())], None);
        run(HookKind::Prestart, &[h], "{\"id\":\"x\"}").unwrap();
        assert_eq!(std::fs::read_to_string(out).unwrap(), "{\"id\":\"x\"}");
    }

    #[test]
    fn failing_hook_reports_status_and_stderr() {
        let h = hook(&["sh", "-c", "echo nope >&2; exit 3"], None);
        let err = run(HookKind::CreateRuntime, &[h], "{}").unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("createRuntime hook #0"), "{msg}");
        assert!(msg.contains("exit status: 3"), "{msg}");
        assert!(msg.contains("nope"), "{msg}");
    }

    #[test]
    fn slow_hook_is_killed_at_its_timeout() {
        let h = hook(&["sh", "-c", "sleep 30"], Some(1));
        match run(HookKind::Poststart, &[h], "{}") {
            Err(HookError::Timeout { secs: 1, .. }) => {}
            other => panic!("expected a timeout, got {other:?}"),
        }
    }
}

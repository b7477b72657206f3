//! Rootless containers: the runtime run by an unprivileged user with `spec --rootless`.

use std::fs;
use std::path::Path;
use std::process::Command;

use berth_conformance::{first_json, require_root, runtime_path, unique_id, Bundle};

const NOBODY: &str = "65534";

/// Runs the runtime as uid/gid 65534 with no supplementary groups.
fn as_nobody(args: &[&str], cwd: &Path) -> std::process::Output {
    Command::new("setpriv")
        .args(["--reuid", NOBODY, "--regid", NOBODY, "--clear-groups"])
        .arg(runtime_path())
        .args(args)
        .current_dir(cwd)
        .env("XDG_RUNTIME_DIR", cwd)
        .output()
        .expect("running setpriv (util-linux)")
}

fn chown_nobody(p: &Path) {
    let st = Command::new("chown")
        .args(["-R", &format!("{NOBODY}:{NOBODY}")])
        .arg(p)
        .status()
        .unwrap();
    assert!(st.success(), "chown {}", p.display());
}

/// CVE-2023-25809: a rootless container without a cgroup namespace could write to the host's
/// cgroup files. The test makes a cgroup of its own (pids.max = max) as a sentinel; the
/// container, run by an unprivileged user from `spec --rootless`, tries to write it and to join
/// it. Both must fail and the sentinel must not change.
#[test]
fn cve_2023_25809_rootless_cannot_write_host_cgroups() {
    require_root!();
    let name = unique_id("berth-test-rootless");
    let pids_root = if Path::new("/sys/fs/cgroup/pids").is_dir() {
        "/sys/fs/cgroup/pids"
    } else {
        "/sys/fs/cgroup"
    };
    let sentinel = Path::new(pids_root).join(&name);
    fs::create_dir(&sentinel).unwrap();
    struct Rm<'a>(&'a Path);
    impl Drop for Rm<'_> {
        fn drop(&mut self) {
            let _ = fs::remove_dir(self.0);
        }
    }
    let _rm = Rm(&sentinel);
    let before = fs::read_to_string(sentinel.join("pids.max")).unwrap();

    let b = Bundle::new();
    let _ = fs::remove_file(b.path().join("config.json"));
    let state = b.path().join("state");
    fs::create_dir(&state).unwrap();
    chown_nobody(b.path());
    let out = as_nobody(&["spec", "--rootless"], b.path());
    assert!(out.status.success(), "spec --rootless: {out:?}");
    let cfg_path = b.path().join("config.json");
    let mut cfg: serde_json::Value =
        serde_json::from_str(&fs::read_to_string(&cfg_path).unwrap()).unwrap();
    let inside = Path::new("/sys/fs/cgroup")
        .join(sentinel.strip_prefix("/sys/fs/cgroup").unwrap())
        .join("pids.max");
    cfg["process"]["terminal"] = false.into();
    cfg["process"]["args"] = serde_json::json!(["/probe", "write", inside, "1"]);
    fs::write(&cfg_path, serde_json::to_string(&cfg).unwrap()).unwrap();
    chown_nobody(&cfg_path);

    let id = unique_id("rootless");
    let st = state.to_string_lossy().into_owned();
    let out = as_nobody(&["--root", &st, "run", &id], b.path());
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "rootless run failed: {}\n{}",
        stdout,
        String::from_utf8_lossy(&out.stderr)
    );
    let v = first_json(&stdout);
    assert_eq!(
        v["ok"], false,
        "the rootless container wrote a host cgroup file: {v}"
    );
    assert_eq!(
        fs::read_to_string(sentinel.join("pids.max")).unwrap(),
        before
    );
    let _ = as_nobody(&["--root", &st, "delete", "-f", &id], b.path());
}

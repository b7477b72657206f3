//! Bad input: each is refused with a non-zero exit and a message naming what was wrong (on
//! stderr or in the `--log` JSON log), and leaves nothing behind (no state dir, cgroup, mount or
//! process).

use berth_conformance::{assert_nothing_left, require_root, unique_id, Bundle, Output, Runtime};
use std::fs;

/// stderr plus the JSON log, lowercased: where a runc-compatible runtime reports errors
/// (containerd's shim reads the log).
fn error_text(rt: &Runtime, out: &Output) -> String {
    let log = fs::read_to_string(rt.log_file()).unwrap_or_default();
    format!("{}\n{}", out.stderr, log).to_lowercase()
}

fn assert_mentions(rt: &Runtime, out: &Output, words: &[&str]) {
    let text = error_text(rt, out);
    assert!(
        words.iter().any(|w| text.contains(&w.to_lowercase())),
        "error does not name any of {words:?}:\n{text}"
    );
}

/// runc 1.1.5 answers "runc create failed: unexpected EOF", naming neither the file nor the
/// step: it fails this test.
#[test]
fn bad_input_malformed_config_json() {
    require_root!();
    let rt = Runtime::new();
    let b = Bundle::new();
    let id = unique_id("badjson");
    b.write_config();
    fs::write(
        b.path().join("config.json"),
        "{\"ociVersion\": \"1.0.2\", \"process\": ",
    )
    .unwrap();
    let bp = b.path().to_string_lossy().into_owned();
    rt.track(&id, b.cgroup_path());
    let out = rt.cmd(&["create", "--bundle", &bp, &id]);
    out.assert_fails();
    assert_mentions(&rt, &out, &["config.json", "config"]);
    assert_nothing_left(&rt, &id, &b);
}

#[test]
fn bad_input_missing_config_json() {
    require_root!();
    let rt = Runtime::new();
    let b = Bundle::new();
    let id = unique_id("noconf");
    let bp = b.path().to_string_lossy().into_owned();
    rt.track(&id, b.cgroup_path());
    let out = rt.cmd(&["create", "--bundle", &bp, &id]);
    out.assert_fails();
    assert_mentions(&rt, &out, &["config.json"]);
    assert_nothing_left(&rt, &id, &b);
}

#[test]
fn bad_input_missing_rootfs() {
    require_root!();
    let rt = Runtime::new();
    let b = Bundle::new();
    fs::rename(b.rootfs(), b.path().join("elsewhere")).unwrap();
    let id = unique_id("noroot");
    let out = rt.create(&id, &b, &[]);
    out.assert_fails();
    assert_mentions(&rt, &out, &["rootfs"]);
    assert_nothing_left(&rt, &id, &b);
}

#[test]
fn bad_input_duplicate_id() {
    require_root!();
    let rt = Runtime::new();
    let b = Bundle::new();
    let id = unique_id("dup");
    rt.create(&id, &b, &[]).assert_ok();
    let pid = rt.state(&id)["pid"].clone();
    let b2 = Bundle::new();
    let out = rt.create(&id, &b2, &[]);
    out.assert_fails();
    assert_mentions(&rt, &out, &["exist"]);
    // The first container is untouched, the second left no cgroup.
    let st = rt.state(&id);
    assert_eq!(st["status"], "created");
    assert_eq!(st["pid"], pid);
    assert_eq!(st["bundle"], b.path().to_string_lossy().as_ref());
    assert!(berth_conformance::cgroup_dirs(b2.cgroup_path()).is_empty());
}

#[test]
fn bad_input_invalid_ids() {
    require_root!();
    let rt = Runtime::new();
    for id in ["../escape", "a/b", "..", "with space", ""] {
        let b = Bundle::new();
        let out = rt.create(id, &b, &[]);
        out.assert_fails();
        assert!(
            !rt.root().join("..").join("escape").exists(),
            "an invalid id created a directory outside the root"
        );
        assert!(berth_conformance::cgroup_dirs(b.cgroup_path()).is_empty());
        assert!(berth_conformance::host_mounts_under(b.path()).is_empty());
    }
    let entries: Vec<_> = fs::read_dir(rt.root())
        .map(|r| r.filter_map(Result::ok).map(|e| e.file_name()).collect())
        .unwrap_or_default();
    assert!(
        entries.is_empty(),
        "state left for invalid ids: {entries:?}"
    );
}

/// The host's hard RLIMIT_NOFILE is 20000 and it lacks CAP_SYS_RESOURCE (HOST.md), so a
/// higher limit must be refused, naming the rlimit. runc 1.1.5 says "error setting rlimit type
/// 7", which names neither NOFILE nor the setting: it fails this test.
#[test]
fn bad_input_rlimit_above_hard_limit() {
    require_root!();
    let rt = Runtime::new();
    let mut b = Bundle::new();
    let hard = host_hard_nofile();
    b.spec.rlimit("RLIMIT_NOFILE", hard + 10000, hard + 10000);
    let id = unique_id("rlim");
    let out = rt.create(&id, &b, &[]);
    if out.success() && has_cap_sys_resource() {
        eprintln!("skipping: this host has CAP_SYS_RESOURCE, raising rlimits is allowed");
        return;
    }
    out.assert_fails();
    assert_mentions(&rt, &out, &["rlimit_nofile", "nofile"]);
    assert_nothing_left(&rt, &id, &b);
}

/// Lowering oom_score_adj below the caller's needs CAP_SYS_RESOURCE, which this host's bounding
/// set lacks (HOST.md): refused, with an error that names the setting.
#[test]
fn bad_input_negative_oom_score_adj() {
    require_root!();
    if has_cap_sys_resource() {
        eprintln!("skipping: this host has CAP_SYS_RESOURCE, lowering oom_score_adj is allowed");
        return;
    }
    let rt = Runtime::new();
    let mut b = Bundle::new();
    b.spec.oom_score_adj(-500);
    let id = unique_id("oom");
    let out = rt.create(&id, &b, &[]);
    out.assert_fails();
    assert_mentions(&rt, &out, &["oom_score_adj", "oomscoreadj"]);
    assert_nothing_left(&rt, &id, &b);
}

#[test]
fn bad_input_start_and_delete_unknown_container() {
    require_root!();
    let rt = Runtime::new();
    for verb in ["start", "state", "kill", "delete", "ps"] {
        let out = rt.cmd(&[verb, "no-such-container"]);
        out.assert_fails();
        assert_mentions(&rt, &out, &["no-such-container", "not exist", "not found"]);
    }
}

fn host_hard_nofile() -> u64 {
    let limits = fs::read_to_string("/proc/self/limits").unwrap();
    let line = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .unwrap();
    line.split_whitespace().nth(4).unwrap().parse().unwrap()
}

fn has_cap_sys_resource() -> bool {
    let status = fs::read_to_string("/proc/self/status").unwrap();
    let bnd = status
        .lines()
        .find_map(|l| l.strip_prefix("CapBnd:"))
        .unwrap();
    u64::from_str_radix(bnd.trim(), 16).unwrap() & (1 << 24) != 0
}

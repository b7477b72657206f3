//! cgroups: memory and pids limits are visible in the container's cgroup on the host (v1 on the
//! hybrid hosts, v2 in the VM), the container is in that cgroup, and delete removes it.
//! `scripts/test-vm.sh` runs this whole file in the cgroup v2 VM.

use berth_conformance::{
    cgroup_dirs, cgroup_file, is_cgroup_v2_only, require_root, unique_id, Bundle, Runtime,
};
use std::fs;

fn read_file(cg: &str, names: &[&str]) -> String {
    let f = names
        .iter()
        .find_map(|n| cgroup_file(cg, n))
        .unwrap_or_else(|| panic!("none of {names:?} under cgroup {cg}: {:?}", cgroup_dirs(cg)));
    fs::read_to_string(&f).unwrap().trim().to_string()
}

#[test]
fn cgroups_memory_and_pids_limits_applied() {
    require_root!();
    let rt = Runtime::new();
    let mut b = Bundle::new();
    b.spec.memory_limit(64 << 20).pids_limit(42);
    let cg = b.cgroup_path().to_string();
    let id = rt.start_sleeper(&mut b);
    let pid = rt.state(&id)["pid"].as_u64().unwrap().to_string();

    assert_eq!(
        read_file(&cg, &["memory.max", "memory.limit_in_bytes"]),
        (64u64 << 20).to_string()
    );
    assert_eq!(read_file(&cg, &["pids.max"]), "42");
    let procs = read_file(&cg, &["cgroup.procs"]);
    assert!(
        procs.split_whitespace().any(|p| p == pid),
        "init {pid} not in {cg}: {procs}"
    );
    // The container's own view names the same cgroup (no cgroup namespace in this spec).
    let own = fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap();
    assert!(own.lines().all(|l| l.ends_with(&cg)), "{own}");
    // An exec'd process joins the same cgroup in every hierarchy (it moves itself into the v1
    // ones through `tasks`, and is forked into the v2 one).
    let out = rt.exec(&id, &[], &["/bin/cat", "/proc/self/cgroup"]);
    out.assert_ok();
    let theirs = &out.stdout;
    assert_eq!(theirs.lines().count(), own.lines().count(), "{theirs}");
    assert!(theirs.lines().all(|l| l.ends_with(&cg)), "{theirs}");

    rt.delete(&id, true).assert_ok();
    assert!(
        cgroup_dirs(&cg).is_empty(),
        "delete left the cgroup: {:?}",
        cgroup_dirs(&cg)
    );
}

#[test]
fn cgroups_pids_limit_enforced() {
    require_root!();
    let rt = Runtime::new();
    let mut b = Bundle::new();
    b.spec.pids_limit(5);
    b.spec.args(&["/probe", "spawn", "10"]);
    let out = rt.run(&unique_id("pids"), &b, &[]);
    out.assert_ok();
    let v = out.json();
    let n = v["started"].as_u64().unwrap();
    // pids.max counts the probe itself: at most 4 of the 10 children can exist.
    assert!(
        (1..=4).contains(&n),
        "pids.max=5 did not stop forks: {n} started\n{out}"
    );
}

#[test]
fn cgroups_delete_of_stopped_container_removes_cgroup() {
    require_root!();
    let rt = Runtime::new();
    let mut b = Bundle::new();
    b.spec.args(&["/bin/true"]);
    let id = unique_id("cgdel");
    rt.create(&id, &b, &[]).assert_ok();
    assert!(
        !cgroup_dirs(b.cgroup_path()).is_empty(),
        "create made no cgroup"
    );
    rt.start(&id).assert_ok();
    rt.wait_status(&id, "stopped");
    rt.delete(&id, false).assert_ok();
    assert!(cgroup_dirs(b.cgroup_path()).is_empty());
}

/// Only meaningful on a pure cgroup v2 host (the VM): the container's cgroup is a v2 one with
/// the controllers enabled for it.
#[test]
fn cgroupv2_limits_in_unified_hierarchy() {
    require_root!();
    if !is_cgroup_v2_only() {
        eprintln!("skipping: needs a pure cgroup v2 host (run scripts/test-vm.sh)");
        return;
    }
    let rt = Runtime::new();
    let mut b = Bundle::new();
    b.spec.memory_limit(32 << 20).pids_limit(20);
    let cg = b.cgroup_path().to_string();
    let id = rt.start_sleeper(&mut b);
    let dir = std::path::Path::new("/sys/fs/cgroup").join(cg.trim_start_matches('/'));
    assert_eq!(
        fs::read_to_string(dir.join("memory.max")).unwrap().trim(),
        (32u64 << 20).to_string()
    );
    assert_eq!(
        fs::read_to_string(dir.join("pids.max")).unwrap().trim(),
        "20"
    );
    let pid = rt.state(&id)["pid"].as_u64().unwrap();
    let own = fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap();
    assert_eq!(own.trim(), format!("0::{cg}"));
    rt.delete(&id, true).assert_ok();
    assert!(!dir.exists());
}

/// `update`: new limits land in the running container's cgroup files.
#[test]
fn cgroups_update_changes_limits_live() {
    require_root!();
    let rt = Runtime::new();
    let mut b = Bundle::new();
    b.spec.memory_limit(64 << 20).pids_limit(42);
    let cg = b.cgroup_path().to_string();
    let id = rt.start_sleeper(&mut b);
    rt.cmd(&[
        "update",
        "--memory",
        "134217728",
        "--pids-limit",
        "77",
        "--cpu-quota",
        "50000",
        "--cpu-period",
        "100000",
        &id,
    ])
    .assert_ok();
    assert_eq!(
        read_file(&cg, &["memory.max", "memory.limit_in_bytes"]),
        (128u64 << 20).to_string()
    );
    assert_eq!(read_file(&cg, &["pids.max"]), "77");
    if is_cgroup_v2_only() {
        assert_eq!(read_file(&cg, &["cpu.max"]), "50000 100000");
    } else {
        assert_eq!(read_file(&cg, &["cpu.cfs_quota_us"]), "50000");
    }
    // A value the runtime cannot parse is refused and changes nothing.
    assert!(!rt.cmd(&["update", "--memory", "12zz", &id]).success());
    assert_eq!(read_file(&cg, &["pids.max"]), "77");
    rt.delete(&id, true).assert_ok();
}

/// `pause` freezes the container (state says paused, the freezer says frozen), `resume` thaws.
#[test]
fn cgroups_pause_and_resume() {
    require_root!();
    let rt = Runtime::new();
    let mut b = Bundle::new();
    let cg = b.cgroup_path().to_string();
    let id = rt.start_sleeper(&mut b);
    rt.cmd(&["pause", &id]).assert_ok();
    assert_eq!(rt.state(&id)["status"], "paused");
    if is_cgroup_v2_only() {
        assert_eq!(read_file(&cg, &["cgroup.freeze"]), "1");
    } else {
        assert_eq!(read_file(&cg, &["freezer.state"]), "FROZEN");
    }
    let pid = rt.state(&id)["pid"].as_u64().unwrap();
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let state = stat
        .rsplit(')')
        .next()
        .unwrap()
        .split_whitespace()
        .next()
        .unwrap();
    assert!(
        matches!(state, "D" | "S" | "t" | "T"),
        "frozen init in state {state}"
    );
    rt.cmd(&["resume", &id]).assert_ok();
    assert_eq!(rt.state(&id)["status"], "running");
    if !is_cgroup_v2_only() {
        assert_eq!(read_file(&cg, &["freezer.state"]), "THAWED");
    }
    rt.delete(&id, true).assert_ok();
}

/// `events --stats` prints one stats event with the container's limits and usage, and `ps
/// --format json` lists its processes.
#[test]
fn cgroups_events_stats_and_ps() {
    require_root!();
    let rt = Runtime::new();
    let mut b = Bundle::new();
    b.spec.memory_limit(64 << 20).pids_limit(42);
    let id = rt.start_sleeper(&mut b);
    let out = rt.cmd(&["events", "--stats", &id]);
    out.assert_ok();
    let v = berth_conformance::first_json(&out.stdout);
    assert_eq!(v["type"], "stats", "{v}");
    assert_eq!(v["id"], id.as_str(), "{v}");
    assert_eq!(v["data"]["memory"]["usage"]["limit"], 64u64 << 20, "{v}");
    assert!(
        v["data"]["memory"]["usage"]["usage"].as_u64().unwrap_or(0) > 0,
        "{v}"
    );
    assert!(
        v["data"]["pids"]["current"].as_u64().unwrap_or(0) >= 1,
        "{v}"
    );
    assert_eq!(v["data"]["pids"]["limit"], 42, "{v}");
    let pid = rt.state(&id)["pid"].as_u64().unwrap();
    let ps = rt.cmd(&["ps", "--format", "json", &id]);
    ps.assert_ok();
    let pids: Vec<u64> = serde_json::from_str(ps.stdout.trim()).unwrap();
    assert!(pids.contains(&pid), "{pids:?} lacks init {pid}");
    rt.delete(&id, true).assert_ok();
}

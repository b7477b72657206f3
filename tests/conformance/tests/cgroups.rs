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

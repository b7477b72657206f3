//! Namespaces: new ones differ from the host's, joined ones equal the target's; user-namespace
//! mappings, time-namespace offsets, hostname and domainname.

use berth_conformance::{ns_link, require_root, Bundle, Runtime};
use serde_json::Value;
use std::fs;

/// (probe/`/proc/PID/ns` name, spec type)
const NAMESPACES: &[(&str, &str)] = &[
    ("mnt", "mount"),
    ("uts", "uts"),
    ("ipc", "ipc"),
    ("pid", "pid"),
    ("net", "network"),
    ("cgroup", "cgroup"),
];

fn host_ns(ns: &str) -> String {
    ns_link("self", ns)
}

#[test]
fn namespaces_new_differ_from_host() {
    require_root!();
    let rt = Runtime::new();
    let mut b = Bundle::new();
    b.spec.namespace("cgroup", None);
    let v = rt.run_probe(&mut b, &[]);
    for (ns, _) in NAMESPACES {
        assert_ne!(
            v["ns"][ns],
            host_ns(ns).as_str(),
            "container shares the host's {ns} namespace"
        );
    }
    assert_eq!(
        v["ns"]["user"],
        host_ns("user").as_str(),
        "no user namespace was asked for"
    );
}

#[test]
fn namespaces_absent_means_shared_with_host() {
    require_root!();
    let rt = Runtime::new();
    let mut b = Bundle::new();
    b.spec.remove_namespace("network").remove_namespace("ipc");
    let v = rt.run_probe(&mut b, &[]);
    assert_eq!(v["ns"]["net"], host_ns("net").as_str());
    assert_eq!(v["ns"]["ipc"], host_ns("ipc").as_str());
    assert_ne!(v["ns"]["uts"], host_ns("uts").as_str());
}

#[test]
fn namespaces_joined_by_path() {
    require_root!();
    let rt = Runtime::new();
    let mut target = Bundle::new();
    target.spec.namespace("cgroup", None);
    let tid = rt.start_sleeper(&mut target);
    let tpid = rt.state(&tid)["pid"].as_u64().unwrap().to_string();

    let mut b = Bundle::new();
    for (ns, kind) in NAMESPACES.iter().filter(|(n, _)| *n != "mnt") {
        b.spec
            .namespace(kind, Some(&format!("/proc/{tpid}/ns/{ns}")));
    }
    // Joining another container's PID namespace makes this process a non-init member of it.
    let v = rt.run_probe(&mut b, &[]);
    for (ns, _) in NAMESPACES.iter().filter(|(n, _)| *n != "mnt") {
        assert_eq!(
            v["ns"][ns],
            ns_link(&tpid, ns).as_str(),
            "{ns} namespace not joined by path"
        );
    }
    assert_ne!(v["pid"], 1, "joined PID namespace but became its init: {v}");
    assert_ne!(v["ns"]["mnt"], ns_link(&tpid, "mnt").as_str());
}

#[test]
fn user_namespace_mappings_root_inside_unprivileged_outside() {
    require_root!();
    let rt = Runtime::new();
    let mut b = Bundle::new();
    b.spec.user_namespace(100000, 65536);
    // A v1 cgroup mount in a user namespace is not allowed: keep the test about user namespaces.
    b.spec.remove_mount("/sys/fs/cgroup");
    let id = rt.start_sleeper(&mut b);
    let pid = rt.state(&id)["pid"].as_u64().unwrap();
    let status = fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let uid_line = status.lines().find(|l| l.starts_with("Uid:")).unwrap();
    let host_uids: Vec<&str> = uid_line.split_whitespace().skip(1).collect();
    assert_eq!(
        host_uids, ["100000"; 4],
        "container root is not uid 100000 on the host"
    );
    assert_ne!(ns_link(&pid.to_string(), "user"), host_ns("user"));

    let out = rt.exec(&id, &[], &["/probe"]);
    out.assert_ok();
    let v = out.json();
    assert_eq!(v["status"]["Uid"], serde_json::json!([0, 0, 0, 0]));
    let map: Vec<String> = v["uid_map"]
        .as_str()
        .unwrap()
        .split_whitespace()
        .map(str::to_string)
        .collect();
    assert_eq!(map, ["0", "100000", "65536"]);
    let gmap: Vec<String> = v["gid_map"]
        .as_str()
        .unwrap()
        .split_whitespace()
        .map(str::to_string)
        .collect();
    assert_eq!(gmap, ["0", "100000", "65536"]);
}

/// runc 1.1.5 does not know the time namespace (added in runc 1.2): it fails this test.
#[test]
fn time_namespace_with_offsets() {
    require_root!();
    let rt = Runtime::new();
    let mut b = Bundle::new();
    b.spec.namespace("time", None);
    b.spec.set(
        "/linux/timeOffsets",
        serde_json::json!({
            "monotonic": { "secs": 86400, "nanosecs": 0 },
            "boottime": { "secs": 172800, "nanosecs": 0 }
        }),
    );
    let v = rt.run_probe(&mut b, &[]);
    assert_ne!(v["ns"]["time"], host_ns("time").as_str());
    let offsets = v["timens_offsets"]
        .as_str()
        .unwrap_or_else(|| panic!("{v}"));
    let parsed: Vec<Vec<&str>> = offsets
        .lines()
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert!(
        parsed.contains(&vec!["monotonic", "86400", "0"]),
        "{offsets}"
    );
    assert!(
        parsed.contains(&vec!["boottime", "172800", "0"]),
        "{offsets}"
    );
    // /proc/uptime follows the boottime offset.
    let host_up: f64 = fs::read_to_string("/proc/uptime")
        .unwrap()
        .split(' ')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    let up: f64 = v["uptime"]
        .as_str()
        .unwrap()
        .split(' ')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    assert!(
        up >= 172800.0 && up > host_up,
        "uptime {up} ignores the boottime offset"
    );
}

/// runc 1.1.5 ignores `domainname` (support came in runc 1.2): it fails this test.
#[test]
fn hostname_and_domainname() {
    require_root!();
    let rt = Runtime::new();
    let mut b = Bundle::new();
    b.spec.hostname("box-one").domainname("example.test");
    let v = rt.run_probe(&mut b, &[]);
    assert_eq!(v["hostname"], "box-one");
    assert_eq!(v["domainname"], "example.test");
    let host = fs::read_to_string("/proc/sys/kernel/hostname").unwrap();
    assert_ne!(host.trim(), "box-one", "the host's hostname was changed");
}

#[test]
fn pid_namespace_init_sees_only_its_processes() {
    require_root!();
    let rt = Runtime::new();
    let mut b = Bundle::new();
    let lines = berth_conformance::run_script(
        &rt,
        &mut b,
        "ls /proc | grep -c '^[0-9]*$' | sed 's/.*/{\"count\":&}/'",
    );
    let v: &Value = lines.first().expect("output");
    // sh, ls, grep, sed: a handful, never the host's hundreds.
    assert!(v["count"].as_u64().unwrap() <= 5, "{v}");
}

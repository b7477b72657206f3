//! seccomp through the runtime's command line: the filter is active in the container, an
//! `SCMP_ACT_ERRNO` rule returns its errno, and `SCMP_ACT_NOTIFY` hands the listener fd to
//! `listenerPath`.

use berth_conformance::{first_json, require_root, unique_id, Bundle, ConsoleSocket, Runtime};
use serde_json::json;

/// The notify fd of a profile with `SCMP_ACT_NOTIFY` reaches the agent at `listenerPath`, and
/// the container (which never makes the notified syscall) runs normally under the filter.
#[test]
fn seccomp_notify_fd_reaches_the_listener() {
    require_root!();
    let rt = Runtime::new();
    let mut b = Bundle::new();
    let sock_path = rt.scratch().join("seccomp-agent.sock");
    let mut agent = ConsoleSocket::bind(&sock_path);
    b.spec.args(&["/probe"]);
    b.spec.set(
        "/linux/seccomp",
        json!({
            "defaultAction": "SCMP_ACT_ALLOW",
            "listenerPath": sock_path,
            "listenerMetadata": "berth-conformance",
            "syscalls": [{"names": ["mkdirat", "mkdir"], "action": "SCMP_ACT_NOTIFY"}]
        }),
    );
    let id = unique_id("notify");
    let out = rt.run(&id, &b, &[]);
    out.assert_ok();
    let v = first_json(&out.stdout);
    assert_eq!(
        v["status"]["Seccomp"], 2,
        "the filter is not active: {}",
        v["status"]
    );
    let fd = agent.master();
    let link = std::fs::read_link(format!(
        "/proc/self/fd/{}",
        std::os::fd::AsRawFd::as_raw_fd(&fd)
    ))
    .unwrap();
    assert!(
        link.to_string_lossy().contains("seccomp"),
        "the listener got {} instead of a seccomp notify fd",
        link.display()
    );
}

/// An `SCMP_ACT_ERRNO` rule with `errnoRet` makes the syscall fail with that errno inside the
/// container, while everything else is allowed.
#[test]
fn seccomp_errno_rule_applies_in_the_container() {
    require_root!();
    let rt = Runtime::new();
    let mut b = Bundle::new();
    b.spec.args(&["/bin/sh", "-c", "mkdir /tmp/x; echo rc=$?"]);
    b.spec.set(
        "/linux/seccomp",
        json!({
            "defaultAction": "SCMP_ACT_ALLOW",
            "syscalls": [{"names": ["mkdirat", "mkdir"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1}]
        }),
    );
    let id = unique_id("errno");
    let out = rt.run(&id, &b, &[]);
    out.assert_ok();
    assert!(out.stdout.contains("rc=1"), "{}", out.stdout);
    assert!(
        out.stdout.contains("not permitted") || out.stderr.contains("not permitted"),
        "mkdir did not fail with EPERM: {} {}",
        out.stdout,
        out.stderr
    );
}

//! berth-net against real network namespaces that each test creates (`unshare --net` holding a
//! `sleep`), so nothing is ever made in the host's namespace. Root only; skips otherwise.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};

fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

/// A throwaway network namespace, held by a child process; killed (by PID) on drop, which
/// destroys the namespace and everything in it.
struct Netns {
    child: Child,
}

impl Netns {
    fn new() -> Self {
        let child = Command::new("unshare")
            .args(["--net", "sleep", "600"])
            .stdin(Stdio::null())
            .spawn()
            .unwrap();
        let ns = Self { child };
        // Wait until the child is inside its own namespace.
        let own = std::fs::read_link("/proc/self/ns/net").unwrap();
        for _ in 0..500 {
            if std::fs::read_link(ns.path()).ok().is_some_and(|l| l != own) {
                return ns;
            }
            std::thread::sleep(std::time::Duration::from_millis(2));
        }
        panic!("unshare did not enter a new network namespace");
    }

    fn path(&self) -> PathBuf {
        PathBuf::from(format!("/proc/{}/ns/net", self.child.id()))
    }

    fn sh(&self, cmd: &str) -> String {
        let out = Command::new("nsenter")
            .arg(format!("--net={}", self.path().display()))
            .args(["sh", "-c", cmd])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{cmd}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn loopback_comes_up_in_a_new_namespace_and_ours_is_untouched() {
    if !is_root() {
        eprintln!("skipping: needs root");
        return;
    }
    let ns = Netns::new();
    // (ip, not /sys: sysfs shows the namespace of whoever mounted it.)
    let lo = "ip -o link show lo";
    assert!(!ns.sh(lo).contains(",UP"), "lo starts down");
    let own_before = std::fs::read_link("/proc/self/ns/net").unwrap();
    berth_net::loopback_up(&ns.path()).unwrap();
    assert!(ns.sh(lo).contains(",UP"), "{}", ns.sh(lo));
    // Idempotent, and we are back in our own namespace.
    berth_net::loopback_up(&ns.path()).unwrap();
    assert_eq!(std::fs::read_link("/proc/self/ns/net").unwrap(), own_before);
}

#[test]
fn a_missing_namespace_is_a_clear_error() {
    if !is_root() {
        eprintln!("skipping: needs root");
        return;
    }
    let e = berth_net::loopback_up(std::path::Path::new("/proc/999999999/ns/net")).unwrap_err();
    assert!(matches!(e, berth_net::NetlinkError::Socket(_)), "{e:?}");
}

//! Warming the kernel's cgroup migration lock before a new container's process is moved.
//!
//! Where cgroup v1 hierarchies are mounted, a new container process joins its cgroup by a
//! write to `cgroup.procs` (on a cgroup v2-only host it is forked straight into it, with
//! `CLONE_INTO_CGROUP`). Each such write takes the kernel's global `cgroup_threadgroup_rwsem`
//! for writing, and the first writer after a quiet spell waits out a full RCU grace period
//! (`rcu_sync_enter`): 7-15 ms on our 2-vCPU test VM, more than half of a `berth run --rm`.
//! A writer that comes within about one grace period of the previous one does not wait.
//!
//! [`prime`] forks a small process that moves itself into the cgroup it is already in (a
//! no-op move that still takes the lock) every few milliseconds, so the grace period passes
//! while the caller mounts the rootfs and writes the spec, and the real move finds the lock
//! warm. The process exits when the [`Primer`] is dropped, after one second at most, or when
//! its parent dies. It changes nothing: it never leaves its own cgroup, and it avoids the
//! memory hierarchy altogether. Measurements: `bench/RESULTS.md`, "Engine".

use std::ffi::CString;
use std::os::fd::OwnedFd;
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};

use nix::sys::wait::waitpid;
use nix::unistd::Pid;

use super::layout::{Layout, LayoutKind, Membership, Version};

/// The running primer process; dropping it stops and reaps it.
#[derive(Debug)]
pub struct Primer {
    pid: Pid,
    stop: Option<OwnedFd>,
}

/// Set while this process has a primer running: one is enough (the engine starts one before
/// it prepares the rootfs, and the runtime's `create` then needs none of its own).
static RUNNING: AtomicBool = AtomicBool::new(false);

impl Drop for Primer {
    fn drop(&mut self) {
        // Closing the pipe wakes the primer, which exits after the write it is in (by the
        // time the caller's own move is done, that write has long returned).
        drop(self.stop.take());
        let _ = waitpid(self.pid, None);
        RUNNING.store(false, Ordering::SeqCst);
    }
}

/// The `cgroup.procs` file the primer writes to: the caller's own cgroup in a v1 hierarchy
/// other than the memory controller's. `None` on a cgroup v2-only host, where no move is
/// needed.
pub fn target(layout: &Layout, me: &Membership) -> Option<PathBuf> {
    if layout.kind == LayoutKind::Unified {
        return None;
    }
    let v1 = || {
        layout
            .hierarchies
            .iter()
            .filter(|h| h.version == Version::V1)
    };
    let hierarchy = v1()
        .find(|h| h.has("pids"))
        .or_else(|| v1().find(|h| !h.has("memory")))?;
    let path = me.path_in(hierarchy)?;
    hierarchy
        .dir_of(path)
        .ok()
        .map(|dir| dir.join("cgroup.procs"))
}

/// Starts a primer if this host moves processes between cgroups by writing `cgroup.procs`.
/// Best effort: `None` when there is nothing to warm or the fork failed. Call it only while
/// the process is single-threaded (the engine and the runtime are).
pub fn prime() -> Option<Primer> {
    if RUNNING.swap(true, Ordering::SeqCst) {
        return None;
    }
    let primer = start();
    if primer.is_none() {
        RUNNING.store(false, Ordering::SeqCst);
    }
    primer
}

fn start() -> Option<Primer> {
    let layout = Layout::detect().ok()?;
    let me = Membership::of_self().ok()?;
    let file = target(&layout, &me)?;
    let file = CString::new(file.as_os_str().as_bytes()).ok()?;
    let (pid, stop) = crate::sys::cgroup::spawn_migration_primer(&file)?;
    Some(Primer {
        pid,
        stop: Some(stop),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const HYBRID: &str = "\
30 25 0:26 / /sys/fs/cgroup/memory rw,relatime shared:9 - cgroup cgroup rw,memory
31 25 0:27 / /sys/fs/cgroup/cpu,cpuacct rw,relatime shared:10 - cgroup cgroup rw,cpu,cpuacct
32 25 0:28 / /sys/fs/cgroup/pids rw,relatime shared:11 - cgroup cgroup rw,pids
33 25 0:29 / /sys/fs/cgroup/unified rw,relatime shared:12 - cgroup2 cgroup2 rw
";

    #[test]
    fn primes_in_the_callers_own_pids_cgroup() {
        let layout = Layout::from_mountinfo(HYBRID).unwrap();
        let me = Membership::parse("3:pids:/user/a\n2:cpu,cpuacct:/\n1:memory:/limited\n0::/\n");
        assert_eq!(
            target(&layout, &me),
            Some(PathBuf::from("/sys/fs/cgroup/pids/user/a/cgroup.procs"))
        );
    }

    #[test]
    fn never_uses_the_memory_hierarchy() {
        let only_memory = "\
30 25 0:26 / /sys/fs/cgroup/memory rw,relatime shared:9 - cgroup cgroup rw,memory
31 25 0:27 / /sys/fs/cgroup/cpu,cpuacct rw,relatime shared:10 - cgroup cgroup rw,cpu,cpuacct
";
        let layout = Layout::from_mountinfo(only_memory).unwrap();
        let me = Membership::parse("2:cpu,cpuacct:/x\n1:memory:/limited\n");
        assert_eq!(
            target(&layout, &me),
            Some(PathBuf::from("/sys/fs/cgroup/cpu,cpuacct/x/cgroup.procs"))
        );
        let memory =
            "30 25 0:26 / /sys/fs/cgroup/memory rw,relatime shared:9 - cgroup cgroup rw,memory\n";
        let layout = Layout::from_mountinfo(memory).unwrap();
        assert_eq!(
            target(&layout, &Membership::parse("1:memory:/limited\n")),
            None
        );
    }

    #[test]
    fn nothing_to_prime_on_a_unified_host() {
        let layout = Layout::from_mountinfo(
            "33 25 0:29 / /sys/fs/cgroup rw,relatime shared:12 - cgroup2 cgroup2 rw\n",
        )
        .unwrap();
        assert_eq!(
            target(&layout, &Membership::parse("0::/user.slice\n")),
            None
        );
    }

    #[test]
    fn the_primer_stays_in_its_cgroup_and_is_reaped() {
        let Some(p) = prime() else {
            return; // a unified host: nothing to warm
        };
        let pid = p.pid;
        assert!(prime().is_none(), "a second primer while one runs");
        std::thread::sleep(std::time::Duration::from_millis(20));
        let mine = std::fs::read_to_string("/proc/self/cgroup").unwrap();
        let theirs = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap();
        assert_eq!(mine, theirs, "the primer moved to another cgroup");
        drop(p);
        assert!(
            !std::path::Path::new(&format!("/proc/{pid}")).exists(),
            "the primer was not reaped"
        );
    }
}

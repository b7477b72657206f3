//! End to end: Debian's podman (4.3) runs a container with `--runtime <runtime under test>`.
//! Private storage (`--root`, `--runroot`, vfs driver: no mounts to leak), a private
//! containers.conf through CONTAINERS_CONF with the settings these hosts need (PEERS.md:
//! nofile 20000, cgroupfs, file events), no network, and a cgroup parent under /berth-test.

use berth_conformance::{
    build_busybox_images, cgroup_dirs, have_tools, host_cmd, kill_cgroup_processes,
    pids_with_cmdline, remove_cgroup, require_root, runtime_path, unique_id, unmount_all_under,
    HostOutput, TempDir,
};
use std::process::Command;

struct Podman {
    dir: TempDir,
    conf: String,
    cgroup_parent: String,
}

impl Podman {
    fn new() -> Podman {
        let dir = TempDir::new("podman");
        let d = dir.path().to_string_lossy().into_owned();
        let conf = format!("{d}/containers.conf");
        // Rootful podman also asks for RLIMIT_NPROC 1048576, which this host refuses (no
        // CAP_SYS_RESOURCE); even the host's own hard limit fails further down podman's process
        // chain, so a modest 4096 is pinned.
        std::fs::write(
            &conf,
            format!(
                "[containers]\ndefault_ulimits = [\"nofile=20000:20000\", \"nproc=4096:4096\"]\n\
                 [engine]\ncgroup_manager = \"cgroupfs\"\nevents_logger = \"file\"\n\
                 events_logfile_path = \"{d}/events.log\"\n"
            ),
        )
        .unwrap();
        Podman {
            conf,
            cgroup_parent: format!("/berth-test/{}", unique_id("podman")),
            dir,
        }
    }

    fn podman(&self, args: &[&str]) -> HostOutput {
        let d = self.dir.path().to_string_lossy().into_owned();
        let root = format!("{d}/storage");
        let runroot = format!("{d}/run");
        let tmpdir = format!("{d}/tmp");
        let mut a = vec![
            "--root",
            &root,
            "--runroot",
            &runroot,
            "--tmpdir",
            &tmpdir,
            "--storage-driver",
            "vfs",
            "--cgroup-manager",
            "cgroupfs",
            "--events-backend",
            "file",
        ];
        a.extend_from_slice(args);
        host_cmd("podman", &a, &[("CONTAINERS_CONF", &self.conf)])
    }
}

impl Drop for Podman {
    fn drop(&mut self) {
        let _ = self.podman(&["rm", "--all", "--force"]);
        // conmon's command line names this test's private runroot/storage directory.
        for pid in pids_with_cmdline(&self.dir.path().to_string_lossy()) {
            let _ = Command::new("kill").args(["-9", &pid.to_string()]).status();
        }
        kill_cgroup_processes(&self.cgroup_parent);
        remove_cgroup(&self.cgroup_parent);
        unmount_all_under(self.dir.path());
    }
}

#[test]
fn e2e_podman_run_rm_with_runtime() {
    require_root!();
    if !have_tools(&["podman", "conmon", "umoci"]) {
        return;
    }
    let runtime = runtime_path().to_string_lossy().into_owned();
    let p = Podman::new();
    let work = TempDir::new("podman-img");
    let (rootfs_tar, _) = build_busybox_images(work.path());
    let image = "localhost/berth-busybox:latest";
    p.podman(&["import", &rootfs_tar.to_string_lossy(), image])
        .assert_ok();

    let out = p.podman(&[
        "--runtime",
        &runtime,
        "run",
        "--rm",
        "--network",
        "none",
        "--cgroup-parent",
        &p.cgroup_parent,
        image,
        "/bin/sh",
        "-c",
        "echo hello from podman; cat /proc/self/cgroup; exit 5",
    ]);
    assert_eq!(out.status.code(), Some(5), "{out}");
    let mut lines = out.stdout.lines();
    assert_eq!(lines.next(), Some("hello from podman"), "{out}");
    // The container ran below the cgroup parent this test chose (not the caller's cgroup).
    assert!(
        out.stdout.contains(&p.cgroup_parent),
        "container not under {}: {out}",
        p.cgroup_parent
    );
    let ps = p.podman(&["ps", "--all", "--quiet"]);
    ps.assert_ok();
    assert_eq!(ps.stdout.trim(), "", "--rm left a container: {ps}");
    // Only the parent and podman's own `conmon` cgroup below it may remain; the container's
    // cgroup is gone.
    for d in cgroup_dirs(&p.cgroup_parent) {
        let children: Vec<_> = std::fs::read_dir(&d)
            .unwrap()
            .filter_map(Result::ok)
            .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()) && e.file_name() != "conmon")
            .map(|e| e.path())
            .collect();
        assert!(children.is_empty(), "container cgroups left: {children:?}");
    }
}

//! End to end: Debian's containerd (1.6) drives the runtime under test through its runc shim
//! (`ctr run --runc-binary`). A private containerd (own config, root, state and socket under
//! /tmp) is started by the test and killed by PID at the end; the image is built offline.

use berth_conformance::{
    build_busybox_images, cgroup_dirs, have_tools, host_cmd, kill_cgroup_processes,
    pids_with_cmdline, remove_cgroup, require_root, runtime_path, unique_id, unmount_all_under,
    HostOutput, TempDir,
};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A private containerd; dropping it stops it and everything it started.
struct Containerd {
    dir: TempDir,
    sock: String,
    ns: String,
    child: Child,
    cgroups: Vec<String>,
}

impl Containerd {
    fn start() -> Containerd {
        let dir = TempDir::new("ctrd");
        let d = dir.path().to_string_lossy().into_owned();
        let sock = format!("{d}/containerd.sock");
        let config = format!(
            "version = 2\nroot = \"{d}/root\"\nstate = \"{d}/state\"\n\
             disabled_plugins = [\"io.containerd.grpc.v1.cri\"]\n\
             [grpc]\n  address = \"{sock}\"\n[ttrpc]\n  address = \"{sock}.ttrpc\"\n\
             [debug]\n  address = \"{d}/debug.sock\"\n"
        );
        let cfg: PathBuf = dir.path().join("config.toml");
        std::fs::write(&cfg, config).unwrap();
        let log = std::fs::File::create(dir.path().join("containerd.log")).unwrap();
        let child = Command::new("containerd")
            .arg("--config")
            .arg(&cfg)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("starting containerd");
        let c = Containerd {
            dir,
            sock,
            ns: unique_id("berth"),
            child,
            cgroups: Vec::new(),
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        while !c.ctr(&["version"]).status.success() {
            assert!(
                Instant::now() < deadline,
                "containerd did not come up: {}",
                c.log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        c
    }

    fn ctr(&self, args: &[&str]) -> HostOutput {
        let mut a = vec!["--address", &self.sock, "--namespace", &self.ns];
        a.extend_from_slice(args);
        host_cmd("ctr", &a, &[])
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("containerd.log")).unwrap_or_default()
    }

    fn cgroup(&mut self, id: &str) -> String {
        let cg = format!("/berth-test/{id}");
        self.cgroups.push(cg.clone());
        cg
    }
}

impl Drop for Containerd {
    fn drop(&mut self) {
        // Tasks and containers first (best effort), then containerd, then its shims: their
        // command lines name this containerd's unique socket, so they are this test's.
        let tasks = self.ctr(&["task", "ls", "-q"]).stdout;
        for t in tasks.lines() {
            let _ = self.ctr(&["task", "kill", "-s", "SIGKILL", t]);
            let _ = self.ctr(&["task", "delete", "-f", t]);
        }
        for c in self.ctr(&["container", "ls", "-q"]).stdout.lines() {
            let _ = self.ctr(&["container", "delete", c]);
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        for pid in pids_with_cmdline(&self.sock) {
            let _ = Command::new("kill").args(["-9", &pid.to_string()]).status();
        }
        for cg in &self.cgroups {
            kill_cgroup_processes(cg);
            remove_cgroup(cg);
        }
        unmount_all_under(self.dir.path());
        // The shim keeps runc's state for this namespace under /run/containerd/runc/<ns>.
        let _ = std::fs::remove_dir_all(format!("/run/containerd/runc/{}", self.ns));
    }
}

#[test]
fn e2e_containerd_run_output_exit_code_and_exec() {
    require_root!();
    if !have_tools(&["containerd", "ctr", "umoci"]) {
        return;
    }
    let runtime = runtime_path().to_string_lossy().into_owned();
    let work = TempDir::new("ctrd-img");
    let (_, oci_tar) = build_busybox_images(work.path());
    let mut c = Containerd::start();
    let image = "localhost/berth-busybox:latest";
    c.ctr(&[
        "images",
        "import",
        "--base-name",
        "localhost/berth-busybox",
        &oci_tar.to_string_lossy(),
    ])
    .assert_ok();

    // Foreground run: output and exit code come back through the shim.
    let id = unique_id("ctr-run");
    let cg = c.cgroup(&id);
    let out = c.ctr(&[
        "run",
        "--rm",
        "--runc-binary",
        &runtime,
        "--cgroup",
        &cg,
        image,
        &id,
        "/bin/sh",
        "-c",
        "echo hello from containerd; exit 3",
    ]);
    assert_eq!(out.status.code(), Some(3), "{out}\n{}", c.log());
    assert_eq!(out.stdout.trim(), "hello from containerd", "{out}");
    assert!(
        cgroup_dirs(&cg).is_empty(),
        "container cgroup left after --rm"
    );

    // Detached run plus `ctr task exec`.
    let id = unique_id("ctr-exec");
    let cg = c.cgroup(&id);
    c.ctr(&[
        "run",
        "-d",
        "--runc-binary",
        &runtime,
        "--cgroup",
        &cg,
        image,
        &id,
        "/bin/sleep",
        "1000",
    ])
    .assert_ok();
    let out = c.ctr(&[
        "task",
        "exec",
        "--exec-id",
        "e1",
        &id,
        "/bin/sh",
        "-c",
        "echo exec-ok; exit 4",
    ]);
    assert_eq!(out.status.code(), Some(4), "{out}\n{}", c.log());
    assert_eq!(out.stdout.trim(), "exec-ok");
    let ls = c.ctr(&["task", "ls"]);
    assert!(
        ls.stdout
            .lines()
            .any(|l| l.starts_with(&id) && l.contains("RUNNING")),
        "{ls}"
    );
    c.ctr(&["task", "kill", "-s", "SIGKILL", &id]).assert_ok();
    let deadline = Instant::now() + Duration::from_secs(60);
    while c
        .ctr(&["task", "ls"])
        .stdout
        .lines()
        .any(|l| l.starts_with(&id) && l.contains("RUNNING"))
    {
        assert!(Instant::now() < deadline, "task {id} did not stop");
        std::thread::sleep(Duration::from_millis(50));
    }
    c.ctr(&["task", "delete", &id]).assert_ok();
    c.ctr(&["container", "delete", &id]).assert_ok();
    assert!(
        cgroup_dirs(&cg).is_empty(),
        "container cgroup left after task delete"
    );
}

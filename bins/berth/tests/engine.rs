//! End-to-end tests of the container commands (`run`, `ps`, `logs`, `stop`, `rm`, `exec`,
//! `inspect`, `wait`) against the real `berth` binary, as root. Each test has its own `--root`
//! under /tmp, an image built offline (`berth import` of a rootfs made from /bin/busybox),
//! and its own cgroup parent under /berth-test/; everything is removed on drop, even when the
//! test fails. Without root they skip with a visible message.

mod common;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};

const BERTH: &str = env!("CARGO_BIN_EXE_berth");

fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with("Uid:"))
        .and_then(|l| l.split_whitespace().nth(2))
        == Some("0")
}

fn prerequisites() -> bool {
    if !is_root() {
        eprintln!("skipping: needs root");
        return false;
    }
    if !Path::new("/bin/busybox").exists() {
        eprintln!("skipping: needs /bin/busybox (busybox-static)");
        return false;
    }
    true
}

const CONTROLLERS: &[&str] = &[
    "cpu", "cpuacct", "cpuset", "memory", "devices", "freezer", "blkio", "pids", "unified",
];

/// A Berth root with a `busybox` image, a private cgroup parent and (normally) a network
/// namespace of its own, in which every `berth` command runs: the default bridge, its veths,
/// nftables table and sysctls then never touch the host's network namespace.
struct Fixture {
    dir: tempfile::TempDir,
    cgroup_parent: String,
    /// The fixture's network namespace (a bind mount of nsfs on a file in `dir`); `None`: berth
    /// runs in the test's own namespace and containers get `--network none`.
    netns: Option<PathBuf>,
}

impl Fixture {
    fn new() -> Self {
        Self::make(true)
    }

    /// For tests that need the host's 127.0.0.1 (a registry): no namespace of its own, and
    /// every container gets `--network none` so nothing is made in the host's namespace.
    fn in_host_netns() -> Self {
        Self::make(false)
    }

    fn make(own_netns: bool) -> Self {
        static N: AtomicUsize = AtomicUsize::new(0);
        let dir = tempfile::Builder::new()
            .prefix("berth-engine-")
            .tempdir_in("/tmp")
            .unwrap();
        let cgroup_parent = format!(
            "/berth-test/engine-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::SeqCst)
        );
        let netns = own_netns.then(|| {
            let p = dir.path().join("netns");
            std::fs::write(&p, "").unwrap();
            let st = Command::new("unshare")
                .arg(format!("--net={}", p.display()))
                .arg("true")
                .status()
                .unwrap();
            assert!(st.success(), "unshare --net");
            let st = Command::new("nsenter")
                .arg(format!("--net={}", p.display()))
                .args(["ip", "link", "set", "lo", "up"])
                .status()
                .unwrap();
            assert!(st.success(), "lo up in the fixture's namespace");
            p
        });
        let fx = Self {
            dir,
            cgroup_parent,
            netns,
        };
        fx.import_busybox();
        fx
    }

    /// A command run inside the fixture's network namespace (nsenter execs it: same pid).
    fn cmd(&self, program: &str) -> Command {
        match &self.netns {
            Some(ns) => {
                let mut c = Command::new("nsenter");
                c.arg(format!("--net={}", ns.display())).arg(program);
                c
            }
            None => Command::new(program),
        }
    }

    /// The `net:[INODE]` link of the namespace berth runs in.
    fn netns_link(&self) -> String {
        use std::os::unix::fs::MetadataExt;
        match &self.netns {
            Some(ns) => format!("net:[{}]", std::fs::metadata(ns).unwrap().ino()),
            None => std::fs::read_link("/proc/self/ns/net")
                .unwrap()
                .display()
                .to_string(),
        }
    }

    /// Options every container of this fixture gets: `--network none` outside a namespace
    /// of the fixture's own.
    fn net_opts(&self) -> &'static [&'static str] {
        if self.netns.is_some() {
            &[]
        } else {
            &["--network", "none"]
        }
    }

    fn root(&self) -> PathBuf {
        self.dir.path().join("root")
    }

    fn import_busybox(&self) {
        let tarball = self.dir.path().join("rootfs.tar");
        let mut b = tar::Builder::new(std::fs::File::create(&tarball).unwrap());
        let mut dir = |path: &str| {
            let mut h = tar::Header::new_gnu();
            h.set_entry_type(tar::EntryType::Directory);
            h.set_mode(0o755);
            h.set_size(0);
            b.append_data(&mut h, path, std::io::empty()).unwrap();
        };
        for d in ["bin", "etc", "tmp", "home/app"] {
            dir(d);
        }
        let mut file = |path: &str, mode: u32, data: &[u8]| {
            let mut h = tar::Header::new_gnu();
            h.set_mode(mode);
            h.set_size(data.len() as u64);
            b.append_data(&mut h, path, data).unwrap();
        };
        file(
            "bin/busybox",
            0o755,
            &std::fs::read("/bin/busybox").unwrap(),
        );
        file(
            "etc/passwd",
            0o644,
            b"root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000::/home/app:/bin/sh\n",
        );
        file(
            "etc/group",
            0o644,
            b"root:x:0:\napp:x:1000:\nstaff:x:50:app\n",
        );
        for applet in [
            "sh", "echo", "true", "sleep", "id", "pwd", "cat", "hostname", "ls", "env", "tr",
            "readlink",
        ] {
            let mut h = tar::Header::new_gnu();
            h.set_entry_type(tar::EntryType::Symlink);
            h.set_mode(0o777);
            h.set_size(0);
            b.append_link(&mut h, format!("bin/{applet}"), "busybox")
                .unwrap();
        }
        b.into_inner().unwrap().flush().unwrap();
        let out = self.berth(&[
            "import",
            tarball.to_str().unwrap(),
            "busybox:latest",
            "--change",
            r#"CMD ["sh"]"#,
        ]);
        assert!(out.status.success(), "import: {}", text(&out.stderr));
    }

    fn berth(&self, args: &[&str]) -> Output {
        self.cmd(BERTH)
            .arg("--root")
            .arg(self.root())
            .args(args)
            .stdin(Stdio::null())
            .output()
            .unwrap()
    }

    /// `berth run` with this fixture's cgroup parent.
    fn run(&self, args: &[&str]) -> Output {
        let mut all = vec!["run", "--cgroup-parent", &self.cgroup_parent];
        if !args.contains(&"--network") {
            all.extend_from_slice(self.net_opts());
        }
        all.extend_from_slice(args);
        self.berth(&all)
    }

    /// Asserts that nothing of any container is left: records, names, snapshots, runtime
    /// state, mounts and cgroups.
    fn assert_no_leaks(&self) {
        let root = self.root();
        let ids: Vec<String> = std::fs::read_dir(root.join("containers"))
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .filter(|n| n != "index.lock" && n != "names")
            .collect();
        assert!(ids.is_empty(), "container records left: {ids:?}");
        assert_eq!(
            std::fs::read_dir(root.join("containers/names"))
                .unwrap()
                .count(),
            0,
            "names left"
        );
        assert_eq!(
            std::fs::read_dir(root.join("snapshots")).unwrap().count(),
            0
        );
        let run_left: Vec<_> = std::fs::read_dir(root.join("run"))
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .filter(|n| n != "seccomp-cache")
            .collect();
        assert!(run_left.is_empty(), "runtime state left: {run_left:?}");
        let leases = root.join("networks/leases");
        if let Ok(rd) = std::fs::read_dir(&leases) {
            for net in rd.flatten() {
                let left: Vec<_> = std::fs::read_dir(net.path())
                    .unwrap()
                    .map(|e| e.unwrap().file_name())
                    .collect();
                assert!(left.is_empty(), "leases left: {left:?}");
            }
        }
        if self.netns.is_some() {
            let links = self.cmd("ip").args(["-o", "link"]).output().unwrap();
            let links = text(&links.stdout);
            assert!(!links.contains(": vb"), "veths left: {links}");
            let nft = self.cmd("nft").args(["list", "tables"]).output().unwrap();
            assert!(
                !text(&nft.stdout).contains("berth"),
                "nft table left: {}",
                text(&nft.stdout)
            );
        }
        let mi = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
        let root_s = root.to_str().unwrap();
        assert!(!mi.contains(root_s), "mounts left under {root_s}");
        for c in CONTROLLERS {
            let p = Path::new("/sys/fs/cgroup")
                .join(c)
                .join(&self.cgroup_parent[1..]);
            if let Ok(rd) = std::fs::read_dir(&p) {
                let subdirs: Vec<_> = rd
                    .filter_map(|e| e.ok())
                    .filter(|e| e.file_type().map(|t| t.is_dir()).unwrap_or(false))
                    .map(|e| e.file_name())
                    .collect();
                assert!(
                    subdirs.is_empty(),
                    "cgroups left in {}: {subdirs:?}",
                    p.display()
                );
            }
        }
    }
}

impl Drop for Fixture {
    fn drop(&mut self) {
        // Remove every container the test left (running or not), then our cgroup parent,
        // then any mount below the root, then the files.
        let out = self.berth(&["ps", "-aq", "--no-trunc"]);
        for id in text(&out.stdout).lines() {
            let _ = self.berth(&["rm", "-f", id]);
        }
        for c in CONTROLLERS {
            let base = Path::new("/sys/fs/cgroup").join(c);
            let p = base.join(&self.cgroup_parent[1..]);
            if let Ok(rd) = std::fs::read_dir(&p) {
                for e in rd.flatten() {
                    if e.file_type().map(|t| t.is_dir()).unwrap_or(false) {
                        let _ = std::fs::remove_dir(e.path());
                    }
                }
            }
            let _ = std::fs::remove_dir(&p);
            // /berth-test itself is shared with other tests; removing it fails while in use.
            let _ = std::fs::remove_dir(base.join("berth-test"));
        }
        let root = self.root();
        let mi = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
        let mut mounts: Vec<&str> = mi
            .lines()
            .filter_map(|l| l.split_whitespace().nth(4))
            .filter(|m| m.starts_with(root.to_str().unwrap()))
            .collect();
        mounts.sort_by_key(|m| std::cmp::Reverse(m.len()));
        for m in mounts {
            let _ = Command::new("umount").arg("-l").arg(m).status();
        }
        // Unmounting the namespace's file destroys it with its bridge, veths and nft table
        // (monitors still in it were killed by the rm -f above).
        if let Some(ns) = &self.netns {
            let _ = Command::new("umount").arg(ns).status();
        }
        let _ = Command::new("rm")
            .args(["-rf", "--one-file-system"])
            .arg(self.dir.path())
            .status();
    }
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[test]
fn run_rm_prints_and_returns_the_exit_code_in_new_namespaces() {
    if !prerequisites() {
        return;
    }
    let fx = Fixture::new();
    let out = fx.run(&[
        "--rm",
        "busybox",
        "sh",
        "-c",
        "echo hello; echo pid=$$; hostname; exit 3",
    ]);
    assert_eq!(out.status.code(), Some(3), "{}", text(&out.stderr));
    let so = text(&out.stdout);
    let lines: Vec<&str> = so.lines().collect();
    assert_eq!(lines[0], "hello");
    // The isolation is real: the shell is PID 1 of its own PID namespace, and the UTS
    // namespace carries the 12-hex short id as host name.
    assert_eq!(lines[1], "pid=1");
    assert_eq!(lines[2].len(), 12);
    assert!(lines[2].bytes().all(|b| b.is_ascii_hexdigit()));
    assert_ne!(
        lines[2],
        text(&Command::new("hostname").output().unwrap().stdout).trim()
    );
    fx.assert_no_leaks();
}

#[test]
fn env_workdir_and_user_from_flags_and_the_image_passwd() {
    if !prerequisites() {
        return;
    }
    let fx = Fixture::new();
    let out = fx.run(&[
        "--rm",
        "-e",
        "FOO=bar",
        "-w",
        "/tmp",
        "-u",
        "app",
        "--hostname",
        "box",
        "busybox",
        "sh",
        "-c",
        "echo $FOO; pwd; id; hostname",
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(
        text(&out.stdout),
        "bar\n/tmp\nuid=1000(app) gid=1000(app) groups=50(staff)\nbox\n"
    );
    let out = fx.run(&["--rm", "-u", "4242:7", "busybox", "id", "-u"]);
    assert_eq!(text(&out.stdout).trim(), "4242");
    let out = fx.run(&["--rm", "-u", "nobody", "busybox", "true"]);
    assert_eq!(out.status.code(), Some(125));
    assert!(text(&out.stderr).contains("unable to find user nobody"));
    fx.assert_no_leaks();
}

#[test]
fn detached_run_ps_logs_stop_rm() {
    if !prerequisites() {
        return;
    }
    let fx = Fixture::new();
    let out = fx.run(&[
        "-d",
        "--name",
        "web",
        "busybox",
        "sh",
        "-c",
        "trap 'echo bye; exit 0' TERM; echo out; echo err >&2; while :; do sleep 0.1; done",
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let id = text(&out.stdout).trim().to_owned();
    assert_eq!(id.len(), 64);

    let ps = text(&fx.berth(&["ps"]).stdout);
    let header = ps.lines().next().unwrap();
    for col in [
        "CONTAINER ID",
        "IMAGE",
        "COMMAND",
        "CREATED",
        "STATUS",
        "PORTS",
        "NAMES",
    ] {
        assert!(header.contains(col), "{header}");
    }
    let row = ps.lines().nth(1).expect("one running container");
    assert!(
        row.starts_with(&id[..12]) && row.contains(" Up ") && row.ends_with("web"),
        "{row}"
    );

    // The output reaches the json-file log, streams kept apart.
    let mut seen = false;
    for _ in 0..200 {
        let logs = fx.berth(&["logs", "web"]);
        if text(&logs.stdout).contains("out") && text(&logs.stderr).contains("err") {
            seen = true;
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    assert!(seen, "logs never showed the output");
    let raw =
        std::fs::read_to_string(fx.root().join(format!("containers/{id}/{id}-json.log"))).unwrap();
    let first: serde_json::Value = serde_json::from_str(raw.lines().next().unwrap()).unwrap();
    assert!(first["time"].as_str().unwrap().ends_with('Z'));
    assert!(first["stream"] == "stdout" || first["stream"] == "stderr");

    // An id prefix works like the name.
    let out = fx.berth(&["stop", "-t", "5", &id[..8]]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let ps = text(&fx.berth(&["ps", "-a"]).stdout);
    assert!(ps.contains("Exited (0)"), "{ps}");
    assert_eq!(text(&fx.berth(&["ps", "-q"]).stdout), "");
    assert!(text(&fx.berth(&["logs", "--tail", "1", "web"]).stdout).contains("bye"));
    let st = fx.berth(&[
        "inspect",
        "-f",
        "{{.State.Status}} {{.State.ExitCode}} {{.Name}}",
        "web",
    ]);
    assert_eq!(text(&st.stdout).trim(), "exited 0 /web");
    assert_eq!(text(&fx.berth(&["wait", "web"]).stdout).trim(), "0");

    // The name is taken until the container is removed.
    let dup = fx.run(&["--name", "web", "busybox", "true"]);
    assert_eq!(dup.status.code(), Some(125));
    assert!(
        text(&dup.stderr).contains("already in use"),
        "{}",
        text(&dup.stderr)
    );
    assert!(fx.berth(&["rm", "web"]).status.success());
    fx.assert_no_leaks();
}

#[test]
fn exec_into_a_running_container_and_rm_force() {
    if !prerequisites() {
        return;
    }
    let fx = Fixture::new();
    let out = fx.run(&["-d", "-e", "A=1", "busybox", "sleep", "1000"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let id = text(&out.stdout).trim().to_owned();
    let ex = fx.berth(&[
        "exec",
        "-e",
        "B=2",
        "-w",
        "/tmp",
        "-u",
        "app",
        &id,
        "sh",
        "-c",
        "echo $A$B; pwd; id -u; cat /proc/1/cmdline | tr '\\0' ' '; exit 4",
    ]);
    assert_eq!(ex.status.code(), Some(4), "{}", text(&ex.stderr));
    assert_eq!(text(&ex.stdout), "12\n/tmp\n1000\nsleep 1000 ");
    let missing = fx.berth(&["exec", &id, "nosuchcmd"]);
    assert_eq!(
        missing.status.code(),
        Some(127),
        "{}",
        text(&missing.stderr)
    );
    let rm = fx.berth(&["rm", &id]);
    assert_eq!(rm.status.code(), Some(1));
    assert!(text(&rm.stderr).contains("running"));
    assert!(fx.berth(&["rm", "-f", &id]).status.success());
    let after = fx.berth(&["exec", &id, "true"]);
    assert_eq!(after.status.code(), Some(125));
    fx.assert_no_leaks();
}

#[test]
fn failing_runs_exit_like_docker_and_leave_nothing() {
    if !prerequisites() {
        return;
    }
    let fx = Fixture::new();
    let out = fx.run(&["--rm", "busybox", "nosuchcmd"]);
    assert_eq!(out.status.code(), Some(127), "{}", text(&out.stderr));
    let out = fx.run(&["busybox", "nosuchcmd"]);
    assert_eq!(out.status.code(), Some(127));
    let out = fx.run(&["-d", "busybox", "nosuchcmd"]);
    assert_eq!(out.status.code(), Some(127), "{}", text(&out.stderr));
    let out = fx.run(&["--rm", "busybox", "/etc/passwd"]);
    assert_eq!(out.status.code(), Some(126), "{}", text(&out.stderr));
    let out = fx.run(&["--rm", "nosuchimage", "true"]);
    assert_eq!(out.status.code(), Some(125));
    let out = fx.run(&["--rm", "--memory", "12zz", "busybox", "true"]);
    assert_eq!(out.status.code(), Some(125));
    assert!(text(&out.stderr).contains("12zz"));
    // Bad network input: a clear error naming it, 125, nothing left (checked below).
    for (args, says) in [
        (&["-p", "99999:80"][..], "invalid port specification"),
        (
            &["-p", "80:80", "--network", "none"][..],
            "conflicting options",
        ),
        (
            &["--network", "nosuchnet"][..],
            "network nosuchnet not found",
        ),
        (&["--ip", "10.0.0.300"][..], "invalid --ip"),
        (&["--ip", "192.0.2.9"][..], "is not in the subnet"),
    ] {
        let mut all = vec!["--rm"];
        all.extend_from_slice(args);
        all.extend_from_slice(&["busybox", "true"]);
        let out = fx.run(&all);
        assert_eq!(out.status.code(), Some(125), "{args:?}");
        assert!(
            text(&out.stderr).contains(says),
            "{args:?}: {}",
            text(&out.stderr)
        );
    }
    fx.assert_no_leaks();
}

#[test]
fn concurrent_run_rm_gives_distinct_containers_and_no_leaks() {
    if !prerequisites() {
        return;
    }
    let fx = Fixture::new();
    let outs: Vec<Output> = std::thread::scope(|s| {
        let hs: Vec<_> = (0..8)
            .map(|_| s.spawn(|| fx.run(&["--rm", "busybox", "hostname"])))
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let mut hosts: Vec<String> = outs
        .iter()
        .map(|o| {
            assert!(o.status.success(), "{}", text(&o.stderr));
            text(&o.stdout).trim().to_owned()
        })
        .collect();
    hosts.sort();
    hosts.dedup();
    assert_eq!(hosts.len(), 8, "{hosts:?}");
    fx.assert_no_leaks();
}

#[test]
fn create_then_start_attached_and_detached() {
    if !prerequisites() {
        return;
    }
    let fx = Fixture::new();
    let mut args = vec!["create", "--cgroup-parent", &fx.cgroup_parent];
    args.extend([
        "--name",
        "c1",
        "busybox",
        "sh",
        "-c",
        "echo started; exit 2",
    ]);
    let out = fx.berth(&args);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let ps = text(&fx.berth(&["ps", "-a"]).stdout);
    assert!(ps.contains(" Created "), "{ps}");
    // A created container holds no mount until it starts.
    let mi = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert!(!mi.contains(fx.root().to_str().unwrap()));
    let out = fx.berth(&["start", "-a", "c1"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "started\n");
    // Started again, detached (Docker's default for `start`): the log gets the output.
    assert!(fx.berth(&["start", "c1"]).status.success());
    assert_eq!(text(&fx.berth(&["wait", "c1"]).stdout).trim(), "2");
    assert_eq!(text(&fx.berth(&["logs", "c1"]).stdout), "started\n");
    assert!(fx.berth(&["rm", "c1"]).status.success());
    fx.assert_no_leaks();
}

#[test]
fn killed_monitor_ps_tells_the_truth_and_rm_cleans_up() {
    if !prerequisites() {
        return;
    }
    let fx = Fixture::new();
    let monitor_of = |id: &str| -> i32 {
        let p = fx.root().join(format!("containers/{id}/container.json"));
        let v: serde_json::Value = serde_json::from_slice(&std::fs::read(p).unwrap()).unwrap();
        v["state"]["monitor_pid"].as_i64().unwrap() as i32
    };
    let kill9 = |pid: i32| {
        assert!(pid > 1);
        assert!(Command::new("kill")
            .arg("-9")
            .arg(pid.to_string())
            .status()
            .unwrap()
            .success());
    };
    // The container outlives its monitor: still "Up", and `rm -f` kills and cleans it.
    let out = fx.run(&["-d", "busybox", "sleep", "1000"]);
    let id = text(&out.stdout).trim().to_owned();
    kill9(monitor_of(&id));
    let ps = text(&fx.berth(&["ps"]).stdout);
    assert!(ps.contains(" Up "), "{ps}");
    assert!(fx.berth(&["rm", "-f", &id]).status.success());
    fx.assert_no_leaks();

    // Both gone: `ps` shows it exited (code unknown), `rm` cleans without -f.
    let out = fx.run(&["-d", "busybox", "sleep", "1000"]);
    let id = text(&out.stdout).trim().to_owned();
    kill9(monitor_of(&id));
    assert!(fx.berth(&["kill", &id]).status.success());
    assert_eq!(text(&fx.berth(&["wait", &id]).stdout).trim(), "255");
    let ps = text(&fx.berth(&["ps", "-a"]).stdout);
    assert!(ps.contains("Exited (255)"), "{ps}");
    assert!(fx.berth(&["rm", &id]).status.success());
    fx.assert_no_leaks();
}

#[test]
fn tty_run_gets_a_pty() {
    if !prerequisites() {
        return;
    }
    if !Path::new("/usr/bin/script").exists() {
        eprintln!("skipping: needs /usr/bin/script (util-linux) for a terminal");
        return;
    }
    let fx = Fixture::new();
    let cmd = format!(
        "nsenter --net={} {BERTH} --root {} run --rm -t --cgroup-parent {} busybox sh -c 'tty; echo $TERM; exit 4'",
        fx.netns.as_ref().unwrap().display(),
        fx.root().display(),
        fx.cgroup_parent
    );
    let out = Command::new("/usr/bin/script")
        .args(["-qec", &cmd, "/dev/null"])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(4), "{}", text(&out.stderr));
    let so = text(&out.stdout);
    assert!(so.contains("/dev/pts/"), "{so}");
    assert!(so.contains("xterm"), "{so}");
    fx.assert_no_leaks();
}

#[test]
fn run_pulls_a_missing_image_from_a_local_registry() {
    if !prerequisites() {
        return;
    }
    if !Path::new("/usr/bin/docker-registry").exists() {
        eprintln!("skipping: needs /usr/bin/docker-registry");
        return;
    }
    let reg = common::Registry::start(common::Auth::None, false);
    let client = reg.client(&berth_image::registry::RegistryOptions::default());
    common::push_image(&client, "bb", "1", "amd64", &[&common::base_layer()], false);
    // The registry listens on the test's own 127.0.0.1.
    let fx = Fixture::in_host_netns();
    let image = format!("{}/bb:1", reg.host());
    // The pushed image's Cmd is /bin/sh; its layer has /bin/busybox and /etc/motd.
    let out = fx.run(&["--rm", &image, "/bin/busybox", "cat", "/etc/motd"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "hello\n");
    assert!(text(&out.stderr).contains("Unable to find image"));
    // Now present: no pull, nothing on stderr.
    let out = fx.run(&["--rm", &image, "/bin/busybox", "true"]);
    assert!(out.status.success());
    assert_eq!(text(&out.stderr), "");
    let out = fx.run(&["--rm", "--pull", "never", "127.0.0.1:1/none:1", "true"]);
    assert_eq!(out.status.code(), Some(125));
    fx.assert_no_leaks();
}

#[test]
fn joining_another_containers_namespaces_and_host_modes() {
    if !prerequisites() {
        return;
    }
    let fx = Fixture::new();
    let out = fx.run(&[
        "-d",
        "--name",
        "db",
        "--label",
        "tier=db",
        "--stop-signal",
        "SIGUSR1",
        "--stop-timeout",
        "3",
        "busybox",
        "sleep",
        "1000",
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let db_net = fx.berth(&["exec", "db", "readlink", "/proc/self/ns/net"]);
    let db_net = text(&db_net.stdout).trim().to_owned();
    assert!(db_net.starts_with("net:["), "{db_net}");
    // "host" is the namespace berth runs in: the fixture's.
    let host_net = fx.netns_link();
    assert_ne!(db_net, host_net);

    // Same network namespace, and with --pid container:db the same PID 1.
    let out = fx.run(&[
        "--rm",
        "--network",
        "container:db",
        "--pid",
        "container:db",
        "busybox",
        "sh",
        "-c",
        "readlink /proc/self/ns/net; cat /proc/1/cmdline | tr '\\0' ' '",
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), format!("{db_net}\nsleep 1000 "));

    // --network host and --uts host: the host's namespaces.
    let out = fx.run(&[
        "--rm",
        "--network",
        "host",
        "--uts",
        "host",
        "busybox",
        "sh",
        "-c",
        "readlink /proc/self/ns/net; hostname",
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let host_name = text(&Command::new("hostname").output().unwrap().stdout);
    assert_eq!(text(&out.stdout), format!("{host_net}\n{host_name}"));

    let st = fx.berth(&[
        "inspect",
        "-f",
        "{{.Config.Labels.tier}} {{.Config.StopSignal}} {{.Config.StopTimeout}}",
        "db",
    ]);
    assert_eq!(text(&st.stdout).trim(), "db SIGUSR1 3");
    // Joining a stopped container fails before anything is made.
    assert!(fx.berth(&["rm", "-f", "db"]).status.success());
    let out = fx.run(&["--rm", "--network", "container:db", "busybox", "true"]);
    assert_eq!(out.status.code(), Some(125));
    fx.assert_no_leaks();
}

#[test]
fn top_pause_update_rename_restart_prune() {
    if !prerequisites() {
        return;
    }
    let fx = Fixture::new();
    let out = fx.run(&[
        "-d", "--name", "s1", "-m", "64m", "busybox", "sleep", "1000",
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let id = text(&out.stdout).trim().to_owned();
    let cg = |controller: &str, file: &str| {
        std::fs::read_to_string(format!(
            "/sys/fs/cgroup/{controller}{}/{id}/{file}",
            fx.cgroup_parent
        ))
        .unwrap()
        .trim()
        .to_owned()
    };

    let top = text(&fx.berth(&["top", "s1"]).stdout);
    assert!(top.lines().next().unwrap().contains("PID"), "{top}");
    assert!(top.lines().any(|l| l.ends_with("sleep 1000")), "{top}");

    assert!(fx.berth(&["pause", "s1"]).status.success());
    assert_eq!(cg("freezer", "freezer.state"), "FROZEN");
    assert!(text(&fx.berth(&["ps"]).stdout).contains("(Paused)"));
    assert!(fx.berth(&["unpause", "s1"]).status.success());
    assert_eq!(cg("freezer", "freezer.state"), "THAWED");

    assert_eq!(
        cg("memory", "memory.limit_in_bytes"),
        (64u64 << 20).to_string()
    );
    let up = fx.berth(&["update", "--memory", "128m", "--pids-limit", "50", "s1"]);
    assert!(up.status.success(), "{}", text(&up.stderr));
    assert_eq!(
        cg("memory", "memory.limit_in_bytes"),
        (128u64 << 20).to_string()
    );
    assert_eq!(cg("pids", "pids.max"), "50");
    let bad = fx.berth(&["update", "--memory", "12zz", "s1"]);
    assert_eq!(bad.status.code(), Some(1));

    assert!(fx.berth(&["rename", "s1", "s2"]).status.success());
    assert_eq!(fx.berth(&["inspect", "s1"]).status.code(), Some(1));
    // A paused container restarts too; the new run keeps the updated limit.
    assert!(fx.berth(&["pause", "s2"]).status.success());
    let r = fx.berth(&["restart", "-t", "1", "s2"]);
    assert!(r.status.success(), "{}", text(&r.stderr));
    let st = fx.berth(&["inspect", "-f", "{{.State.Status}} {{.Name}}", &id[..12]]);
    assert_eq!(text(&st.stdout).trim(), "running /s2");
    assert_eq!(
        cg("memory", "memory.limit_in_bytes"),
        (128u64 << 20).to_string()
    );

    let out = fx.run(&["busybox", "true"]);
    assert!(out.status.success());
    let pruned = text(&fx.berth(&["container", "prune", "-f"]).stdout);
    assert!(pruned.starts_with("Deleted Containers:"), "{pruned}");
    assert_eq!(text(&fx.berth(&["ps", "-aq"]).stdout).lines().count(), 1);
    assert!(fx.berth(&["rm", "-f", "s2"]).status.success());
    fx.assert_no_leaks();
}

#[test]
fn restart_policies_are_applied_by_the_monitor() {
    if !prerequisites() {
        return;
    }
    let fx = Fixture::new();
    let out = fx.run(&[
        "-d",
        "--name",
        "flaky",
        "--restart",
        "on-failure:2",
        "busybox",
        "sh",
        "-c",
        "echo run; exit 3",
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    // Three runs in all (the first and two restarts), then it stays exited and the monitor
    // is gone.
    let rec_path = {
        let id = text(&out.stdout).trim().to_owned();
        fx.root().join(format!("containers/{id}/container.json"))
    };
    let monitor_gone = || {
        let v: serde_json::Value =
            serde_json::from_slice(&std::fs::read(&rec_path).unwrap()).unwrap();
        let pid = v["state"]["monitor_pid"].as_i64().unwrap();
        match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
            Err(_) => true,
            Ok(stat) => stat
                .rsplit(')')
                .next()
                .unwrap()
                .trim_start()
                .starts_with('Z'),
        }
    };
    let mut done = false;
    for _ in 0..500 {
        let st = fx.berth(&[
            "inspect",
            "-f",
            "{{.RestartCount}} {{.State.Status}}",
            "flaky",
        ]);
        if text(&st.stdout).trim() == "2 exited" && monitor_gone() {
            done = true;
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    assert!(done, "the container was not restarted twice");

    let st = fx.berth(&[
        "inspect",
        "-f",
        "{{.RestartCount}} {{.State.ExitCode}}",
        "flaky",
    ]);
    assert_eq!(text(&st.stdout).trim(), "2 3");
    assert_eq!(
        text(&fx.berth(&["logs", "flaky"]).stdout),
        "run\nrun\nrun\n"
    );

    // `always`, but stopped by the user: not restarted.
    let out = fx.run(&[
        "-d",
        "--name",
        "svc",
        "--restart",
        "always",
        "busybox",
        "sleep",
        "1000",
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(fx.berth(&["stop", "-t", "0", "svc"]).status.success());
    std::thread::sleep(std::time::Duration::from_millis(400));
    let st = fx.berth(&[
        "inspect",
        "-f",
        "{{.State.Status}} {{.RestartCount}}",
        "svc",
    ]);
    assert_eq!(text(&st.stdout).trim(), "exited 0");

    let bad = fx.run(&["--rm", "--restart", "always", "busybox", "true"]);
    assert_eq!(bad.status.code(), Some(125));
    let bad = fx.run(&["--restart", "sometimes", "busybox", "true"]);
    assert_eq!(bad.status.code(), Some(125));
    assert!(fx.berth(&["rm", "flaky", "svc"]).status.success());
    fx.assert_no_leaks();
}

#[test]
fn json_file_logs_rotate_and_filter_by_time() {
    if !prerequisites() {
        return;
    }
    let fx = Fixture::new();
    let out = fx.run(&[
        "--name",
        "chatty",
        "--log-opt",
        "max-size=1k",
        "--log-opt",
        "max-file=2",
        "-d",
        "busybox",
        "sh",
        "-c",
        "for i in $(seq 1 200); do echo line $i; done",
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let id = text(&out.stdout).trim().to_owned();
    assert_eq!(text(&fx.berth(&["wait", "chatty"]).stdout).trim(), "0");
    let dir = fx.root().join(format!("containers/{id}"));
    let log = dir.join(format!("{id}-json.log"));
    let rotated = dir.join(format!("{id}-json.log.1"));
    assert!(std::fs::metadata(&log).unwrap().len() <= 1024);
    assert!(std::fs::metadata(&rotated).unwrap().len() <= 1024);
    assert!(!dir.join(format!("{id}-json.log.2")).exists());
    // What is kept is the newest lines, in order, across both files.
    let logs = text(&fx.berth(&["logs", "chatty"]).stdout);
    let nums: Vec<u32> = logs
        .lines()
        .map(|l| l.trim_start_matches("line ").parse().unwrap())
        .collect();
    assert_eq!(*nums.last().unwrap(), 200);
    assert!(nums.len() > 10 && nums.len() < 200, "{}", nums.len());
    assert!(nums.windows(2).all(|w| w[1] == w[0] + 1));

    let ts = text(&fx.berth(&["logs", "-t", "--tail", "1", "chatty"]).stdout);
    assert!(ts.starts_with("20") && ts.contains("Z line 200"), "{ts}");
    assert_eq!(
        text(
            &fx.berth(&["logs", "--since", "1h", "--tail", "1", "chatty"])
                .stdout
        ),
        "line 200\n"
    );
    assert_eq!(
        text(&fx.berth(&["logs", "--until", "1h", "chatty"]).stdout),
        ""
    );

    let out = fx.run(&[
        "--log-driver",
        "none",
        "--name",
        "quiet",
        "busybox",
        "echo",
        "hi",
    ]);
    assert_eq!(text(&out.stdout), "hi\n");
    let logs = fx.berth(&["logs", "quiet"]);
    assert!(!logs.status.success());
    assert!(
        text(&logs.stderr).contains("log-driver none"),
        "{}",
        text(&logs.stderr)
    );
    let bad = fx.run(&["--log-opt", "max-size=12zz", "busybox", "true"]);
    assert_eq!(bad.status.code(), Some(125));
    assert!(fx.berth(&["rm", "chatty", "quiet"]).status.success());
    fx.assert_no_leaks();
}

#[test]
fn concurrent_detached_runs_and_forced_removals_lose_nothing() {
    if !prerequisites() {
        return;
    }
    let fx = Fixture::new();
    let ids: Vec<String> = std::thread::scope(|s| {
        let hs: Vec<_> = (0..6)
            .map(|t| {
                let fx = &fx;
                s.spawn(move || {
                    let mut kept = Vec::new();
                    for i in 0..3 {
                        let out = fx.run(&["-d", "busybox", "sleep", "1000"]);
                        assert!(out.status.success(), "{}", text(&out.stderr));
                        let id = text(&out.stdout).trim().to_owned();
                        // Every other container is removed at once, the rest kept.
                        if (t + i) % 2 == 0 {
                            let rm = fx.berth(&["rm", "-f", &id]);
                            assert!(rm.status.success(), "{}", text(&rm.stderr));
                        } else {
                            kept.push(id);
                        }
                    }
                    kept
                })
            })
            .collect();
        hs.into_iter().flat_map(|h| h.join().unwrap()).collect()
    });
    let mut listed: Vec<String> = text(&fx.berth(&["ps", "-q", "--no-trunc"]).stdout)
        .lines()
        .map(String::from)
        .collect();
    let mut want = ids.clone();
    listed.sort();
    want.sort();
    assert_eq!(listed, want, "ps must list exactly the kept containers");
    let mut names: Vec<String> = text(&fx.berth(&["ps"]).stdout)
        .lines()
        .skip(1)
        .filter_map(|l| l.split_whitespace().last().map(String::from))
        .collect();
    let n = names.len();
    names.sort();
    names.dedup();
    assert_eq!(names.len(), n, "duplicate names");
    let mut args = vec!["rm", "-f"];
    args.extend(ids.iter().map(String::as_str));
    assert!(fx.berth(&args).status.success());
    fx.assert_no_leaks();
}

#[test]
fn sigkill_of_berth_at_any_step_leaves_a_state_rm_cleans() {
    if !prerequisites() {
        return;
    }
    let fx = Fixture::new();
    // Killed at increasing delays: before, during and after create and start.
    for delay_ms in [0u64, 1, 2, 4, 7, 10, 15, 20, 30, 50, 80] {
        let mut child = fx
            .cmd(BERTH)
            .arg("--root")
            .arg(fx.root())
            .args(["run", "--rm", "--cgroup-parent", &fx.cgroup_parent])
            // A published port: its map element must go with the lease too.
            .args(["-p", "127.0.0.1::80", "busybox", "sleep", "1000"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(std::time::Duration::from_millis(delay_ms));
        child.kill().unwrap();
        child.wait().unwrap();
    }
    // Whatever is left is listed (truthfully: running or not) and `rm -f` removes it all.
    let ps = text(&fx.berth(&["ps", "-aq", "--no-trunc"]).stdout);
    for id in ps.lines() {
        let rm = fx.berth(&["rm", "-f", id]);
        assert!(rm.status.success(), "{}", text(&rm.stderr));
    }
    fx.assert_no_leaks();
}

#[test]
fn limits_ulimits_security_opts_and_etc_files_reach_the_container() {
    if !prerequisites() {
        return;
    }
    let fx = Fixture::new();
    let out = fx.run(&[
        "-d",
        "--name",
        "lim",
        "--cpu-shares",
        "512",
        "--memory-reservation",
        "32m",
        "--ulimit",
        "nofile=100:200",
        "--security-opt",
        "no-new-privileges",
        "--add-host",
        "db:10.0.0.2",
        "--dns",
        "9.9.9.9",
        "busybox",
        "sleep",
        "1000",
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let id = text(&out.stdout).trim().to_owned();
    let cg = |controller: &str, file: &str| {
        std::fs::read_to_string(format!(
            "/sys/fs/cgroup/{controller}{}/{id}/{file}",
            fx.cgroup_parent
        ))
        .unwrap()
        .trim()
        .to_owned()
    };
    assert_eq!(cg("cpu", "cpu.shares"), "512");
    assert_eq!(
        cg("memory", "memory.soft_limit_in_bytes"),
        (32u64 << 20).to_string()
    );
    let ex = fx.berth(&[
        "exec",
        "lim",
        "sh",
        "-c",
        "cat /proc/1/limits /proc/1/status /etc/hosts /etc/resolv.conf",
    ]);
    let so = text(&ex.stdout);
    assert!(ex.status.success(), "{}", text(&ex.stderr));
    let nofile = so
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .unwrap();
    assert_eq!(
        nofile.split_whitespace().collect::<Vec<_>>()[3..5],
        ["100", "200"]
    );
    assert!(so.contains("NoNewPrivs:\t1"), "{so}");
    assert!(so.contains("10.0.0.2\tdb\n"), "{so}");
    assert!(so.contains("nameserver 9.9.9.9\n"), "{so}");
    let bad = fx.run(&["--ulimit", "nofile=2:1", "busybox", "true"]);
    assert_eq!(bad.status.code(), Some(125));
    let bad = fx.run(&["--add-host", "nohost", "busybox", "true"]);
    assert_eq!(bad.status.code(), Some(125));
    assert!(fx.berth(&["rm", "-f", "lim"]).status.success());
    fx.assert_no_leaks();
}

#[test]
fn ps_filters_and_formats() {
    if !prerequisites() {
        return;
    }
    let fx = Fixture::new();
    assert!(fx
        .run(&["-d", "--name", "web1", "-l", "app=web", "busybox", "sleep", "1000"])
        .status
        .success());
    assert!(fx
        .run(&["--name", "job1", "-l", "app=batch", "busybox", "true"])
        .status
        .success());
    let names = |args: &[&str]| {
        let mut all = vec!["ps", "--format", "{{.Names}}"];
        all.extend_from_slice(args);
        let mut v: Vec<String> = text(&fx.berth(&all).stdout)
            .lines()
            .map(String::from)
            .collect();
        v.sort();
        v
    };
    assert_eq!(names(&[]), ["web1"]);
    assert_eq!(names(&["-a"]), ["job1", "web1"]);
    assert_eq!(names(&["-f", "status=exited"]), ["job1"]);
    assert_eq!(names(&["-a", "-f", "label=app=web"]), ["web1"]);
    assert_eq!(names(&["-a", "-f", "label=app"]), ["job1", "web1"]);
    assert_eq!(
        names(&["-a", "-f", "name=job", "-f", "name=web"]),
        ["job1", "web1"]
    );
    assert_eq!(
        names(&["-a", "-f", "name=job", "-f", "status=running"]),
        Vec::<String>::new()
    );
    let js = text(&fx.berth(&["ps", "--format", "json"]).stdout);
    let v: serde_json::Value = serde_json::from_str(js.lines().next().unwrap()).unwrap();
    assert_eq!(v["Names"], "web1");
    assert_eq!(v["State"], "running");
    let table = text(
        &fx.berth(&["ps", "--format", "table {{.Names}}\t{{.State}}"])
            .stdout,
    );
    assert_eq!(table, "NAMES\tSTATE\nweb1\trunning\n");
    assert_eq!(fx.berth(&["ps", "-f", "bogus=1"]).status.code(), Some(125));
    assert!(fx.berth(&["rm", "-f", "web1", "job1"]).status.success());
    fx.assert_no_leaks();
}

#[test]
fn foreground_run_forwards_signals_to_the_container() {
    if !prerequisites() {
        return;
    }
    use std::io::{BufRead, Read};
    let fx = Fixture::new();
    let mut child = fx
        .cmd(BERTH)
        .arg("--root")
        .arg(fx.root())
        .args([
            "run",
            "--rm",
            "--name",
            "fg",
            "--cgroup-parent",
            &fx.cgroup_parent,
        ])
        .args([
            "busybox",
            "sh",
            "-c",
            "trap 'echo got-term; exit 9' TERM; echo ready; while :; do sleep 0.1; done",
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // "ready" comes after the trap is installed: only then is SIGTERM meaningful to the
    // shell (PID 1 of its namespace ignores signals it has no handler for).
    let mut stdout = std::io::BufReader::new(child.stdout.take().unwrap());
    let mut first = String::new();
    stdout.read_line(&mut first).unwrap();
    assert_eq!(first, "ready\n");
    let pid = child.id().to_string();
    assert!(Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap()
        .success());
    let mut rest = String::new();
    stdout.read_to_string(&mut rest).unwrap();
    assert_eq!(child.wait().unwrap().code(), Some(9));
    assert_eq!(rest, "got-term\n");
    fx.assert_no_leaks();
}

#[test]
fn network_none_has_loopback_up() {
    if !prerequisites() {
        return;
    }
    let fx = Fixture::new();
    // IFF_UP|IFF_LOOPBACK: 0x9 (the container mounts its own /sys, in its own namespace).
    let out = fx.run(&[
        "--rm",
        "--network",
        "none",
        "busybox",
        "sh",
        "-c",
        "cat /sys/class/net/lo/flags; ls /sys/class/net",
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "0x9\nlo\n");
    fx.assert_no_leaks();
}

/// A process in a network namespace of its own (`unshare --net sleep`), killed by PID on drop:
/// a "remote" host for NAT tests, wired to the fixture's namespace by a veth.
struct Remote {
    child: std::process::Child,
}

impl Remote {
    /// A remote at 192.0.2.2/24 (TEST-NET-1, never routed), reached from the fixture's
    /// namespace through veth `rmt0` (192.0.2.1).
    fn new(fx: &Fixture) -> Self {
        let child = Command::new("unshare")
            .args(["--net", "sleep", "300"])
            .spawn()
            .unwrap();
        let r = Self { child };
        let own = std::fs::read_link("/proc/self/ns/net").unwrap();
        while std::fs::read_link(r.ns()).ok().is_none_or(|l| l == own) {
            std::thread::sleep(std::time::Duration::from_millis(2));
        }
        let pid = r.child.id().to_string();
        for args in [
            &[
                "link", "add", "rmt0", "type", "veth", "peer", "name", "rmt1",
            ][..],
            &["link", "set", "rmt1", "netns", &pid],
            &["addr", "add", "192.0.2.1/24", "dev", "rmt0"],
            &["link", "set", "rmt0", "up"],
        ] {
            let st = fx.cmd("ip").args(args).status().unwrap();
            assert!(st.success(), "ip {args:?}");
        }
        for args in [
            &["addr", "add", "192.0.2.2/24", "dev", "rmt1"][..],
            &["link", "set", "rmt1", "up"],
            &["link", "set", "lo", "up"],
        ] {
            let st = r.cmd("ip").args(args).status().unwrap();
            assert!(st.success(), "ip {args:?}");
        }
        r
    }

    fn ns(&self) -> PathBuf {
        PathBuf::from(format!("/proc/{}/ns/net", self.child.id()))
    }

    fn cmd(&self, program: &str) -> Command {
        let mut c = Command::new("nsenter");
        c.arg(format!("--net={}", self.ns().display())).arg(program);
        c
    }
}

impl Drop for Remote {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A one-shot TCP server on `addr:port` run by python3 in `cmd`'s namespace: prints the
/// peer's address, answers "pong".
fn tcp_peer_printer(mut cmd: Command, addr: &str, port: u16) -> std::process::Child {
    let script = format!(
        "import socket\ns=socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\n\
         s.bind(('{addr}', {port})); s.listen(1); print('listening', flush=True)\n\
         c, a = s.accept(); c.sendall(b'pong'); c.close(); print(a[0], flush=True)\n"
    );
    let mut child = cmd
        .args(["-c", &script])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(child.stdout.as_mut().unwrap()),
        &mut line,
    )
    .unwrap();
    assert_eq!(line.trim(), "listening");
    child
}

#[test]
fn bridge_gives_address_route_mac_and_outbound_nat() {
    if !prerequisites() {
        return;
    }
    if !Path::new("/usr/bin/python3").exists() {
        eprintln!("skipping: needs /usr/bin/python3 for the remote host");
        return;
    }
    let fx = Fixture::new();
    let out = fx.run(&[
        "--rm",
        "--dns-search",
        "a.test",
        "--dns-option",
        "ndots:2",
        "busybox",
        "sh",
        "-c",
        "busybox ip -4 -o addr show eth0; busybox ip route; cat /sys/class/net/eth0/address \
         /sys/class/net/eth0/mtu; tail -n1 /etc/hosts; cat /etc/resolv.conf",
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let o = text(&out.stdout);
    let ip = o
        .split_whitespace()
        .skip_while(|w| *w != "inet")
        .nth(1)
        .unwrap()
        .split('/')
        .next()
        .unwrap()
        .to_owned();
    let octets: Vec<u8> = ip.split('.').map(|x| x.parse().unwrap()).collect();
    let gw = format!("{}.{}.{}.1", octets[0], octets[1], octets[2]);
    assert!(o.contains(&format!("default via {gw} dev eth0")), "{o}");
    let mac = format!(
        "02:42:{:02x}:{:02x}:{:02x}:{:02x}",
        octets[0], octets[1], octets[2], octets[3]
    );
    assert!(o.contains(&format!("{mac}\n1500\n{ip}\t")), "{o}");
    // The host's resolv.conf without loopback resolvers, with the flags' search and options.
    assert!(
        o.contains("search a.test\n") && o.contains("options ndots:2\n"),
        "{o}"
    );
    assert!(
        o.contains("nameserver ") && !o.contains("nameserver 127."),
        "{o}"
    );
    // The default subnet overlaps no route of the namespace berth runs in.
    let routes = fx.cmd("ip").args(["-4", "route"]).output().unwrap();
    assert!(
        text(&routes.stdout).contains("berth0"),
        "{}",
        text(&routes.stdout)
    );

    // A restarted container's hosts file names its current address, once.
    assert!(fx
        .run(&["-d", "--name", "again", "busybox", "sleep", "100"])
        .status
        .success());
    let addr = |name: &str| {
        let o = text(
            &fx.berth(&[
                "exec", name, "busybox", "ip", "-4", "-o", "addr", "show", "eth0",
            ])
            .stdout,
        );
        o.split_whitespace()
            .nth(3)
            .unwrap()
            .split('/')
            .next()
            .unwrap()
            .to_owned()
    };
    let before = addr("again");
    assert!(fx.berth(&["stop", "-t", "0", "again"]).status.success());
    // "blocker" takes the freed address, so the restart gets another one.
    assert!(fx
        .run(&["-d", "--name", "blocker", "busybox", "sleep", "100"])
        .status
        .success());
    assert_eq!(addr("blocker"), before);
    assert!(fx.berth(&["start", "again"]).status.success());
    let now = addr("again");
    assert_ne!(now, before);
    let hosts = text(&fx.berth(&["exec", "again", "cat", "/etc/hosts"]).stdout);
    assert_eq!(hosts.matches("berth-net").count(), 1, "{hosts}");
    assert!(hosts.contains(&format!("{now}\t")), "{hosts}");
    assert!(fx.berth(&["rm", "-f", "again", "blocker"]).status.success());

    // Outbound NAT: the remote sees the fixture namespace's address, not the container's.
    let remote = Remote::new(&fx);
    let server = tcp_peer_printer(remote.cmd("python3"), "192.0.2.2", 7000);
    let out = fx.run(&[
        "--rm",
        "busybox",
        "sh",
        "-c",
        "busybox nc 192.0.2.2 7000 </dev/null",
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "pong");
    let seen = server.wait_with_output().unwrap();
    assert_eq!(text(&seen.stdout).trim(), "192.0.2.1");
    let rules = fx
        .cmd("nft")
        .args(["list", "table", "ip", "berth"])
        .output();
    // The table is gone with the last container.
    assert!(!rules.unwrap().status.success());
    drop(remote);
    fx.assert_no_leaks();
}

#[test]
fn published_tcp_and_udp_ports_answer_on_127_0_0_1_and_the_bridge_address() {
    if !prerequisites() {
        return;
    }
    if !Path::new("/usr/bin/python3").exists() {
        eprintln!("skipping: needs /usr/bin/python3 (a UDP server in the container)");
        return;
    }
    let fx = Fixture::new();
    let out = fx.run(&[
        "-d",
        "--name",
        "web",
        "-p",
        "8080:80",
        "-p",
        "127.0.0.1::81",
        "-p",
        "127.0.0.1:9090:90/udp",
        "-p",
        "7001-7002:81-82",
        // The host's python, read-only, for a UDP echo server busybox lacks.
        "-v",
        "/usr:/usr:ro",
        "-v",
        "/usr/lib:/lib:ro",
        "-v",
        "/usr/lib64:/lib64:ro",
        "busybox",
        "/usr/bin/python3",
        "-c",
        "import socket, threading\n\
         def tcp(p, msg):\n\
         \x20   s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\n\
         \x20   s.bind(('0.0.0.0', p)); s.listen(8)\n\
         \x20   while True:\n\
         \x20       c, a = s.accept(); c.sendall(msg); c.close()\n\
         for p, m in [(80, b'http'), (81, b'eighty-one'), (82, b'eighty-two')]:\n\
         \x20   threading.Thread(target=tcp, args=(p, m), daemon=True).start()\n\
         u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); u.bind(('0.0.0.0', 90))\n\
         while True:\n\
         \x20   d, a = u.recvfrom(100); u.sendto(b'echo:' + d, a)\n",
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let ports = text(&fx.berth(&["port", "web"]).stdout);
    let eph: u16 = ports
        .lines()
        .find(|l| l.starts_with("81/tcp -> 127.0.0.1:"))
        .unwrap_or_else(|| panic!("{ports}"))
        .rsplit(':')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    assert!(ports.contains("80/tcp -> 0.0.0.0:8080\n"), "{ports}");
    assert!(ports.contains("90/udp -> 127.0.0.1:9090\n"), "{ports}");
    assert!(ports.contains("82/tcp -> 0.0.0.0:7002\n"), "{ports}");
    let one = fx.berth(&["port", "web", "90/udp"]);
    assert_eq!(text(&one.stdout), "127.0.0.1:9090\n");
    let ip = text(
        &fx.berth(&["inspect", "-f", "{{.NetworkSettings.IPAddress}}", "web"])
            .stdout,
    )
    .trim()
    .to_owned();
    let gw = format!("{}.1", ip.rsplit_once('.').unwrap().0);
    // From the namespace berth runs in ("the host"): 127.0.0.1 and the bridge's address.
    let client = |addr: &str, port: u16, udp: bool| {
        let script = if udp {
            format!(
                "import socket\ns=socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.settimeout(3)\n\
                 s.sendto(b'hi', ('{addr}', {port})); print(s.recvfrom(100)[0].decode(), end='')"
            )
        } else {
            format!(
                "import socket, time\nfor i in range(50):\n\
                 \x20   try:\n\
                 \x20       s = socket.create_connection(('{addr}', {port}), 3); break\n\
                 \x20   except OSError: time.sleep(0.1)\n\
                 print(s.recv(100).decode(), end='')"
            )
        };
        let out = fx.cmd("python3").args(["-c", &script]).output().unwrap();
        assert!(out.status.success(), "{addr}:{port}: {}", text(&out.stderr));
        text(&out.stdout)
    };
    assert_eq!(client("127.0.0.1", 8080, false), "http");
    assert_eq!(client(&gw, 8080, false), "http");
    assert_eq!(client("127.0.0.1", eph, false), "eighty-one");
    assert_eq!(client("127.0.0.1", 7001, false), "eighty-one");
    assert_eq!(client("127.0.0.1", 7002, false), "eighty-two");
    assert_eq!(client("127.0.0.1", 9090, true), "echo:hi");

    // A host port taken by another container, or by a process of the host: refused, 125.
    let out = fx.run(&["--rm", "-p", "8080:80", "busybox", "true"]);
    assert_eq!(out.status.code(), Some(125));
    assert!(
        text(&out.stderr).contains("host port 8080/tcp on 0.0.0.0 is already in use"),
        "{}",
        text(&out.stderr)
    );
    let holder = tcp_peer_printer(fx.cmd("python3"), "127.0.0.1", 7500);
    let out = fx.run(&["--rm", "-p", "127.0.0.1:7500:80", "busybox", "true"]);
    assert_eq!(out.status.code(), Some(125));
    assert!(
        text(&out.stderr).contains("by a process of this host"),
        "{}",
        text(&out.stderr)
    );
    client("127.0.0.1", 7500, false);
    holder.wait_with_output().unwrap();

    assert!(fx.berth(&["rm", "-f", "web"]).status.success());

    // -P: every port the image exposes, on ephemeral host ports.
    let tarball = fx.dir.path().join("rootfs.tar");
    let out = fx.berth(&[
        "import",
        tarball.to_str().unwrap(),
        "exposed:1",
        "--change",
        "EXPOSE 80 53/udp",
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let out = fx.run(&["-d", "--name", "pub", "-P", "exposed:1", "sleep", "100"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let ports = text(&fx.berth(&["port", "pub"]).stdout);
    let lines: Vec<&str> = ports.lines().collect();
    assert_eq!(lines.len(), 2, "{ports}");
    assert!(lines[0].starts_with("53/udp -> 0.0.0.0:"), "{ports}");
    assert!(lines[1].starts_with("80/tcp -> 0.0.0.0:"), "{ports}");
    assert!(fx.berth(&["rm", "-f", "pub"]).status.success());
    fx.assert_no_leaks();
}

#[test]
fn thirty_two_concurrent_runs_get_distinct_addresses() {
    if !prerequisites() {
        return;
    }
    let fx = Fixture::new();
    let handles: Vec<_> = (0..32)
        .map(|i| {
            let mut c = fx.cmd(BERTH);
            c.arg("--root").arg(fx.root()).args([
                "run",
                "-d",
                "--name",
                &format!("c{i}"),
                "--cgroup-parent",
                &fx.cgroup_parent,
                "busybox",
                "sleep",
                "100",
            ]);
            c.stdout(Stdio::piped()).stderr(Stdio::piped());
            c.spawn().unwrap()
        })
        .collect();
    for h in handles {
        let out = h.wait_with_output().unwrap();
        assert!(out.status.success(), "{}", text(&out.stderr));
    }
    let mut ips: Vec<String> = (0..32)
        .map(|i| {
            let out = fx.berth(&[
                "exec",
                &format!("c{i}"),
                "busybox",
                "ip",
                "-4",
                "-o",
                "addr",
                "show",
                "eth0",
            ]);
            let o = text(&out.stdout);
            o.split_whitespace()
                .skip_while(|w| *w != "inet")
                .nth(1)
                .unwrap_or_else(|| panic!("c{i}: {o} {}", text(&out.stderr)))
                .to_owned()
        })
        .collect();
    ips.sort();
    ips.dedup();
    assert_eq!(ips.len(), 32, "{ips:?}");
    let rm: Vec<_> = (0..32)
        .map(|i| {
            let mut c = fx.cmd(BERTH);
            c.arg("--root")
                .arg(fx.root())
                .args(["rm", "-f", &format!("c{i}")]);
            c.stdout(Stdio::null()).stderr(Stdio::null());
            c.spawn().unwrap()
        })
        .collect();
    for mut h in rm {
        assert!(h.wait().unwrap().success());
    }
    fx.assert_no_leaks();
}

#[test]
fn user_networks_resolve_names_connect_disconnect_and_internal_blocks_nat() {
    if !prerequisites() {
        return;
    }
    let fx = Fixture::new();
    let ok = |args: &[&str]| {
        let out = fx.berth(args);
        assert!(out.status.success(), "{args:?}: {}", text(&out.stderr));
        text(&out.stdout)
    };
    ok(&[
        "network",
        "create",
        "--subnet",
        "10.99.0.0/24",
        "--gateway",
        "10.99.0.254",
        "--label",
        "team=a",
        "appnet",
    ]);
    // Bad input: an overlapping subnet, a gateway outside, a duplicate name; nothing made.
    for (args, says) in [
        (
            &["network", "create", "--subnet", "10.99.0.128/25", "x1"][..],
            "overlaps network appnet",
        ),
        (
            &[
                "network",
                "create",
                "--subnet",
                "10.98.0.0/24",
                "--gateway",
                "10.97.0.1",
                "x2",
            ],
            "invalid gateway",
        ),
        (&["network", "create", "appnet"], "already exists"),
        (&["network", "rm", "bridge"], "pre-defined"),
    ] {
        let out = fx.berth(args);
        assert_ne!(out.status.code(), Some(0), "{args:?}");
        assert!(
            text(&out.stderr).contains(says),
            "{args:?}: {}",
            text(&out.stderr)
        );
    }
    // --ip-range: dynamic addresses from the range only; a range outside the subnet refused.
    ok(&[
        "network",
        "create",
        "--subnet",
        "10.98.0.0/24",
        "--ip-range",
        "10.98.0.128/28",
        "ranged",
    ]);
    let out = fx.run(&[
        "--rm",
        "--network",
        "ranged",
        "busybox",
        "sh",
        "-c",
        "busybox ip -4 -o addr show eth0 | busybox awk '{print $4}'",
    ]);
    assert_eq!(
        text(&out.stdout),
        "10.98.0.129/24\n",
        "{}",
        text(&out.stderr)
    );
    let out = fx.berth(&[
        "network",
        "create",
        "--subnet",
        "10.97.0.0/24",
        "--ip-range",
        "10.96.0.0/28",
        "x3",
    ]);
    assert!(
        text(&out.stderr).contains("invalid --ip-range"),
        "{}",
        text(&out.stderr)
    );
    ok(&["network", "rm", "ranged"]);
    let ls = ok(&["network", "ls"]);
    assert!(
        ls.contains(" appnet ") && ls.contains(" bridge ") && !ls.contains("x1"),
        "{ls}"
    );
    let inspect: serde_json::Value =
        serde_json::from_str(&ok(&["network", "inspect", "appnet"])).unwrap();
    assert_eq!(inspect[0]["IPAM"]["Config"][0]["Gateway"], "10.99.0.254");
    assert_eq!(inspect[0]["Labels"]["team"], "a");

    let out = fx.run(&[
        "-d",
        "--name",
        "db",
        "--network",
        "appnet",
        "--network-alias",
        "database",
        "--ip",
        "10.99.0.50",
        "busybox",
        "sleep",
        "100",
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    // Another container reaches it by name and by alias; the static address is taken.
    let out = fx.run(&[
        "--rm",
        "--network",
        "appnet",
        "busybox",
        "sh",
        "-c",
        "busybox ping -c1 -W2 db | head -1; busybox ping -c1 -W2 database >/dev/null && echo alias",
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(
        text(&out.stdout),
        "PING db (10.99.0.50): 56 data bytes\nalias\n"
    );
    let out = fx.run(&[
        "--rm",
        "--network",
        "appnet",
        "--ip",
        "10.99.0.50",
        "busybox",
        "true",
    ]);
    assert_eq!(out.status.code(), Some(125));
    assert!(
        text(&out.stderr).contains("already in use"),
        "{}",
        text(&out.stderr)
    );
    let out = fx.berth(&["network", "rm", "appnet"]);
    assert!(
        text(&out.stderr).contains("active endpoints"),
        "{}",
        text(&out.stderr)
    );
    // Two networks at once: eth0 on the first (with the default route), eth1 on the second.
    let out = fx.run(&[
        "--rm", "--network", "appnet", "--network", "bridge", "busybox", "sh", "-c",
        "ls /sys/class/net; busybox ip route | grep default; busybox ping -c1 -W2 db >/dev/null && echo db",
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(
        text(&out.stdout),
        "eth0\neth1\nlo\ndefault via 10.99.0.254 dev eth0 \ndb\n"
    );

    // connect and disconnect a running container on the default bridge.
    let out = fx.run(&["-d", "--name", "web", "busybox", "sleep", "100"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    ok(&["network", "connect", "--alias", "www", "appnet", "web"]);
    let out = fx.berth(&[
        "exec",
        "web",
        "sh",
        "-c",
        "busybox ping -c1 -W2 db >/dev/null && echo ok",
    ]);
    assert_eq!(text(&out.stdout), "ok\n", "{}", text(&out.stderr));
    let out = fx.berth(&[
        "exec",
        "db",
        "sh",
        "-c",
        "busybox ping -c1 -W2 www >/dev/null && echo ok",
    ]);
    assert_eq!(text(&out.stdout), "ok\n", "{}", text(&out.stderr));
    ok(&["network", "disconnect", "appnet", "web"]);
    let out = fx.berth(&[
        "exec",
        "web",
        "sh",
        "-c",
        "ls /sys/class/net; busybox ping -c1 -W1 db",
    ]);
    assert_eq!(text(&out.stdout), "eth0\nlo\n");
    let out = fx.berth(&["exec", "db", "cat", "/etc/hosts"]);
    assert!(!text(&out.stdout).contains("www"), "{}", text(&out.stdout));
    let out = fx.berth(&["network", "disconnect", "appnet", "web"]);
    assert!(
        text(&out.stderr).contains("not connected"),
        "{}",
        text(&out.stderr)
    );
    assert!(fx.berth(&["rm", "-f", "db", "web"]).status.success());

    // --internal: no route out, and forwarding from its bridge dropped.
    let remote = Remote::new(&fx);
    ok(&["network", "create", "--internal", "sealed"]);
    let out = fx.run(&[
        "--rm",
        "--network",
        "sealed",
        "busybox",
        "sh",
        "-c",
        "busybox ip route | grep -c default; busybox nc -w 2 192.0.2.2 7000 </dev/null",
    ]);
    assert_ne!(out.status.code(), Some(0));
    assert_eq!(text(&out.stdout), "0\n");
    drop(remote);

    let pruned = ok(&["network", "prune", "-f"]);
    assert!(
        pruned.contains("appnet") && pruned.contains("sealed"),
        "{pruned}"
    );
    let links = text(&fx.cmd("ip").args(["-o", "link"]).output().unwrap().stdout);
    assert!(!links.contains("br-"), "bridges left: {links}");
    fx.assert_no_leaks();
}

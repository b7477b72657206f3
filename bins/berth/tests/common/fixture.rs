//! The engine tests' fixture: a Berth root under /tmp with a `busybox` image built offline
//! (`berth import` of a rootfs made from /bin/busybox), a private cgroup parent under
//! /berth-test/, a leak check, and a `Drop` that removes everything even when a test fails.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};

pub const BERTH: &str = env!("CARGO_BIN_EXE_berth");

pub fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with("Uid:"))
        .and_then(|l| l.split_whitespace().nth(2))
        == Some("0")
}

pub fn prerequisites() -> bool {
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

pub const CONTROLLERS: &[&str] = &[
    "cpu", "cpuacct", "cpuset", "memory", "devices", "freezer", "blkio", "pids", "unified",
    // The named `name=systemd` hierarchy of this host: the runtime places containers there
    // too, so the parent made for a test must be removed there as well.
    "systemd",
];

/// A Berth root with a `busybox` image, a private cgroup parent and (normally) a network
/// namespace of its own, in which every `berth` command runs: the default bridge, its veths,
/// nftables table and sysctls then never touch the host's network namespace.
pub struct Fixture {
    pub dir: tempfile::TempDir,
    pub cgroup_parent: String,
    /// The fixture's network namespace (a bind mount of nsfs on a file in `dir`); `None`: berth
    /// runs in the test's own namespace and containers get `--network none`.
    pub netns: Option<PathBuf>,
}

impl Fixture {
    pub fn new() -> Self {
        Self::make(true)
    }

    /// For tests that need the host's 127.0.0.1 (a registry): no namespace of its own, and
    /// every container gets `--network none` so nothing is made in the host's namespace.
    #[allow(dead_code)]
    pub fn in_host_netns() -> Self {
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

    pub fn root(&self) -> PathBuf {
        self.dir.path().join("root")
    }

    pub fn import_busybox(&self) {
        self.import_busybox_with("busybox:latest", |_| {}, &[]);
    }

    /// Imports the busybox rootfs plus what `extra` appends to the tarball as `reference`,
    /// with `CMD ["sh"]` and the `--change` instructions in `changes`.
    pub fn import_busybox_with(
        &self,
        reference: &str,
        extra: impl FnOnce(&mut tar::Builder<std::fs::File>),
        changes: &[&str],
    ) {
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
        extra(&mut b);
        b.into_inner().unwrap().flush().unwrap();
        let mut args = vec![
            "import",
            tarball.to_str().unwrap(),
            reference,
            "--change",
            r#"CMD ["sh"]"#,
        ];
        for c in changes {
            args.extend(["--change", c]);
        }
        let out = self.berth(&args);
        assert!(out.status.success(), "import: {}", text(&out.stderr));
    }

    /// A command run inside the fixture's network namespace (nsenter execs it: same pid).
    pub fn cmd(&self, program: &str) -> Command {
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
    #[allow(dead_code)]
    pub fn netns_link(&self) -> String {
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
    pub fn net_opts(&self) -> &'static [&'static str] {
        if self.netns.is_some() {
            &[]
        } else {
            &["--network", "none"]
        }
    }

    pub fn berth(&self, args: &[&str]) -> Output {
        self.cmd(BERTH)
            .arg("--root")
            .arg(self.root())
            .args(args)
            .stdin(Stdio::null())
            .output()
            .unwrap()
    }

    /// `berth run` with this fixture's cgroup parent.
    pub fn run(&self, args: &[&str]) -> Output {
        let mut all = vec!["run", "--cgroup-parent", &self.cgroup_parent];
        if !args.contains(&"--network") {
            all.extend_from_slice(self.net_opts());
        }
        all.extend_from_slice(args);
        self.berth(&all)
    }

    /// The file names of every network's leases: `<ip>`, or `<ip>.<ifindex>.releasing` until
    /// the kernel has removed an exited container's veth and a network command has seen it.
    pub fn lease_names(&self) -> Vec<String> {
        let Ok(rd) = std::fs::read_dir(self.root().join("networks/leases")) else {
            return Vec::new();
        };
        rd.flatten()
            .flat_map(|net| std::fs::read_dir(net.path()).unwrap().flatten())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect()
    }

    /// Waits (10 s at most, then panics naming `what`) until `done` holds for the lease
    /// names, running a network command between looks so released leases are tidied.
    pub fn wait_for_leases(&self, what: &str, done: impl Fn(&[String]) -> bool) {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while !done(&self.lease_names()) {
            assert!(std::time::Instant::now() < deadline, "{what}");
            std::thread::sleep(std::time::Duration::from_millis(10));
            let _ = self.berth(&["network", "ls", "-q"]);
        }
    }

    /// Asserts that nothing of any container is left: records, names, snapshots, runtime
    /// state, mounts and cgroups.
    pub fn assert_no_leaks(&self) {
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
        // An exited container's veth is removed by the kernel with its network namespace,
        // a moment after `rm`; its lease is forgotten by the next network command. Wait for
        // both (a leak never goes away, so it still fails, after 10 s).
        let veths = || -> String {
            if self.netns.is_none() {
                return String::new();
            }
            let links = self.cmd("ip").args(["-o", "link"]).output().unwrap();
            text(&links.stdout)
                .lines()
                .filter(|l| l.contains(": vb"))
                .collect::<Vec<_>>()
                .join("\n")
        };
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        loop {
            let (left, links) = (self.lease_names(), veths());
            if left.is_empty() && links.is_empty() {
                break;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "leases left: {left:?}; veths left: {links}"
            );
            std::thread::sleep(std::time::Duration::from_millis(20));
            if root.join("networks").exists() {
                let _ = self.berth(&["network", "ls", "-q"]);
            }
        }
        if self.netns.is_some() {
            // The `ip berth` table belongs to the networks and stays while they exist; no
            // container's published port may be left in it.
            let nft = self
                .cmd("nft")
                .args(["-j", "list", "table", "ip", "berth"])
                .output()
                .unwrap();
            assert!(
                !text(&nft.stdout).contains("\"elem\""),
                "published ports left: {}",
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

pub fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

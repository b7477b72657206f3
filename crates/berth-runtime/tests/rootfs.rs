//! Privileged tests of the rootfs module: real mounts, device nodes, pivot_root, masks, and the
//! symlink attacks of SECURITY-TESTS.md, each checked against a host sentinel.
//!
//! Each test builds a small busybox rootfs in a fresh directory, computes the plan here (as
//! the runtime's parent does), and re-runs this test binary as a child process
//! (`child_entry`, selected by `BERTH_ROOTFS_SCENARIO`) that unshares a mount namespace, runs
//! prepare → pivot → (console) → finalize, inspects the result from inside and prints it as
//! JSON. The host side then checks the report, that the sentinel is unchanged, and that its
//! own mount table holds nothing of the fixture. The child's mounts die with its namespace.

use std::collections::BTreeMap;
use std::fs;
use std::os::fd::AsFd;
use std::os::unix::fs::{symlink, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;

use berth_runtime::rootfs::{self, RootfsOptions, RootfsPlan};
use berth_runtime::Spec;
use serde::{Deserialize, Serialize};

const ENV: &str = "BERTH_ROOTFS_SCENARIO";
const MARK: &str = "BERTH-RESULT ";

// ---------------------------------------------------------------------------------------------
// The child side.

#[derive(Debug, Serialize, Deserialize)]
struct Scenario {
    plan: RootfsPlan,
    /// Paths (inside the container) to lstat.
    nodes: Vec<String>,
    /// Paths to try to open for writing (created if missing).
    writes: Vec<String>,
    /// Allocate a pty in the container and call setup_console with its slave.
    console: bool,
    /// Paths to statfs/statvfs (for scenarios without a /proc to read mountinfo from).
    fs: Vec<String>,
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct Node {
    kind: String,
    major: u64,
    minor: u64,
    mode: u32,
    uid: u32,
    gid: u32,
    link: Option<String>,
    /// st_dev: which filesystem the node lives on.
    dev: u64,
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct Report {
    /// The step that failed and the error's cause chain.
    error: Option<String>,
    /// The child's mount namespace differs from the one it started in.
    isolated: bool,
    /// The child's user namespace (`user:[N]`).
    user_ns: String,
    /// (mount point, fstype, per-mount options) from the container's mountinfo.
    mounts: Vec<(String, String, String)>,
    nodes: BTreeMap<String, Node>,
    writes: BTreeMap<String, String>,
    /// (major, minor) of the pty slave given to setup_console.
    console: Option<(u64, u64)>,
    root_entries: Vec<String>,
    /// statfs magic and statvfs flags (`ro`, `nosuid`, `nodev`, `noexec`) per `fs` path.
    fs: BTreeMap<String, (i64, Vec<String>)>,
}

fn chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}

/// Entry point of the child process; does nothing unless the parent test set `ENV`.
#[test]
#[ignore = "entry point of the child process that the privileged tests spawn"]
fn child_entry() {
    let Ok(path) = std::env::var(ENV) else {
        return;
    };
    let sc: Scenario = serde_json::from_slice(&fs::read(path).unwrap()).unwrap();
    let report = child(&sc);
    println!("{MARK}{}", serde_json::to_string(&report).unwrap());
}

fn child(sc: &Scenario) -> Report {
    let mut r = Report::default();
    // /proc/thread-self: the harness may run this on a thread other than the main one, and
    // unshare(CLONE_NEWNS) only moves the calling thread.
    let ns = || fs::read_link("/proc/thread-self/ns/mnt").ok();
    let before = ns();
    r.user_ns = fs::read_link("/proc/thread-self/ns/user")
        .map(|l| l.to_string_lossy().into_owned())
        .unwrap_or_default();
    if let Err(e) = nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNS) {
        r.error = Some(format!("unshare: {e}"));
        return r;
    }
    r.isolated = before.is_some() && ns() != before;
    if !r.isolated {
        // Never mount anything in the host's namespace.
        r.error = Some("the mount namespace is not new".into());
        return r;
    }
    let plan = &sc.plan;
    if let Err(e) = rootfs::prepare(plan) {
        r.error = Some(format!("prepare: {}", chain(&e)));
        return r;
    }
    if let Err(e) = rootfs::pivot(plan) {
        r.error = Some(format!("pivot: {}", chain(&e)));
        return r;
    }
    if sc.console {
        match console() {
            Ok(dev) => r.console = Some(dev),
            Err(e) => {
                r.error = Some(e);
                return r;
            }
        }
    }
    if let Err(e) = rootfs::finalize(plan) {
        r.error = Some(format!("finalize: {}", chain(&e)));
        return r;
    }
    inspect(sc, &mut r);
    r
}

fn console() -> Result<(u64, u64), String> {
    use nix::fcntl::OFlag;
    let master = nix::pty::posix_openpt(OFlag::O_RDWR | OFlag::O_NOCTTY)
        .map_err(|e| format!("posix_openpt: {e}"))?;
    nix::pty::grantpt(&master).map_err(|e| format!("grantpt: {e}"))?;
    nix::pty::unlockpt(&master).map_err(|e| format!("unlockpt: {e}"))?;
    let name = nix::pty::ptsname_r(&master).map_err(|e| format!("ptsname: {e}"))?;
    let slave = fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(&name)
        .map_err(|e| format!("open {name}: {e}"))?;
    let rdev = slave.metadata().map_err(|e| e.to_string())?.rdev();
    rootfs::setup_console(slave.as_fd()).map_err(|e| format!("setup_console: {}", chain(&e)))?;
    Ok((nix::sys::stat::major(rdev), nix::sys::stat::minor(rdev)))
}

fn inspect(sc: &Scenario, r: &mut Report) {
    let info = fs::read_to_string("/proc/thread-self/mountinfo").unwrap_or_default();
    for line in info.lines() {
        let Some((left, right)) = line.split_once(" - ") else {
            continue;
        };
        let f: Vec<&str> = left.split(' ').collect();
        let fstype = right.split(' ').next().unwrap_or_default();
        r.mounts
            .push((f[4].to_owned(), fstype.to_owned(), f[5].to_owned()));
    }
    for p in &sc.nodes {
        let Ok(md) = fs::symlink_metadata(p) else {
            continue;
        };
        let ft = md.file_type();
        use std::os::unix::fs::FileTypeExt;
        let kind = if ft.is_symlink() {
            "symlink"
        } else if ft.is_char_device() {
            "char"
        } else if ft.is_block_device() {
            "block"
        } else if ft.is_fifo() {
            "fifo"
        } else if ft.is_dir() {
            "dir"
        } else {
            "file"
        };
        r.nodes.insert(
            p.clone(),
            Node {
                kind: kind.into(),
                major: nix::sys::stat::major(md.rdev()),
                minor: nix::sys::stat::minor(md.rdev()),
                mode: md.permissions().mode() & 0o7777,
                uid: md.uid(),
                gid: md.gid(),
                dev: md.dev(),
                link: fs::read_link(p)
                    .ok()
                    .map(|l| l.to_string_lossy().into_owned()),
            },
        );
    }
    for p in &sc.writes {
        let res = fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(false)
            .open(p);
        let v = match res {
            Ok(_) => "ok".to_owned(),
            Err(e) => format!(
                "{:?}",
                nix::errno::Errno::from_raw(e.raw_os_error().unwrap_or(0))
            ),
        };
        r.writes.insert(p.clone(), v);
    }
    for p in &sc.fs {
        let (Ok(sf), Ok(sv)) = (
            nix::sys::statfs::statfs(p.as_str()),
            nix::sys::statvfs::statvfs(p.as_str()),
        ) else {
            continue;
        };
        use nix::sys::statvfs::FsFlags;
        let flags = [
            (FsFlags::ST_RDONLY, "ro"),
            (FsFlags::ST_NOSUID, "nosuid"),
            (FsFlags::ST_NODEV, "nodev"),
            (FsFlags::ST_NOEXEC, "noexec"),
        ]
        .into_iter()
        .filter(|(f, _)| sv.flags().contains(*f))
        .map(|(_, n)| n.to_owned())
        .collect();
        r.fs.insert(p.clone(), (sf.filesystem_type().0, flags));
    }
    if let Ok(rd) = fs::read_dir("/") {
        r.root_entries = rd
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        r.root_entries.sort();
    }
}

// ---------------------------------------------------------------------------------------------
// The host side.

fn is_root() -> bool {
    if !nix::unistd::Uid::effective().is_root() {
        eprintln!("skipping: needs root");
        return false;
    }
    true
}

/// A bundle directory with a busybox rootfs and a host sentinel directory next to it.
struct Fixture {
    dir: PathBuf,
}

impl Fixture {
    fn new() -> Self {
        let dir = tempfile::Builder::new()
            .prefix("berth-rootfs-")
            .tempdir()
            .unwrap()
            .keep();
        let fx = Fixture { dir };
        for d in [
            "rootfs/bin",
            "rootfs/etc",
            "rootfs/tmp",
            "sentinel",
            "hostdata",
        ] {
            fs::create_dir_all(fx.dir.join(d)).unwrap();
        }
        if Path::new("/bin/busybox").exists() {
            fs::copy("/bin/busybox", fx.rootfs().join("bin/busybox")).unwrap();
            symlink("busybox", fx.rootfs().join("bin/sh")).unwrap();
        }
        fs::write(fx.sentinel().join("canary"), b"untouched").unwrap();
        fs::write(fx.dir.join("hostdata/file"), b"data").unwrap();
        fs::write(fx.dir.join("motd"), b"hello").unwrap();
        fx
    }

    fn rootfs(&self) -> PathBuf {
        self.dir.join("rootfs")
    }

    fn sentinel(&self) -> PathBuf {
        self.dir.join("sentinel")
    }

    /// Names and contents below the sentinel directory.
    fn sentinel_state(&self) -> Vec<(String, Vec<u8>)> {
        let mut v: Vec<_> = fs::read_dir(self.sentinel())
            .unwrap()
            .flatten()
            .map(|e| {
                let content = fs::read(e.path()).unwrap_or_default();
                (e.file_name().to_string_lossy().into_owned(), content)
            })
            .collect();
        v.sort();
        v
    }

    fn plan(&self, config: serde_json::Value, no_pivot: bool) -> Result<RootfsPlan, String> {
        let mut spec = serde_json::json!({
            "ociVersion": "1.2.0",
            "root": {"path": "rootfs"},
            "linux": {}
        });
        for (k, v) in config.as_object().unwrap() {
            spec[k] = v.clone();
        }
        let spec: Spec = serde_json::from_value(spec).unwrap();
        rootfs::plan(&spec, &self.dir, &RootfsOptions { no_pivot }).map_err(|e| chain(&e))
    }

    /// Runs the scenario in a child process, optionally under a wrapper command line.
    fn run(&self, sc: &Scenario, wrapper: &[&str]) -> Report {
        let path = self.dir.join("scenario.json");
        fs::write(&path, serde_json::to_vec(sc).unwrap()).unwrap();
        let exe = std::env::current_exe().unwrap();
        let exe = exe.to_str().unwrap();
        let mut argv: Vec<&str> = wrapper.to_vec();
        argv.extend([
            exe,
            "--exact",
            "child_entry",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
            "--quiet",
        ]);
        let out = Command::new(argv[0])
            .args(&argv[1..])
            .env(ENV, &path)
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        let line = stdout
            .lines()
            .find_map(|l| l.strip_prefix(MARK))
            .unwrap_or_else(|| {
                panic!(
                    "child printed no report\nstdout: {stdout}\nstderr: {}",
                    String::from_utf8_lossy(&out.stderr)
                )
            });
        let report: Report = serde_json::from_str(line).unwrap();
        self.assert_host_clean();
        report
    }

    /// Nothing of the fixture is mounted in the host's mount namespace.
    fn assert_host_clean(&self) {
        let info = fs::read_to_string("/proc/self/mountinfo").unwrap();
        let dir = self.dir.to_str().unwrap();
        let left: Vec<&str> = info.lines().filter(|l| l.contains(dir)).collect();
        assert!(left.is_empty(), "mounts left on the host: {left:#?}");
    }
}

impl Drop for Fixture {
    fn drop(&mut self) {
        let _ = Command::new("rm")
            .args(["-rf", "--one-file-system"])
            .arg(&self.dir)
            .status();
    }
}

fn scenario(plan: RootfsPlan, nodes: &[&str], writes: &[&str], console: bool) -> Scenario {
    Scenario {
        plan,
        nodes: nodes.iter().map(|s| s.to_string()).collect(),
        writes: writes.iter().map(|s| s.to_string()).collect(),
        console,
        fs: Vec::new(),
    }
}

const TMPFS_MAGIC: i64 = 0x0102_1994;

/// For scenarios without /proc: the filesystem at `path` has this magic and these flags.
fn assert_fs(r: &Report, path: &str, magic: Option<i64>, flags: &[&str]) {
    let (m, have) =
        r.fs.get(path)
            .unwrap_or_else(|| panic!("no statfs of {path}: {:?}", r.fs));
    if let Some(magic) = magic {
        assert_eq!(*m, magic, "filesystem of {path}");
    }
    for f in flags {
        assert!(have.iter().any(|h| h == f), "{path} lacks {f}: {have:?}");
    }
}

fn mount_at<'a>(r: &'a Report, point: &str) -> Option<&'a (String, String, String)> {
    r.mounts.iter().rev().find(|m| m.0 == point)
}

fn assert_mount(r: &Report, point: &str, fstype: &str, opts: &[&str]) {
    let m = mount_at(r, point).unwrap_or_else(|| panic!("no mount at {point}: {:#?}", r.mounts));
    if fstype != "*" {
        assert_eq!(m.1, fstype, "fstype of {point}");
    }
    let have: Vec<&str> = m.2.split(',').collect();
    for o in opts {
        assert!(have.contains(o), "{point} lacks {o}: {}", m.2);
    }
}

fn assert_char<'a>(r: &'a Report, path: &str, major: u64, minor: u64) -> &'a Node {
    let n = r
        .nodes
        .get(path)
        .unwrap_or_else(|| panic!("no node {path}"));
    assert_eq!(
        (n.kind.as_str(), n.major, n.minor),
        ("char", major, minor),
        "{path}"
    );
    n
}

fn standard_mounts(fx: &Fixture) -> serde_json::Value {
    let data = fx.dir.join("hostdata");
    let motd = fx.dir.join("motd");
    serde_json::json!([
        {"destination": "/proc", "type": "proc", "source": "proc", "options": ["nosuid", "noexec", "nodev"]},
        {"destination": "/dev", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]},
        {"destination": "/dev/pts", "type": "devpts", "source": "devpts", "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620"]},
        {"destination": "/dev/shm", "type": "tmpfs", "source": "shm", "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"]},
        {"destination": "/sys", "type": "sysfs", "source": "sysfs", "options": ["nosuid", "noexec", "nodev", "ro"]},
        {"destination": "/sys/fs/cgroup", "type": "cgroup", "source": "cgroup", "options": ["nosuid", "noexec", "nodev", "relatime", "ro"]},
        {"destination": "/tmp", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid", "nodev", "mode=1777"]},
        {"destination": "/data", "type": "bind", "source": data, "options": ["rbind", "ro", "nosuid"]},
        {"destination": "/rro", "source": data, "options": ["rbind", "rro"]},
        {"destination": "/etc/motd", "source": motd, "options": ["bind", "ro"]},
        {"destination": "/deep/er/dir", "type": "tmpfs", "source": "tmpfs", "options": ["rprivate", "size=1m"]}
    ])
}

fn full_bundle(fx: &Fixture, no_pivot: bool) -> Report {
    let plan = fx
        .plan(
            serde_json::json!({
                "root": {"path": "rootfs", "readonly": true},
                "mounts": standard_mounts(fx),
                "linux": {
                    "devices": [{"path": "/dev/mydev", "type": "c", "major": 1, "minor": 7,
                                 "fileMode": 384, "uid": 1000, "gid": 1000}],
                    "maskedPaths": ["/proc/timer_list", "/proc/driver", "/proc/does-not-exist"],
                    "readonlyPaths": ["/proc/sys", "/proc/sysrq-trigger"]
                }
            }),
            no_pivot,
        )
        .unwrap();
    let sc = scenario(
        plan,
        &[
            "/dev",
            "/dev/null",
            "/dev/zero",
            "/dev/full",
            "/dev/random",
            "/dev/urandom",
            "/dev/tty",
            "/dev/mydev",
            "/dev/fd",
            "/dev/stdin",
            "/dev/ptmx",
            "/proc/timer_list",
            "/etc/motd",
        ],
        &["/newfile", "/tmp/x", "/data/x", "/rro/x", "/dev/shm/x"],
        false,
    );
    fx.run(&sc, &[])
}

fn check_full_bundle(fx: &Fixture, r: &Report) {
    assert!(r.isolated);
    assert_eq!(r.error, None);
    assert_mount(r, "/", "*", &["ro"]);
    assert_mount(r, "/proc", "proc", &["nosuid", "noexec", "nodev"]);
    assert_mount(r, "/dev", "tmpfs", &["nosuid"]);
    assert_mount(r, "/dev/pts", "devpts", &["nosuid", "noexec"]);
    assert_mount(r, "/dev/shm", "tmpfs", &["nodev"]);
    assert_mount(r, "/sys", "sysfs", &["ro"]);
    assert_mount(r, "/sys/fs/cgroup", "tmpfs", &["ro"]);
    assert_mount(r, "/sys/fs/cgroup/memory", "cgroup", &["ro"]);
    assert_mount(r, "/tmp", "tmpfs", &["nosuid", "nodev"]);
    assert_mount(r, "/data", "*", &["ro", "nosuid"]);
    assert_mount(r, "/rro", "*", &["ro"]);
    assert_mount(r, "/etc/motd", "*", &["ro"]);
    assert_mount(r, "/deep/er/dir", "tmpfs", &[]);
    assert_mount(r, "/proc/sys", "proc", &["ro"]);
    if Path::new("/proc/sysrq-trigger").exists() {
        assert_mount(r, "/proc/sysrq-trigger", "proc", &["ro"]);
    }
    assert_mount(r, "/proc/driver", "tmpfs", &["ro"]);
    assert_mount(r, "/proc/timer_list", "tmpfs", &["ro"]);

    for (p, min) in [
        ("/dev/null", 3),
        ("/dev/zero", 5),
        ("/dev/full", 7),
        ("/dev/random", 8),
        ("/dev/urandom", 9),
    ] {
        let n = assert_char(r, p, 1, min);
        assert_eq!((n.mode, n.uid, n.gid), (0o666, 0, 0), "{p}");
    }
    assert_char(r, "/dev/tty", 5, 0);
    assert_eq!(
        r.nodes["/dev/null"].dev, r.nodes["/dev"].dev,
        "/dev/null was created by mknod on the /dev tmpfs"
    );
    let n = assert_char(r, "/dev/mydev", 1, 7);
    assert_eq!((n.mode, n.uid, n.gid), (0o600, 1000, 1000));
    assert_char(r, "/proc/timer_list", 1, 3);
    let link = |p: &str| r.nodes[p].link.clone();
    assert_eq!(link("/dev/fd").as_deref(), Some("/proc/self/fd"));
    assert_eq!(link("/dev/stdin").as_deref(), Some("/proc/self/fd/0"));
    assert_eq!(link("/dev/ptmx").as_deref(), Some("pts/ptmx"));
    assert_eq!(r.nodes["/etc/motd"].kind, "file");

    assert_eq!(r.writes["/newfile"], "EROFS");
    assert_eq!(r.writes["/tmp/x"], "ok");
    assert_eq!(r.writes["/data/x"], "EROFS");
    assert_eq!(r.writes["/rro/x"], "EROFS");
    assert_eq!(r.writes["/dev/shm/x"], "ok");

    assert!(
        r.root_entries.contains(&"bin".to_owned()),
        "{:?}",
        r.root_entries
    );
    assert!(
        !r.root_entries.contains(&"work".to_owned()),
        "host root visible: {:?}",
        r.root_entries
    );
    // Nothing was written into the host directory behind the read-only bind.
    assert!(!fx.dir.join("hostdata/x").exists());
}

#[test]
fn mounts_devices_masks_and_readonly_root_with_pivot_root() {
    if !is_root() {
        return;
    }
    let fx = Fixture::new();
    let before = fx.sentinel_state();
    let r = full_bundle(&fx, false);
    check_full_bundle(&fx, &r);
    assert_eq!(fx.sentinel_state(), before);
    // Missing targets were created inside the rootfs.
    assert!(fx.rootfs().join("deep/er/dir").is_dir());
    assert!(fx.rootfs().join("etc/motd").is_file());
}

#[test]
fn no_pivot_moves_the_rootfs_onto_slash_and_chroots() {
    if !is_root() {
        return;
    }
    let fx = Fixture::new();
    let r = full_bundle(&fx, true);
    check_full_bundle(&fx, &r);
}

#[test]
fn cve_2019_19921_symlinked_proc_or_sys_is_refused() {
    if !is_root() {
        return;
    }
    for (dir, typ) in [("proc", "proc"), ("sys", "sysfs")] {
        let fx = Fixture::new();
        symlink(fx.sentinel(), fx.rootfs().join(dir)).unwrap();
        let before = fx.sentinel_state();
        let plan = fx
            .plan(
                serde_json::json!({"mounts": [
                    {"destination": format!("/{dir}"), "type": typ, "source": typ}
                ]}),
                false,
            )
            .unwrap();
        let r = fx.run(&scenario(plan, &[], &[], false), &[]);
        assert!(r.isolated);
        let err = r.error.expect("a symlinked /proc or /sys must be refused");
        assert!(
            err.contains(&format!("/{dir}")) && err.contains("symlink"),
            "{err}"
        );
        assert_eq!(fx.sentinel_state(), before);
    }
}

#[test]
fn cve_2021_30465_mount_destinations_through_symlinks_stay_in_the_rootfs() {
    if !is_root() {
        return;
    }
    let fx = Fixture::new();
    symlink("/", fx.rootfs().join("link")).unwrap();
    symlink("../../../../../..", fx.rootfs().join("up")).unwrap();
    let before = fx.sentinel_state();
    let plan = fx
        .plan(
            serde_json::json!({"mounts": [
                {"destination": "/link/m1", "type": "tmpfs", "source": "tmpfs"},
                {"destination": "/up/m2", "type": "tmpfs", "source": "tmpfs"},
                {"destination": "/link/up/link/m3", "source": fx.dir.join("hostdata"), "options": ["bind"]}
            ]}),
            false,
        )
        .unwrap();
    let mut sc = scenario(plan, &["/m3/file"], &[], false);
    sc.fs = vec!["/m1".into(), "/m2".into()];
    let r = fx.run(&sc, &[]);
    assert_eq!(r.error, None);
    assert_fs(&r, "/m1", Some(TMPFS_MAGIC), &[]);
    assert_fs(&r, "/m2", Some(TMPFS_MAGIC), &[]);
    assert_eq!(r.nodes["/m3/file"].kind, "file");
    for m in ["m1", "m2", "m3"] {
        assert!(
            fx.rootfs().join(m).is_dir(),
            "{m} created inside the rootfs"
        );
    }
    assert_eq!(fx.sentinel_state(), before);

    // A symlink to a host path means that path inside the rootfs; it does not exist there,
    // so the mount fails and nothing appears in the host directory.
    let fx = Fixture::new();
    symlink(fx.sentinel(), fx.rootfs().join("hostlink")).unwrap();
    let before = fx.sentinel_state();
    let plan = fx
        .plan(
            serde_json::json!({"mounts": [
                {"destination": "/hostlink/m4", "type": "tmpfs", "source": "tmpfs"}
            ]}),
            false,
        )
        .unwrap();
    let r = fx.run(&scenario(plan, &[], &[], false), &[]);
    let err = r.error.expect("mount through a dangling symlink must fail");
    assert!(err.contains("/hostlink/m4"), "{err}");
    assert_eq!(fx.sentinel_state(), before);
}

#[test]
fn cve_2026_41579_symlinked_dev_is_refused() {
    if !is_root() {
        return;
    }
    let fx = Fixture::new();
    symlink(fx.sentinel(), fx.rootfs().join("dev")).unwrap();
    let before = fx.sentinel_state();
    let plan = fx.plan(serde_json::json!({}), false).unwrap();
    let r = fx.run(&scenario(plan, &[], &[], false), &[]);
    let err = r.error.expect("a symlinked /dev must be refused");
    assert!(err.contains("/dev") && err.contains("symlink"), "{err}");
    assert_eq!(fx.sentinel_state(), before);
}

#[test]
fn cve_2025_52565_symlinked_console_and_dev_entries_are_replaced_not_followed() {
    if !is_root() {
        return;
    }
    let fx = Fixture::new();
    // No /dev mount: the runtime populates the image's own /dev, which is full of traps.
    let dev = fx.rootfs().join("dev");
    fs::create_dir_all(dev.join("pts")).unwrap();
    let canary = fx.sentinel().join("canary");
    for name in ["null", "console", "tty", "ptmx", "pts/0", "pts/ptmx"] {
        symlink(&canary, dev.join(name)).unwrap();
    }
    let before = fx.sentinel_state();
    let plan = fx
        .plan(
            serde_json::json!({"mounts": [
                {"destination": "/proc", "type": "proc", "source": "proc"}
            ]}),
            false,
        )
        .unwrap();
    let r = fx.run(
        &scenario(
            plan,
            &["/dev/null", "/dev/tty", "/dev/console", "/dev/ptmx"],
            &["/dev/null"],
            true,
        ),
        &[],
    );
    assert_eq!(r.error, None);
    assert_char(&r, "/dev/null", 1, 3);
    assert_char(&r, "/dev/tty", 5, 0);
    let (major, minor) = r.console.expect("a console was set up");
    assert_eq!(major, 136, "the console is a pts device");
    assert_char(&r, "/dev/console", major, minor);
    assert_eq!(r.nodes["/dev/ptmx"].link.as_deref(), Some("pts/ptmx"));
    assert_eq!(r.writes["/dev/null"], "ok");
    assert_eq!(fx.sentinel_state(), before);
}

#[test]
fn cve_2025_31133_masked_paths_refuse_a_symlinked_dev_null() {
    if !is_root() {
        return;
    }
    let fx = Fixture::new();
    // /dev is a bind of a directory whose `null` is a symlink to a procfs file: masking must
    // not bind that file (writable) over the masked path. (core_pattern itself is not
    // compared: other suites on this host change it while this one runs; nothing here
    // writes anywhere, so the refusal is what is checked.)
    let fake = fx.dir.join("fakedev");
    fs::create_dir(&fake).unwrap();
    symlink("/proc/sys/kernel/core_pattern", fake.join("null")).unwrap();
    let plan = fx
        .plan(
            serde_json::json!({
                "mounts": [
                    {"destination": "/proc", "type": "proc", "source": "proc"},
                    {"destination": "/dev", "source": fake, "options": ["rbind"]}
                ],
                "linux": {"maskedPaths": ["/proc/timer_list"]}
            }),
            false,
        )
        .unwrap();
    let r = fx.run(&scenario(plan, &[], &[], false), &[]);
    let err = r.error.expect("a symlinked /dev/null must be refused");
    assert!(err.contains("/dev/null"), "{err}");

    // With the runtime's own /dev, the masked file is the real null device, read-only.
    let fx = Fixture::new();
    fs::create_dir(fx.rootfs().join("dev")).unwrap();
    symlink(
        "/proc/sys/kernel/core_pattern",
        fx.rootfs().join("dev/null"),
    )
    .unwrap();
    let plan = fx
        .plan(
            serde_json::json!({
                "mounts": [{"destination": "/proc", "type": "proc", "source": "proc"}],
                "linux": {"maskedPaths": ["/proc/timer_list"]}
            }),
            false,
        )
        .unwrap();
    let r = fx.run(&scenario(plan, &["/proc/timer_list"], &[], false), &[]);
    assert_eq!(r.error, None);
    assert_char(&r, "/proc/timer_list", 1, 3);
    assert_mount(&r, "/proc/timer_list", "*", &["ro"]);
}

#[test]
fn user_namespace_binds_host_devices_and_keeps_locked_flags() {
    if !is_root() {
        return;
    }
    if Command::new("unshare").arg("--version").output().is_err() {
        eprintln!("skipping: needs unshare(1) from util-linux");
        return;
    }
    let fx = Fixture::new();
    let locked = fx.dir.join("locked");
    fs::create_dir(&locked).unwrap();
    let plan = fx
        .plan(
            serde_json::json!({
                "root": {"path": "rootfs", "readonly": true},
                "mounts": [
                    {"destination": "/dev", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid", "mode=755"]},
                    {"destination": "/locked", "source": locked, "options": ["rbind", "ro"]}
                ]
            }),
            false,
        )
        .unwrap();
    let mut sc = scenario(
        plan,
        &["/dev", "/dev/null", "/dev/zero"],
        &["/locked/x", "/newfile"],
        false,
    );
    sc.fs = vec!["/locked".into(), "/".into()];
    // A private mount namespace (as real root) gives the source a nosuid,nodev,noexec tmpfs;
    // the user namespace created inside it then sees those flags locked.
    let script = "mount -t tmpfs -o nosuid,nodev,noexec,size=1m berth-test \"$0\" && exec unshare --user --map-root-user \"$@\"";
    let locked_str = locked.to_str().unwrap().to_owned();
    let r = fx.run(
        &sc,
        &[
            "unshare",
            "--mount",
            "--propagation",
            "private",
            "sh",
            "-c",
            script,
            &locked_str,
        ],
    );
    assert!(r.isolated);
    assert_eq!(r.error, None);
    let host_user_ns = fs::read_link("/proc/self/ns/user").unwrap();
    assert_ne!(
        Path::new(&r.user_ns),
        host_user_ns,
        "the child is in a new user namespace"
    );
    // mknod is refused in a user namespace: the host nodes are bound instead, so they live
    // on the host's devtmpfs, not on the container's /dev tmpfs.
    let null = assert_char(&r, "/dev/null", 1, 3);
    assert_ne!(
        null.dev, r.nodes["/dev"].dev,
        "/dev/null is a bind of the host node"
    );
    assert_char(&r, "/dev/zero", 1, 5);
    assert_fs(
        &r,
        "/locked",
        Some(TMPFS_MAGIC),
        &["ro", "nosuid", "nodev", "noexec"],
    );
    assert_fs(&r, "/", None, &["ro"]);
    assert_eq!(r.writes["/locked/x"], "EROFS");
    assert_eq!(r.writes["/newfile"], "EROFS");
}

#[test]
fn cve_2021_30465_symlink_exchange_race_never_mounts_or_creates_outside_the_rootfs() {
    if !is_root() {
        return;
    }
    symlink_exchange_race(false);
}

/// CVE-2024-45310: the same race, aimed at the runtime's creation of missing mount targets:
/// bind mounts of a *file* make the runtime create empty files below the swapped directory,
/// and none of them may appear on the host.
#[test]
fn cve_2024_45310_racing_target_creation_never_creates_host_files() {
    if !is_root() {
        return;
    }
    symlink_exchange_race(true);
}

fn symlink_exchange_race(file_targets: bool) {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;

    let fx = Fixture::new();
    let vol = fx.rootfs().join("vol");
    fs::create_dir_all(vol.join("dir")).unwrap();
    symlink("/", vol.join("link")).unwrap();
    let before = fx.sentinel_state();
    let names: Vec<String> = (0..8)
        .map(|i| format!("berth-race-{}-{i}", std::process::id()))
        .collect();
    let source = fx.rootfs().parent().unwrap().join("race-source");
    fs::write(&source, "source").unwrap();
    let mounts: Vec<serde_json::Value> = names
        .iter()
        .map(|n| {
            if file_targets {
                serde_json::json!({"destination": format!("/vol/dir/{n}"), "type": "bind",
                    "source": source.to_string_lossy(), "options": ["bind", "ro"]})
            } else {
                serde_json::json!({"destination": format!("/vol/dir/{n}"), "type": "tmpfs", "source": "tmpfs"})
            }
        })
        .collect();
    let plan = fx
        .plan(serde_json::json!({ "mounts": mounts }), false)
        .unwrap();

    // Swap `vol/dir` and `vol/link -> /` as fast as possible while the child mounts below
    // `vol/dir` (the attack of CVE-2021-30465 and, for the target creation, CVE-2024-45310).
    let stop = Arc::new(AtomicBool::new(false));
    let swapper = {
        let stop = stop.clone();
        let vol = fs::File::open(&vol).unwrap();
        std::thread::spawn(move || {
            let mut swaps = 0u64;
            while !stop.load(Ordering::Relaxed) {
                nix::fcntl::renameat2(
                    &vol,
                    "dir",
                    &vol,
                    "link",
                    nix::fcntl::RenameFlags::RENAME_EXCHANGE,
                )
                .unwrap();
                swaps += 1;
            }
            swaps
        })
    };
    // A bounded number of rounds, enough to hit the window many times.
    let mut succeeded = 0;
    for _ in 0..25 {
        let r = fx.run(&scenario(plan.clone(), &[], &[], false), &[]);
        assert!(r.isolated);
        if r.error.is_none() {
            succeeded += 1;
        }
        for n in &names {
            assert!(
                !Path::new("/").join(n).exists(),
                "{n} was created in the host's /"
            );
        }
    }
    stop.store(true, Ordering::Relaxed);
    let swaps = swapper.join().unwrap();
    assert!(swaps > 0, "the swapper ran");
    eprintln!("race: {succeeded}/25 rounds mounted everything, {swaps} swaps");
    assert_eq!(fx.sentinel_state(), before);
}

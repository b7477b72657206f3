//! Privileged cgroup tests against the real kernel. The same binary runs on this host (hybrid
//! v1) and in the cgroup v2 VM (`docs/cgroups.md` has the command): every test detects the
//! layout and checks the files of the version it finds.
//!
//! Every test works in its own cgroup `/berth-test/<test>-<pid>`, checks that its processes
//! really sit there (from `/proc/PID/cgroup`), and removes everything in `Drop`, also when an
//! assertion fails. Processes are started by the test and killed by PID only.

use std::fs;
use std::io::{Read as _, Write as _};
use std::os::unix::process::ExitStatusExt;
use std::path::PathBuf;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::thread::sleep;
use std::time::Duration;

use berth_runtime::cgroups::{Cgroup, CgroupError, FreezerState, Layout, OomWait, Version};
use oci_spec::runtime::{
    LinuxCpuBuilder, LinuxDeviceCgroupBuilder, LinuxDeviceType, LinuxMemoryBuilder,
    LinuxPidsBuilder, LinuxResources, LinuxResourcesBuilder,
};

const BUSYBOX: &str = "/bin/busybox";

fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

macro_rules! require_root {
    () => {
        if !is_root() {
            eprintln!("skipping: needs root");
            return;
        }
    };
}

/// Whether this host's cgroups are v2 only (the VM) or v1/hybrid (this host).
fn pure_v2() -> bool {
    let layout = Layout::detect().expect("detecting the cgroup layout");
    layout.hierarchies.iter().all(|h| h.version == Version::V2)
}

/// A cgroup owned by one test: destroyed on drop, and the test's children killed first.
struct Fixture {
    cg: Cgroup,
    children: Vec<Child>,
}

impl Fixture {
    fn new(name: &str, resources: Option<&LinuxResources>) -> Result<Self, CgroupError> {
        let path = format!("/berth-test/{name}-{}", std::process::id());
        let mut cg = Cgroup::resolve(Some(&path), name)?;
        cg.create(resources)?;
        Ok(Fixture {
            cg,
            children: Vec::new(),
        })
    }

    /// The directory of `controller`'s files (the v2 one on a pure v2 host).
    fn dir(&self, controller: &str) -> PathBuf {
        let v2 = pure_v2();
        self.cg
            .placements
            .iter()
            .find(|p| {
                if v2 {
                    p.version == Version::V2
                } else {
                    p.version == Version::V1 && p.controllers.iter().any(|c| c == controller)
                }
            })
            .unwrap_or_else(|| panic!("no {controller} hierarchy"))
            .dir
            .clone()
    }

    fn read(&self, controller: &str, file: &str) -> String {
        let path = self.dir(controller).join(file);
        fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
            .trim()
            .to_owned()
    }

    /// Starts `busybox sh -c script` stopped on a `read`, moves it into the cgroup, checks it
    /// is there, then lets it run. Returns its index in `children`.
    fn spawn(&mut self, script: &str) -> usize {
        let mut child = Command::new(BUSYBOX)
            .args(["sh", "-c", &format!("read _go; {script}")])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawning busybox");
        let pid = child.id() as i32;
        self.cg.add_pid(pid).expect("add_pid");
        // Isolation check: the kernel agrees the process is in our cgroup.
        let membership = fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap();
        let leaf = self.cg.path.as_str();
        assert!(
            membership.lines().any(|l| l.ends_with(leaf)),
            "pid {pid} is not in {leaf}: {membership}"
        );
        let mut stdin: ChildStdin = child.stdin.take().unwrap();
        stdin.write_all(b"go\n").unwrap();
        self.children.push(child);
        self.children.len() - 1
    }

    fn pid(&self, i: usize) -> i32 {
        self.children[i].id() as i32
    }

    /// Waits for child `i`, returning (exit code or 128+signal, stdout, stderr).
    fn wait(&mut self, i: usize) -> (i32, String, String) {
        let child = &mut self.children[i];
        let mut out = String::new();
        let mut err = String::new();
        child
            .stdout
            .take()
            .unwrap()
            .read_to_string(&mut out)
            .unwrap();
        child
            .stderr
            .take()
            .unwrap()
            .read_to_string(&mut err)
            .unwrap();
        let status = child.wait().unwrap();
        let code = status
            .code()
            .unwrap_or_else(|| 128 + status.signal().unwrap_or(0));
        (code, out, err)
    }
}

impl Drop for Fixture {
    fn drop(&mut self) {
        for c in &mut self.children {
            let _ = c.kill();
            let _ = c.wait();
        }
        if let Err(e) = self.cg.destroy() {
            eprintln!("cleanup of {} failed: {e}", self.cg.path);
        }
    }
}

/// utime + stime of a process, from `/proc/PID/stat` (proc(5) fields 14 and 15).
fn cpu_ticks(pid: i32) -> u64 {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let after_comm = &stat[stat.rfind(')').unwrap() + 2..];
    let fields: Vec<&str> = after_comm.split(' ').collect();
    fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap()
}

/// Polls `cond` up to ~10 s (more in a slow VM is not needed: the conditions are kernel state
/// changes that follow promptly). Returns whether it became true; no test asserts on time.
fn eventually(mut cond: impl FnMut() -> bool) -> bool {
    for _ in 0..1000 {
        if cond() {
            return true;
        }
        sleep(Duration::from_millis(10));
    }
    false
}

fn resources() -> LinuxResources {
    LinuxResourcesBuilder::default()
        .memory(
            LinuxMemoryBuilder::default()
                .limit(64 << 20)
                .build()
                .unwrap(),
        )
        .pids(LinuxPidsBuilder::default().limit(10).build().unwrap())
        .cpu(
            LinuxCpuBuilder::default()
                .shares(512u64)
                .quota(50_000)
                .period(100_000u64)
                .build()
                .unwrap(),
        )
        .build()
        .unwrap()
}

#[test]
fn limits_land_in_the_kernel_files() {
    require_root!();
    let f = Fixture::new("limits", Some(&resources())).expect("create");
    if pure_v2() {
        assert_eq!(f.read("memory", "memory.max"), "67108864");
        assert_eq!(f.read("pids", "pids.max"), "10");
        // 1 + ((512 - 2) * 9999) / 262142 = 20
        assert_eq!(f.read("cpu", "cpu.weight"), "20");
        assert_eq!(f.read("cpu", "cpu.max"), "50000 100000");
    } else {
        assert_eq!(f.read("memory", "memory.limit_in_bytes"), "67108864");
        assert_eq!(f.read("pids", "pids.max"), "10");
        assert_eq!(f.read("cpu", "cpu.shares"), "512");
        assert_eq!(f.read("cpu", "cpu.cfs_quota_us"), "50000");
        assert_eq!(f.read("cpu", "cpu.cfs_period_us"), "100000");
    }
}

#[test]
fn processes_join_and_are_listed() {
    require_root!();
    let mut f = Fixture::new("join", None).expect("create");
    let i = f.spawn("exec sleep 1000");
    let pid = f.pid(i);
    assert!(
        eventually(|| f.cg.pids().unwrap() == [pid]),
        "{:?}",
        f.cg.pids()
    );
    // CLONE_INTO_CGROUP needs the v2 directory fd (pure v2 and hybrid hosts); the v1
    // hierarchies are joined through their `tasks` files.
    let has_v2 = Layout::detect().unwrap().unified().is_some();
    assert_eq!(f.cg.open_v2_dir().unwrap().is_some(), has_v2);
    assert_eq!(f.cg.v1_tasks_files().is_empty(), pure_v2());
}

#[test]
fn freeze_stops_progress_and_thaw_resumes_it() {
    require_root!();
    let mut f = Fixture::new("freeze", None).expect("create");
    let i = f.spawn("while :; do :; done");
    let pid = f.pid(i);
    assert!(eventually(|| cpu_ticks(pid) > 0), "the busy loop never ran");
    f.cg.freeze().expect("freeze");
    assert_eq!(f.cg.state().unwrap(), FreezerState::Frozen);
    let frozen_at = cpu_ticks(pid);
    sleep(Duration::from_millis(300));
    assert_eq!(cpu_ticks(pid), frozen_at, "a frozen process kept running");
    f.cg.thaw().expect("thaw");
    assert_eq!(f.cg.state().unwrap(), FreezerState::Thawed);
    assert!(
        eventually(|| cpu_ticks(pid) > frozen_at),
        "thawed process made no progress"
    );
}

#[test]
fn a_memory_hog_is_oom_killed_at_the_limit() {
    require_root!();
    // memory+swap equal to memory: no swap to escape into (memsw on v1, swap.max 0 on v2).
    let limit = 32 << 20;
    let mut mem = LinuxMemoryBuilder::default().limit(limit);
    let swap_accounted = if pure_v2() {
        true
    } else {
        Layout::detect()
            .unwrap()
            .v1("memory")
            .is_some_and(|h| h.mount_point.join("memory.memsw.limit_in_bytes").exists())
    };
    if swap_accounted {
        mem = mem.swap(limit);
    }
    let r = LinuxResourcesBuilder::default()
        .memory(mem.build().unwrap())
        .build()
        .unwrap();
    let mut f = Fixture::new("oom", Some(&r)).expect("create");
    assert_eq!(f.cg.oom_kill_count().unwrap(), 0);
    let mut watcher = f.cg.oom_watcher().expect("oom watcher");
    assert_eq!(
        watcher.wait(Some(Duration::ZERO)).unwrap(),
        OomWait::Timeout
    );
    // `tail` keeps all input without a newline in memory: 200 MiB against a 32 MiB limit.
    let i = f.spawn(&format!(
        "{BUSYBOX} head -c 200000000 /dev/zero | {BUSYBOX} tail"
    ));
    let (code, _, stderr) = f.wait(i);
    assert_eq!(code, 128 + 9, "the hog was not SIGKILLed: {stderr}");
    assert!(f.cg.oom_kill_count().unwrap() >= 1, "no OOM kill counted");
    // The event stream's source: the watcher saw it (v1 eventfd, v2 memory.events).
    let seen = watcher.wait(Some(Duration::from_secs(30))).unwrap();
    assert!(matches!(seen, OomWait::Oom(n) if n >= 1), "{seen:?}");
    let stats = f.cg.stats().unwrap();
    assert_eq!(stats.memory.usage.limit, limit as u64);
}

#[test]
fn a_fork_bomb_stops_at_the_pids_limit() {
    require_root!();
    let r = LinuxResourcesBuilder::default()
        .pids(LinuxPidsBuilder::default().limit(4).build().unwrap())
        .build()
        .unwrap();
    let mut f = Fixture::new("pids", Some(&r)).expect("create");
    // The shell may give up at the first refused fork; either way the kernel counts it.
    f.spawn(&format!(
        "for n in 1 2 3 4 5 6 7 8; do {BUSYBOX} sleep 1000 & done; exec {BUSYBOX} sleep 1000"
    ));
    assert!(
        eventually(|| !f.read("pids", "pids.events").contains("max 0")),
        "no fork was refused: {}",
        f.read("pids", "pids.events")
    );
    let pids = f.cg.pids().unwrap();
    assert!(
        pids.len() <= 4,
        "{} processes under a limit of 4",
        pids.len()
    );
    let stats = f.cg.stats().unwrap();
    assert_eq!(stats.pids.limit, 4);
    assert!(stats.pids.current <= 4);
}

#[test]
fn cpu_quota_throttling_shows_in_stats() {
    require_root!();
    let r = LinuxResourcesBuilder::default()
        .cpu(
            LinuxCpuBuilder::default()
                .quota(10_000)
                .period(100_000u64)
                .build()
                .unwrap(),
        )
        .build()
        .unwrap();
    let mut f = Fixture::new("throttle", Some(&r)).expect("create");
    f.spawn("while :; do :; done");
    assert!(
        eventually(|| f.cg.stats().unwrap().cpu.throttling.throttled_periods > 0),
        "never throttled: {:?}",
        f.cg.stats().unwrap().cpu
    );
    assert!(f.cg.stats().unwrap().cpu.usage.total > 0);
}

#[test]
fn update_changes_a_running_containers_limits() {
    require_root!();
    let mut f = Fixture::new("update", Some(&resources())).expect("create");
    f.spawn("exec sleep 1000");
    let patch = LinuxResourcesBuilder::default()
        .pids(LinuxPidsBuilder::default().limit(20).build().unwrap())
        .memory(
            LinuxMemoryBuilder::default()
                .limit(128 << 20)
                .build()
                .unwrap(),
        )
        .build()
        .unwrap();
    f.cg.update(&patch).expect("update");
    assert_eq!(f.read("pids", "pids.max"), "20");
    let mem_file = if pure_v2() {
        "memory.max"
    } else {
        "memory.limit_in_bytes"
    };
    assert_eq!(f.read("memory", mem_file), "134217728");
    // Untouched settings stay.
    let cpu = if pure_v2() {
        ("cpu.max", "50000 100000")
    } else {
        ("cpu.cfs_quota_us", "50000")
    };
    assert_eq!(f.read("cpu", cpu.0), cpu.1);
}

#[test]
fn the_device_filter_denies_unlisted_devices_and_allows_listed_ones() {
    require_root!();
    // deny everything; the runtime's default list then allows /dev/null but not /dev/kmsg.
    let r = LinuxResourcesBuilder::default()
        .devices(vec![LinuxDeviceCgroupBuilder::default()
            .allow(false)
            .typ(LinuxDeviceType::A)
            .access("rwm")
            .build()
            .unwrap()])
        .build()
        .unwrap();
    let mut f = Fixture::new("devices", Some(&r)).expect("create");
    let i = f.spawn(
        "echo x > /dev/null && echo null-ok; \
         if (: < /dev/kmsg); then echo kmsg-ok; else echo kmsg-denied; fi",
    );
    let (_, stdout, stderr) = f.wait(i);
    assert!(stdout.contains("null-ok"), "{stdout} {stderr}");
    assert!(stdout.contains("kmsg-denied"), "{stdout} {stderr}");
    assert!(stderr.contains("not permitted"), "{stderr}");

    // update: a new list replaces the old one (v1 rules, or the attached v2 program).
    let allow_kmsg = LinuxResourcesBuilder::default()
        .devices(vec![
            LinuxDeviceCgroupBuilder::default()
                .allow(false)
                .access("rwm")
                .build()
                .unwrap(),
            LinuxDeviceCgroupBuilder::default()
                .allow(true)
                .typ(LinuxDeviceType::C)
                .major(1)
                .minor(11)
                .access("r")
                .build()
                .unwrap(),
        ])
        .build()
        .unwrap();
    f.cg.update(&allow_kmsg).expect("update devices");
    let i = f.spawn("if (: < /dev/kmsg); then echo kmsg-ok; else echo kmsg-denied; fi");
    let (_, stdout, stderr) = f.wait(i);
    assert!(stdout.contains("kmsg-ok"), "{stdout} {stderr}");
}

#[test]
fn destroy_kills_everything_and_removes_the_cgroup() {
    require_root!();
    let mut f = Fixture::new("destroy", None).expect("create");
    let i = f.spawn(&format!(
        "{BUSYBOX} sleep 1000 & {BUSYBOX} sleep 1000 & exec {BUSYBOX} sleep 1000"
    ));
    assert!(eventually(|| f.cg.pids().unwrap().len() == 3));
    f.cg.destroy().expect("destroy");
    for d in &f.cg.dirs {
        assert!(!d.exists(), "{} still exists", d.display());
    }
    let (code, _, _) = f.wait(i);
    assert_eq!(code, 128 + 9);
    // Idempotent.
    f.cg.destroy().expect("second destroy");
}

#[test]
fn a_value_the_kernel_refuses_names_the_file_and_leaves_nothing() {
    require_root!();
    let r = LinuxResourcesBuilder::default()
        .cpu(LinuxCpuBuilder::default().cpus("999").build().unwrap())
        .build()
        .unwrap();
    let path = format!("/berth-test/refused-{}", std::process::id());
    let mut cg = Cgroup::resolve(Some(&path), "refused").unwrap();
    let err = cg.create(Some(&r)).map(|_| ()).unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.starts_with("setting cpuset.cpus to 999 in ") && msg.contains(&path),
        "{msg}"
    );
    for d in &cg.dirs {
        assert!(!d.exists(), "{} left behind", d.display());
    }
}

#[test]
fn unified_keys_work_on_v2_and_are_refused_elsewhere() {
    require_root!();
    let with = |k: &str, v: &str| {
        LinuxResourcesBuilder::default()
            .unified(std::collections::HashMap::from([(
                k.to_owned(),
                v.to_owned(),
            )]))
            .build()
            .unwrap()
    };
    let err = Fixture::new("unified-bad", Some(&with("memory.bogus", "1")))
        .err()
        .expect("an unknown key must fail");
    assert!(
        matches!(err, CgroupError::UnifiedKeyUnknown { .. }),
        "{err}"
    );
    if pure_v2() {
        let f = Fixture::new("unified", Some(&with("memory.high", "50000000"))).expect("create");
        assert_eq!(f.read("memory", "memory.high"), "49999872"); // rounded down to pages
    }
}

#[test]
fn hugepage_limits_use_whichever_hierarchy_has_hugetlb() {
    require_root!();
    if !std::path::Path::new("/sys/kernel/mm/hugepages/hugepages-2048kB").exists() {
        eprintln!("skipping: no 2MB huge pages on this kernel");
        return;
    }
    let r = LinuxResourcesBuilder::default()
        .hugepage_limits(vec![oci_spec::runtime::LinuxHugepageLimitBuilder::default(
        )
        .page_size("2MB")
        .limit(4 << 20)
        .build()
        .unwrap()])
        .build()
        .unwrap();
    let layout = Layout::detect().unwrap();
    if !layout.has_controller("hugetlb") {
        // This host: no v1 hugetlb hierarchy and an empty cgroup2 mount.
        let err = Fixture::new("hugetlb-none", Some(&r))
            .err()
            .expect("must fail");
        assert!(
            matches!(
                err,
                CgroupError::ControllerUnavailable {
                    controller: "hugetlb",
                    ..
                }
            ),
            "{err}"
        );
        return;
    }
    let f = Fixture::new("hugetlb", Some(&r)).expect("create");
    let file = if layout.v1("hugetlb").is_some() {
        "hugetlb.2MB.limit_in_bytes"
    } else {
        "hugetlb.2MB.max"
    };
    let dir =
        f.cg.placements
            .iter()
            .find(|p| p.controllers.iter().any(|c| c == "hugetlb"))
            .unwrap()
            .dir
            .clone();
    assert_eq!(
        fs::read_to_string(dir.join(file)).unwrap().trim(),
        "4194304"
    );
    assert!(f.cg.stats().unwrap().hugetlb.contains_key("2MB"));
}

/// A container created (not started) by Debian's runc, removed on drop. Used to check that our
/// writers put the same values in the same files as runc for the same `linux.resources`.
struct RuncContainer {
    root: tempfile::TempDir,
    _bundle: tempfile::TempDir,
    id: String,
}

impl RuncContainer {
    fn create(id: &str, cgroups_path: &str, resources: &LinuxResources) -> Option<Self> {
        if Command::new("runc").arg("--version").output().is_err() {
            return None;
        }
        let bundle = tempfile::tempdir().unwrap();
        let root = tempfile::tempdir().unwrap();
        fs::create_dir_all(bundle.path().join("rootfs/bin")).unwrap();
        fs::copy(BUSYBOX, bundle.path().join("rootfs/bin/busybox")).unwrap();
        let status = Command::new("runc")
            .args(["spec", "--bundle"])
            .arg(bundle.path())
            .status()
            .unwrap();
        assert!(status.success(), "runc spec failed");
        let config_path = bundle.path().join("config.json");
        let mut config: serde_json::Value =
            serde_json::from_str(&fs::read_to_string(&config_path).unwrap()).unwrap();
        config["process"]["terminal"] = false.into();
        config["process"]["args"] = serde_json::json!(["/bin/busybox", "sleep", "1000"]);
        config["linux"]["cgroupsPath"] = cgroups_path.into();
        config["linux"]["resources"] = serde_json::to_value(resources).unwrap();
        fs::write(&config_path, serde_json::to_string(&config).unwrap()).unwrap();
        // runc's init keeps the stdio it was given until the container starts: hand it a
        // file, not a pipe, or reading the pipe to EOF would wait forever.
        let log_path = bundle.path().join("runc.stderr");
        let log = fs::File::create(&log_path).unwrap();
        let status = Command::new("runc")
            .arg("--root")
            .arg(root.path())
            .args(["create", "--bundle"])
            .arg(bundle.path())
            .arg(id)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .status()
            .unwrap();
        let stderr = fs::read_to_string(&log_path).unwrap_or_default();
        let container = RuncContainer {
            root,
            _bundle: bundle,
            id: id.to_owned(),
        };
        assert!(status.success(), "runc create failed: {stderr}");
        Some(container)
    }
}

impl Drop for RuncContainer {
    fn drop(&mut self) {
        let _ = Command::new("runc")
            .arg("--root")
            .arg(self.root.path())
            .args(["delete", "--force", &self.id])
            .stderr(Stdio::null())
            .status();
    }
}

#[test]
fn our_files_match_what_runc_writes_for_the_same_resources() {
    require_root!();
    let r = LinuxResourcesBuilder::default()
        .memory(
            LinuxMemoryBuilder::default()
                .limit(64 << 20)
                .reservation(32 << 20)
                .build()
                .unwrap(),
        )
        .cpu(
            LinuxCpuBuilder::default()
                .shares(512u64)
                .quota(20_000)
                .period(50_000u64)
                .cpus("0")
                .mems("0")
                .build()
                .unwrap(),
        )
        .pids(LinuxPidsBuilder::default().limit(33).build().unwrap())
        .devices(vec![
            LinuxDeviceCgroupBuilder::default()
                .allow(false)
                .access("rwm")
                .build()
                .unwrap(),
            LinuxDeviceCgroupBuilder::default()
                .allow(true)
                .typ(LinuxDeviceType::C)
                .major(1)
                .minor(11)
                .access("r")
                .build()
                .unwrap(),
        ])
        .build()
        .unwrap();
    let pid = std::process::id();
    let runc_path = format!("/berth-test/runc-ref-{pid}");
    let Some(_runc) = RuncContainer::create(&format!("berth-ref-{pid}"), &runc_path, &r) else {
        eprintln!("skipping: runc is not installed");
        return;
    };
    let ours = Fixture::new("runc-cmp", Some(&r)).expect("create");
    let v2 = pure_v2();
    let files: &[(&str, &str)] = if v2 {
        &[
            ("memory", "memory.max"),
            ("memory", "memory.low"),
            ("cpu", "cpu.weight"),
            ("cpu", "cpu.max"),
            ("cpuset", "cpuset.cpus"),
            ("cpuset", "cpuset.mems"),
            ("pids", "pids.max"),
        ]
    } else {
        &[
            ("memory", "memory.limit_in_bytes"),
            ("memory", "memory.soft_limit_in_bytes"),
            ("cpu", "cpu.shares"),
            ("cpu", "cpu.cfs_quota_us"),
            ("cpu", "cpu.cfs_period_us"),
            ("cpuset", "cpuset.cpus"),
            ("cpuset", "cpuset.mems"),
            ("pids", "pids.max"),
            ("devices", "devices.list"),
        ]
    };
    for (controller, file) in files {
        let our_dir = ours.dir(controller);
        // runc's directory: the same hierarchy, its own path.
        let mount = &ours
            .cg
            .placements
            .iter()
            .find(|p| p.dir == our_dir)
            .unwrap()
            .mount_point;
        let runc_dir = mount.join(runc_path.trim_start_matches('/'));
        let read = |d: &PathBuf| {
            let mut lines: Vec<String> = fs::read_to_string(d.join(file))
                .unwrap_or_else(|e| panic!("reading {}: {e}", d.join(file).display()))
                .lines()
                .map(str::to_owned)
                .collect();
            lines.sort();
            lines
        };
        assert_eq!(
            read(&our_dir),
            read(&runc_dir),
            "{file} differs from runc's"
        );
    }
}

#[test]
fn lowering_memory_below_usage_is_refused_with_the_file_named() {
    require_root!();
    let mut f = Fixture::new("below-usage", None).expect("create");
    // 20 MB written to a tmpfs file stay charged to the writer's cgroup and cannot be
    // reclaimed without swap (there is none here). (A 20 MB shell variable did not hold: busybox
    // sh gave the memory back now and then, and the update below then succeeded.)
    let shm =
        std::path::PathBuf::from(format!("/dev/shm/berth-below-usage-{}", std::process::id()));
    struct Rm(std::path::PathBuf);
    impl Drop for Rm {
        fn drop(&mut self) {
            let _ = fs::remove_file(&self.0);
        }
    }
    let _rm = Rm(shm.clone());
    let i = f.spawn(&format!(
        "{BUSYBOX} head -c 20000000 /dev/zero > {}; echo held; exec {BUSYBOX} sleep 1000",
        shm.display()
    ));
    let stdout = f.children[i].stdout.take().unwrap();
    let mut line = String::new();
    std::io::BufRead::read_line(&mut std::io::BufReader::new(stdout), &mut line).unwrap();
    assert_eq!(line.trim(), "held");
    let v2 = pure_v2();
    // v1 refuses a limit it cannot reclaim down to (EBUSY). v2 would OOM-kill instead, so the
    // spec's checkBeforeUpdate is what refuses it there.
    let patch = LinuxResourcesBuilder::default()
        .memory(
            LinuxMemoryBuilder::default()
                .limit(1 << 20)
                .check_before_update(v2)
                .build()
                .unwrap(),
        )
        .build()
        .unwrap();
    let err = f.cg.update(&patch).unwrap_err();
    if v2 {
        assert!(matches!(err, CgroupError::BelowUsage { .. }), "{err}");
    } else {
        let msg = err.to_string();
        assert!(
            msg.starts_with("setting memory.limit_in_bytes to 1048576 in /sys/fs/cgroup/memory/berth-test/below-usage-"),
            "{msg}"
        );
        let source = std::error::Error::source(&err).unwrap().to_string();
        assert!(source.contains("busy"), "{source}");
    }
}

/// A block device of the host as (major, minor): the first real disk, else a loop or ram
/// device (the VM has no disk; the kernel throttles those all the same).
fn a_block_device() -> Option<(i64, i64)> {
    let virtual_dev =
        |n: &str| n.starts_with("loop") || n.starts_with("ram") || n.starts_with("zram");
    let mut names: Vec<String> = fs::read_dir("/sys/block")
        .ok()?
        .filter_map(Result::ok)
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort_by_key(|n| (virtual_dev(n), n.clone()));
    let dev = fs::read_to_string(format!("/sys/block/{}/dev", names.first()?)).ok()?;
    let (maj, min) = dev.trim().split_once(':')?;
    Some((maj.parse().ok()?, min.parse().ok()?))
}

/// Block I/O throttling reaches the kernel for a real device: `blkio.throttle.*` on v1,
/// `io.max` on v2 (blkio weights need the BFQ scheduler, absent on these machines).
#[test]
fn block_io_throttles_land_in_the_kernel_files() {
    require_root!();
    let Some((major, minor)) = a_block_device() else {
        eprintln!("skipping: no block device on this machine");
        return;
    };
    let dev = |rate: u64| {
        oci_spec::runtime::LinuxThrottleDeviceBuilder::default()
            .major(major)
            .minor(minor)
            .rate(rate)
            .build()
            .unwrap()
    };
    let r = LinuxResourcesBuilder::default()
        .block_io(
            oci_spec::runtime::LinuxBlockIoBuilder::default()
                .throttle_read_bps_device(vec![dev(1 << 20)])
                .throttle_write_iops_device(vec![dev(300)])
                .build()
                .unwrap(),
        )
        .build()
        .unwrap();
    let f = match Fixture::new("blkio", Some(&r)) {
        Ok(f) => f,
        Err(e) if pure_v2() && e.to_string().contains("io controller") => {
            eprintln!("skipping: {e}");
            return;
        }
        Err(e) => panic!("create: {e}"),
    };
    let d = format!("{major}:{minor}");
    if pure_v2() {
        let max = f.read("io", "io.max");
        assert!(max.contains(&format!("{d} rbps=1048576")), "io.max: {max}");
        assert!(max.contains("wiops=300"), "io.max: {max}");
    } else {
        assert_eq!(
            f.read("blkio", "blkio.throttle.read_bps_device"),
            format!("{d} 1048576")
        );
        assert_eq!(
            f.read("blkio", "blkio.throttle.write_iops_device"),
            format!("{d} 300")
        );
    }
}

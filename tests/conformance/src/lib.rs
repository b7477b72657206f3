//! Test helpers for Berth's runtime conformance suite (dev-only: never a dependency of a shipped
//! crate).
//!
//! The suite drives an OCI runtime binary through runc's command line only, so the same tests run
//! against Debian's `runc` (to show the tests are right) and against `berth-runc`. The binary
//! comes from `BERTH_TEST_RUNTIME` (an absolute path), default `target/debug/berth-runc`.
//!
//! What is here:
//! - [`Bundle`]: a temporary OCI bundle with a busybox-static rootfs and the static probe binary
//!   (`/probe`, crate `berth-probe`) plus a [`Spec`] builder over `config.json`;
//! - [`Runtime`]: one runtime with a private `--root` per test; every command returns an
//!   [`Output`]; its `Drop` is the leak guard (`delete --force` of every container it touched,
//!   kill of leftover processes in the test's cgroups, removal of those cgroups and of the root);
//! - [`ConsoleSocket`]: the receiving end of `--console-socket` (the pty master over SCM_RIGHTS);
//! - cgroup and mount-table helpers used to check that nothing is left behind.
//!
//! Host rules these helpers enforce: cgroups are always absolute paths under `/berth-test/`
//! (never below the caller's own cgroup), temp dirs are removed with `rm -rf --one-file-system`,
//! and only processes the test started (found in its own cgroup or state) are ever killed.

use serde_json::{json, Value};
use std::cell::RefCell;
use std::fs;
use std::io::Read;
use std::os::fd::OwnedFd;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// How long one runtime command may take before the harness kills it and fails the test.
/// Generous on purpose: it only turns a hang into a failure, it never measures speed.
pub const COMMAND_TIMEOUT: Duration = Duration::from_secs(120);

/// Applets linked to `/bin/busybox` in every fixture rootfs.
const APPLETS: &[&str] = &[
    "sh", "ls", "cat", "true", "false", "sleep", "echo", "grep", "id", "ps", "mount", "hostname",
    "env", "pwd", "head", "tail", "touch", "mkdir", "rm", "ln", "stat", "readlink", "test", "wc",
    "kill", "umask", "uname", "dd", "tee", "sed", "printf", "chmod", "ulimit", "nproc", "stty",
];

/// The workspace root (two levels above this crate's manifest).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .nth(2)
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."))
}

/// True when the effective uid is 0 (read from `/proc/self/status`, no libc call needed).
pub fn is_root() -> bool {
    fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("Uid:"))
                .and_then(|v| v.split_whitespace().nth(1).map(|e| e == "0"))
        })
        .unwrap_or(false)
}

/// Skip the calling test with a visible message unless it runs as root.
#[macro_export]
macro_rules! require_root {
    () => {
        if !$crate::is_root() {
            eprintln!("skipping: needs root");
            return;
        }
    };
}

/// The runtime under test: `BERTH_TEST_RUNTIME`, or the workspace's `target/debug/berth-runc`.
/// Panics (fails the test) when the binary does not exist: a missing runtime must never look like
/// a passing suite.
pub fn runtime_path() -> PathBuf {
    let p = match std::env::var_os("BERTH_TEST_RUNTIME") {
        Some(p) => PathBuf::from(p),
        None => workspace_root().join("target/debug/berth-runc"),
    };
    assert!(
        p.is_absolute() && p.is_file(),
        "runtime under test {} does not exist (set BERTH_TEST_RUNTIME to an absolute path, or run `cargo build -p berth-runc`)",
        p.display()
    );
    p
}

/// The file name of the runtime under test (`runc`, `berth-runc`, ...).
pub fn runtime_name() -> String {
    runtime_path()
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// True when the runtime under test is runc. Used only where runc 1.1.5 (Debian 12) is known to
/// differ from the spec or from current runc; every such use says why next to it.
pub fn is_runc() -> bool {
    runtime_name() == "runc"
}

/// A process-unique identifier: `<tag>-<pid>-<counter>`, valid as a container id and a cgroup name.
pub fn unique_id(tag: &str) -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    format!(
        "{tag}-{}-{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

/// A directory under `/tmp` removed on drop with `rm -rf --one-file-system`, so that a mount
/// left behind by a broken runtime is never descended into (and the host behind it never deleted).
#[derive(Debug)]
pub struct TempDir {
    path: PathBuf,
}

impl TempDir {
    /// Creates `/tmp/berth-<tag>-<unique>` with mode 0755.
    pub fn new(tag: &str) -> TempDir {
        let path = PathBuf::from("/tmp").join(format!("berth-{}", unique_id(tag)));
        fs::create_dir(&path).unwrap_or_else(|e| panic!("creating {}: {e}", path.display()));
        fs::set_permissions(&path, fs::Permissions::from_mode(0o755))
            .unwrap_or_else(|e| panic!("chmod {}: {e}", path.display()));
        TempDir { path }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = Command::new("rm")
            .arg("-rf")
            .arg("--one-file-system")
            .arg(&self.path)
            .status();
    }
}

/// The static probe binary, built once per test process into `target/probe` with
/// `-C target-feature=+crt-static` and checked to have no ELF interpreter (really static).
/// `BERTH_PROBE_BINARY` names a prebuilt one instead (the VM runs no cargo: scripts/test-vm.sh
/// builds the probe on the host and passes it in).
pub fn probe_binary() -> &'static Path {
    static PROBE: OnceLock<PathBuf> = OnceLock::new();
    PROBE.get_or_init(|| {
        if let Some(p) = std::env::var_os("BERTH_PROBE_BINARY") {
            let p = PathBuf::from(p);
            assert!(
                p.is_file(),
                "BERTH_PROBE_BINARY {} does not exist",
                p.display()
            );
            assert!(!elf_has_interpreter(&p), "{} is not static", p.display());
            return p;
        }
        let root = workspace_root();
        let target_dir = root.join("target/probe");
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
        // A separate target dir keeps these RUSTFLAGS from invalidating the shared build cache,
        // and avoids waiting on the lock of the build that is running this test.
        let status = Command::new(cargo)
            .current_dir(&root)
            .env("RUSTFLAGS", "-C target-feature=+crt-static")
            .args([
                "build",
                "--quiet",
                "-p",
                "berth-probe",
                "--release",
                "--target",
                "x86_64-unknown-linux-gnu",
                "--target-dir",
            ])
            .arg(&target_dir)
            .status()
            .expect("running cargo to build the probe");
        assert!(status.success(), "building berth-probe failed: {status}");
        let bin = target_dir.join("x86_64-unknown-linux-gnu/release/berth-probe");
        assert!(
            !elf_has_interpreter(&bin),
            "{} is dynamically linked: a rootfs without a loader cannot run it",
            bin.display()
        );
        bin
    })
}

/// True when the ELF file at `path` has a `PT_INTERP` program header (a dynamic executable).
pub fn elf_has_interpreter(path: &Path) -> bool {
    let data = fs::read(path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    assert!(
        data.len() > 64 && &data[..4] == b"\x7fELF",
        "{} is not ELF",
        path.display()
    );
    assert_eq!(data[4], 2, "only 64-bit ELF is handled");
    let u16_at = |o: usize| u16::from_le_bytes([data[o], data[o + 1]]) as usize;
    let u64_at = |o: usize| {
        let mut b = [0u8; 8];
        b.copy_from_slice(&data[o..o + 8]);
        u64::from_le_bytes(b) as usize
    };
    let phoff = u64_at(0x20);
    let phentsize = u16_at(0x36);
    let phnum = u16_at(0x38);
    (0..phnum).any(|i| {
        let o = phoff + i * phentsize;
        u32::from_le_bytes([data[o], data[o + 1], data[o + 2], data[o + 3]]) == 3
        // PT_INTERP
    })
}

/// `runc spec`'s default configuration (runc 1.1.5), with `terminal: false`, a writable root and
/// `/probe` as the process. Built in rather than taken from the runtime's `spec` output so that
/// every runtime is tested with the same input; `spec` itself is tested separately.
pub fn default_spec() -> Value {
    json!({
        "ociVersion": "1.0.2",
        "process": {
            "terminal": false,
            "user": { "uid": 0, "gid": 0 },
            "args": ["/probe"],
            "env": [
                "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
                "TERM=xterm"
            ],
            "cwd": "/",
            "capabilities": {
                "bounding": ["CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"],
                "effective": ["CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"],
                "permitted": ["CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"],
                "ambient": ["CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"]
            },
            "rlimits": [{ "type": "RLIMIT_NOFILE", "hard": 1024, "soft": 1024 }],
            "noNewPrivileges": true
        },
        "root": { "path": "rootfs", "readonly": false },
        "hostname": "berth-test",
        "mounts": [
            { "destination": "/proc", "type": "proc", "source": "proc" },
            { "destination": "/dev", "type": "tmpfs", "source": "tmpfs",
              "options": ["nosuid", "strictatime", "mode=755", "size=65536k"] },
            { "destination": "/dev/pts", "type": "devpts", "source": "devpts",
              "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"] },
            { "destination": "/dev/shm", "type": "tmpfs", "source": "shm",
              "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"] },
            { "destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue",
              "options": ["nosuid", "noexec", "nodev"] },
            { "destination": "/sys", "type": "sysfs", "source": "sysfs",
              "options": ["nosuid", "noexec", "nodev", "ro"] },
            { "destination": "/sys/fs/cgroup", "type": "cgroup", "source": "cgroup",
              "options": ["nosuid", "noexec", "nodev", "relatime", "ro"] }
        ],
        "linux": {
            "resources": { "devices": [{ "allow": false, "access": "rwm" }] },
            "namespaces": [
                { "type": "pid" }, { "type": "network" }, { "type": "ipc" },
                { "type": "uts" }, { "type": "mount" }
            ],
            "maskedPaths": [
                "/proc/acpi", "/proc/asound", "/proc/kcore", "/proc/keys", "/proc/latency_stats",
                "/proc/timer_list", "/proc/timer_stats", "/proc/sched_debug", "/sys/firmware",
                "/proc/scsi"
            ],
            "readonlyPaths": [
                "/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"
            ]
        }
    })
}

/// A `config.json` under construction. Setters return `&mut Self` so they chain.
#[derive(Debug, Clone)]
pub struct Spec(pub Value);

impl Spec {
    /// Sets the value at a JSON pointer (`/process/cwd`), creating missing objects on the way.
    pub fn set(&mut self, pointer: &str, value: Value) -> &mut Self {
        let mut cur = &mut self.0;
        for part in pointer.split('/').skip(1) {
            if !cur.is_object() {
                *cur = json!({});
            }
            cur = cur
                .as_object_mut()
                .map(|o| o.entry(part.to_string()).or_insert(Value::Null))
                .expect("object");
        }
        *cur = value;
        self
    }

    /// The value at a JSON pointer, if any.
    pub fn get(&self, pointer: &str) -> Option<&Value> {
        self.0.pointer(pointer)
    }

    /// Removes the value at a JSON pointer (the last segment must be an object key).
    pub fn remove(&mut self, pointer: &str) -> &mut Self {
        if let Some((parent, key)) = pointer.rsplit_once('/') {
            if let Some(o) = self.0.pointer_mut(parent).and_then(Value::as_object_mut) {
                o.remove(key);
            }
        }
        self
    }

    fn push(&mut self, pointer: &str, value: Value) -> &mut Self {
        if !self.get(pointer).is_some_and(Value::is_array) {
            self.set(pointer, json!([]));
        }
        if let Some(a) = self.0.pointer_mut(pointer).and_then(Value::as_array_mut) {
            a.push(value);
        }
        self
    }

    pub fn args(&mut self, args: &[&str]) -> &mut Self {
        self.set("/process/args", json!(args))
    }

    pub fn env(&mut self, env: &[&str]) -> &mut Self {
        self.set("/process/env", json!(env))
    }

    pub fn cwd(&mut self, cwd: &str) -> &mut Self {
        self.set("/process/cwd", json!(cwd))
    }

    pub fn user(&mut self, uid: u32, gid: u32) -> &mut Self {
        self.set("/process/user/uid", json!(uid))
            .set("/process/user/gid", json!(gid))
    }

    pub fn additional_gids(&mut self, gids: &[u32]) -> &mut Self {
        self.set("/process/user/additionalGids", json!(gids))
    }

    pub fn umask(&mut self, umask: u32) -> &mut Self {
        self.set("/process/user/umask", json!(umask))
    }

    pub fn terminal(&mut self, on: bool) -> &mut Self {
        self.set("/process/terminal", json!(on))
    }

    pub fn hostname(&mut self, name: &str) -> &mut Self {
        self.set("/hostname", json!(name))
    }

    pub fn domainname(&mut self, name: &str) -> &mut Self {
        self.set("/domainname", json!(name))
    }

    /// Replaces any rlimit of the same type.
    pub fn rlimit(&mut self, kind: &str, soft: u64, hard: u64) -> &mut Self {
        if let Some(a) = self
            .0
            .pointer_mut("/process/rlimits")
            .and_then(Value::as_array_mut)
        {
            a.retain(|r| r["type"] != kind);
        }
        self.push(
            "/process/rlimits",
            json!({ "type": kind, "soft": soft, "hard": hard }),
        )
    }

    /// Adds a namespace (replacing one of the same type); `path` joins an existing one.
    pub fn namespace(&mut self, kind: &str, path: Option<&str>) -> &mut Self {
        self.remove_namespace(kind);
        let ns = match path {
            Some(p) => json!({ "type": kind, "path": p }),
            None => json!({ "type": kind }),
        };
        self.push("/linux/namespaces", ns)
    }

    pub fn remove_namespace(&mut self, kind: &str) -> &mut Self {
        if let Some(a) = self
            .0
            .pointer_mut("/linux/namespaces")
            .and_then(Value::as_array_mut)
        {
            a.retain(|n| n["type"] != kind);
        }
        self
    }

    /// Appends a mount entry.
    pub fn mount(
        &mut self,
        destination: &str,
        kind: &str,
        source: &str,
        options: &[&str],
    ) -> &mut Self {
        self.push(
            "/mounts",
            json!({ "destination": destination, "type": kind, "source": source, "options": options }),
        )
    }

    /// Removes every mount whose destination is `destination`.
    pub fn remove_mount(&mut self, destination: &str) -> &mut Self {
        if let Some(a) = self.0.pointer_mut("/mounts").and_then(Value::as_array_mut) {
            a.retain(|m| m["destination"] != destination);
        }
        self
    }

    /// Adds a hook of `kind` (`prestart`, `createRuntime`, ...).
    pub fn hook(
        &mut self,
        kind: &str,
        path: &str,
        args: &[&str],
        timeout: Option<u32>,
    ) -> &mut Self {
        let mut h = json!({ "path": path, "args": args });
        if let Some(t) = timeout {
            h["timeout"] = json!(t);
        }
        self.push(&format!("/hooks/{kind}"), h)
    }

    /// `linux.cgroupsPath`; must be absolute and under `/berth-test/` on these hosts.
    pub fn cgroups_path(&mut self, path: &str) -> &mut Self {
        assert!(
            path.starts_with("/berth-test/"),
            "test cgroups live under /berth-test/, got {path}"
        );
        self.set("/linux/cgroupsPath", json!(path))
    }

    pub fn memory_limit(&mut self, bytes: i64) -> &mut Self {
        self.set("/linux/resources/memory/limit", json!(bytes))
    }

    pub fn pids_limit(&mut self, n: i64) -> &mut Self {
        self.set("/linux/resources/pids/limit", json!(n))
    }

    pub fn oom_score_adj(&mut self, v: i32) -> &mut Self {
        self.set("/process/oomScoreAdj", json!(v))
    }

    pub fn no_new_privileges(&mut self, on: bool) -> &mut Self {
        self.set("/process/noNewPrivileges", json!(on))
    }

    pub fn sysctl(&mut self, key: &str, value: &str) -> &mut Self {
        self.set(&format!("/linux/sysctl/{key}"), json!(value))
    }

    pub fn readonly_root(&mut self, on: bool) -> &mut Self {
        self.set("/root/readonly", json!(on))
    }

    pub fn masked_paths(&mut self, paths: &[&str]) -> &mut Self {
        self.set("/linux/maskedPaths", json!(paths))
    }

    pub fn readonly_paths(&mut self, paths: &[&str]) -> &mut Self {
        self.set("/linux/readonlyPaths", json!(paths))
    }

    /// A user namespace mapping `size` ids starting at container id 0 to `host` on the host.
    pub fn user_namespace(&mut self, host: u32, size: u32) -> &mut Self {
        self.namespace("user", None)
            .set(
                "/linux/uidMappings",
                json!([{ "containerID": 0, "hostID": host, "size": size }]),
            )
            .set(
                "/linux/gidMappings",
                json!([{ "containerID": 0, "hostID": host, "size": size }]),
            )
    }

    /// A device node in `linux.devices`: `kind` is `c`, `b` or `p`, `numbers` is
    /// (major, minor), `owner` is (uid, gid).
    pub fn device(
        &mut self,
        path: &str,
        kind: &str,
        numbers: (i64, i64),
        mode: u32,
        owner: (u32, u32),
    ) -> &mut Self {
        self.push(
            "/linux/devices",
            json!({ "path": path, "type": kind, "major": numbers.0, "minor": numbers.1,
                    "fileMode": mode, "uid": owner.0, "gid": owner.1 }),
        )
    }
}

/// A temporary OCI bundle: `config.json` plus `rootfs/` with busybox-static and `/probe`.
/// Its `cgroupsPath` starts as `/berth-test/<unique id>`.
#[derive(Debug)]
pub struct Bundle {
    dir: TempDir,
    pub spec: Spec,
    cgroup: String,
}

impl Bundle {
    /// A fresh bundle whose process is `/probe` (a JSON dump of the container's view).
    pub fn new() -> Bundle {
        let dir = TempDir::new("bundle");
        let rootfs = dir.path().join("rootfs");
        build_rootfs(&rootfs);
        let cgroup = format!("/berth-test/{}", unique_id("cg"));
        let mut spec = Spec(default_spec());
        spec.cgroups_path(&cgroup);
        Bundle { dir, spec, cgroup }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn rootfs(&self) -> PathBuf {
        self.dir.path().join("rootfs")
    }

    /// The absolute cgroup path the bundle was created with.
    pub fn cgroup_path(&self) -> &str {
        &self.cgroup
    }

    /// A scratch directory inside the bundle dir (outside the rootfs), created on demand:
    /// a place for host-side sentinels, hook output and bind-mount sources.
    pub fn host_dir(&self, name: &str) -> PathBuf {
        let p = self.dir.path().join(name);
        fs::create_dir_all(&p).unwrap_or_else(|e| panic!("creating {}: {e}", p.display()));
        p
    }

    /// Writes `config.json` from the current spec.
    pub fn write_config(&self) {
        let p = self.dir.path().join("config.json");
        let text = serde_json::to_string_pretty(&self.spec.0).expect("serialising spec");
        fs::write(&p, text).unwrap_or_else(|e| panic!("writing {}: {e}", p.display()));
    }
}

impl Default for Bundle {
    fn default() -> Self {
        Bundle::new()
    }
}

/// Fills `rootfs` with busybox-static, its applets, `/etc/passwd`, `/etc/group`, the empty
/// mount points and `/probe`.
pub fn build_rootfs(rootfs: &Path) {
    for d in [
        "bin", "etc", "proc", "sys", "dev", "tmp", "root", "home", "var", "run",
    ] {
        fs::create_dir_all(rootfs.join(d)).expect("creating rootfs dirs");
    }
    fs::set_permissions(rootfs.join("tmp"), fs::Permissions::from_mode(0o1777)).expect("chmod tmp");
    fs::copy("/bin/busybox", rootfs.join("bin/busybox"))
        .expect("copying /bin/busybox (apt-get install busybox-static)");
    for a in APPLETS {
        std::os::unix::fs::symlink("busybox", rootfs.join("bin").join(a)).expect("applet link");
    }
    fs::write(
        rootfs.join("etc/passwd"),
        "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\ntester:x:1000:1000:tester:/home:/bin/sh\n",
    )
    .expect("writing passwd");
    fs::write(
        rootfs.join("etc/group"),
        "root:x:0:\ntty:x:5:\nnogroup:x:65534:\ntester:x:1000:\nextra:x:2000:tester\n",
    )
    .expect("writing group");
    fs::copy(probe_binary(), rootfs.join("probe")).expect("copying the probe");
}

/// What one runtime command did.
#[derive(Debug)]
pub struct Output {
    pub args: Vec<String>,
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
    /// The file that received the command's stdout; a detached container keeps writing into it.
    pub stdout_file: PathBuf,
}

impl Output {
    pub fn success(&self) -> bool {
        self.status.success()
    }

    pub fn code(&self) -> Option<i32> {
        self.status.code()
    }

    /// Panics with the full command, status, stdout and stderr unless it succeeded.
    pub fn assert_ok(&self) -> &Self {
        assert!(self.success(), "command failed: {self}");
        self
    }

    /// Panics unless it failed.
    pub fn assert_fails(&self) -> &Self {
        assert!(!self.success(), "command unexpectedly succeeded: {self}");
        self
    }

    /// stdout parsed as JSON (panics with the output when it is not JSON).
    pub fn json(&self) -> Value {
        serde_json::from_str(self.stdout.trim())
            .unwrap_or_else(|e| panic!("stdout is not JSON ({e}): {self}"))
    }

    /// The current content of the stdout file (for detached containers).
    pub fn stdout_now(&self) -> String {
        fs::read_to_string(&self.stdout_file).unwrap_or_default()
    }
}

impl std::fmt::Display for Output {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "`{}` -> {}\n--- stdout ---\n{}\n--- stderr ---\n{}",
            self.args.join(" "),
            self.status,
            self.stdout,
            self.stderr
        )
    }
}

/// One runtime binary with a private state root. Dropping it deletes (force) every container it
/// created, kills what is left in their cgroups, removes those cgroups, and removes the root.
#[derive(Debug)]
pub struct Runtime {
    bin: PathBuf,
    dir: TempDir,
    root: PathBuf,
    log: PathBuf,
    tracked: RefCell<Vec<(String, String)>>,
    counter: RefCell<u32>,
}

impl Runtime {
    pub fn new() -> Runtime {
        let dir = TempDir::new("rt");
        let root = dir.path().join("root");
        let log = dir.path().join("log.json");
        Runtime {
            bin: runtime_path(),
            root,
            log,
            dir,
            tracked: RefCell::new(Vec::new()),
            counter: RefCell::new(0),
        }
    }

    pub fn bin(&self) -> &Path {
        &self.bin
    }

    /// The `--root` state directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The `--log` file (JSON format), where runc-compatible runtimes write their errors.
    pub fn log_file(&self) -> &Path {
        &self.log
    }

    /// A scratch directory for this runtime's test files (pid files, sockets, process.json).
    pub fn scratch(&self) -> &Path {
        self.dir.path()
    }

    /// Records a container so the drop guard cleans it up.
    pub fn track(&self, id: &str, cgroup: &str) {
        self.tracked
            .borrow_mut()
            .push((id.to_string(), cgroup.to_string()));
    }

    /// Runs `runtime --root R --log L --log-format json ARGS...` with stdin from /dev/null and
    /// stdout/stderr captured through files (a detached container inherits them and may keep them
    /// open, so pipes could block forever).
    pub fn cmd(&self, args: &[&str]) -> Output {
        self.cmd_with(args, &[])
    }

    /// Like [`Runtime::cmd`] with extra environment variables.
    pub fn cmd_with(&self, args: &[&str], env: &[(&str, &str)]) -> Output {
        let n = {
            let mut c = self.counter.borrow_mut();
            *c += 1;
            *c
        };
        let out_path = self.dir.path().join(format!("cmd{n}.out"));
        let err_path = self.dir.path().join(format!("cmd{n}.err"));
        let out = fs::File::create(&out_path).expect("stdout file");
        let err = fs::File::create(&err_path).expect("stderr file");
        let mut full = vec![
            "--root".to_string(),
            self.root.to_string_lossy().into_owned(),
            "--log".to_string(),
            self.log.to_string_lossy().into_owned(),
            "--log-format".to_string(),
            "json".to_string(),
        ];
        full.extend(args.iter().map(|s| s.to_string()));
        let mut child = Command::new(&self.bin)
            .args(&full)
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .unwrap_or_else(|e| panic!("spawning {}: {e}", self.bin.display()));
        let status = wait_with_timeout(&mut child, COMMAND_TIMEOUT).unwrap_or_else(|| {
            panic!(
                "{} {} hung for {COMMAND_TIMEOUT:?}; killed",
                self.bin.display(),
                full.join(" ")
            )
        });
        let mut argv = vec![self.bin.to_string_lossy().into_owned()];
        argv.extend(full);
        Output {
            args: argv,
            status,
            stdout: fs::read_to_string(&out_path).unwrap_or_default(),
            stderr: fs::read_to_string(&err_path).unwrap_or_default(),
            stdout_file: out_path,
        }
    }

    /// `create --bundle B [extra...] ID` (writes config.json first).
    pub fn create(&self, id: &str, bundle: &Bundle, extra: &[&str]) -> Output {
        bundle.write_config();
        self.track(id, bundle.cgroup_path());
        let b = bundle.path().to_string_lossy().into_owned();
        let mut args = vec!["create", "--bundle", &b];
        args.extend_from_slice(extra);
        args.push(id);
        self.cmd(&args)
    }

    /// `run --bundle B [extra...] ID` (writes config.json first).
    pub fn run(&self, id: &str, bundle: &Bundle, extra: &[&str]) -> Output {
        bundle.write_config();
        self.track(id, bundle.cgroup_path());
        let b = bundle.path().to_string_lossy().into_owned();
        let mut args = vec!["run", "--bundle", &b];
        args.extend_from_slice(extra);
        args.push(id);
        self.cmd(&args)
    }

    /// Runs the bundle in the foreground, asserts success and parses the probe's JSON output.
    pub fn run_probe(&self, bundle: &mut Bundle, probe_args: &[&str]) -> Value {
        let mut args = vec!["/probe"];
        args.extend_from_slice(probe_args);
        bundle.spec.args(&args);
        let id = unique_id("probe");
        let out = self.run(&id, bundle, &[]);
        out.assert_ok();
        out.json()
    }

    pub fn start(&self, id: &str) -> Output {
        self.cmd(&["start", id])
    }

    /// `state ID` parsed; panics when the command fails.
    pub fn state(&self, id: &str) -> Value {
        let out = self.cmd(&["state", id]);
        out.assert_ok();
        out.json()
    }

    pub fn kill(&self, id: &str, signal: &str) -> Output {
        self.cmd(&["kill", id, signal])
    }

    pub fn delete(&self, id: &str, force: bool) -> Output {
        if force {
            self.cmd(&["delete", "--force", id])
        } else {
            self.cmd(&["delete", id])
        }
    }

    /// `exec [extra...] ID ARGS...`.
    pub fn exec(&self, id: &str, extra: &[&str], args: &[&str]) -> Output {
        let mut a = vec!["exec"];
        a.extend_from_slice(extra);
        a.push(id);
        a.extend_from_slice(args);
        self.cmd(&a)
    }

    /// Polls `state` until the status is `want` (or panics after a generous deadline; this is a
    /// hang detector, not a timing assertion).
    pub fn wait_status(&self, id: &str, want: &str) -> Value {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let st = self.state(id);
            if st["status"] == want {
                return st;
            }
            assert!(
                Instant::now() < deadline,
                "container {id} never reached {want}: {st}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Creates and starts a long-running container (`sleep` in the init), returning its id.
    pub fn start_sleeper(&self, bundle: &mut Bundle) -> String {
        bundle.spec.args(&["/bin/sleep", "1000"]);
        let id = unique_id("sleeper");
        self.create(&id, bundle, &[]).assert_ok();
        self.start(&id).assert_ok();
        self.wait_status(&id, "running");
        id
    }
}

impl Default for Runtime {
    fn default() -> Self {
        Runtime::new()
    }
}

impl Drop for Runtime {
    fn drop(&mut self) {
        let tracked = std::mem::take(&mut *self.tracked.borrow_mut());
        for (id, cgroup) in tracked.iter().rev() {
            // Bounded: a hung runtime must not hang the guard (and with it the whole suite).
            if let Ok(mut child) = Command::new(&self.bin)
                .arg("--root")
                .arg(&self.root)
                .args(["delete", "--force", id])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
            {
                let _ = wait_with_timeout(&mut child, Duration::from_secs(30));
            }
            kill_cgroup_processes(cgroup);
            remove_cgroup(cgroup);
        }
    }
}

/// Waits for `child`, killing it (by its pid, which we own) after `timeout`.
pub fn wait_with_timeout(child: &mut std::process::Child, timeout: Duration) -> Option<ExitStatus> {
    let deadline = Instant::now() + timeout;
    loop {
        match child.try_wait() {
            Ok(Some(st)) => return Some(st),
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(5)),
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                return None;
            }
        }
    }
}

/// Mount points of every cgroup hierarchy on this host (v1 controllers and cgroup2), from
/// `/proc/self/mountinfo`.
pub fn cgroup_mounts() -> Vec<(PathBuf, String)> {
    let text = fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    text.lines()
        .filter_map(|l| {
            let (left, right) = l.split_once(" - ")?;
            let target = left.split(' ').nth(4)?;
            let fstype = right.split(' ').next()?;
            (fstype == "cgroup" || fstype == "cgroup2")
                .then(|| (PathBuf::from(target), fstype.to_string()))
        })
        .collect()
}

/// True when `/sys/fs/cgroup` itself is cgroup2 (a pure v2 host, like the test VM).
pub fn is_cgroup_v2_only() -> bool {
    cgroup_mounts()
        .iter()
        .any(|(p, t)| p == Path::new("/sys/fs/cgroup") && t == "cgroup2")
}

/// The directories of absolute cgroup `path` that exist in any hierarchy.
pub fn cgroup_dirs(path: &str) -> Vec<PathBuf> {
    let rel = path.trim_start_matches('/');
    cgroup_mounts()
        .into_iter()
        .map(|(m, _)| m.join(rel))
        .filter(|p| p.is_dir())
        .collect()
}

/// Finds `file` (e.g. `memory.max` or `memory.limit_in_bytes`) in any hierarchy's copy of `path`.
pub fn cgroup_file(path: &str, file: &str) -> Option<PathBuf> {
    cgroup_dirs(path)
        .into_iter()
        .map(|d| d.join(file))
        .find(|f| f.exists())
}

fn assert_test_cgroup(path: &str) {
    // The host's own processes live in /process_api/<id>: only ever touch /berth-test/.
    assert!(
        path.starts_with("/berth-test/") && !path.contains(".."),
        "refusing to touch cgroup {path}: tests only use /berth-test/"
    );
}

/// SIGKILLs every process in the test cgroup `path` (they were started by the test's runtime).
pub fn kill_cgroup_processes(path: &str) {
    assert_test_cgroup(path);
    for d in cgroup_dirs(path) {
        let procs = fs::read_to_string(d.join("cgroup.procs")).unwrap_or_default();
        for pid in procs.split_whitespace() {
            let _ = Command::new("kill").args(["-9", pid]).status();
        }
    }
}

/// Removes the test cgroup `path` (children first) in every hierarchy. Best effort: "already
/// gone" is success, a busy cgroup is retried for a while.
pub fn remove_cgroup(path: &str) {
    assert_test_cgroup(path);
    for d in cgroup_dirs(path) {
        let mut dirs: Vec<PathBuf> = Vec::new();
        collect_dirs(&d, &mut dirs);
        dirs.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
        for sub in dirs {
            let deadline = Instant::now() + Duration::from_secs(5);
            while fs::remove_dir(&sub).is_err() && sub.exists() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    }
    // `/berth-test` itself stays: other tests (of this and other suites) create containers
    // below it concurrently, and removing it under them races with their runtime's mkdir and,
    // on v1, its cpuset.cpus/mems initialisation of the parent (seen as ENOSPC on join).
}

fn collect_dirs(d: &Path, out: &mut Vec<PathBuf>) {
    out.push(d.to_path_buf());
    if let Ok(rd) = fs::read_dir(d) {
        for e in rd.filter_map(Result::ok) {
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                collect_dirs(&e.path(), out);
            }
        }
    }
}

/// Host mount points at or below `dir` (a leak check).
pub fn host_mounts_under(dir: &Path) -> Vec<String> {
    let prefix = dir.to_string_lossy().into_owned();
    fs::read_to_string("/proc/self/mountinfo")
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.split(' ').nth(4).map(str::to_string))
        .filter(|t| t == &prefix || t.starts_with(&format!("{prefix}/")))
        .collect()
}

/// Host-side namespace inode link (`net:[4026531840]`) of `pid` for `ns`.
pub fn ns_link(pid: &str, ns: &str) -> String {
    fs::read_link(format!("/proc/{pid}/ns/{ns}"))
        .map(|p| p.to_string_lossy().into_owned())
        .unwrap_or_else(|e| panic!("reading /proc/{pid}/ns/{ns}: {e}"))
}

/// SHA-256 of a file, hex.
pub fn sha256_file(path: &Path) -> String {
    use sha2::Digest;
    let data = fs::read(path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    hex::encode(sha2::Sha256::digest(&data))
}

/// A host sentinel: a file with known content and a directory that must stay empty, created
/// outside any container. [`Sentinel::assert_unchanged`] checks both.
#[derive(Debug)]
pub struct Sentinel {
    pub file: PathBuf,
    pub dir: PathBuf,
    content: &'static str,
}

impl Sentinel {
    pub fn new(in_dir: &Path) -> Sentinel {
        let file = in_dir.join("sentinel-file");
        let dir = in_dir.join("sentinel-dir");
        let content = "berth sentinel: must never change\n";
        fs::write(&file, content).expect("writing sentinel");
        fs::set_permissions(&file, fs::Permissions::from_mode(0o644)).expect("chmod sentinel");
        fs::create_dir_all(&dir).expect("sentinel dir");
        Sentinel { file, dir, content }
    }

    pub fn assert_unchanged(&self) {
        let now = fs::read_to_string(&self.file).unwrap_or_else(|e| format!("<{e}>"));
        assert_eq!(
            now,
            self.content,
            "host sentinel {} changed",
            self.file.display()
        );
        let md = fs::metadata(&self.file).expect("sentinel metadata");
        assert_eq!(
            md.permissions().mode() & 0o7777,
            0o644,
            "sentinel mode changed"
        );
        let entries: Vec<_> = fs::read_dir(&self.dir)
            .expect("sentinel dir")
            .filter_map(Result::ok)
            .map(|e| e.path())
            .collect();
        assert!(
            entries.is_empty(),
            "host sentinel dir got entries: {entries:?}"
        );
    }
}

/// The receiving end of `--console-socket`: a unix socket on which the runtime sends the pty
/// master as SCM_RIGHTS (runc's protocol; runtime-spec "console socket").
#[derive(Debug)]
pub struct ConsoleSocket {
    pub path: PathBuf,
    handle: Option<std::thread::JoinHandle<Result<OwnedFd, String>>>,
}

impl ConsoleSocket {
    /// Binds `path` and starts a thread that accepts one connection and receives one fd.
    pub fn bind(path: &Path) -> ConsoleSocket {
        let listener = std::os::unix::net::UnixListener::bind(path)
            .unwrap_or_else(|e| panic!("binding console socket {}: {e}", path.display()));
        listener.set_nonblocking(true).expect("nonblocking");
        let handle = std::thread::spawn(move || {
            let deadline = Instant::now() + COMMAND_TIMEOUT;
            let stream = loop {
                match listener.accept() {
                    Ok((s, _)) => break s,
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                        if Instant::now() > deadline {
                            return Err("no connection on the console socket".to_string());
                        }
                        std::thread::sleep(Duration::from_millis(5));
                    }
                    Err(e) => return Err(format!("accept: {e}")),
                }
            };
            stream.set_nonblocking(false).map_err(|e| e.to_string())?;
            recv_fd(&stream)
        });
        ConsoleSocket {
            path: path.to_path_buf(),
            handle: Some(handle),
        }
    }

    /// The received pty master (waits for the runtime to send it).
    pub fn master(&mut self) -> OwnedFd {
        self.handle
            .take()
            .expect("master() called twice")
            .join()
            .expect("console socket thread panicked")
            .unwrap_or_else(|e| panic!("console socket: {e}"))
    }
}

/// Receives one fd over SCM_RIGHTS. rustix hands it over as an `OwnedFd`, which keeps this
/// crate free of `unsafe` (nix's `ScmRights` yields a bare `RawFd`).
fn recv_fd(stream: &std::os::unix::net::UnixStream) -> Result<OwnedFd, String> {
    use rustix::net::{RecvAncillaryBuffer, RecvAncillaryMessage, RecvFlags};
    use std::mem::MaybeUninit;
    let mut space = [MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(1))];
    let mut cmsg = RecvAncillaryBuffer::new(&mut space);
    let mut buf = [0u8; 4096];
    let mut iov = [std::io::IoSliceMut::new(&mut buf)];
    rustix::net::recvmsg(stream, &mut iov, &mut cmsg, RecvFlags::CMSG_CLOEXEC)
        .map_err(|e| format!("recvmsg: {e}"))?;
    for msg in cmsg.drain() {
        if let RecvAncillaryMessage::ScmRights(mut fds) = msg {
            if let Some(fd) = fds.next() {
                return Ok(fd);
            }
        }
    }
    Err("no SCM_RIGHTS fd in the console socket message".to_string())
}

/// Reads a pty master until the slave side is closed (EIO) or EOF, with a deadline.
pub fn read_pty(master: OwnedFd) -> String {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut f = fs::File::from(master);
        let mut out = Vec::new();
        let mut buf = [0u8; 4096];
        loop {
            match f.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => out.extend_from_slice(&buf[..n]),
            }
        }
        let _ = tx.send(String::from_utf8_lossy(&out).into_owned());
    });
    rx.recv_timeout(COMMAND_TIMEOUT)
        .expect("reading the pty master hung")
}

/// Extracts the first JSON object from text that may have other output (e.g. pty `\r\n`s).
pub fn first_json(text: &str) -> Value {
    let start = text
        .find('{')
        .unwrap_or_else(|| panic!("no JSON in {text:?}"));
    let end = text
        .rfind('}')
        .unwrap_or_else(|| panic!("no JSON in {text:?}"));
    serde_json::from_str(&text[start..=end].replace("\r\n", "\n"))
        .unwrap_or_else(|e| panic!("bad JSON ({e}) in {text:?}"))
}

/// Parses every line of `text` that is a JSON value (a shell script that runs `/probe` several
/// times prints one document per line).
pub fn json_lines(text: &str) -> Vec<Value> {
    text.lines()
        .filter_map(|l| serde_json::from_str(l.trim()).ok())
        .collect()
}

/// Runs `sh -c SCRIPT` in the bundle in the foreground and returns the JSON lines it printed
/// (panics with the output unless it succeeded).
pub fn run_script(rt: &Runtime, bundle: &mut Bundle, script: &str) -> Vec<Value> {
    bundle.spec.args(&["/bin/sh", "-c", script]);
    let out = rt.run(&unique_id("script"), bundle, &[]);
    out.assert_ok();
    json_lines(&out.stdout)
}

/// The mount entry the probe saw at `target` (the last one: the top of the stack).
pub fn mount_at<'a>(probe: &'a Value, target: &str) -> Option<&'a Value> {
    probe["mounts"]
        .as_array()?
        .iter()
        .rev()
        .find(|m| m["target"] == target)
}

/// Asserts that a failed or deleted container left nothing behind: no state (neither `state`
/// nor a directory in the runtime root), no cgroup in any hierarchy, no mount under the bundle.
pub fn assert_nothing_left(rt: &Runtime, id: &str, bundle: &Bundle) {
    let st = rt.cmd(&["state", id]);
    assert!(!st.success(), "state still answers for {id}: {st}");
    assert!(
        !rt.root().join(id).exists(),
        "state directory {} left behind",
        rt.root().join(id).display()
    );
    let dirs = cgroup_dirs(bundle.cgroup_path());
    assert!(dirs.is_empty(), "cgroup left behind: {dirs:?}");
    let mounts = host_mounts_under(bundle.path());
    assert!(mounts.is_empty(), "mounts left behind: {mounts:?}");
}

/// True when every program in `tools` is on PATH; otherwise prints a visible skip message.
pub fn have_tools(tools: &[&str]) -> bool {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let missing: Vec<&str> = tools
        .iter()
        .copied()
        .filter(|t| !std::env::split_paths(&path).any(|d| d.join(t).is_file()))
        .collect();
    if !missing.is_empty() {
        eprintln!("skipping: needs {missing:?} (apt-get install containerd umoci podman)");
    }
    missing.is_empty()
}

/// Runs a host command with a timeout; returns the output (stdout, stderr as text).
pub fn host_cmd(program: &str, args: &[&str], env: &[(&str, &str)]) -> HostOutput {
    let mut child = Command::new(program)
        .args(args)
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("spawning {program}: {e}"));
    // Drain both pipes on threads so a chatty command cannot block on a full pipe.
    let mut so = child.stdout.take().expect("stdout");
    let mut se = child.stderr.take().expect("stderr");
    let t1 = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = so.read_to_string(&mut s);
        s
    });
    let t2 = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = se.read_to_string(&mut s);
        s
    });
    let status = wait_with_timeout(&mut child, COMMAND_TIMEOUT)
        .unwrap_or_else(|| panic!("{program} {args:?} hung; killed"));
    HostOutput {
        cmd: format!("{program} {}", args.join(" ")),
        status,
        stdout: t1.join().unwrap_or_default(),
        stderr: t2.join().unwrap_or_default(),
    }
}

/// What a host command did.
#[derive(Debug)]
pub struct HostOutput {
    pub cmd: String,
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

impl HostOutput {
    pub fn assert_ok(&self) -> &Self {
        assert!(self.status.success(), "{self}");
        self
    }
}

impl std::fmt::Display for HostOutput {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "`{}` -> {}\n--- stdout ---\n{}\n--- stderr ---\n{}",
            self.cmd, self.status, self.stdout, self.stderr
        )
    }
}

/// Builds a busybox image offline in `dir`: the fixture rootfs as a plain tarball
/// (`rootfs.tar`, for `podman import`) and as an OCI image archive (`oci.tar`, made with umoci,
/// tagged `latest`, for `ctr images import`). Returns (rootfs.tar, oci.tar).
pub fn build_busybox_images(dir: &Path) -> (PathBuf, PathBuf) {
    let rootfs = dir.join("image-rootfs");
    build_rootfs(&rootfs);
    let rootfs_tar = dir.join("rootfs.tar");
    let r = rootfs.to_string_lossy().into_owned();
    let rt = rootfs_tar.to_string_lossy().into_owned();
    host_cmd("tar", &["-C", &r, "-cf", &rt, "."], &[]).assert_ok();
    let layout = dir.join("oci-layout");
    let l = layout.to_string_lossy().into_owned();
    let image = format!("{l}:latest");
    host_cmd("umoci", &["init", "--layout", &l], &[]).assert_ok();
    host_cmd("umoci", &["new", "--image", &image], &[]).assert_ok();
    host_cmd("umoci", &["insert", "--image", &image, &r, "/"], &[]).assert_ok();
    host_cmd(
        "umoci",
        &["config", "--image", &image, "--config.cmd", "/bin/sh"],
        &[],
    )
    .assert_ok();
    let oci_tar = dir.join("oci.tar");
    let o = oci_tar.to_string_lossy().into_owned();
    host_cmd("tar", &["-C", &l, "-cf", &o, "."], &[]).assert_ok();
    (rootfs_tar, oci_tar)
}

/// PIDs of processes whose command line contains `needle` (to find, for example, the shims a
/// test's private containerd started: their command line names its unique socket).
pub fn pids_with_cmdline(needle: &str) -> Vec<u32> {
    let mut out = Vec::new();
    let Ok(rd) = fs::read_dir("/proc") else {
        return out;
    };
    for e in rd.filter_map(Result::ok) {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        if pid == std::process::id() {
            continue;
        }
        let cmd = fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        let cmd = String::from_utf8_lossy(&cmd).replace('\0', " ");
        if cmd.contains(needle) {
            out.push(pid);
        }
    }
    out
}

/// Unmounts (lazily, detached) every host mount under `dir`, deepest first. Used by guards of
/// end-to-end tests whose tools (containerd, podman) mount below the test's own directory.
pub fn unmount_all_under(dir: &Path) {
    let mut mounts = host_mounts_under(dir);
    mounts.sort_by_key(|m| std::cmp::Reverse(m.len()));
    for m in mounts {
        let _ = Command::new("umount").args(["-l", &m]).status();
    }
}

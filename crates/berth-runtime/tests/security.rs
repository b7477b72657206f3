//! Privileged tests of process security (`berth_runtime::security`).
//!
//! Each test re-runs this test binary as a child *process* (the same test, selected with
//! `--exact`, with `BERTH_SECURITY_SCENARIO` naming it). The child plans and finalizes the
//! security settings given in `BERTH_SECURITY_SPEC` on its test thread, then either probes
//! in-process (syscalls whose result it prints) or `execve`s a probe such as
//! `busybox grep Cap /proc/self/status`. The parent checks what the child printed. Capabilities,
//! no_new_privs and seccomp filters are per thread and survive `execve` of the calling thread, so
//! the test harness's other threads do not matter.
//!
//! Not root: every test prints "skipping: needs root" and passes. AppArmor tests need the VM:
//! `cargo test -p berth-runtime --test security --no-run`, then
//! `VM_TIMEOUT=600 /work/shared/vm/vm-run.sh /work/main target/debug/deps/security-<hash> apparmor --test-threads=1`.

use std::io::Read;
use std::os::fd::{AsFd, AsRawFd};
use std::os::unix::net::UnixListener;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Output, Stdio};

use berth_runtime::security::{
    self, lsm, SecurityError, SecurityPlan, DOCKER_DEFAULT_CAPABILITIES,
};
use oci_spec::runtime::{LinuxSeccomp, Process};
use serde::{Deserialize, Serialize};
use serde_json::json;

const SCENARIO_ENV: &str = "BERTH_SECURITY_SCENARIO";
const SPEC_ENV: &str = "BERTH_SECURITY_SPEC";
const BUSYBOX: &str = "/bin/busybox";

/// What the child applies.
#[derive(Serialize, Deserialize)]
struct ChildSpec {
    process: Process,
    seccomp: Option<LinuxSeccomp>,
    /// `exec --cap` additions (CVE-2022-29162).
    exec_caps: Vec<String>,
    /// Free-form test data (paths).
    data: serde_json::Value,
}

fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

fn skip_unless_root(test: &str) -> bool {
    if !is_root() {
        eprintln!("skipping {test}: needs root");
        return true;
    }
    if !Path::new(BUSYBOX).exists() {
        eprintln!("skipping {test}: needs busybox-static at {BUSYBOX}");
        return true;
    }
    false
}

fn in_child(test: &str) -> bool {
    std::env::var(SCENARIO_ENV).as_deref() == Ok(test)
}

/// Parent side: runs `test` again as a child process in the child role.
fn run_child(test: &str, spec: &ChildSpec, wrapper: &[&str]) -> Output {
    let exe = std::env::current_exe().unwrap();
    let mut cmd = if wrapper.is_empty() {
        Command::new(&exe)
    } else {
        let mut c = Command::new(wrapper[0]);
        c.args(&wrapper[1..]).arg(&exe);
        c
    };
    let out = cmd
        .args([
            "--exact",
            test,
            "--nocapture",
            "--test-threads=1",
            "--quiet",
        ])
        .env(SCENARIO_ENV, test)
        .env(SPEC_ENV, serde_json::to_string(spec).unwrap())
        .stdin(Stdio::null())
        .output()
        .unwrap();
    eprintln!(
        "child of {test}: status {:?}\n--- stdout\n{}--- stderr\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// Child side: plan and finalize the spec from the environment. Exits the process (code 3)
/// with the error chain on failure, so the parent sees which step failed.
fn child_apply() -> (ChildSpec, Option<std::os::fd::OwnedFd>) {
    let spec: ChildSpec = serde_json::from_str(&std::env::var(SPEC_ENV).unwrap()).unwrap();
    let mut plan =
        security::plan(&spec.process, spec.seccomp.as_ref()).unwrap_or_else(|e| fail("plan", &e));
    if !spec.exec_caps.is_empty() {
        plan.add_exec_capabilities(&spec.exec_caps)
            .unwrap_or_else(|e| fail("exec caps", &e));
    }
    let fd = security::finalize(&plan).unwrap_or_else(|e| fail("finalize", &e));
    (spec, fd)
}

fn chain(e: &dyn std::error::Error) -> String {
    let mut msg = e.to_string();
    let mut src = e.source();
    while let Some(s) = src {
        msg.push_str(&format!(": {s}"));
        src = s.source();
    }
    msg
}

fn fail(what: &str, e: &dyn std::error::Error) -> ! {
    println!("CHILD-ERROR {what}: {}", chain(e));
    std::process::exit(3)
}

/// Child side: replaces the process with `argv`.
fn child_exec(argv: &[&str]) -> ! {
    let err = Command::new(argv[0]).args(&argv[1..]).exec();
    println!("CHILD-ERROR exec {argv:?}: {err}");
    std::process::exit(4)
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The hex value of a `/proc/PID/status` line such as `CapEff:\t00000000a80425fb`.
fn status_hex(out: &str, key: &str) -> u64 {
    let line = out
        .lines()
        .find(|l| l.starts_with(&format!("{key}:")))
        .unwrap_or_else(|| panic!("no {key} in probe output:\n{out}"));
    u64::from_str_radix(line.split_whitespace().nth(1).unwrap(), 16).unwrap()
}

fn status_field<'a>(out: &'a str, key: &str) -> &'a str {
    out.lines()
        .find(|l| l.starts_with(&format!("{key}:")))
        .unwrap_or_else(|| panic!("no {key} in probe output:\n{out}"))
        .split_once(':')
        .unwrap()
        .1
        .trim()
}

fn process(json: serde_json::Value) -> Process {
    let mut base = json!({"cwd": "/", "user": {"uid": 0, "gid": 0}});
    base.as_object_mut()
        .unwrap()
        .extend(json.as_object().unwrap().clone());
    serde_json::from_value(base).unwrap()
}

fn caps_json(bounding: &[&str], inheritable: &[&str], ambient: &[&str]) -> serde_json::Value {
    json!({
        "bounding": bounding, "effective": bounding, "permitted": bounding,
        "inheritable": inheritable, "ambient": ambient,
    })
}

fn mask(names: &[&str]) -> u64 {
    let last = std::fs::read_to_string("/proc/sys/kernel/cap_last_cap")
        .unwrap()
        .trim()
        .parse::<u32>()
        .unwrap();
    names
        .iter()
        .map(|n| cap_index(n))
        .filter(|n| *n <= last)
        .fold(0, |m, n| m | (1u64 << n))
}

fn cap_index(name: &str) -> u32 {
    security::KNOWN_CAPABILITIES
        .iter()
        .position(|c| *c == name)
        .unwrap_or_else(|| panic!("unknown {name}")) as u32
}

fn docker_default_seccomp() -> LinuxSeccomp {
    security::default_seccomp_for_caps(&DOCKER_DEFAULT_CAPABILITIES).unwrap()
}

const STATUS_PROBE: [&str; 5] = [
    BUSYBOX,
    "grep",
    "-E",
    "^(Cap|Seccomp|NoNewPrivs|Uid|Gid|Groups)",
    "/proc/self/status",
];

#[test]
fn caps_nnp_and_seccomp_mode_as_planned() {
    const T: &str = "caps_nnp_and_seccomp_mode_as_planned";
    if in_child(T) {
        child_apply();
        child_exec(&STATUS_PROBE);
    }
    if skip_unless_root(T) {
        return;
    }
    let spec = ChildSpec {
        process: process(json!({
            "noNewPrivileges": true,
            "capabilities": caps_json(&DOCKER_DEFAULT_CAPABILITIES, &[], &[]),
        })),
        seccomp: Some(docker_default_seccomp()),
        exec_caps: vec![],
        data: json!(null),
    };
    let out = run_child(T, &spec, &[]);
    let s = stdout(&out);
    let want = mask(&DOCKER_DEFAULT_CAPABILITIES);
    assert_eq!(want, 0xa804_25fb);
    assert_eq!(status_hex(&s, "CapBnd"), want, "{s}");
    assert_eq!(status_hex(&s, "CapEff"), want, "{s}");
    assert_eq!(status_hex(&s, "CapPrm"), want, "{s}");
    assert_eq!(status_hex(&s, "CapInh"), 0, "{s}");
    assert_eq!(status_hex(&s, "CapAmb"), 0, "{s}");
    assert_eq!(status_field(&s, "NoNewPrivs"), "1");
    assert_eq!(status_field(&s, "Seccomp"), "2");
    assert!(out.status.success());
}

#[test]
fn non_root_user_with_groups_keeps_ambient_capability() {
    const T: &str = "non_root_user_with_groups_keeps_ambient_capability";
    if in_child(T) {
        child_apply();
        child_exec(&STATUS_PROBE);
    }
    if skip_unless_root(T) {
        return;
    }
    let raw = ["CAP_NET_RAW"];
    let spec = ChildSpec {
        process: process(json!({
            "user": {"uid": 1000, "gid": 1001, "additionalGids": [1234, 1235], "umask": 63},
            "noNewPrivileges": false,
            "capabilities": caps_json(&raw, &raw, &raw),
        })),
        seccomp: Some(docker_default_seccomp()),
        exec_caps: vec![],
        data: json!(null),
    };
    let out = run_child(T, &spec, &[]);
    let s = stdout(&out);
    let want = mask(&raw);
    // capabilities(7): after execve by a non-root user without file capabilities, only the
    // ambient set refills permitted and effective.
    assert_eq!(status_hex(&s, "CapAmb"), want, "{s}");
    assert_eq!(status_hex(&s, "CapEff"), want, "{s}");
    assert_eq!(status_hex(&s, "CapPrm"), want, "{s}");
    assert_eq!(status_hex(&s, "CapInh"), want, "{s}");
    assert_eq!(status_hex(&s, "CapBnd"), want, "{s}");
    assert_eq!(
        status_field(&s, "Uid")
            .split_whitespace()
            .collect::<Vec<_>>(),
        ["1000"; 4]
    );
    assert_eq!(
        status_field(&s, "Gid")
            .split_whitespace()
            .collect::<Vec<_>>(),
        ["1001"; 4]
    );
    assert_eq!(status_field(&s, "Groups"), "1234 1235");
    assert_eq!(status_field(&s, "NoNewPrivs"), "0");
    // Without no_new_privs the filter was loaded before the capability drop, and still applies.
    assert_eq!(status_field(&s, "Seccomp"), "2");
}

#[test]
fn cve_2022_29162_exec_cap_is_not_inheritable() {
    const T: &str = "cve_2022_29162_exec_cap_is_not_inheritable";
    if in_child(T) {
        child_apply();
        child_exec(&STATUS_PROBE);
    }
    if skip_unless_root(T) {
        return;
    }
    let without_raw: Vec<&str> = DOCKER_DEFAULT_CAPABILITIES
        .iter()
        .copied()
        .filter(|c| *c != "CAP_NET_RAW")
        .collect();
    let spec = ChildSpec {
        process: process(json!({
            "noNewPrivileges": true,
            "capabilities": caps_json(&without_raw, &[], &[]),
        })),
        seccomp: None,
        exec_caps: vec!["CAP_NET_RAW".into()],
        data: json!(null),
    };
    let out = run_child(T, &spec, &[]);
    let s = stdout(&out);
    assert_eq!(
        status_hex(&s, "CapInh"),
        0,
        "exec --cap leaked into CapInh:\n{s}"
    );
    assert_eq!(status_hex(&s, "CapAmb"), 0, "{s}");
    assert_eq!(
        status_hex(&s, "CapEff"),
        mask(&DOCKER_DEFAULT_CAPABILITIES),
        "{s}"
    );
}

/// Prints `NAME errno` (or `NAME ok`) for a syscall result in the child.
fn report<T>(name: &str, r: nix::Result<T>) {
    match r {
        Ok(_) => println!("PROBE {name} ok"),
        Err(e) => println!("PROBE {name} {e:?}"),
    }
}

fn probe<'a>(s: &'a str, name: &str) -> &'a str {
    s.lines()
        .find_map(|l| l.strip_prefix(&format!("PROBE {name} ")))
        .unwrap_or_else(|| panic!("no probe {name} in:\n{s}"))
}

#[test]
fn default_profile_blocks_dangerous_syscalls_and_runs_programs() {
    const T: &str = "default_profile_blocks_dangerous_syscalls_and_runs_programs";
    if in_child(T) {
        child_apply();
        // The child still holds every capability (the spec leaves them alone), so EPERM here
        // comes from the filter. Each call is harmless if it were allowed: a namespace only for
        // this thread, a mount on a missing path, a clock that cannot be set.
        report(
            "unshare",
            nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWUTS),
        );
        report(
            "mount",
            nix::mount::mount(
                None::<&str>,
                "/nonexistent-berth-mount-target",
                Some("tmpfs"),
                nix::mount::MsFlags::empty(),
                None::<&str>,
            ),
        );
        report(
            "clock_settime",
            nix::time::clock_settime(
                nix::time::ClockId::CLOCK_MONOTONIC,
                nix::sys::time::TimeSpec::new(1, 0),
            ),
        );
        let script = "ls / >/dev/null && echo PROBE ls ok; \
                      echo PROBE sh ok; \
                      if command -v python3 >/dev/null; then \
                        python3 -c 'import ctypes; l=ctypes.CDLL(None, use_errno=True); r=l.syscall(250, 0, -3, 0, 0, 0); print(\"PROBE keyctl\", \"ok\" if r >= 0 else \"errno%d\" % ctypes.get_errno()); r=l.syscall(1000, 0, 0, 0, 0, 0); print(\"PROBE newer\", \"ok\" if r >= 0 else \"errno%d\" % ctypes.get_errno())'; \
                      else echo PROBE keyctl skipped; echo PROBE newer skipped; fi; \
                      grep Seccomp: /proc/self/status";
        child_exec(&[BUSYBOX, "sh", "-c", script]);
    }
    if skip_unless_root(T) {
        return;
    }
    let spec = ChildSpec {
        process: process(json!({"noNewPrivileges": true})),
        seccomp: Some(docker_default_seccomp()),
        exec_caps: vec![],
        data: json!(null),
    };
    let out = run_child(T, &spec, &[]);
    let s = stdout(&out);
    assert_eq!(probe(&s, "unshare"), "EPERM");
    assert_eq!(probe(&s, "mount"), "EPERM");
    assert_eq!(probe(&s, "clock_settime"), "EPERM");
    assert_eq!(probe(&s, "ls"), "ok");
    assert_eq!(probe(&s, "sh"), "ok");
    match probe(&s, "keyctl") {
        "skipped" => eprintln!("keyctl not checked: python3 is missing"),
        // SYS_keyctl is 250 on x86_64 only.
        r if cfg!(target_arch = "x86_64") => assert_eq!(r, "errno1"),
        _ => {}
    }
    // A syscall number newer than anything the profile names gets ENOSYS, not EPERM, so libc
    // falls back (runc's patchbpf behaviour).
    match probe(&s, "newer") {
        "skipped" => {}
        r => assert_eq!(r, "errno38"),
    }
    assert_eq!(status_field(&s, "Seccomp"), "2");
}

#[test]
fn raw_socket_needs_cap_net_raw() {
    const T: &str = "raw_socket_needs_cap_net_raw";
    if in_child(T) {
        child_apply();
        use nix::sys::socket::{socket, AddressFamily, SockFlag, SockProtocol, SockType};
        report(
            "raw",
            socket(
                AddressFamily::Inet,
                SockType::Raw,
                SockFlag::SOCK_CLOEXEC,
                SockProtocol::Icmp,
            ),
        );
        std::process::exit(0);
    }
    if skip_unless_root(T) {
        return;
    }
    let without_raw: Vec<&str> = DOCKER_DEFAULT_CAPABILITIES
        .iter()
        .copied()
        .filter(|c| *c != "CAP_NET_RAW")
        .collect();
    for (caps, want) in [
        (&without_raw[..], "EPERM"),
        (&DOCKER_DEFAULT_CAPABILITIES[..], "ok"),
    ] {
        let spec = ChildSpec {
            process: process(json!({
                "noNewPrivileges": true,
                "capabilities": caps_json(caps, &[], &[]),
            })),
            seccomp: Some(security::default_seccomp_for_caps(caps).unwrap()),
            exec_caps: vec![],
            data: json!(null),
        };
        let out = run_child(T, &spec, &[]);
        assert_eq!(probe(&stdout(&out), "raw"), want);
    }
}

/// Parent side: starts `test` as a child process in the background, stdout piped.
fn spawn_child(test: &str, spec: &ChildSpec) -> std::process::Child {
    Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            test,
            "--nocapture",
            "--test-threads=1",
            "--quiet",
        ])
        .env(SCENARIO_ENV, test)
        .env(SPEC_ENV, serde_json::to_string(spec).unwrap())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap()
}

/// Plays the seccomp agent's first step: accepts the runtime's connection and returns the
/// `containerProcessState` and the notify fd. Panics (with the child's output) if the child
/// exits first.
///
/// The received descriptor stays open until this test process exits: wrapping a raw fd in an
/// OwnedFd needs `unsafe`, which this crate keeps in src/sys only.
fn agent_accept(
    listener: &UnixListener,
    child: &mut std::process::Child,
) -> (serde_json::Value, std::os::fd::RawFd) {
    listener.set_nonblocking(true).unwrap();
    let conn = loop {
        match listener.accept() {
            Ok((c, _)) => break c,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                if let Some(status) = child.try_wait().unwrap() {
                    let mut out = String::new();
                    child
                        .stdout
                        .take()
                        .unwrap()
                        .read_to_string(&mut out)
                        .unwrap();
                    panic!("child exited ({status}) before connecting:\n{out}");
                }
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
            Err(e) => panic!("accept: {e}"),
        }
    };
    conn.set_nonblocking(false).unwrap();
    let mut buf = vec![0u8; 64 * 1024];
    let mut cmsg = nix::cmsg_space!([std::os::fd::RawFd; 1]);
    let mut iov = [std::io::IoSliceMut::new(&mut buf)];
    let msg = nix::sys::socket::recvmsg::<()>(
        conn.as_raw_fd(),
        &mut iov,
        Some(&mut cmsg),
        nix::sys::socket::MsgFlags::MSG_CMSG_CLOEXEC,
    )
    .unwrap();
    let len = msg.bytes;
    let mut notify_fd = None;
    for c in msg.cmsgs().unwrap() {
        if let nix::sys::socket::ControlMessageOwned::ScmRights(fds) = c {
            notify_fd = fds.first().copied();
        }
    }
    let notify_fd = notify_fd.expect("no fd attached to the listener message");
    (serde_json::from_slice(&buf[..len]).unwrap(), notify_fd)
}

#[test]
fn seccomp_notify_reaches_the_listener() {
    const T: &str = "seccomp_notify_reaches_the_listener";
    if in_child(T) {
        let (spec, fd) = child_apply();
        let Some(fd) = fd else {
            println!("CHILD-ERROR no notify fd");
            std::process::exit(5);
        };
        let path = spec
            .seccomp
            .as_ref()
            .unwrap()
            .listener_path()
            .clone()
            .unwrap();
        let state = json!({
            "ociVersion": "1.2.0", "id": "berth-notify-test", "status": "creating",
            "pid": std::process::id(), "bundle": "/",
        });
        security::send_to_listener(&path, Some("berth-meta"), fd.as_fd(), &state.to_string())
            .unwrap_or_else(|e| fail("send_to_listener", &e));
        drop(fd);
        let dir = spec.data["dir"].as_str().unwrap();
        report(
            "mkdir",
            nix::unistd::mkdir(
                Path::new(dir).join("made").as_path(),
                nix::sys::stat::Mode::from_bits_truncate(0o755),
            ),
        );
        std::process::exit(0);
    }
    if skip_unless_root(T) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("agent.sock");
    let listener = UnixListener::bind(&sock).unwrap();
    let seccomp: LinuxSeccomp = serde_json::from_value(json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "listenerPath": sock,
        "listenerMetadata": "berth-meta",
        "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_NOTIFY"}],
    }))
    .unwrap();
    let spec = ChildSpec {
        process: process(json!({"noNewPrivileges": true})),
        seccomp: Some(seccomp),
        exec_caps: vec![],
        data: json!({"dir": dir.path()}),
    };
    // The child runs in the background while this thread plays the seccomp agent.
    let mut child = spawn_child(T, &spec);
    let (state, notify_fd) = agent_accept(&listener, &mut child);
    assert_eq!(state["fds"], json!(["seccompFd"]));
    assert_eq!(state["metadata"], "berth-meta");
    assert_eq!(state["ociVersion"], "1.2.0");
    assert_eq!(state["pid"], json!(child.id()));
    assert_eq!(state["state"]["id"], "berth-notify-test");

    // Answer the child's mkdir with EXDEV, an error mkdir never returns by itself.
    let req = libseccomp::ScmpNotifReq::receive(notify_fd).unwrap();
    let name = req.data.syscall.get_name().unwrap();
    assert!(name == "mkdir" || name == "mkdirat", "{name}");
    // The notification names the calling thread: the child's test thread.
    assert!(
        Path::new(&format!("/proc/{}/task/{}", child.id(), req.pid)).exists(),
        "request from {} is not a thread of the child {}",
        req.pid,
        child.id()
    );
    libseccomp::ScmpNotifResp::new_error(
        req.id,
        -libc::EXDEV,
        libseccomp::ScmpNotifRespFlags::empty(),
    )
    .respond(notify_fd)
    .unwrap();
    let out = child.wait_with_output().unwrap();
    let s = stdout(&out);
    assert_eq!(probe(&s, "mkdir"), "EXDEV", "{s}");
    assert!(!dir.path().join("made").exists());
}

#[test]
fn cve_2019_16884_apparmor_label_refuses_a_fake_proc() {
    const T: &str = "cve_2019_16884_apparmor_label_refuses_a_fake_proc";
    if in_child(T) {
        // In a private mount namespace (the parent started us under `unshare -m`): a volume
        // over /proc, carrying a plain file where attr/exec would be.
        let spec: ChildSpec = serde_json::from_str(&std::env::var(SPEC_ENV).unwrap()).unwrap();
        let fake = spec.data["fake_proc"].as_str().unwrap();
        nix::mount::mount(
            Some(fake),
            "/proc",
            None::<&str>,
            nix::mount::MsFlags::MS_BIND,
            None::<&str>,
        )
        .unwrap();
        let plan = SecurityPlan {
            apparmor_profile: Some("berth-cve-2019-16884".into()),
            ..Default::default()
        };
        match security::finalize(&plan) {
            Err(e @ SecurityError::ExecLabel { .. }) => {
                println!("PROBE finalize refused {}", chain(&e))
            }
            other => println!("PROBE finalize {other:?}"),
        }
        std::process::exit(0);
    }
    if skip_unless_root(T) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let fake = dir.path().join("proc");
    let sentinels = [
        "thread-self/attr/apparmor/exec",
        "thread-self/attr/exec",
        "self/attr/exec",
    ];
    for s in sentinels {
        let p = fake.join(s);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(&p, "sentinel").unwrap();
    }
    let spec = ChildSpec {
        process: process(json!({})),
        seccomp: None,
        exec_caps: vec![],
        data: json!({"fake_proc": fake}),
    };
    let out = run_child(
        T,
        &spec,
        &["unshare", "--mount", "--propagation", "private"],
    );
    let s = stdout(&out);
    let result = probe(&s, "finalize");
    assert!(result.starts_with("refused"), "{s}");
    assert!(result.contains("/proc is not on procfs"), "{s}");
    for sentinel in sentinels {
        assert_eq!(
            std::fs::read_to_string(fake.join(sentinel)).unwrap(),
            "sentinel"
        );
    }
}

#[test]
fn cve_2025_52881_label_write_refuses_a_bind_mount_over_attr() {
    const T: &str = "cve_2025_52881_label_write_refuses_a_bind_mount_over_attr";
    if in_child(T) {
        // A racing mount put a plain file over this thread's attr files (private mount namespace).
        let spec: ChildSpec = serde_json::from_str(&std::env::var(SPEC_ENV).unwrap()).unwrap();
        let sentinel = spec.data["sentinel"].as_str().unwrap();
        for target in [
            "/proc/thread-self/attr/apparmor/exec",
            "/proc/thread-self/attr/exec",
        ] {
            if Path::new(target).exists() {
                nix::mount::mount(
                    Some(sentinel),
                    target,
                    None::<&str>,
                    nix::mount::MsFlags::MS_BIND,
                    None::<&str>,
                )
                .unwrap();
            }
        }
        let plan = SecurityPlan {
            apparmor_profile: Some("berth-cve-2025-52881".into()),
            ..Default::default()
        };
        match security::finalize(&plan) {
            Err(e @ SecurityError::ExecLabel { .. }) => {
                println!("PROBE finalize refused {}", chain(&e))
            }
            other => println!("PROBE finalize {other:?}"),
        }
        std::process::exit(0);
    }
    if skip_unless_root(T) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let sentinel = dir.path().join("sentinel");
    std::fs::write(&sentinel, "sentinel").unwrap();
    let spec = ChildSpec {
        process: process(json!({})),
        seccomp: None,
        exec_caps: vec![],
        data: json!({"sentinel": sentinel}),
    };
    let out = run_child(
        T,
        &spec,
        &["unshare", "--mount", "--propagation", "private"],
    );
    let s = stdout(&out);
    let result = probe(&s, "finalize");
    assert!(result.starts_with("refused"), "{s}");
    // openat2(RESOLVE_NO_XDEV) refuses to cross into the bind mount.
    assert!(result.contains("EXDEV"), "{s}");
    assert_eq!(std::fs::read_to_string(&sentinel).unwrap(), "sentinel");
}

fn apparmor_usable(test: &str) -> bool {
    if skip_unless_root(test) {
        return false;
    }
    if !lsm::apparmor_enabled() {
        eprintln!("skipping {test}: AppArmor is not enabled (run it in /work/shared/vm)");
        return false;
    }
    if Command::new("apparmor_parser")
        .arg("--version")
        .output()
        .is_err()
    {
        eprintln!("skipping {test}: apparmor_parser is missing");
        return false;
    }
    true
}

/// Loads an AppArmor profile for the test and removes it when dropped.
struct LoadedProfile {
    file: std::path::PathBuf,
}

impl LoadedProfile {
    fn load(dir: &Path, name: &str, body: &str) -> Self {
        let file = dir.join(format!("{name}.profile"));
        std::fs::write(&file, format!("profile {name} {{\n{body}\n}}\n")).unwrap();
        let out = Command::new("apparmor_parser")
            .arg("-r")
            .arg(&file)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "apparmor_parser -r: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        LoadedProfile { file }
    }
}

impl Drop for LoadedProfile {
    fn drop(&mut self) {
        let _ = Command::new("apparmor_parser")
            .arg("-R")
            .arg(&self.file)
            .output();
    }
}

#[test]
fn apparmor_profile_confines_the_process() {
    const T: &str = "apparmor_profile_confines_the_process";
    if in_child(T) {
        let (spec, _) = child_apply();
        let secret = spec.data["secret"].as_str().unwrap().to_owned();
        let script = format!(
            "echo PROBE label $(cat /proc/self/attr/current); \
             if cat {secret} >/dev/null 2>&1; then echo PROBE read ok; else echo PROBE read denied; fi"
        );
        child_exec(&[BUSYBOX, "sh", "-c", &script]);
    }
    if !apparmor_usable(T) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let secret = dir.path().join("secret");
    std::fs::write(&secret, "top secret").unwrap();
    let name = format!("berth-test-deny-{}", std::process::id());
    let _profile = LoadedProfile::load(
        dir.path(),
        &name,
        &format!(
            "  file,\n  capability,\n  network,\n  signal,\n  unix,\n  ptrace,\n  deny {} rwklx,",
            secret.display()
        ),
    );
    let spec = ChildSpec {
        process: process(json!({"apparmorProfile": name, "noNewPrivileges": true})),
        seccomp: None,
        exec_caps: vec![],
        data: json!({"secret": secret}),
    };
    let out = run_child(T, &spec, &[]);
    let s = stdout(&out);
    assert_eq!(probe(&s, "label"), format!("{name} (enforce)"), "{s}");
    assert_eq!(probe(&s, "read"), "denied", "{s}");
    // The same read outside the profile works: the denial is the profile's.
    assert_eq!(std::fs::read_to_string(&secret).unwrap(), "top secret");
}

#[test]
fn apparmor_profile_not_loaded_is_refused_before_anything_runs() {
    const T: &str = "apparmor_profile_not_loaded_is_refused_before_anything_runs";
    if !lsm::apparmor_enabled() {
        // Without AppArmor the same setting is refused as "not enabled".
        let p = process(json!({"apparmorProfile": "berth-no-such-profile"}));
        let err = security::plan(&p, None).unwrap_err();
        assert!(
            matches!(err, SecurityError::AppArmorDisabled { .. }),
            "{err}"
        );
        eprintln!("{T}: AppArmor is off here; checked the 'not enabled' refusal instead");
        return;
    }
    let p = process(json!({"apparmorProfile": "berth-no-such-profile"}));
    let err = security::plan(&p, None).unwrap_err();
    assert!(
        matches!(err, SecurityError::AppArmorProfileNotLoaded { ref profile } if profile == "berth-no-such-profile"),
        "{err}"
    );
}

#[test]
fn custom_profile_errno_ret_arguments_and_kill_process_apply() {
    const T: &str = "custom_profile_errno_ret_arguments_and_kill_process_apply";
    if in_child(T) {
        use nix::sys::signal::{kill, Signal};
        use nix::unistd::Pid;
        let (spec, _) = child_apply();
        report("getcwd", nix::unistd::getcwd());
        // arg0 > 900000 AND arg1 == 0: only the first call matches the rule.
        report("kill_match", kill(Pid::from_raw(999_999), None));
        report(
            "kill_other_signal",
            kill(Pid::from_raw(999_999), Signal::SIGCONT),
        );
        report("kill_self", kill(nix::unistd::getpid(), None));
        if spec.data["die"].as_bool() == Some(true) {
            println!("PROBE before_getppid ok");
            let _ = nix::unistd::getppid();
            println!("PROBE after_getppid survived");
        }
        std::process::exit(0);
    }
    if skip_unless_root(T) {
        return;
    }
    let seccomp: LinuxSeccomp = serde_json::from_value(json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"],
        "flags": ["SECCOMP_FILTER_FLAG_LOG"],
        "syscalls": [
            {"names": ["getcwd"], "action": "SCMP_ACT_ERRNO", "errnoRet": 38},
            {"names": ["kill"], "action": "SCMP_ACT_ERRNO", "errnoRet": 18,
             "args": [{"index": 0, "value": 900000, "op": "SCMP_CMP_GT"},
                      {"index": 1, "value": 0, "op": "SCMP_CMP_EQ"}]},
            {"names": ["getppid"], "action": "SCMP_ACT_KILL_PROCESS"},
        ],
    }))
    .unwrap();
    let spec = |die: bool| ChildSpec {
        process: process(json!({"noNewPrivileges": true})),
        seccomp: Some(seccomp.clone()),
        exec_caps: vec![],
        data: json!({"die": die}),
    };
    let out = run_child(T, &spec(false), &[]);
    let s = stdout(&out);
    assert_eq!(probe(&s, "getcwd"), "ENOSYS");
    assert_eq!(probe(&s, "kill_match"), "EXDEV");
    assert_eq!(probe(&s, "kill_other_signal"), "ESRCH");
    assert_eq!(probe(&s, "kill_self"), "ok");

    let out = run_child(T, &spec(true), &[]);
    let s = stdout(&out);
    assert_eq!(probe(&s, "before_getppid"), "ok");
    assert!(!s.contains("survived"), "{s}");
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(out.status.signal(), Some(libc::SIGSYS), "{:?}", out.status);
}

#[test]
fn personality_linux32_applies() {
    const T: &str = "personality_linux32_applies";
    if in_child(T) {
        let spec: oci_spec::runtime::Spec = serde_json::from_value(json!({
            "ociVersion": "1.2.0",
            "process": {"cwd": "/", "user": {"uid": 0, "gid": 0}, "args": ["uname"]},
            "root": {"path": "rootfs"},
            "linux": {"personality": {"domain": "LINUX32"}},
        }))
        .unwrap();
        let plan = security::plan_for_spec(&spec).unwrap_or_else(|e| fail("plan", &e));
        security::finalize(&plan).unwrap_or_else(|e| fail("finalize", &e));
        child_exec(&[BUSYBOX, "uname", "-m"]);
    }
    if skip_unless_root(T) {
        return;
    }
    if !cfg!(target_arch = "x86_64") {
        eprintln!("skipping {T}: the expected machine name is only known for x86_64");
        return;
    }
    let spec = ChildSpec {
        process: process(json!({})),
        seccomp: None,
        exec_caps: vec![],
        data: json!(null),
    };
    let out = run_child(T, &spec, &[]);
    // PER_LINUX32 makes uname(2) report the 32-bit machine.
    assert_eq!(stdout(&out).lines().last(), Some("i686"));
}

#[test]
fn user_namespace_with_setgroups_denied() {
    const T: &str = "user_namespace_with_setgroups_denied";
    if in_child(T) {
        child_apply();
        child_exec(&STATUS_PROBE);
    }
    if skip_unless_root(T) {
        return;
    }
    // `unshare --map-root-user` writes "deny" to /proc/self/setgroups (user_namespaces(7)).
    let userns = ["unshare", "--user", "--map-root-user"];
    let spec = |gids: &[u32]| ChildSpec {
        process: process(json!({
            "user": {"uid": 0, "gid": 0, "additionalGids": gids},
            "noNewPrivileges": true,
            "capabilities": caps_json(&DOCKER_DEFAULT_CAPABILITIES, &[], &[]),
        })),
        seccomp: Some(docker_default_seccomp()),
        exec_caps: vec![],
        data: json!(null),
    };
    // No supplementary groups: setgroups is skipped and the rest applies.
    let out = run_child(T, &spec(&[]), &userns);
    let s = stdout(&out);
    assert_eq!(
        status_hex(&s, "CapEff"),
        mask(&DOCKER_DEFAULT_CAPABILITIES),
        "{s}"
    );
    assert_eq!(status_field(&s, "Seccomp"), "2");
    // Supplementary groups cannot be honoured: a clear error, not fewer groups.
    let out = run_child(T, &spec(&[5]), &userns);
    let s = stdout(&out);
    assert!(s.contains("CHILD-ERROR finalize"), "{s}");
    assert!(s.contains("setgroups is denied"), "{s}");
}

#[test]
fn notify_fd_handed_off_before_user_switch_without_nnp() {
    const T: &str = "notify_fd_handed_off_before_user_switch_without_nnp";
    if in_child(T) {
        let spec: ChildSpec = serde_json::from_str(&std::env::var(SPEC_ENV).unwrap()).unwrap();
        let plan = security::plan(&spec.process, spec.seccomp.as_ref())
            .unwrap_or_else(|e| fail("plan", &e));
        let path = spec
            .seccomp
            .as_ref()
            .unwrap()
            .listener_path()
            .clone()
            .unwrap();
        let state =
            json!({"ociVersion": "1.2.0", "id": "berth-handoff", "pid": std::process::id()});
        // Without the hand-off, finalize's own umask(2) would wait forever for an agent.
        let mut hand_off = |fd: std::os::fd::OwnedFd| {
            security::send_to_listener(&path, None, fd.as_fd(), &state.to_string())
                .map_err(std::io::Error::other)
        };
        let left = security::finalize_with(&plan, Some(&mut hand_off))
            .unwrap_or_else(|e| fail("finalize", &e));
        assert!(left.is_none());
        child_exec(&STATUS_PROBE);
    }
    if skip_unless_root(T) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("agent.sock");
    let listener = UnixListener::bind(&sock).unwrap();
    let mut flags = vec!["SECCOMP_FILTER_FLAG_TSYNC"];
    let wait_killable = "SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV";
    if security::features()
        .seccomp
        .supported_flags
        .iter()
        .any(|f| f == wait_killable)
    {
        flags.push(wait_killable);
    }
    let seccomp: LinuxSeccomp = serde_json::from_value(json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "listenerPath": sock,
        // TSYNC with a listener needs TSYNC_ESRCH (added by compile); the child has harness
        // threads, so TSYNC really synchronizes something here.
        "flags": flags,
        "syscalls": [{"names": ["umask"], "action": "SCMP_ACT_NOTIFY"}],
    }))
    .unwrap();
    let spec = ChildSpec {
        process: process(
            json!({"noNewPrivileges": false, "user": {"uid": 0, "gid": 0, "umask": 18}}),
        ),
        seccomp: Some(seccomp),
        exec_caps: vec![],
        data: json!(null),
    };
    let mut child = spawn_child(T, &spec);
    let (state, notify_fd) = agent_accept(&listener, &mut child);
    assert_eq!(state["state"]["id"], "berth-handoff");
    // finalize's umask arrives here; let it run.
    let req = libseccomp::ScmpNotifReq::receive(notify_fd).unwrap();
    assert_eq!(req.data.syscall.get_name().unwrap(), "umask");
    libseccomp::ScmpNotifResp::new_continue(req.id, libseccomp::ScmpNotifRespFlags::CONTINUE)
        .respond(notify_fd)
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let s = stdout(&out);
    assert_eq!(status_field(&s, "Seccomp"), "2", "{s}");
    assert_eq!(status_field(&s, "NoNewPrivs"), "0", "{s}");
}

#[test]
fn user_switch_works_without_proc() {
    const T: &str = "user_switch_works_without_proc";
    if in_child(T) {
        // The parent plans (with the host's /proc); the init of a container without a /proc
        // mount finalizes: an empty tmpfs there (private mount namespace).
        let spec: ChildSpec = serde_json::from_str(&std::env::var(SPEC_ENV).unwrap()).unwrap();
        let plan = security::plan(&spec.process, None).unwrap_or_else(|e| fail("plan", &e));
        nix::mount::mount(
            Some("tmpfs"),
            "/proc",
            Some("tmpfs"),
            nix::mount::MsFlags::empty(),
            None::<&str>,
        )
        .unwrap();
        security::finalize(&plan).unwrap_or_else(|e| fail("finalize", &e));
        let groups: Vec<u32> = nix::unistd::getgroups()
            .unwrap()
            .iter()
            .map(|g| g.as_raw())
            .collect();
        println!("PROBE groups {groups:?}");
        println!("PROBE uid {}", nix::unistd::geteuid());
        std::process::exit(0);
    }
    if skip_unless_root(T) {
        return;
    }
    let spec = ChildSpec {
        process: process(json!({"user": {"uid": 1000, "gid": 1000, "additionalGids": [7]}})),
        seccomp: None,
        exec_caps: vec![],
        data: json!(null),
    };
    let out = run_child(
        T,
        &spec,
        &["unshare", "--mount", "--propagation", "private"],
    );
    let s = stdout(&out);
    assert_eq!(probe(&s, "groups"), "[7]", "{s}");
    assert_eq!(probe(&s, "uid"), "1000", "{s}");
}

//! Regression tests for the runtime escapes of `SECURITY-TESTS.md`, one per CVE, each named
//! after it. A test passes when the attack fails and a host sentinel (a file and a directory the
//! test created outside the container) is unchanged.

use berth_conformance::{
    assert_nothing_left, first_json, read_pty, require_root, sha256_file, unique_id, Bundle,
    ConsoleSocket, Output, Runtime, Sentinel,
};
use serde_json::Value;
use std::fs;
use std::os::unix::fs::symlink;

/// Drops every mount at or below /dev, so the rootfs's own /dev is what the runtime sees.
fn without_dev_mounts(b: &mut Bundle) {
    for d in ["/dev/pts", "/dev/shm", "/dev/mqueue", "/dev"] {
        b.spec.remove_mount(d);
    }
}

fn error_text(rt: &Runtime, out: &Output) -> String {
    let log = fs::read_to_string(rt.log_file()).unwrap_or_default();
    format!("{}\n{}", out.stderr, log).to_lowercase()
}

/// CVE-2019-19921 (and CVE-2023-27561, CVE-2023-28642): `/proc` or `/sys` in the rootfs is a
/// symlink, so the procfs mount (and later procfs writes) land elsewhere. `create` must fail
/// with an error naming the path, mount nothing on the host and leave nothing behind.
#[test]
fn cve_2019_19921_proc_symlink() {
    require_root!();
    let rt = Runtime::new();
    for victim in ["proc", "sys"] {
        let b = Bundle::new();
        let sentinel = Sentinel::new(&b.host_dir("host"));
        let p = b.rootfs().join(victim);
        fs::remove_dir(&p).unwrap();
        symlink(&sentinel.dir, &p).unwrap();
        let id = unique_id("cve19921");
        let out = rt.create(&id, &b, &[]);
        out.assert_fails();
        let text = error_text(&rt, &out);
        assert!(
            text.contains(&format!("/{victim}")),
            "error does not name /{victim}:\n{text}"
        );
        assert_nothing_left(&rt, &id, &b);
        assert!(
            berth_conformance::host_mounts_under(&sentinel.dir).is_empty(),
            "something was mounted on the host sentinel"
        );
        sentinel.assert_unchanged();
    }
}

/// CVE-2026-41579 and crun's 2025-2026 /dev CVEs: with no /dev mount, a rootfs whose /dev,
/// /dev/null or /dev/console is a symlink to a host path must not redirect device setup to the
/// host. The run may fail; if it succeeds, stdio is never the host file and the sentinels are
/// unchanged.
#[test]
fn cve_2026_41579_dev_symlinks() {
    require_root!();
    let rt = Runtime::new();
    let mut failures = Vec::new();
    for variant in ["dev", "dev/null", "dev/console"] {
        let mut b = Bundle::new();
        let sentinel = Sentinel::new(&b.host_dir("host"));
        without_dev_mounts(&mut b);
        let p = b.rootfs().join(variant);
        let target = if variant == "dev" {
            fs::remove_dir(&p).unwrap();
            &sentinel.dir
        } else {
            &sentinel.file
        };
        symlink(target, &p).unwrap();
        let id = unique_id("cve41579");
        let out = if variant == "dev/console" {
            b.spec.terminal(true).args(&["/probe"]);
            let sock_path = rt.scratch().join(format!("console-{id}.sock"));
            let mut sock = ConsoleSocket::bind(&sock_path);
            let sp = sock_path.to_string_lossy().into_owned();
            let out = rt.create(&id, &b, &["--console-socket", &sp]);
            if out.success() {
                let master = sock.master();
                rt.start(&id).assert_ok();
                let v = first_json(&read_pty(master));
                check_stdio(&v, &sentinel);
                let console = &v["dev"]["/dev/console"];
                assert!(
                    console["type"] == "char" && console["major"] == 136,
                    "/dev/console is not the container's pty: {console}"
                );
            }
            out
        } else {
            b.spec.args(&["/probe"]);
            let out = rt.run(&id, &b, &[]);
            if out.success() {
                check_stdio(&out.json(), &sentinel);
            }
            out
        };
        eprintln!(
            "variant {variant}: runtime {}",
            if out.success() {
                "ran it"
            } else {
                "refused it"
            }
        );
        rt.delete(&id, true);
        assert!(berth_conformance::host_mounts_under(&sentinel.dir).is_empty());
        assert!(berth_conformance::host_mounts_under(&sentinel.file).is_empty());
        if let Err(e) = std::panic::catch_unwind(|| sentinel.assert_unchanged()) {
            failures.push(format!("/{variant}: {:?}", e.downcast_ref::<String>()));
        }
    }
    // runc 1.1.5 fails the /dev variant: it creates its /dev symlinks in the host directory.
    assert!(failures.is_empty(), "host sentinels changed: {failures:#?}");
}

fn check_stdio(v: &Value, sentinel: &Sentinel) {
    let host = sentinel.file.to_string_lossy();
    for fd in ["0", "1", "2"] {
        let t = v["fds"][fd].as_str().unwrap_or_default();
        assert!(!t.contains(host.as_ref()), "fd {fd} is the host file {t}");
    }
}

/// CVE-2024-21626: a host directory fd leaked into the container init; `cwd=/proc/self/fd/N`
/// then gives a working directory on the host. For every N in 3..64, for both run and exec:
/// the runtime refuses, or the cwd is inside the container; PID 1 holds only fds 0-2.
#[test]
fn cve_2024_21626_leaked_fd_cwd() {
    require_root!();
    let rt = Runtime::new();
    let sentinel_holder = Bundle::new();
    let sentinel = Sentinel::new(&sentinel_holder.host_dir("host"));
    let mut sleeper = Bundle::new();
    let sid = rt.start_sleeper(&mut sleeper);
    let mut refused = 0;
    for n in 3..64 {
        let cwd = format!("/proc/self/fd/{n}");
        let mut b = Bundle::new();
        b.spec.cwd(&cwd).args(&["/probe"]);
        let out = rt.run(&unique_id("cve21626"), &b, &[]);
        if out.success() {
            let v = out.json();
            check_cwd_inside(&v, n);
            let fds: Vec<&String> = v["fds"].as_object().unwrap().keys().collect();
            assert!(
                fds.iter().all(|f| ["0", "1", "2"].contains(&f.as_str())),
                "PID 1 holds extra fds: {}",
                v["fds"]
            );
        } else {
            refused += 1;
        }
        let out = rt.exec(&sid, &["--cwd", &cwd], &["/probe"]);
        if out.success() {
            check_cwd_inside(&out.json(), n);
        } else {
            refused += 1;
        }
    }
    eprintln!("{refused} of 122 attempts refused");
    // The sleeper's PID 1 holds no fd beyond stdio either.
    let v = rt.exec(&sid, &[], &["/probe", "fds", "1"]).json();
    let fds: Vec<&String> = v.as_object().unwrap().keys().collect();
    assert!(
        fds.iter().all(|f| ["0", "1", "2"].contains(&f.as_str())),
        "/proc/1/fd: {v}"
    );
    sentinel.assert_unchanged();
}

fn check_cwd_inside(v: &Value, n: u32) {
    // getcwd(3) reports "(unreachable)" for a cwd outside the process's root.
    let cwd = v["cwd"]
        .as_str()
        .unwrap_or_else(|| panic!("fd {n}: cwd unreadable: {}", v["cwd"]));
    assert!(
        !cwd.contains("unreachable") && cwd.starts_with('/'),
        "fd {n}: cwd {cwd:?} is outside the container"
    );
    let fds = &v["fds"];
    for (fd, target) in fds.as_object().unwrap() {
        let t = target.as_str().unwrap_or_default();
        assert!(
            !t.starts_with("/tmp/berth-") && !t.starts_with("/sys/fs/cgroup"),
            "fd {fd} points at a host path {t}"
        );
    }
}

/// CVE-2019-5736: the container opens `/proc/<runtime pid>/exe` for writing while the runtime
/// joins it (`exec`) and overwrites the host binary. The probe loops the open (never writing)
/// during a series of execs; no open may succeed and the binary's hash stays the same.
#[test]
fn cve_2019_5736_proc_exe_overwrite() {
    require_root!();
    let rt = Runtime::new();
    let before = sha256_file(rt.bin());
    let b = {
        let mut b = Bundle::new();
        b.spec.args(&["/probe", "exe-attack", "/tmp/stop-attack"]);
        b
    };
    let id = unique_id("cve5736");
    let created = rt.create(&id, &b, &[]);
    created.assert_ok();
    rt.start(&id).assert_ok();
    for _ in 0..15 {
        rt.exec(&id, &[], &["/bin/true"]).assert_ok();
    }
    fs::write(b.rootfs().join("tmp/stop-attack"), "").unwrap();
    rt.wait_status(&id, "stopped");
    let v = first_json(&created.stdout_now());
    assert!(
        v["attempts"].as_u64().unwrap_or(0) > 0,
        "the attack never ran: {v}"
    );
    assert_eq!(
        v["opened_for_write"],
        serde_json::json!([]),
        "the container opened a runtime binary for writing: {v}"
    );
    assert_eq!(sha256_file(rt.bin()), before, "the runtime binary changed");
}

/// CVE-2025-31133: maskedPaths bind-mount /dev/null; a rootfs whose /dev/null is a symlink to
/// a procfs file (core_pattern) made the masked path a writable alias of it. Either an error,
/// or every masked file is the char device 1:3 and the process's stdio is intact.
///
/// The procfs target is `/proc/self/comm`, never the real `core_pattern`: that sysctl is
/// global, and runc 1.1.5 (Debian 12, before the fix in runc 1.2.8/1.3.3) resolves such a
/// `/dev/null` inside the rootfs onto the container's procfs and sends the container's stdio
/// there, which rewrote the host's core_pattern when this test first used it. A process's own
/// `comm` is harmless to alias. A second variant points at a host sentinel file.
/// runc 1.1.5 fails the `/proc/self/comm` variant.
#[test]
fn cve_2025_31133_masked_dev_null_symlink() {
    require_root!();
    let rt = Runtime::new();
    let masked = ["/proc/timer_list", "/proc/keys", "/proc/latency_stats"];
    for target in ["/proc/self/comm", "<sentinel>"] {
        let mut b = Bundle::new();
        let sentinel = Sentinel::new(&b.host_dir("host"));
        without_dev_mounts(&mut b);
        let t = match target {
            "<sentinel>" => sentinel.file.clone(),
            t => t.into(),
        };
        symlink(&t, b.rootfs().join("dev/null")).unwrap();
        b.spec.masked_paths(&masked);
        let mut args = vec!["/probe", "stat"];
        args.extend_from_slice(&masked);
        b.spec.args(&args);
        let id = unique_id("cve31133");
        let out = rt.run(&id, &b, &[]);
        rt.delete(&id, true);
        sentinel.assert_unchanged();
        if out.success() {
            let v: Value = serde_json::from_str(out.stdout.trim()).unwrap_or_else(|_| {
                panic!("/dev/null -> {target}: the process's stdout went astray: {out}")
            });
            for m in masked {
                let st = &v[m];
                if st.get("errno").is_some() {
                    continue; // not present on this kernel
                }
                assert!(
                    st["type"] == "char" && st["major"] == 1 && st["minor"] == 3,
                    "/dev/null -> {target}: masked {m} is not /dev/null: {st}"
                );
            }
        }
    }
}

/// CVE-2025-52565: the /dev/console bind from /dev/pts/N swapped for a symlink. A rootfs that
/// pre-seeds /dev/console and /dev/pts/* as symlinks to a host file: the console the process
/// sees is a pts device (major 136) and the host file is unchanged.
#[test]
fn cve_2025_52565_console_symlink() {
    require_root!();
    let rt = Runtime::new();
    let mut b = Bundle::new();
    let sentinel = Sentinel::new(&b.host_dir("host"));
    // Keep devpts but not the /dev tmpfs, so the rootfs's /dev entries are what the runtime sees.
    b.spec.remove_mount("/dev");
    let dev = b.rootfs().join("dev");
    symlink(&sentinel.file, dev.join("console")).unwrap();
    fs::create_dir_all(dev.join("pts")).unwrap();
    for n in 0..4 {
        symlink(&sentinel.file, dev.join(format!("pts/{n}"))).unwrap();
    }
    b.spec.terminal(true).args(&["/probe"]);
    let sock_path = rt.scratch().join("console.sock");
    let mut sock = ConsoleSocket::bind(&sock_path);
    let id = unique_id("cve52565");
    let sp = sock_path.to_string_lossy().into_owned();
    let out = rt.create(&id, &b, &["--console-socket", &sp]);
    if out.success() {
        let master = sock.master();
        rt.start(&id).assert_ok();
        let v = first_json(&read_pty(master));
        let console = &v["dev"]["/dev/console"];
        assert!(
            console["type"] == "char" && console["major"] == 136,
            "/dev/console is not a pts device: {console}"
        );
        for fd in ["0", "1", "2"] {
            let t = v["fds"][fd].as_str().unwrap_or_default();
            assert!(t.starts_with("/dev/pts/"), "fd {fd} is {t}");
        }
        rt.wait_status(&id, "stopped");
    } else {
        eprintln!("runtime refused the bundle: {out}");
    }
    rt.delete(&id, true);
    sentinel.assert_unchanged();
}

/// CVE-2015-3627: the runtime opened a file for PID 1's stdio (or a log) through a path in the
/// image before pivot_root, following the image's symlink to a host file. Here the image's
/// `/dev/stdin`, `/dev/stdout`, `/dev/stderr` and `/dev/fd` point at a host sentinel and there is
/// no `/dev` mount, so the runtime sets up `/dev` in the image's own directory: the container's
/// stdio must never be the host file, and the sentinel must not change.
#[test]
fn cve_2015_3627_symlinked_stdio_targets() {
    require_root!();
    let rt = Runtime::new();
    let mut b = Bundle::new();
    let sentinel = Sentinel::new(&b.host_dir("host"));
    without_dev_mounts(&mut b);
    let dev = b.rootfs().join("dev");
    for entry in ["stdin", "stdout", "stderr", "fd"] {
        let p = dev.join(entry);
        let _ = fs::remove_file(&p);
        symlink(&sentinel.file, &p).unwrap();
    }
    b.spec.args(&["/probe"]);
    let id = unique_id("cve3627");
    let out = rt.run(&id, &b, &[]);
    if out.success() {
        check_stdio(&out.json(), &sentinel);
    } else {
        eprintln!(
            "runtime refused the symlinked stdio entries: {}",
            out.stderr
        );
    }
    rt.delete(&id, true);
    assert!(berth_conformance::host_mounts_under(&sentinel.file).is_empty());
    sentinel.assert_unchanged();
}

/// CVE-2016-9962: the container's PID 1 ptraced a joining `exec` process before it dropped its
/// privileges and took a host fd from it. Here a process inside keeps trying to reach into every
/// runtime process that appears in the container (listing `/proc/PID/fd` takes the same ptrace
/// access check as PTRACE_ATTACH) while the host runs `exec` many times. None may be reachable:
/// the runtime's processes are non-dumpable until `execve`.
#[test]
fn cve_2016_9962_exec_process_not_ptraceable() {
    require_root!();
    let rt = Runtime::new();
    let mut b = Bundle::new();
    b.spec.args(&["/probe", "fd-attack", "/tmp/stop-attack"]);
    let id = unique_id("cve9962");
    let created = rt.create(&id, &b, &[]);
    created.assert_ok();
    rt.start(&id).assert_ok();
    for _ in 0..30 {
        rt.exec(&id, &[], &["/bin/true"]).assert_ok();
    }
    fs::write(b.rootfs().join("tmp/stop-attack"), "").unwrap();
    rt.wait_status(&id, "stopped");
    let v = first_json(&created.stdout_now());
    assert!(v["attempts"].is_u64(), "the attack never reported: {v}");
    assert_eq!(
        v["reached"],
        serde_json::json!([]),
        "a runtime process in the container was reachable by ptrace: {v}"
    );
    rt.delete(&id, true);
}

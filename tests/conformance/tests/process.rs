//! The container process: env, cwd, user, additionalGids, umask, rlimits, oomScoreAdj,
//! noNewPrivileges, sysctl, terminal with a console socket.

use berth_conformance::{
    first_json, read_pty, require_root, unique_id, Bundle, ConsoleSocket, Runtime,
};
use serde_json::json;

#[test]
fn process_env_and_cwd() {
    require_root!();
    let rt = Runtime::new();
    let mut b = Bundle::new();
    b.spec
        .env(&["PATH=/bin", "ONE=1", "SPACED=a b c"])
        .cwd("/etc");
    let v = rt.run_probe(&mut b, &[]);
    assert_eq!(v["cwd"], "/etc");
    assert_eq!(v["env"]["ONE"], "1");
    assert_eq!(v["env"]["SPACED"], "a b c");
    assert_eq!(v["env"]["PATH"], "/bin");
    assert!(v["env"].get("TERM").is_none(), "env not replaced: {v}");
}

#[test]
fn process_cwd_created_when_missing() {
    require_root!();
    let rt = Runtime::new();
    let mut b = Bundle::new();
    b.spec.cwd("/does/not/exist");
    let v = rt.run_probe(&mut b, &[]);
    assert_eq!(v["cwd"], "/does/not/exist");
}

#[test]
fn process_user_and_additional_gids() {
    require_root!();
    let rt = Runtime::new();
    let mut b = Bundle::new();
    b.spec.user(1000, 1000).additional_gids(&[2000, 3000]);
    let v = rt.run_probe(&mut b, &[]);
    assert_eq!(v["status"]["Uid"], json!([1000, 1000, 1000, 1000]));
    assert_eq!(v["status"]["Gid"], json!([1000, 1000, 1000, 1000]));
    let mut groups: Vec<u64> = v["status"]["Groups"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|g| g.as_u64())
        .collect();
    groups.sort();
    assert_eq!(groups, [2000, 3000], "{v}");
    // execve by a non-root uid drops the permitted and effective sets; only ambient
    // capabilities survive, and those need the inheritable set, which the default spec leaves
    // empty (capabilities(7), "Transformation of capabilities during execve()").
    assert_eq!(v["status"]["CapEff"], 0, "{v}");
    assert_eq!(v["status"]["CapPrm"], 0, "{v}");
}

#[test]
fn process_capabilities_from_spec() {
    require_root!();
    let rt = Runtime::new();
    let mut b = Bundle::new();
    let caps = json!(["CAP_CHOWN", "CAP_NET_RAW"]);
    for set in ["bounding", "effective", "permitted"] {
        b.spec
            .set(&format!("/process/capabilities/{set}"), caps.clone());
    }
    b.spec.remove("/process/capabilities/ambient");
    let v = rt.run_probe(&mut b, &[]);
    let want = 1u64 | (1 << 13);
    assert_eq!(v["status"]["CapEff"], want, "{v}");
    assert_eq!(v["status"]["CapBnd"], want, "{v}");
    assert_eq!(v["status"]["CapInh"], 0, "{v}");
}

#[test]
fn process_umask() {
    require_root!();
    let rt = Runtime::new();
    let mut b = Bundle::new();
    b.spec.umask(0o027);
    let v = rt.run_probe(&mut b, &[]);
    assert_eq!(v["status"]["Umask"], 0o027);
}

#[test]
fn process_rlimits() {
    require_root!();
    let rt = Runtime::new();
    let mut b = Bundle::new();
    b.spec
        .rlimit("RLIMIT_NOFILE", 512, 600)
        .rlimit("RLIMIT_CORE", 0, 4096)
        .rlimit("RLIMIT_NPROC", 300, 400);
    let v = rt.run_probe(&mut b, &[]);
    assert_eq!(
        v["limits"]["RLIMIT_NOFILE"],
        json!({"soft": 512, "hard": 600})
    );
    assert_eq!(v["limits"]["RLIMIT_CORE"], json!({"soft": 0, "hard": 4096}));
    assert_eq!(
        v["limits"]["RLIMIT_NPROC"],
        json!({"soft": 300, "hard": 400})
    );
}

#[test]
fn process_oom_score_adj() {
    require_root!();
    let rt = Runtime::new();
    let mut b = Bundle::new();
    // Raising is always allowed; lowering below the caller's needs CAP_SYS_RESOURCE, which this
    // host lacks (see bad_input.rs).
    b.spec.oom_score_adj(500);
    let v = rt.run_probe(&mut b, &[]);
    assert_eq!(v["oom_score_adj"], "500");
}

#[test]
fn process_no_new_privileges() {
    require_root!();
    let rt = Runtime::new();
    for (on, want) in [(true, 1), (false, 0)] {
        let mut b = Bundle::new();
        b.spec.no_new_privileges(on);
        let v = rt.run_probe(&mut b, &[]);
        assert_eq!(v["status"]["NoNewPrivs"], want, "noNewPrivileges={on}: {v}");
    }
}

#[test]
fn linux_sysctl() {
    require_root!();
    let rt = Runtime::new();
    let mut b = Bundle::new();
    // Both are namespaced: kernel.shmmax by the IPC namespace, ip_forward by the network one.
    b.spec
        .sysctl("kernel.shmmax", "12345678")
        .sysctl("net.ipv4.ip_forward", "1");
    let host_fwd = std::fs::read_to_string("/proc/sys/net/ipv4/ip_forward").unwrap();
    let v = rt.run_probe(&mut b, &["dump", "kernel.shmmax", "net.ipv4.ip_forward"]);
    assert_eq!(v["sysctl"]["kernel.shmmax"], "12345678");
    assert_eq!(v["sysctl"]["net.ipv4.ip_forward"], "1");
    assert_eq!(
        std::fs::read_to_string("/proc/sys/net/ipv4/ip_forward").unwrap(),
        host_fwd,
        "the host's sysctl changed"
    );
}

#[test]
fn terminal_with_console_socket() {
    require_root!();
    let rt = Runtime::new();
    let mut b = Bundle::new();
    b.spec.terminal(true).args(&["/probe"]);
    b.spec
        .set("/process/consoleSize", json!({"height": 30, "width": 100}));
    let sock_path = rt.scratch().join("console.sock");
    let mut sock = ConsoleSocket::bind(&sock_path);
    let id = unique_id("tty");
    let sp = sock_path.to_string_lossy().into_owned();
    rt.create(&id, &b, &["--console-socket", &sp]).assert_ok();
    let master = sock.master();
    rt.start(&id).assert_ok();
    let text = read_pty(master);
    let v = first_json(&text);
    for fd in ["0", "1", "2"] {
        let t = v["fds"][fd].as_str().unwrap_or_default();
        assert!(t.starts_with("/dev/pts/"), "fd {fd} is {t}, not the pty");
    }
    assert_eq!(v["dev"]["/dev/console"]["type"], "char", "{}", v["dev"]);
    assert_eq!(
        v["dev"]["/dev/console"]["major"], 136,
        "/dev/console is not a pts device"
    );
    rt.wait_status(&id, "stopped");
}

#[test]
fn terminal_console_size() {
    require_root!();
    let rt = Runtime::new();
    let mut b = Bundle::new();
    b.spec.terminal(true).args(&["/bin/stty", "size"]);
    b.spec
        .set("/process/consoleSize", json!({"height": 30, "width": 100}));
    let sock_path = rt.scratch().join("console.sock");
    let mut sock = ConsoleSocket::bind(&sock_path);
    let id = unique_id("ttysz");
    let sp = sock_path.to_string_lossy().into_owned();
    rt.create(&id, &b, &["--console-socket", &sp]).assert_ok();
    let master = sock.master();
    rt.start(&id).assert_ok();
    let text = read_pty(master);
    assert_eq!(text.trim(), "30 100", "consoleSize not applied");
}

/// `exec --tty --console-socket`: the exec'd process gets its own pty, sent over the socket.
#[test]
fn exec_tty_with_console_socket() {
    require_root!();
    let rt = Runtime::new();
    let mut b = Bundle::new();
    let id = rt.start_sleeper(&mut b);
    let sock_path = rt.scratch().join("exec-console.sock");
    let mut sock = ConsoleSocket::bind(&sock_path);
    let sp = sock_path.to_string_lossy().into_owned();
    let out = rt.exec(
        &id,
        &["--tty", "--console-socket", &sp, "--detach"],
        &["/probe"],
    );
    out.assert_ok();
    let v = first_json(&read_pty(sock.master()));
    for fd in ["0", "1", "2"] {
        let t = v["fds"][fd].as_str().unwrap_or_default();
        assert!(t.starts_with("/dev/pts/"), "exec fd {fd} is {t}, not a pty");
    }
    rt.delete(&id, true).assert_ok();
}

/// `--preserve-fds N`: descriptors 3..3+N of the caller reach the container process; without
/// it, nothing above stdio does.
#[test]
fn preserve_fds_passes_extra_descriptors() {
    require_root!();
    let rt = Runtime::new();
    for preserve in [1, 0] {
        let mut b = Bundle::new();
        let host = b.host_dir("host").join("passed-in");
        std::fs::write(&host, "x").unwrap();
        b.spec.args(&["/probe"]);
        b.write_config();
        let id = unique_id("fds");
        rt.track(&id, b.cgroup_path());
        let script = format!(
            "exec 3<{}; exec {} --root {} run --preserve-fds {preserve} --bundle {} {id}",
            host.display(),
            rt.bin().display(),
            rt.root().display(),
            b.path().display()
        );
        let out = std::process::Command::new("sh")
            .arg("-c")
            .arg(&script)
            .stdin(std::process::Stdio::null())
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{script}: {stdout} {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let v = first_json(&stdout);
        let fd3 = v["fds"]["3"].as_str().unwrap_or_default();
        let host_s = host.to_string_lossy();
        if preserve == 1 {
            assert!(
                fd3.ends_with("passed-in"),
                "fd 3 was not passed: {}",
                v["fds"]
            );
        } else {
            assert!(
                !fd3.contains(host_s.as_ref()),
                "fd 3 leaked without --preserve-fds: {}",
                v["fds"]
            );
        }
    }
}

/// The container starts with nothing blocked and SIGPIPE at its default action, whatever the
/// runtime itself blocks or ignores (Rust programs ignore SIGPIPE; a runtime forwarding
/// signals blocks them): `yes | head` must end, and `kill` must reach a shell.
#[test]
fn process_starts_with_a_clean_signal_state() {
    require_root!();
    let rt = Runtime::new();
    let mut b = Bundle::new();
    b.spec.args(&["/bin/cat", "/proc/self/status"]);
    let id = unique_id("signals");
    let out = rt.run(&id, &b, &[]);
    out.assert_ok();
    let status = out.stdout_now();
    let field = |name: &str| -> u64 {
        let line = status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .unwrap_or_else(|| panic!("no {name} in {status}"));
        u64::from_str_radix(line.trim(), 16).unwrap()
    };
    assert_eq!(
        field("SigBlk:"),
        0,
        "blocked signals leaked into the container"
    );
    let sigpipe = 1u64 << (13 - 1); // SIGPIPE
    assert_eq!(
        field("SigIgn:") & sigpipe,
        0,
        "SIGPIPE ignored in the container"
    );
}

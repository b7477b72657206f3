//! Lifecycle and CLI verbs: create/start/state/kill/delete, run, list, ps, exec, spec, features.

use berth_conformance::{require_root, unique_id, Bundle, Runtime};
use serde_json::Value;
use std::fs;
use std::path::Path;
use std::time::{Duration, Instant};

/// The init waits until the host creates `rootfs/tmp/go`, so the test decides when it exits
/// without any timing assumption.
fn wait_for_go(bundle: &mut Bundle) {
    bundle.spec.args(&[
        "/bin/sh",
        "-c",
        "while [ ! -e /tmp/go ]; do sleep 0.05; done; exit 0",
    ]);
}

fn pid_of(state: &Value) -> u64 {
    state["pid"]
        .as_u64()
        .unwrap_or_else(|| panic!("state has no pid: {state}"))
}

fn wait_gone(pid: u64) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let stat = fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        // Gone, or a zombie waiting for the host's init to reap it: either way not running.
        if stat.is_empty() || stat.split(' ').nth(2) == Some("Z") {
            return;
        }
        assert!(Instant::now() < deadline, "pid {pid} still alive: {stat}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn lifecycle_create_start_stopped_delete() {
    require_root!();
    let rt = Runtime::new();
    let mut b = Bundle::new();
    wait_for_go(&mut b);
    let id = unique_id("life");
    rt.create(&id, &b, &[]).assert_ok();

    let st = rt.state(&id);
    assert_eq!(st["status"], "created", "{st}");
    assert_eq!(st["id"], id.as_str());
    assert_eq!(st["bundle"], b.path().to_string_lossy().as_ref());
    let pid = pid_of(&st);
    assert!(
        Path::new(&format!("/proc/{pid}")).exists(),
        "init pid {pid} not alive"
    );
    // The created init must not have run the user's process yet: it is still the runtime.
    let exe = fs::read_link(format!("/proc/{pid}/exe")).unwrap();
    assert!(
        !exe.ends_with("busybox"),
        "process already exec'd before start: {exe:?}"
    );

    rt.start(&id).assert_ok();
    let st = rt.wait_status(&id, "running");
    assert_eq!(pid_of(&st), pid, "start changed the init pid");

    fs::write(b.rootfs().join("tmp/go"), "").unwrap();
    rt.wait_status(&id, "stopped");

    rt.delete(&id, false).assert_ok();
    rt.cmd(&["state", &id]).assert_fails();
    assert!(!rt.root().join(&id).exists(), "state dir left after delete");
}

#[test]
fn lifecycle_start_twice_and_delete_running_refused() {
    require_root!();
    let rt = Runtime::new();
    let mut b = Bundle::new();
    let id = rt.start_sleeper(&mut b);
    rt.start(&id).assert_fails();
    // A plain delete of a running container must fail and leave it running.
    rt.delete(&id, false).assert_fails();
    assert_eq!(rt.state(&id)["status"], "running");
}

#[test]
fn kill_signal_names_and_numbers() {
    require_root!();
    let rt = Runtime::new();
    for sig in ["USR1", "SIGUSR1", "10"] {
        let mut b = Bundle::new();
        // PID 1 only receives signals it has a handler for, hence the trap.
        b.spec.args(&[
            "/bin/sh",
            "-c",
            "trap 'echo got-usr1 > /tmp/sig; exit 0' USR1; while true; do sleep 0.05; done",
        ]);
        let id = unique_id("kill");
        rt.create(&id, &b, &[]).assert_ok();
        rt.start(&id).assert_ok();
        rt.wait_status(&id, "running");
        rt.kill(&id, sig).assert_ok();
        rt.wait_status(&id, "stopped");
        let got = fs::read_to_string(b.rootfs().join("tmp/sig")).unwrap_or_default();
        assert_eq!(
            got.trim(),
            "got-usr1",
            "signal {sig} not delivered as SIGUSR1"
        );
        rt.delete(&id, false).assert_ok();
    }
}

#[test]
fn kill_default_and_kill_9() {
    require_root!();
    let rt = Runtime::new();
    let mut b = Bundle::new();
    // A shell with a TERM handler: the default signal of `kill` is SIGTERM.
    b.spec.args(&[
        "/bin/sh",
        "-c",
        "trap 'echo got-term > /tmp/sig; exit 0' TERM; while true; do sleep 0.05; done",
    ]);
    let id = unique_id("killdef");
    rt.create(&id, &b, &[]).assert_ok();
    rt.start(&id).assert_ok();
    rt.wait_status(&id, "running");
    rt.cmd(&["kill", &id]).assert_ok();
    rt.wait_status(&id, "stopped");
    assert_eq!(
        fs::read_to_string(b.rootfs().join("tmp/sig"))
            .unwrap_or_default()
            .trim(),
        "got-term"
    );

    let mut b2 = Bundle::new();
    let id2 = rt.start_sleeper(&mut b2);
    rt.kill(&id2, "9").assert_ok();
    rt.wait_status(&id2, "stopped");
}

#[test]
fn kill_all_reaches_exec_processes() {
    require_root!();
    let rt = Runtime::new();
    let mut b = Bundle::new();
    let id = rt.start_sleeper(&mut b);
    let pidfile = rt.scratch().join("exec.pid");
    let pf = pidfile.to_string_lossy().into_owned();
    rt.exec(
        &id,
        &["--detach", "--pid-file", &pf],
        &["/bin/sleep", "1000"],
    )
    .assert_ok();
    let exec_pid: u64 = fs::read_to_string(&pidfile)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    rt.cmd(&["kill", "--all", &id, "KILL"]).assert_ok();
    rt.wait_status(&id, "stopped");
    wait_gone(exec_pid);
}

#[test]
fn delete_force_running_container() {
    require_root!();
    let rt = Runtime::new();
    let mut b = Bundle::new();
    let id = rt.start_sleeper(&mut b);
    let pid = pid_of(&rt.state(&id));
    rt.delete(&id, true).assert_ok();
    rt.cmd(&["state", &id]).assert_fails();
    wait_gone(pid);
    assert!(
        berth_conformance::cgroup_dirs(b.cgroup_path()).is_empty(),
        "cgroup left after delete --force"
    );
}

#[test]
fn state_after_init_died_on_its_own() {
    require_root!();
    let rt = Runtime::new();
    let mut b = Bundle::new();
    let id = rt.start_sleeper(&mut b);
    let pid = pid_of(&rt.state(&id));
    // The test started this process (through the runtime), so it may kill it by pid.
    assert!(std::process::Command::new("kill")
        .args(["-9", &pid.to_string()])
        .status()
        .unwrap()
        .success());
    rt.wait_status(&id, "stopped");
    rt.delete(&id, false).assert_ok();
    rt.cmd(&["state", &id]).assert_fails();
}

#[test]
fn run_foreground_propagates_exit_code() {
    require_root!();
    let rt = Runtime::new();
    for (args, code) in [
        (vec!["/probe", "exit", "42"], 42),
        (vec!["/bin/sh", "-c", "exit 3"], 3),
        (vec!["/bin/true"], 0),
    ] {
        let mut b = Bundle::new();
        b.spec.args(&args);
        let id = unique_id("exit");
        let out = rt.run(&id, &b, &[]);
        assert_eq!(out.code(), Some(code), "{out}");
        // Without --keep, a foreground run deletes the container when it exits.
        rt.cmd(&["state", &id]).assert_fails();
    }
}

#[test]
fn run_foreground_prints_probe_output() {
    require_root!();
    let rt = Runtime::new();
    let mut b = Bundle::new();
    let v = rt.run_probe(&mut b, &[]);
    assert_eq!(v["hostname"], "berth-test");
    assert_eq!(
        v["pid"], 1,
        "the process is not PID 1 of a new PID namespace: {v}"
    );
}

#[test]
fn run_detached_with_pid_file() {
    require_root!();
    let rt = Runtime::new();
    let mut b = Bundle::new();
    b.spec.args(&["/bin/sleep", "1000"]);
    let id = unique_id("rund");
    let pidfile = rt.scratch().join("run.pid");
    let pf = pidfile.to_string_lossy().into_owned();
    rt.run(&id, &b, &["--detach", "--pid-file", &pf])
        .assert_ok();
    let st = rt.wait_status(&id, "running");
    let from_file: u64 = fs::read_to_string(&pidfile)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert_eq!(from_file, pid_of(&st));
    rt.delete(&id, true).assert_ok();
}

#[test]
fn create_pid_file_matches_state() {
    require_root!();
    let rt = Runtime::new();
    let b = Bundle::new();
    let id = unique_id("pidf");
    let pidfile = rt.scratch().join("create.pid");
    let pf = pidfile.to_string_lossy().into_owned();
    rt.create(&id, &b, &["--pid-file", &pf]).assert_ok();
    let from_file: u64 = fs::read_to_string(&pidfile)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert_eq!(from_file, pid_of(&rt.state(&id)));
}

#[test]
fn list_table_json_quiet() {
    require_root!();
    let rt = Runtime::new();
    let mut b1 = Bundle::new();
    let id1 = rt.start_sleeper(&mut b1);
    let b2 = Bundle::new();
    let id2 = unique_id("listc");
    rt.create(&id2, &b2, &[]).assert_ok();

    let table = rt.cmd(&["list"]);
    table.assert_ok();
    let header = table.stdout.lines().next().unwrap_or_default();
    for col in ["ID", "PID", "STATUS", "BUNDLE", "CREATED", "OWNER"] {
        assert!(header.contains(col), "list header lacks {col}: {table}");
    }
    let line1 = table
        .stdout
        .lines()
        .find(|l| l.starts_with(&id1))
        .expect("id1 in table");
    assert!(line1.contains("running"), "{line1}");
    let line2 = table
        .stdout
        .lines()
        .find(|l| l.starts_with(&id2))
        .expect("id2 in table");
    assert!(line2.contains("created"), "{line2}");

    let js = rt.cmd(&["list", "--format", "json"]);
    js.assert_ok();
    let arr = js.json();
    let arr = arr.as_array().expect("list json is an array");
    assert_eq!(arr.len(), 2, "{js}");
    let e1 = arr
        .iter()
        .find(|e| e["id"] == id1.as_str())
        .expect("id1 in json");
    assert_eq!(e1["status"], "running");
    assert_eq!(e1["bundle"], b1.path().to_string_lossy().as_ref());
    assert!(e1["pid"].as_u64().unwrap_or(0) > 0);

    let q = rt.cmd(&["list", "-q"]);
    q.assert_ok();
    let mut ids: Vec<&str> = q.stdout.lines().collect();
    ids.sort();
    let mut want = vec![id1.as_str(), id2.as_str()];
    want.sort();
    assert_eq!(ids, want);
}

#[test]
fn ps_json_and_table() {
    require_root!();
    let rt = Runtime::new();
    let mut b = Bundle::new();
    let id = rt.start_sleeper(&mut b);
    let pid = pid_of(&rt.state(&id));
    let js = rt.cmd(&["ps", "--format", "json", &id]);
    js.assert_ok();
    let pids: Vec<u64> = js
        .json()
        .as_array()
        .expect("ps json is an array")
        .iter()
        .filter_map(Value::as_u64)
        .collect();
    assert_eq!(pids, vec![pid], "{js}");
    let table = rt.cmd(&["ps", &id]);
    table.assert_ok();
    assert!(table.stdout.contains("PID"), "{table}");
    assert!(
        table
            .stdout
            .lines()
            .any(|l| l.contains(&pid.to_string()) && l.contains("sleep")),
        "{table}"
    );
}

#[test]
fn exec_args_joins_the_container() {
    require_root!();
    let rt = Runtime::new();
    let mut b = Bundle::new();
    let id = rt.start_sleeper(&mut b);
    let init = pid_of(&rt.state(&id)).to_string();
    let out = rt.exec(&id, &[], &["/probe"]);
    out.assert_ok();
    let v = out.json();
    for (probe_ns, host_ns) in [
        ("pid", "pid"),
        ("mnt", "mnt"),
        ("net", "net"),
        ("uts", "uts"),
        ("ipc", "ipc"),
    ] {
        assert_eq!(
            v["ns"][probe_ns],
            berth_conformance::ns_link(&init, host_ns).as_str(),
            "exec'd process is not in the init's {host_ns} namespace"
        );
    }
    assert_ne!(v["pid"], 1);
    assert_eq!(v["hostname"], "berth-test");
    // Exit code of the exec'd process is propagated.
    let out = rt.exec(&id, &[], &["/bin/sh", "-c", "exit 7"]);
    assert_eq!(out.code(), Some(7), "{out}");
}

#[test]
fn exec_process_file() {
    require_root!();
    let rt = Runtime::new();
    let mut b = Bundle::new();
    let id = rt.start_sleeper(&mut b);
    let pfile = rt.scratch().join("process.json");
    fs::write(
        &pfile,
        serde_json::json!({
            "terminal": false,
            "user": { "uid": 1000, "gid": 1000 },
            "args": ["/probe"],
            "env": ["FROM_PROCESS_FILE=yes", "PATH=/bin"],
            "cwd": "/tmp"
        })
        .to_string(),
    )
    .unwrap();
    let pf = pfile.to_string_lossy().into_owned();
    let out = rt.cmd(&["exec", "--process", &pf, &id]);
    out.assert_ok();
    let v = out.json();
    assert_eq!(v["env"]["FROM_PROCESS_FILE"], "yes");
    assert_eq!(v["cwd"], "/tmp");
    assert_eq!(v["status"]["Uid"][0], 1000);
    assert_eq!(v["status"]["Gid"][0], 1000);
}

#[test]
fn exec_cwd_env_user() {
    require_root!();
    let rt = Runtime::new();
    let mut b = Bundle::new();
    let id = rt.start_sleeper(&mut b);
    let out = rt.exec(
        &id,
        &[
            "--cwd",
            "/etc",
            "--env",
            "EXEC_VAR=hello",
            "--user",
            "1000:2000",
        ],
        &["/probe"],
    );
    out.assert_ok();
    let v = out.json();
    assert_eq!(v["cwd"], "/etc");
    assert_eq!(v["env"]["EXEC_VAR"], "hello");
    // The spec's env is the base that --env adds to.
    assert!(
        v["env"]["PATH"].as_str().unwrap_or("").contains("/bin"),
        "{v}"
    );
    assert_eq!(
        v["status"]["Uid"],
        serde_json::json!([1000, 1000, 1000, 1000])
    );
    assert_eq!(
        v["status"]["Gid"],
        serde_json::json!([2000, 2000, 2000, 2000])
    );
}

/// CVE-2022-29162: `exec --cap` used to put the capability into the inheritable set too.
#[test]
fn cve_2022_29162_exec_cap_not_inheritable() {
    require_root!();
    let rt = Runtime::new();
    let mut b = Bundle::new();
    let id = rt.start_sleeper(&mut b);
    let out = rt.exec(&id, &["--cap", "CAP_NET_RAW"], &["/probe"]);
    out.assert_ok();
    let v = out.json();
    let cap_net_raw = 1u64 << 13;
    let eff = v["status"]["CapEff"].as_u64().expect("CapEff");
    assert_ne!(
        eff & cap_net_raw,
        0,
        "--cap CAP_NET_RAW not effective: {eff:#x}"
    );
    assert_eq!(
        v["status"]["CapInh"], 0,
        "inheritable capabilities set: {v}"
    );
}

#[test]
fn exec_detach_pid_file() {
    require_root!();
    let rt = Runtime::new();
    let mut b = Bundle::new();
    let id = rt.start_sleeper(&mut b);
    let init = pid_of(&rt.state(&id)).to_string();
    let pidfile = rt.scratch().join("execd.pid");
    let pf = pidfile.to_string_lossy().into_owned();
    rt.exec(
        &id,
        &["--detach", "--pid-file", &pf],
        &["/bin/sleep", "1000"],
    )
    .assert_ok();
    let pid = fs::read_to_string(&pidfile).unwrap().trim().to_string();
    assert!(
        Path::new(&format!("/proc/{pid}")).exists(),
        "detached exec not running"
    );
    assert_eq!(
        berth_conformance::ns_link(&pid, "pid"),
        berth_conformance::ns_link(&init, "pid")
    );
    let js = rt.cmd(&["ps", "--format", "json", &id]).json();
    assert!(
        js.as_array()
            .unwrap()
            .iter()
            .any(|p| p.as_u64().map(|p| p.to_string()) == Some(pid.clone())),
        "ps does not list the exec'd pid {pid}: {js}"
    );
}

#[test]
fn spec_default_rootless_and_bundle() {
    require_root!();
    let rt = Runtime::new();
    let dir = berth_conformance::TempDir::new("spec");
    let d = dir.path().to_string_lossy().into_owned();
    rt.cmd(&["spec", "--bundle", &d]).assert_ok();
    let v: Value =
        serde_json::from_str(&fs::read_to_string(dir.path().join("config.json")).unwrap())
            .expect("spec wrote JSON");
    assert!(
        v["ociVersion"]
            .as_str()
            .is_some_and(|s| s.starts_with("1.")),
        "{v}"
    );
    assert_eq!(v["root"]["path"], "rootfs");
    assert!(v["process"]["args"]
        .as_array()
        .is_some_and(|a| !a.is_empty()));
    let has_ns = |v: &Value, t: &str| {
        v["linux"]["namespaces"]
            .as_array()
            .is_some_and(|a| a.iter().any(|n| n["type"] == t))
    };
    for t in ["pid", "mount", "network", "ipc", "uts"] {
        assert!(has_ns(&v, t), "default spec lacks {t} namespace");
    }
    // spec refuses to overwrite an existing config.json.
    rt.cmd(&["spec", "--bundle", &d]).assert_fails();

    let dir2 = berth_conformance::TempDir::new("spec");
    let d2 = dir2.path().to_string_lossy().into_owned();
    rt.cmd(&["spec", "--rootless", "--bundle", &d2]).assert_ok();
    let r: Value =
        serde_json::from_str(&fs::read_to_string(dir2.path().join("config.json")).unwrap())
            .unwrap();
    assert!(has_ns(&r, "user"), "rootless spec lacks a user namespace");
    assert!(r["linux"]["uidMappings"]
        .as_array()
        .is_some_and(|a| !a.is_empty()));
    assert!(r["linux"]["gidMappings"]
        .as_array()
        .is_some_and(|a| !a.is_empty()));
}

#[test]
fn features_is_valid_json() {
    require_root!();
    let rt = Runtime::new();
    let out = rt.cmd(&["features"]);
    out.assert_ok();
    let v = out.json();
    assert!(
        v["ociVersionMin"]
            .as_str()
            .is_some_and(|s| s.starts_with("1.")),
        "{v}"
    );
    assert!(
        v["ociVersionMax"]
            .as_str()
            .is_some_and(|s| s.starts_with("1.")),
        "{v}"
    );
    let hooks = v["hooks"].as_array().expect("features lists hooks");
    assert!(hooks.iter().any(|h| h == "prestart"), "{v}");
    let ns = v["linux"]["namespaces"]
        .as_array()
        .expect("features lists namespaces");
    for t in ["pid", "mount", "network", "user", "cgroup", "ipc", "uts"] {
        assert!(
            ns.iter().any(|n| n == t),
            "features lacks namespace {t}: {v}"
        );
    }
}

/// A runtime SIGKILLed at any point of `create` leaves a state that `delete --force` removes
/// entirely, the cgroup included (the cgroup is recorded before it is made).
#[test]
fn delete_force_after_create_was_killed_removes_everything() {
    require_root!();
    let rt = Runtime::new();
    for delay_us in [0u64, 500, 1000, 2000, 3000, 5000, 8000, 12000, 20000] {
        let mut b = Bundle::new();
        b.spec.args(&["/bin/sleep", "1000"]);
        b.write_config();
        let id = unique_id("killed");
        rt.track(&id, b.cgroup_path());
        let mut child = std::process::Command::new(rt.bin())
            .arg("--root")
            .arg(rt.root())
            .args(["create", "--bundle"])
            .arg(b.path())
            .arg(&id)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(std::time::Duration::from_micros(delay_us));
        child.kill().unwrap();
        child.wait().unwrap();
        // runc also lets `delete --force` of an unknown id succeed; either way nothing stays.
        let _ = rt.delete(&id, true);
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        while !berth_conformance::cgroup_dirs(b.cgroup_path()).is_empty()
            && std::time::Instant::now() < deadline
        {
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        assert!(
            berth_conformance::cgroup_dirs(b.cgroup_path()).is_empty(),
            "cgroup left after create was killed at {delay_us} us and delete --force"
        );
        assert!(
            !rt.root().join(&id).exists(),
            "state directory left for {id}"
        );
    }
}

//! End-to-end tests of the container commands (`run`, `ps`, `logs`, `stop`, `rm`, `exec`,
//! `inspect`, `wait`) against the real `berth` binary, as root. Each test has its own `--root`
//! under /tmp, an image built offline (`berth import` of a rootfs made from /bin/busybox),
//! and its own cgroup parent under /berth-test/; everything is removed on drop, even when the
//! test fails. Without root they skip with a visible message.

mod common;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use common::fixture::*;

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
    let made = fx.berth(&["network", "create", "--subnet", "10.99.7.0/24", "ipnet"]);
    assert!(made.status.success(), "{}", text(&made.stderr));
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
        // The subnet's own address, its broadcast and the gateway's are refused at create.
        (
            &["--network", "ipnet", "--ip", "10.99.7.0"][..],
            "is not in the subnet",
        ),
        (
            &["--network", "ipnet", "--ip", "10.99.7.255"][..],
            "is not in the subnet",
        ),
        (
            &["--network", "ipnet", "--ip", "10.99.7.1"][..],
            "address 10.99.7.1 is already in use on network ipnet",
        ),
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
    assert!(fx.berth(&["network", "rm", "ipnet"]).status.success());
    fx.assert_no_leaks();
}

#[test]
fn concurrent_run_rm_gives_distinct_containers_and_no_leaks() {
    if !prerequisites() {
        return;
    }
    let fx = Fixture::new();
    let outs: Vec<Output> = std::thread::scope(|s| {
        // The issue's 32 at once.
        let hs: Vec<_> = (0..32)
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
    assert_eq!(hosts.len(), 32, "{hosts:?}");
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
    // Nothing serves its stdio any more: attach says so.
    let out = fx.berth(&["attach", &id]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("is gone"),
        "{}",
        text(&out.stderr)
    );
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
        // 32 loops at once, as the issue asks.
        let hs: Vec<_> = (0..32)
            .map(|t| {
                let fx = &fx;
                s.spawn(move || {
                    let mut kept = Vec::new();
                    for i in 0..2 {
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

// ---- the monitor's pty and stdin, `attach`, detach keys ----

/// A shell command run on a pty by util-linux `script`: what we write goes to its terminal,
/// what the terminal shows is collected by a thread.
struct Term {
    child: std::process::Child,
    stdin: Option<std::process::ChildStdin>,
    rx: std::sync::mpsc::Receiver<Vec<u8>>,
    seen: Vec<u8>,
}

impl Term {
    /// None (after saying so) when `script` is missing.
    fn spawn(cmd: &str) -> Option<Self> {
        use std::io::Read;
        if !Path::new("/usr/bin/script").exists() {
            eprintln!("skipping: needs /usr/bin/script (util-linux) for a terminal");
            return None;
        }
        let mut child = Command::new("/usr/bin/script")
            .args(["-qec", cmd, "/dev/null"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut out = child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = out.read(&mut buf) {
                if n == 0 || tx.send(buf[..n].to_vec()).is_err() {
                    break;
                }
            }
        });
        let stdin = child.stdin.take();
        Some(Self {
            child,
            stdin,
            rx,
            seen: Vec::new(),
        })
    }

    fn send(&mut self, bytes: &[u8]) {
        let s = self.stdin.as_mut().unwrap();
        s.write_all(bytes).unwrap();
        s.flush().unwrap();
    }

    /// Waits until the terminal has shown `needle` (after what earlier calls consumed).
    fn expect(&mut self, needle: &str) {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        loop {
            if let Some(at) = text(&self.seen).find(needle) {
                let cut = at + needle.len();
                self.seen.drain(..cut.min(self.seen.len()));
                return;
            }
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            match self.rx.recv_timeout(left) {
                Ok(chunk) => self.seen.extend_from_slice(&chunk),
                Err(_) => panic!(
                    "{needle:?} never shown; the terminal shows {:?}",
                    text(&self.seen)
                ),
            }
        }
    }

    /// The exit code of the command, and what it showed after the last `expect`.
    fn wait(mut self) -> (Option<i32>, String) {
        let status = self.child.wait().unwrap();
        drop(self.stdin.take());
        while let Ok(chunk) = self.rx.recv_timeout(std::time::Duration::from_secs(5)) {
            self.seen.extend_from_slice(&chunk);
        }
        (status.code(), text(&self.seen))
    }
}

impl Fixture {
    /// The shell command line of `berth ARGS` for this fixture (for `script`).
    fn line(&self, args: &str) -> String {
        let ns = match &self.netns {
            Some(ns) => format!("nsenter --net={} ", ns.display()),
            None => String::new(),
        };
        format!("{ns}{BERTH} --root {} {args}", self.root().display())
    }

    fn status_of(&self, id: &str) -> String {
        text(
            &self
                .berth(&["inspect", "-f", "{{.State.Status}} {{.State.ExitCode}}", id])
                .stdout,
        )
        .trim()
        .to_owned()
    }
}

#[test]
fn run_dit_serves_a_pty_that_attach_types_into_resizes_and_detaches_from() {
    if !prerequisites() {
        return;
    }
    let fx = Fixture::new();
    let out = fx.run(&["-dit", "--name", "shell", "busybox", "sh"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    // The attach client's terminal is 30x100: the container's pty follows it.
    let Some(mut t) = Term::spawn(&format!(
        "stty rows 30 cols 100; {}",
        fx.line("attach shell")
    )) else {
        return;
    };
    t.send(b"echo hi-$((40+2)); tty; stty size\r");
    t.expect("hi-42");
    t.expect("/dev/pts/");
    t.expect("30 100");
    // ctrl-p ctrl-q: the client leaves with 0, the container runs on.
    t.send(b"\x10\x11");
    let (code, shown) = t.wait();
    assert_eq!(code, Some(0));
    assert!(shown.contains("read escape sequence"), "{shown}");
    assert_eq!(fx.status_of("shell"), "running 0");
    // Everything the pty showed is in the log.
    let logs = text(&fx.berth(&["logs", "shell"]).stdout);
    assert!(logs.contains("hi-42"), "{logs}");

    // Starting it again fails and leaves its monitor's socket alone.
    // (`start` without -a reports per container and exits 1, like `stop`/`rm`.)
    for (args, code) in [
        (&["start", "-a", "shell"][..], 125),
        (&["start", "shell"][..], 1),
    ] {
        let out = fx.berth(args);
        assert_eq!(out.status.code(), Some(code), "{args:?}");
        assert!(
            text(&out.stderr).contains("already running"),
            "{}",
            text(&out.stderr)
        );
    }

    // Two clients at once; other detach keys; the shell's exit ends both with its code.
    let mut a = Term::spawn(&fx.line("attach --detach-keys z,z shell")).unwrap();
    let mut b = Term::spawn(&fx.line("attach shell")).unwrap();
    std::thread::sleep(std::time::Duration::from_millis(500));
    // A "z" not followed by another "z" is passed on.
    a.send(b"echo z-$((1+1))\r");
    a.expect("z-2");
    b.expect("z-2");
    a.send(b"exit 7\r");
    assert_eq!(a.wait().0, Some(7));
    assert_eq!(b.wait().0, Some(7));
    assert_eq!(fx.status_of("shell"), "exited 7");
    assert!(fx.berth(&["rm", "shell"]).status.success());
    fx.assert_no_leaks();
}

#[test]
fn create_t_then_start_runs_on_a_pty_under_the_monitor() {
    if !prerequisites() {
        return;
    }
    let fx = Fixture::new();
    let out = fx.berth(&[
        "create",
        "-t",
        "--cgroup-parent",
        &fx.cgroup_parent,
        "busybox",
        "sh",
        "-c",
        "tty; test -t 0 && echo stdin-is-a-tty; exit 4",
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let id = text(&out.stdout).trim().to_owned();
    assert!(fx.berth(&["start", &id]).status.success());
    assert_eq!(text(&fx.berth(&["wait", &id]).stdout).trim(), "4");
    let logs = text(&fx.berth(&["logs", &id]).stdout);
    assert!(logs.contains("/dev/pts/0"), "{logs}");
    assert!(logs.contains("stdin-is-a-tty"), "{logs}");
    assert!(fx.berth(&["rm", &id]).status.success());
    fx.assert_no_leaks();
}

#[test]
fn attach_without_a_tty_streams_stdin_stdout_stderr_and_proxies_signals() {
    if !prerequisites() {
        return;
    }
    use std::io::{BufRead, Read};
    let fx = Fixture::new();
    // -di: the monitor keeps stdin open until a client writes to it.
    let out = fx.run(&[
        "-di",
        "busybox",
        "sh",
        "-c",
        "read x; echo got-$x; echo to-stderr >&2; exit 3",
    ]);
    let id = text(&out.stdout).trim().to_owned();
    let mut child = fx
        .cmd(BERTH)
        .arg("--root")
        .arg(fx.root())
        .args(["attach", &id])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.as_mut().unwrap().write_all(b"abc\n").unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(3), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "got-abc\n");
    assert_eq!(text(&out.stderr), "to-stderr\n");
    assert_eq!(fx.status_of(&id), "exited 3");
    assert!(fx.berth(&["rm", &id]).status.success());

    // Two clients; SIGTERM to one with --sig-proxy reaches the container; the other
    // (--sig-proxy=false, --no-stdin) sees the same output and the same exit code.
    let out = fx.run(&[
        "-d",
        "busybox",
        "sh",
        "-c",
        "trap 'echo got-term; exit 9' TERM; while :; do echo tick; sleep 0.1; done",
    ]);
    let id = text(&out.stdout).trim().to_owned();
    let attach = |extra: &[&str]| {
        fx.cmd(BERTH)
            .arg("--root")
            .arg(fx.root())
            .arg("attach")
            .args(extra)
            .arg(&id)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    };
    let mut proxy = attach(&[]);
    let quiet = attach(&["--sig-proxy=false", "--no-stdin"]);
    // Once a tick arrives, the client is connected and its signals are being forwarded.
    let mut first = String::new();
    let mut proxy_out = std::io::BufReader::new(proxy.stdout.take().unwrap());
    proxy_out.read_line(&mut first).unwrap();
    assert_eq!(first, "tick\n");
    assert!(Command::new("kill")
        .args(["-TERM", &proxy.id().to_string()])
        .status()
        .unwrap()
        .success());
    let mut rest = String::new();
    proxy_out.read_to_string(&mut rest).unwrap();
    assert_eq!(proxy.wait().unwrap().code(), Some(9));
    assert!(rest.ends_with("got-term\n"), "{rest}");
    let q = quiet.wait_with_output().unwrap();
    assert_eq!(q.status.code(), Some(9), "{}", text(&q.stderr));
    assert!(
        text(&q.stdout).ends_with("tick\ngot-term\n"),
        "{}",
        text(&q.stdout)
    );
    assert!(fx.berth(&["rm", &id]).status.success());
    fx.assert_no_leaks();
}

#[test]
fn attach_refuses_stopped_unknown_and_bad_input_like_docker() {
    if !prerequisites() {
        return;
    }
    let fx = Fixture::new();
    let out = fx.run(&["--name", "done", "busybox", "true"]);
    assert!(out.status.success());
    let out = fx.berth(&["attach", "done"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("cannot attach to a stopped container, start it first"),
        "{}",
        text(&out.stderr)
    );
    let out = fx.berth(&["attach", "no-such-container"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("no-such-container"),
        "{}",
        text(&out.stderr)
    );

    let out = fx.run(&["-dit", "--name", "tty", "busybox", "sh"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    for keys in ["ctrl-1", "alt-x", "", "ctrl-p,"] {
        let out = fx.berth(&["attach", "--detach-keys", keys, "tty"]);
        assert_eq!(out.status.code(), Some(1), "{keys:?}");
        assert!(
            text(&out.stderr).contains("invalid detach keys"),
            "{}",
            text(&out.stderr)
        );
    }
    // A tty container's stdin wants a terminal (ours is /dev/null)...
    let out = fx.berth(&["attach", "tty"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("the input device is not a TTY"),
        "{}",
        text(&out.stderr)
    );
    // ... unless stdin is not attached; a paused container is refused.
    assert!(fx.berth(&["pause", "tty"]).status.success());
    let out = fx.berth(&["attach", "--no-stdin", "tty"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("paused"),
        "{}",
        text(&out.stderr)
    );
    assert!(fx.berth(&["unpause", "tty"]).status.success());
    // A client that speaks garbage is dropped; the container and its socket stay fine.
    let sock = fx
        .root()
        .join("containers")
        .join(text(&fx.berth(&["inspect", "-f", "{{.Id}}", "tty"]).stdout).trim())
        .join("attach.sock");
    let dir = std::fs::File::open(sock.parent().unwrap()).unwrap();
    let short = format!(
        "/proc/self/fd/{}/attach.sock",
        std::os::fd::AsRawFd::as_raw_fd(&dir)
    );
    let mut s = std::os::unix::net::UnixStream::connect(&short).unwrap();
    s.write_all(&[42, 0, 0, 0, 1, 0]).unwrap();
    let mut rest = Vec::new();
    let _ = std::io::Read::read_to_end(&mut s, &mut rest);
    assert_eq!(fx.status_of("tty"), "running 0");
    assert!(fx.berth(&["rm", "-f", "tty", "done"]).status.success());
    fx.assert_no_leaks();
}

// ---- --init ----

/// A static `berth-init` (`$BERTH_INIT_PATH` when set), built like the conformance probe:
/// once per test process, in its own target directory, with `+crt-static`.
fn static_berth_init() -> PathBuf {
    static INIT: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    INIT.get_or_init(|| {
        if let Some(p) = std::env::var_os("BERTH_INIT_PATH").filter(|p| !p.is_empty()) {
            return PathBuf::from(p);
        }
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
        let target_dir = root.join("target/berth-init");
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
        let status = Command::new(cargo)
            .current_dir(&root)
            .env("RUSTFLAGS", "-C target-feature=+crt-static")
            .args(["build", "--quiet", "-p", "berth-init", "--release"])
            .args(["--target", "x86_64-unknown-linux-gnu", "--target-dir"])
            .arg(&target_dir)
            .status()
            .expect("running cargo to build berth-init");
        assert!(status.success(), "building berth-init failed: {status}");
        target_dir.join("x86_64-unknown-linux-gnu/release/berth-init")
    })
    .clone()
}

impl Fixture {
    /// `berth ARGS` with `BERTH_INIT_PATH` set to `init`.
    fn berth_with_init(&self, init: &Path, args: &[&str]) -> Output {
        self.cmd(BERTH)
            .arg("--root")
            .arg(self.root())
            .args(args)
            .env("BERTH_INIT_PATH", init)
            .stdin(Stdio::null())
            .output()
            .unwrap()
    }
}

#[test]
fn init_reaps_orphans_forwards_signals_and_keeps_the_exit_code() {
    if !prerequisites() {
        return;
    }
    let fx = Fixture::new();
    let init = static_berth_init();
    let cg = fx.cgroup_parent.clone();
    // PID 1 is the init, bound read-only; the command's code is kept.
    let out = fx.berth_with_init(
        &init,
        &[
            "run", "--rm", "--init", "--cgroup-parent", &cg, "busybox", "sh", "-c",
            "tr '\\0' ' ' </proc/1/cmdline; echo; echo x >/sbin/docker-init || echo read-only; exit 3",
        ],
    );
    assert_eq!(out.status.code(), Some(3), "{}", text(&out.stderr));
    let so = text(&out.stdout);
    assert!(so.starts_with("/sbin/docker-init -- sh -c "), "{so}");
    assert!(so.contains("read-only"), "{so}");
    // A command that does not exist: the init says so and exits 127, as a shell would.
    let out = fx.berth_with_init(
        &init,
        &[
            "run",
            "--rm",
            "--init",
            "--cgroup-parent",
            &cg,
            "busybox",
            "no-such-command",
        ],
    );
    assert_eq!(out.status.code(), Some(127));
    assert!(
        text(&out.stderr).contains("cannot run no-such-command"),
        "{}",
        text(&out.stderr)
    );

    // An orphan (its parent exits at once) lands on PID 1. With --init it is reaped; without,
    // PID 1 (sleep) never collects it and it stays a zombie: the control that shows the check
    // can see one.
    let orphan_state = |id: &str| -> Option<String> {
        let out = fx.berth(&["exec", id, "sh", "-c", "cat /proc/$(cat /tmp/orphan)/stat"]);
        out.status.success().then(|| {
            text(&out.stdout)
                .split_whitespace()
                .nth(2)
                .unwrap_or("")
                .to_owned()
        })
    };
    let start =
        |with_init: bool| -> String {
            let mut args = vec!["run", "-d", "--cgroup-parent", &cg];
            if with_init {
                args.push("--init");
            }
            args.extend(["busybox", "sleep", "1000"]);
            let out = fx.berth_with_init(&init, &args);
            assert!(out.status.success(), "{}", text(&out.stderr));
            let id = text(&out.stdout).trim().to_owned();
            let out = fx.berth(&[
            "exec", &id, "sh", "-c",
            "sh -c 'echo $$ >/tmp/orphan.new; mv /tmp/orphan.new /tmp/orphan; sleep 0.2' & exit 0",
        ]);
            assert!(out.status.success(), "{}", text(&out.stderr));
            id
        };
    let eventually = |id: &str, want: Option<&str>| {
        for _ in 0..200 {
            if orphan_state(id).as_deref() == want {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        panic!(
            "the orphan in {id} never reached {want:?}: {:?}",
            orphan_state(id)
        );
    };
    let control = start(false);
    eventually(&control, Some("Z"));
    let with_init = start(true);
    // Written, then gone from /proc: exited and reaped.
    for _ in 0..200 {
        let exists = fx.berth(&["exec", &with_init, "sh", "-c", "test -e /tmp/orphan"]);
        if exists.status.success() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    assert!(
        fx.berth(&["exec", &with_init, "sh", "-c", "test -e /tmp/orphan"])
            .status
            .success(),
        "the orphan never ran"
    );
    eventually(&with_init, None);
    let out = fx.berth(&["inspect", "-f", "{{.HostConfig.Init}}", &with_init]);
    assert_eq!(text(&out.stdout).trim(), "true");

    // SIGTERM reaches the command (a PID 1 sleep would ignore it): 128+15.
    assert!(fx
        .berth(&["kill", "-s", "TERM", &with_init])
        .status
        .success());
    assert_eq!(text(&fx.berth(&["wait", &with_init]).stdout).trim(), "143");
    assert!(fx
        .berth(&["rm", "-f", &with_init, &control])
        .status
        .success());
    fx.assert_no_leaks();
}

#[test]
fn init_that_is_missing_dynamic_or_not_elf_is_refused_before_anything_exists() {
    if !prerequisites() {
        return;
    }
    let fx = Fixture::new();
    let cg = fx.cgroup_parent.clone();
    for (path, says) in [
        ("/bin/bash", "is dynamically linked"),
        (
            "/etc/passwd",
            "is not a 64-bit little-endian ELF executable",
        ),
        ("/no/such/berth-init", "reading /no/such/berth-init"),
    ] {
        let out = fx.berth_with_init(
            Path::new(path),
            &[
                "run",
                "--rm",
                "--init",
                "--cgroup-parent",
                &cg,
                "busybox",
                "true",
            ],
        );
        assert_eq!(out.status.code(), Some(125), "{path}");
        assert!(
            text(&out.stderr).contains(says),
            "{path}: {}",
            text(&out.stderr)
        );
        let out = fx.berth_with_init(
            Path::new(path),
            &[
                "create",
                "--init",
                "--cgroup-parent",
                &cg,
                "busybox",
                "true",
            ],
        );
        assert_eq!(out.status.code(), Some(125), "{path}");
    }
    fx.assert_no_leaks();
}

#[test]
fn run_it_detaches_with_the_keys_and_start_ai_goes_through_the_monitor_too() {
    if !prerequisites() {
        return;
    }
    let fx = Fixture::new();
    let cg = fx.cgroup_parent.clone();
    let Some(mut t) = Term::spawn(&fx.line(&format!(
        "run -it --rm --name it --cgroup-parent {cg} busybox sh"
    ))) else {
        return;
    };
    // The shell's banner is written before we could have typed: nothing is lost.
    t.expect("BusyBox");
    t.send(b"echo a-$((1+1))\r");
    t.expect("a-2");
    t.send(b"\x10\x11");
    assert_eq!(t.wait().0, Some(0));
    assert_eq!(fx.status_of("it"), "running 0");
    let mut t = Term::spawn(&fx.line("attach it")).unwrap();
    std::thread::sleep(std::time::Duration::from_millis(300));
    t.send(b"exit 6\r");
    assert_eq!(t.wait().0, Some(6));
    // --rm: the monitor removed it once it exited.
    assert_eq!(text(&fx.berth(&["ps", "-aq"]).stdout), "");

    let out = fx.berth(&[
        "create",
        "-it",
        "--name",
        "c2",
        "--cgroup-parent",
        &cg,
        "busybox",
        "sh",
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let mut t = Term::spawn(&fx.line("start -a -i --detach-keys ctrl-a,d c2")).unwrap();
    t.send(b"echo b-$((2+2))\r");
    t.expect("b-4");
    t.send(b"\x01d");
    assert_eq!(t.wait().0, Some(0));
    assert_eq!(fx.status_of("c2"), "running 0");
    assert!(fx.berth(&["rm", "-f", "c2"]).status.success());

    // Without a terminal, or with bad keys: refused before anything exists.
    let out = fx.run(&["-it", "busybox", "sh"]);
    assert_ne!(out.status.code(), Some(0));
    assert!(
        text(&out.stderr).contains("the input device is not a TTY"),
        "{}",
        text(&out.stderr)
    );
    let out = fx.run(&["-t", "--detach-keys", "ctrl-", "busybox", "true"]);
    assert_eq!(out.status.code(), Some(125));
    assert!(
        text(&out.stderr).contains("invalid detach keys"),
        "{}",
        text(&out.stderr)
    );
    fx.assert_no_leaks();
}

#[test]
fn init_on_a_terminal_leaves_ctrl_c_to_the_shells_foreground_job() {
    if !prerequisites() {
        return;
    }
    let fx = Fixture::new();
    let init = static_berth_init();
    let cmd = format!(
        "BERTH_INIT_PATH={} {}",
        init.display(),
        fx.line(&format!(
            "run -it --rm --init --cgroup-parent {} busybox sh",
            fx.cgroup_parent
        ))
    );
    let Some(mut t) = Term::spawn(&cmd) else {
        return;
    };
    t.expect("BusyBox");
    // The shell owns the terminal (berth-init made its group the foreground one), so it can
    // run a job in the foreground, and ctrl-c interrupts that job only.
    t.send(b"echo marker-$((3*3)); sleep 100\r");
    t.expect("marker-9");
    std::thread::sleep(std::time::Duration::from_millis(300));
    t.send(b"\x03");
    t.send(b"echo rc=$?\r");
    t.expect("rc=130");
    t.send(b"exit 4\r");
    assert_eq!(t.wait().0, Some(4));
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

    // A restarted container's hosts file names its current address, once. First every
    // address the containers above held is free again (their veths go with their namespaces,
    // a moment after they exit), so "again" and then "blocker" each take the lowest free one.
    fx.wait_for_leases("released addresses stayed taken", |names| {
        !names.iter().any(|n| n.ends_with(".releasing"))
    });
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
    // Its address is free once the kernel has removed its veth with its network namespace,
    // a moment after the stop, and a network command has seen it go (docs/networking.md):
    // until then its lease stays, as `<ip>` or `<ip>.<ifindex>.releasing`.
    fx.wait_for_leases("the address stayed taken", |names| {
        !names
            .iter()
            .any(|n| *n == before || n.starts_with(&format!("{before}.")))
    });
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
    // The table belongs to the networks: it stays after the last container, with the
    // default network's masquerade rule (assert_no_leaks checks that no port is left in it).
    let rules = fx
        .cmd("nft")
        .args(["list", "table", "ip", "berth"])
        .output()
        .unwrap();
    assert!(rules.status.success(), "{}", text(&rules.stderr));
    assert!(
        text(&rules.stdout).contains("masquerade"),
        "{}",
        text(&rules.stdout)
    );
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
fn a_client_that_stops_reading_is_dropped_and_holds_back_nobody() {
    if !prerequisites() {
        return;
    }
    use std::io::Read;
    let fx = Fixture::new();
    let size = std::fs::metadata("/bin/busybox").unwrap().len() as usize;
    let out = fx.run(&[
        "-di",
        "--log-driver",
        "none",
        "--name",
        "flood",
        "busybox",
        "sh",
        "-c",
        "read go; for i in 1 2 3 4 5 6 7 8 9 10; do cat /bin/busybox; done",
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let id = text(&fx.berth(&["inspect", "-f", "{{.Id}}", "flood"]).stdout)
        .trim()
        .to_owned();
    // A raw client that never reads what the monitor sends.
    let dir = std::fs::File::open(fx.root().join("containers").join(&id)).unwrap();
    let addr = format!(
        "/proc/self/fd/{}/attach.sock",
        std::os::fd::AsRawFd::as_raw_fd(&dir)
    );
    let mut stuck = std::os::unix::net::UnixStream::connect(&addr).unwrap();
    // A real client starts the flood and must get all of it.
    let mut child = fx
        .cmd(BERTH)
        .arg("--root")
        .arg(fx.root())
        .args(["attach", "flood"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(300));
    child.stdin.as_mut().unwrap().write_all(b"go\n").unwrap();
    let mut got = Vec::new();
    child.stdout.take().unwrap().read_to_end(&mut got).unwrap();
    assert_eq!(child.wait().unwrap().code(), Some(0));
    assert_eq!(got.len(), 10 * size);
    // The stuck one was dropped once 4 MiB piled up: it reads a bounded amount, then EOF.
    let mut rest = Vec::new();
    let _ = stuck.read_to_end(&mut rest);
    assert!(rest.len() < 10 * size / 2, "{} bytes", rest.len());
    assert_eq!(fx.status_of("flood"), "exited 0");
    assert!(fx.berth(&["rm", "flood"]).status.success());
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

    // --internal: no route out, and forwarding from its bridge dropped. A container that
    // adds a route itself (NET_ADMIN) still reaches nothing: a listening remote, a forwarding
    // host, and only the firewall in between.
    let remote = Remote::new(&fx);
    let server = tcp_peer_printer(remote.cmd("python3"), "192.0.2.2", 7000);
    ok(&["network", "create", "--internal", "sealed"]);
    let forward = fx
        .cmd("cat")
        .arg("/proc/sys/net/ipv4/ip_forward")
        .output()
        .unwrap();
    assert_eq!(
        text(&forward.stdout).trim(),
        "1",
        "the host must forward for this check"
    );
    let sealed: serde_json::Value =
        serde_json::from_str(&ok(&["network", "inspect", "sealed"])).unwrap();
    let gw = sealed[0]["IPAM"]["Config"][0]["Gateway"]
        .as_str()
        .unwrap()
        .to_owned();
    // The remote can answer the sealed subnet directly (there is no NAT on an internal
    // network): only Berth's forward rules stand in the way.
    let subnet = sealed[0]["IPAM"]["Config"][0]["Subnet"].as_str().unwrap();
    assert!(remote
        .cmd("ip")
        .args(["route", "add", subnet, "via", "192.0.2.1"])
        .status()
        .unwrap()
        .success());
    let out = fx.run(&[
        "--rm",
        "--network",
        "sealed",
        "--cap-add",
        "NET_ADMIN",
        "busybox",
        "sh",
        "-c",
        &format!(
            "busybox ip route | grep -c default; busybox ip route add 192.0.2.0/24 via {gw} && \
             busybox nc -w 2 192.0.2.2 7000 </dev/null"
        ),
    ]);
    assert_ne!(out.status.code(), Some(0), "{}", text(&out.stdout));
    assert_eq!(text(&out.stdout), "0\n");
    let mut server = server;
    assert!(
        server.try_wait().unwrap().is_none(),
        "the remote accepted a connection from an --internal network"
    );
    let _ = server.kill();
    let _ = server.wait();
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

/// The issue's seed scenario in one piece: a named detached server, `top`, `exec env`, a second
/// container in its network namespace (both show the same `net:[inode]`), `stats`,
/// `update --memory`, `logs`, `stop`, `rm`.
#[test]
fn seed_scenario_server_top_exec_shared_netns_stats_update_logs_stop_rm() {
    if !prerequisites() {
        return;
    }
    let fx = Fixture::new();
    let out = fx.run(&[
        "-d",
        "--name",
        "db",
        "-e",
        "ROLE=server",
        "-m",
        "64m",
        "busybox",
        "sh",
        "-c",
        "echo ready to accept connections; trap 'echo bye; exit 0' TERM; while :; do sleep 0.2; done",
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let id = text(&out.stdout).trim().to_owned();
    // top: the host's view of the container's processes.
    let top = fx.berth(&["top", "db"]);
    assert!(top.status.success(), "{}", text(&top.stderr));
    assert!(
        text(&top.stdout).contains("while :"),
        "{}",
        text(&top.stdout)
    );
    // exec env: the container's environment.
    let env = fx.berth(&["exec", "db", "env"]);
    assert!(env.status.success(), "{}", text(&env.stderr));
    assert!(text(&env.stdout).contains("ROLE=server"));
    // A client in the server's network namespace: the same net:[inode].
    let db_net = fx.berth(&["exec", "db", "readlink", "/proc/self/ns/net"]);
    let client = fx.run(&[
        "--rm",
        "--network",
        "container:db",
        "busybox",
        "readlink",
        "/proc/self/ns/net",
    ]);
    assert!(client.status.success(), "{}", text(&client.stderr));
    assert!(text(&db_net.stdout).starts_with("net:["));
    assert_eq!(text(&client.stdout), text(&db_net.stdout));
    // stats: the 64 MiB limit, then update --memory, live.
    let stats = |fx: &Fixture| {
        let o = fx.berth(&["stats", "--no-stream", "--format", "{{.MemUsage}}", "db"]);
        assert!(o.status.success(), "{}", text(&o.stderr));
        text(&o.stdout)
    };
    assert!(stats(&fx).contains("/ 64MiB"), "{}", stats(&fx));
    let up = fx.berth(&["update", "--memory", "96m", "db"]);
    assert!(up.status.success(), "{}", text(&up.stderr));
    assert!(stats(&fx).contains("/ 96MiB"), "{}", stats(&fx));
    // logs, stop (the TERM trap runs), logs again, rm.
    let logs = fx.berth(&["logs", "db"]);
    assert_eq!(text(&logs.stdout), "ready to accept connections\n");
    let stop = fx.berth(&["stop", "db"]);
    assert!(stop.status.success(), "{}", text(&stop.stderr));
    let state = fx.berth(&[
        "inspect",
        "-f",
        "{{.State.Status}} {{.State.ExitCode}}",
        &id,
    ]);
    assert_eq!(text(&state.stdout).trim(), "exited 0");
    let logs = fx.berth(&["logs", "db"]);
    assert_eq!(text(&logs.stdout), "ready to accept connections\nbye\n");
    assert!(fx.berth(&["rm", "db"]).status.success());
    fx.assert_no_leaks();
}

/// `berth exec` in the foreground forwards a signal it gets as soon as the process runs (it
/// blocks them before the spawn; the exec'd process starts with an empty mask), and returns the
/// process's code.
#[test]
fn foreground_exec_forwards_signals_to_the_process() {
    if !prerequisites() {
        return;
    }
    use std::io::{BufRead, Read};
    let fx = Fixture::new();
    let out = fx.run(&["-d", "--name", "srv", "busybox", "sleep", "1000"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let mut child = fx
        .cmd(BERTH)
        .arg("--root")
        .arg(fx.root())
        .args([
            "exec",
            "srv",
            "sh",
            "-c",
            "trap 'echo got-term; exit 7' TERM; echo ready; while :; do sleep 0.1; done",
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
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
    assert_eq!(child.wait().unwrap().code(), Some(7));
    assert_eq!(rest, "got-term\n");
    assert!(fx.berth(&["rm", "-f", "srv"]).status.success());
    fx.assert_no_leaks();
}

/// A bad flag is reported before a missing image is pulled (Docker checks flags first), with
/// the flag named and 125, and nothing created.
#[test]
fn bad_flags_fail_before_a_pull() {
    if !prerequisites() {
        return;
    }
    let fx = Fixture::new();
    for (args, says) in [
        (&["-m", "12zz"][..], "invalid --memory value \"12zz\""),
        (&["--restart", "sometimes"][..], "invalid --restart policy"),
        (&["--ulimit", "nofile=x"][..], "nofile=x"),
    ] {
        let mut all = vec!["--rm"];
        all.extend_from_slice(args);
        all.extend_from_slice(&["registry.invalid/nosuch:1", "true"]);
        let out = fx.run(&all);
        let err = text(&out.stderr);
        assert_eq!(out.status.code(), Some(125), "{args:?}: {err}");
        assert!(err.contains(says), "{args:?}: {err}");
        assert!(!err.contains("Unable to find image"), "pulled first: {err}");
    }
    fx.assert_no_leaks();
}

/// An exited container's veth is left to the kernel, which removes it with the container's
/// network namespace; until then its address stays taken. A namespace someone still holds
/// keeps the veth only for the grace period. The firewall table is applied once and comes
/// back after a `nft flush ruleset`.
#[test]
fn released_veths_go_with_the_namespace_and_addresses_wait_for_them() {
    if !prerequisites() {
        return;
    }
    let fx = Fixture::new();
    let ip_of = |name: &str| {
        text(
            &fx.berth(&["inspect", "-f", "{{.NetworkSettings.IPAddress}}", name])
                .stdout,
        )
        .trim()
        .to_owned()
    };
    let veth_count = || {
        let links = fx.cmd("ip").args(["-o", "link"]).output().unwrap();
        text(&links.stdout).matches(": vb").count()
    };
    assert!(fx
        .run(&["-d", "--name", "held", "busybox", "sleep", "100"])
        .status
        .success());
    let a_ip = ip_of("held");
    assert!(!a_ip.is_empty());
    // Something else holds a's network namespace (as a container joining it would).
    let pid = text(
        &fx.berth(&["inspect", "-f", "{{.State.Pid}}", "held"])
            .stdout,
    )
    .trim()
    .to_owned();
    let mut holder = Command::new("nsenter")
        .args([&format!("--net=/proc/{pid}/ns/net"), "sleep", "100"])
        .spawn()
        .unwrap();
    // Older than the grace period before it is removed: the grace counts from the release.
    std::thread::sleep(std::time::Duration::from_millis(2200));
    assert!(fx.berth(&["rm", "-f", "held"]).status.success());
    assert!(fx.berth(&["network", "ls"]).status.success());
    // The veth is still there, so its address must not be handed out again.
    assert_eq!(veth_count(), 1);
    assert!(fx
        .run(&["-d", "--name", "next", "busybox", "sleep", "100"])
        .status
        .success());
    let b_ip = ip_of("next");
    assert_ne!(a_ip, b_ip, "an address was reused while its veth existed");
    assert_eq!(veth_count(), 2);
    // After the grace period the next network command deletes the held veth itself.
    std::thread::sleep(std::time::Duration::from_millis(2200));
    assert!(fx.berth(&["network", "ls"]).status.success());
    assert_eq!(veth_count(), 1, "the held veth outlived the grace period");
    let _ = holder.kill();
    let _ = holder.wait();

    // Without a holder the kernel removes the veth by itself once the container is gone.
    assert!(fx.berth(&["rm", "-f", "next"]).status.success());
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while veth_count() != 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "the kernel did not remove the veth"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }

    // The rule set is applied once; a flushed ruleset is noticed and applied again.
    assert!(fx
        .cmd("nft")
        .args(["flush", "ruleset"])
        .status()
        .unwrap()
        .success());
    assert!(fx.run(&["--rm", "busybox", "true"]).status.success());
    let rules = fx
        .cmd("nft")
        .args(["list", "table", "ip", "berth"])
        .output()
        .unwrap();
    assert!(
        text(&rules.stdout).contains("masquerade"),
        "{}",
        text(&rules.stderr)
    );
    fx.assert_no_leaks();
}

/// A disconnect frees its interface slot, and the next connect takes that slot instead of
/// clobbering the interface of a network the container is still on.
#[test]
fn connect_after_disconnect_reuses_the_free_slot_and_keeps_the_others() {
    if !prerequisites() {
        return;
    }
    let fx = Fixture::new();
    for n in ["neta", "netb", "netc"] {
        assert!(fx.berth(&["network", "create", n]).status.success());
    }
    assert!(fx
        .run(&[
            "-d",
            "--name",
            "multi",
            "--network",
            "neta",
            "busybox",
            "sleep",
            "100"
        ])
        .status
        .success());
    assert!(fx
        .berth(&["network", "connect", "netb", "multi"])
        .status
        .success());
    let addrs = || {
        text(
            &fx.berth(&["exec", "multi", "busybox", "ip", "-4", "-o", "addr", "show"])
                .stdout,
        )
    };
    let ip_on = |net: &str| {
        text(
            &fx.berth(&[
                "inspect",
                "-f",
                &format!("{{{{.NetworkSettings.Networks.{net}.IPAddress}}}}"),
                "multi",
            ])
            .stdout,
        )
        .trim()
        .to_owned()
    };
    let b_ip = ip_on("netb");
    assert!(
        addrs().contains(&format!("eth1    inet {b_ip}/")),
        "{}",
        addrs()
    );
    // As in Docker, the legacy top-level address is the default bridge's, empty here.
    let top = fx.berth(&["inspect", "-f", "{{.NetworkSettings.IPAddress}}", "multi"]);
    assert_eq!(text(&top.stdout).trim(), "", "{}", text(&top.stderr));
    assert!(fx
        .berth(&["network", "disconnect", "neta", "multi"])
        .status
        .success());
    assert!(fx
        .berth(&["network", "connect", "netc", "multi"])
        .status
        .success());
    let c_ip = ip_on("netc");
    let a = addrs();
    assert!(a.contains(&format!("eth0    inet {c_ip}/")), "{a}");
    assert!(
        a.contains(&format!("eth1    inet {b_ip}/")),
        "netb lost its interface: {a}"
    );
    assert!(fx.berth(&["rm", "-f", "multi"]).status.success());
    for n in ["neta", "netb", "netc"] {
        assert!(fx.berth(&["network", "rm", n]).status.success());
    }
    fx.assert_no_leaks();
}

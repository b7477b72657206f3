//! End-to-end tests of `version`, `info`, `system prune`, `system df` and the configuration
//! file (always a temporary one given with --config or BERTH_CONFIG: tests never write
//! /etc/berth), with the engine tests' fixture.

mod common;

use std::io::Write;
use std::process::{Command, Stdio};

use common::fixture::*;
use common::ok;
use serde_json::Value;

fn json(s: &str) -> Value {
    serde_json::from_str(s.trim()).unwrap_or_else(|e| panic!("{e}: {s}"))
}

#[test]
fn version_info_df_and_system_prune() {
    if !prerequisites() {
        return;
    }
    let fx = Fixture::new();
    let v = json(&ok(fx.berth(&["version", "--format", "json"])));
    assert_eq!(v["Client"]["Version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(v["Server"]["Version"], env!("CARGO_PKG_VERSION"));
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap();
    assert_eq!(v["Server"]["KernelVersion"], kernel.trim());
    let text_v = ok(fx.berth(&["version"]));
    assert!(text_v.starts_with("Client: Berth\n Version:"), "{text_v}");
    assert_eq!(
        ok(fx.berth(&["version", "--format", "{{.Server.Os}}"])),
        "linux\n"
    );

    // One running, one paused, one stopped container, and a dangling image (imported
    // without a name).
    ok(fx.run(&["-d", "--name", "up", "busybox", "sleep", "1000"]));
    ok(fx.run(&["-d", "--name", "frozen", "busybox", "sleep", "1000"]));
    ok(fx.berth(&["pause", "frozen"]));
    ok(fx.run(&["--name", "done", "busybox", "sh", "-c", "echo hi > /f"]));
    let tar = fx.dir.path().join("rootfs.tar");
    let dangling = ok(fx.berth(&["import", tar.to_str().unwrap()]));
    let dangling = dangling.trim();

    let info = json(&ok(fx.berth(&["info", "--format", "json"])));
    assert_eq!(info["Containers"], 3);
    assert_eq!(info["ContainersRunning"], 1);
    assert_eq!(info["ContainersPaused"], 1);
    assert_eq!(info["ContainersStopped"], 1);
    assert_eq!(info["Images"], 2);
    assert_eq!(info["DockerRootDir"], fx.root().to_str().unwrap());
    assert_eq!(info["KernelVersion"], kernel.trim());
    assert_eq!(info["CgroupDriver"], "cgroupfs");
    let v2 = std::path::Path::new("/sys/fs/cgroup/cgroup.controllers").exists();
    assert_eq!(info["CgroupVersion"], if v2 { "2" } else { "1" });
    assert!(info["SecurityOptions"]
        .as_array()
        .unwrap()
        .contains(&Value::from("name=seccomp,profile=builtin")));
    let info_text = ok(fx.berth(&["info"]));
    for l in [
        " Containers: 3\n",
        "  Running: 1\n",
        "  Paused: 1\n",
        "  Stopped: 1\n",
        " Images: 2\n",
        " Cgroup Driver: cgroupfs\n",
    ] {
        assert!(info_text.contains(l), "{l:?} in {info_text}");
    }
    assert_eq!(
        ok(fx.berth(&["system", "info", "--format", "{{.ContainersPaused}}"])),
        "1\n"
    );

    let df = ok(fx.berth(&["system", "df"]));
    assert!(df.starts_with("TYPE "), "{df}");
    let containers_row = df.lines().find(|l| l.starts_with("Containers")).unwrap();
    let cols: Vec<&str> = containers_row.split_whitespace().collect();
    assert_eq!(&cols[..3], ["Containers", "3", "2"], "{df}");
    let rows: Vec<Value> = ok(fx.berth(&["system", "df", "--format", "json"]))
        .lines()
        .map(json)
        .collect();
    assert_eq!(rows[1]["Type"], "Containers");
    assert_eq!(
        rows[1]["ReclaimableBytes"], 3,
        "the stopped one wrote 3 bytes"
    );

    // A "no" leaves everything in place.
    let mut child = fx
        .cmd(BERTH)
        .arg("--root")
        .arg(fx.root())
        .args(["system", "prune"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(b"n\n").unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("Are you sure you want to continue? [y/N]"));
    assert_eq!(ok(fx.berth(&["ps", "-aq"])).lines().count(), 3);

    // prune -f: the stopped container and the dangling image go; the running and paused
    // ones and the image they use stay.
    let out = ok(fx.berth(&["system", "prune", "-f"]));
    let done_gone = out.starts_with("Deleted Containers:\n");
    assert!(done_gone, "{out}");
    assert!(
        out.contains(&format!("Deleted Images:\ndeleted: {dangling}\n")),
        "{out}"
    );
    assert!(out.trim_end().starts_with("Deleted") && out.contains("Total reclaimed space: "));
    assert_eq!(ok(fx.berth(&["ps", "-aq"])).lines().count(), 2);
    assert_eq!(ok(fx.berth(&["images", "-q"])).lines().count(), 1);
    // -a keeps images in use.
    let out = ok(fx.berth(&["system", "prune", "-af"]));
    assert_eq!(out, "Total reclaimed space: 0B\n");
    assert_eq!(ok(fx.berth(&["images", "-q"])).lines().count(), 1);
    let deleted = ok(fx.berth(&[
        "events",
        "--since",
        "1h",
        "--until",
        "0s",
        "--filter",
        "type=image",
        "--filter",
        "event=delete",
        "--format",
        "{{.Actor.ID}}",
    ]));
    assert_eq!(deleted.trim(), dangling);

    for c in ["up", "frozen"] {
        ok(fx.berth(&["rm", "-f", c]));
    }
    fx.assert_no_leaks();
}

#[test]
fn the_configuration_file_sets_defaults_and_flags_win() {
    if !prerequisites() {
        return;
    }
    let fx = Fixture::new();
    let cfg = fx.dir.path().join("berth.toml");
    let other_root = fx.dir.path().join("other-root");
    std::fs::write(
        &cfg,
        format!(
            "root = \"{}\"\n\
             [runtime]\ncgroup_parent = \"{}\"\ndefault_ulimits = [\"nofile=1000:2000\"]\n\
             [logs]\nopts = {{ max-size = \"1k\", max-file = \"2\" }}\n\
             [registries]\ninsecure = [\"reg.example:5000\"]\n\
             [events]\nmax_size = \"2k\"\n",
            other_root.display(),
            fx.cgroup_parent
        ),
    )
    .unwrap();
    let c = cfg.to_str().unwrap();
    // --root wins over the file's root.
    let with = |args: &[&str]| {
        let mut all = vec!["--config", c];
        all.extend_from_slice(args);
        fx.berth(&all)
    };
    let info = json(&ok(with(&["info", "--format", "json"])));
    assert_eq!(info["DockerRootDir"], fx.root().to_str().unwrap());
    assert_eq!(info["ConfigFile"], c);
    assert_eq!(
        info["RegistryConfig"]["InsecureRegistries"],
        serde_json::json!(["reg.example:5000"])
    );
    // Without --root, the file's root; BERTH_CONFIG finds the file too.
    let out = Command::new(BERTH)
        .args(["info", "--format", "{{.DockerRootDir}}"])
        .env("BERTH_CONFIG", &cfg)
        .output()
        .unwrap();
    assert_eq!(ok(out).trim(), other_root.to_str().unwrap());
    // --config wins over BERTH_CONFIG.
    let out = Command::new(BERTH)
        .args(["--config", c, "--root"])
        .arg(fx.root())
        .args([
            "--insecure-registry",
            "flag.example:1",
            "info",
            "--format",
            "{{json .RegistryConfig.InsecureRegistries}}",
        ])
        .env("BERTH_CONFIG", "/nonexistent/berth.toml")
        .output()
        .unwrap();
    assert_eq!(ok(out).trim(), r#"["flag.example:1","reg.example:5000"]"#);

    // The file's cgroup parent (no --cgroup-parent here), ulimits and log options; the
    // command line's own values win.
    let run = |args: &[&str]| {
        let mut all = vec!["--config", c, "run"];
        all.extend_from_slice(args);
        fx.berth(&all)
    };
    let out = ok(run(&["--rm", "busybox", "sh", "-c", "ulimit -n"]));
    assert_eq!(out, "1000\n");
    let out = ok(run(&[
        "--rm",
        "--ulimit",
        "nofile=500:2000",
        "busybox",
        "sh",
        "-c",
        "ulimit -n",
    ]));
    assert_eq!(out, "500\n");
    ok(run(&["--name", "l1", "busybox", "true"]));
    ok(run(&[
        "--name",
        "l2",
        "--log-opt",
        "max-size=2k",
        "busybox",
        "true",
    ]));
    ok(run(&[
        "--name",
        "l3",
        "--log-driver",
        "none",
        "busybox",
        "true",
    ]));
    let cfg_of = |n: &str| {
        ok(with(&[
            "inspect",
            "-f",
            "{{json .HostConfig.LogConfig}} {{.HostConfig.CgroupParent}}",
            n,
        ]))
    };
    assert_eq!(
        cfg_of("l1"),
        format!(
            "{{\"Config\":{{\"max-file\":\"2\",\"max-size\":\"1024\"}},\"Type\":\"json-file\"}} {}\n",
            fx.cgroup_parent
        )
    );
    assert!(cfg_of("l2").contains(r#""max-file":"2","max-size":"2048""#));
    assert!(cfg_of("l3").starts_with(r#"{"Config":{},"Type":"none"}"#));

    // The event log stays within the file's bound (2 KiB, one older file kept).
    for i in 0..6 {
        ok(with(&[
            "rename",
            if i % 2 == 0 { "l1" } else { "l1b" },
            if i % 2 == 0 { "l1b" } else { "l1" },
        ]));
    }
    let log = fx.root().join("events.log");
    assert!(std::fs::metadata(&log).unwrap().len() <= 2048);
    assert!(fx.root().join("events.log.1").exists());
    let renames = ok(with(&[
        "events",
        "--since",
        "1h",
        "--until",
        "0s",
        "--filter",
        "event=rename",
    ]));
    assert!(!renames.is_empty());

    // Bad files: nothing runs, exit 125, the problem named.
    let bad = |content: &str, want: &str| {
        std::fs::write(&cfg, content).unwrap();
        let out = fx.berth(&["--config", c, "ps", "-a"]);
        assert_eq!(out.status.code(), Some(125), "{content}");
        let err = text(&out.stderr);
        assert!(err.contains(want), "{content}: {err}");
        assert!(out.stdout.is_empty());
    };
    bad("rooot = \"/x\"\n", "unknown field `rooot`");
    bad(
        "[runtime]\npath = \"/usr/sbin/runc\"\n",
        "external runtimes",
    );
    bad(
        "[registries]\nmirrors = [\"https://m.example\"]\n",
        "mirrors are not supported",
    );
    bad("[logs]\ndriver = \"syslog\"\n", "syslog");
    bad(
        "[runtime]\ncgroup_parent = \"relative\"\n",
        "not an absolute cgroup path",
    );
    bad("root = [\n", "parsing the configuration file");
    let out = fx.berth(&["--config", "/nonexistent/berth.toml", "ps"]);
    assert_eq!(out.status.code(), Some(125));
    assert!(text(&out.stderr).contains("reading the configuration file /nonexistent/berth.toml"));

    for n in ["l1", "l2", "l3"] {
        ok(fx.berth(&["rm", n]));
    }
    fx.assert_no_leaks();
}

/// `system prune --volumes` removes the anonymous volumes no container uses, and keeps named
/// ones and those in use.
#[test]
fn system_prune_volumes_removes_unused_anonymous_volumes() {
    if !prerequisites() {
        return;
    }
    let fx = Fixture::new();
    let ls = |fx: &Fixture| -> Vec<String> {
        let mut v: Vec<String> = ok(fx.berth(&["volume", "ls", "-q"]))
            .lines()
            .map(str::to_owned)
            .collect();
        v.sort();
        v
    };
    // One anonymous volume left behind by a plain `rm`, one still in use, one named.
    let gone = ok(fx.run(&["-d", "-v", "/data", "busybox", "true"]));
    ok(fx.berth(&["wait", gone.trim()]));
    let anon_gone = ls(&fx);
    assert_eq!(anon_gone.len(), 1, "{anon_gone:?}");
    ok(fx.berth(&["rm", gone.trim()]));
    let kept = ok(fx.run(&[
        "-d", "--name", "user", "-v", "/keep", "busybox", "sleep", "60",
    ]));
    ok(fx.berth(&["volume", "create", "named"]));
    assert_eq!(ls(&fx).len(), 3);
    let out = ok(fx.berth(&["system", "prune", "-f", "--volumes"]));
    assert!(out.contains("Deleted Volumes:"), "{out}");
    assert!(out.contains(&anon_gone[0]), "{out}");
    let left = ls(&fx);
    assert_eq!(left.len(), 2, "{left:?}");
    assert!(left.contains(&"named".to_owned()) && !left.contains(&anon_gone[0]));
    ok(fx.berth(&["rm", "-f", "-v", kept.trim()]));
    ok(fx.berth(&["volume", "rm", "named"]));
    fx.assert_no_leaks();
}

/// `system reset` removes every container (running ones too), image, volume and network, and
/// undoes what Berth changed in the network namespace: bridge, veths, the nft table and
/// `ip_forward`; and the cgroup parent it kept.
#[test]
fn system_reset_removes_everything_and_restores_the_host() {
    if !prerequisites() {
        return;
    }
    let fx = Fixture::new();
    let forward = || {
        ok(fx
            .cmd("cat")
            .arg("/proc/sys/net/ipv4/ip_forward")
            .output()
            .unwrap())
        .trim()
        .to_owned()
    };
    assert_eq!(forward(), "0", "a new namespace forwards nothing");
    ok(fx.berth(&["network", "create", "resetnet"]));
    ok(fx.berth(&["volume", "create", "resetvol"]));
    ok(fx.run(&[
        "-d",
        "--name",
        "up",
        "-p",
        "18080:80",
        "-v",
        "resetvol:/data",
        "busybox",
        "sleep",
        "100",
    ]));
    ok(fx.run(&["-d", "--network", "resetnet", "busybox", "sleep", "100"]));
    ok(fx.run(&["--network", "none", "busybox", "true"]));
    assert_eq!(forward(), "1");
    let parent = std::path::Path::new("/sys/fs/cgroup/pids").join(&fx.cgroup_parent[1..]);
    assert!(parent.is_dir(), "the engine keeps its cgroup parent");

    // Without -f it asks, and "n" changes nothing.
    let mut asked = fx
        .cmd(BERTH)
        .args(["--root", fx.root().to_str().unwrap(), "system", "reset"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    asked.stdin.take().unwrap().write_all(b"n\n").unwrap();
    assert!(!asked.wait_with_output().unwrap().status.success());
    assert_eq!(ok(fx.berth(&["ps", "-aq"])).lines().count(), 3);
    assert_ne!(ok(fx.berth(&["images", "-q"])), "");
    assert_eq!(ok(fx.berth(&["volume", "ls", "-q"])).trim(), "resetvol");
    assert!(ok(fx.berth(&["network", "ls"])).contains("resetnet"));
    assert_eq!(forward(), "1");

    ok(fx.berth(&["system", "reset", "-f"]));
    assert_eq!(ok(fx.berth(&["ps", "-aq"])), "");
    assert_eq!(ok(fx.berth(&["images", "-q"])), "");
    assert_eq!(ok(fx.berth(&["volume", "ls", "-q"])), "");
    let links = ok(fx.cmd("ip").args(["-o", "link"]).output().unwrap());
    assert!(
        !links.contains("berth0") && !links.contains(": br-") && !links.contains(": vb"),
        "{links}"
    );
    let tables = ok(fx.cmd("nft").args(["list", "tables"]).output().unwrap());
    assert!(!tables.contains("berth"), "{tables}");
    assert_eq!(forward(), "0", "ip_forward not restored");
    assert!(!parent.exists(), "cgroup parent left");
    fx.assert_no_leaks();
}

//! End-to-end tests of `berth inspect --isolation` and of the security and device options of
//! `run`/`exec` (`--device`, `exec --privileged`, `--security-opt seccomp=FILE`, `--platform`,
//! `--userns`). Every value of the report is checked against what the test reads itself from
//! `/proc/PID/...` and the bundle. Root only; each test has its own fixture (root, image,
//! cgroup parent) and checks that nothing is left.

mod common;

use std::collections::BTreeSet;

use common::fixture::{prerequisites, text, Fixture};
use serde_json::Value;

/// The report of `name`, as JSON.
fn report(fx: &Fixture, name: &str) -> Value {
    let out = fx.berth(&["inspect", "--isolation", "--format", "json", name]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    v[0].clone()
}

fn pid_of(fx: &Fixture, name: &str) -> i32 {
    let out = fx.berth(&["inspect", "-f", "{{.State.Pid}}", name]);
    text(&out.stdout).trim().parse().unwrap()
}

fn id_of(fx: &Fixture, name: &str) -> String {
    let out = fx.berth(&["inspect", "-f", "{{.Id}}", name]);
    text(&out.stdout).trim().to_owned()
}

fn ns_inode(pid: &str, kind: &str) -> u64 {
    let l = std::fs::read_link(format!("/proc/{pid}/ns/{kind}")).unwrap();
    let l = l.to_str().unwrap();
    l[l.find('[').unwrap() + 1..l.len() - 1].parse().unwrap()
}

fn status_field(pid: i32, key: &str) -> String {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{key}:")))
        .unwrap()
        .trim()
        .to_owned()
}

fn names(v: &Value) -> BTreeSet<String> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_str().unwrap().to_owned())
        .collect()
}

fn ns<'a>(r: &'a Value, kind: &str) -> &'a Value {
    r["namespaces"]
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["kind"] == kind)
        .unwrap_or_else(|| panic!("no {kind} namespace in {r}"))
}

const DOCKER_DEFAULTS: &[&str] = &[
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_FSETID",
    "CAP_FOWNER",
    "CAP_MKNOD",
    "CAP_NET_RAW",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETFCAP",
    "CAP_SETPCAP",
    "CAP_NET_BIND_SERVICE",
    "CAP_SYS_CHROOT",
    "CAP_KILL",
    "CAP_AUDIT_WRITE",
];

#[test]
fn isolation_report_of_a_default_container_matches_proc() {
    if !prerequisites() {
        return;
    }
    let fx = Fixture::new();
    let out = fx.run(&[
        "-d",
        "--name",
        "iso1",
        "--memory",
        "64m",
        "--pids-limit",
        "100",
        "--cpus",
        "0.5",
        "busybox",
        "sleep",
        "1000",
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let pid = pid_of(&fx, "iso1");
    let id = id_of(&fx, "iso1");
    let r = report(&fx, "iso1");
    assert_eq!(r["pid"], pid);
    assert_eq!(r["name"], "iso1");

    // Namespaces: the inodes of /proc/PID/ns, private ones apart from the host's.
    for kind in ["cgroup", "ipc", "mnt", "net", "pid", "time", "user", "uts"] {
        let n = ns(&r, kind);
        let inode = ns_inode(&pid.to_string(), kind);
        assert_eq!(n["inode"], inode, "{kind}");
        assert_eq!(
            n["host"],
            inode == ns_inode("self", kind),
            "{kind} host flag"
        );
        assert_eq!(n["shared_with"], serde_json::json!([]), "{kind}");
    }
    for kind in ["ipc", "mnt", "net", "pid", "uts"] {
        assert_eq!(ns(&r, kind)["host"], false, "{kind}");
    }
    assert_eq!(ns(&r, "user")["host"], true);

    // Capabilities: the masks of /proc/PID/status, decoded to Docker's 14 defaults.
    let caps = &r["capabilities"];
    for (set, key) in [
        ("effective", "CapEff"),
        ("permitted", "CapPrm"),
        ("bounding", "CapBnd"),
        ("inheritable", "CapInh"),
        ("ambient", "CapAmb"),
    ] {
        assert_eq!(caps[set]["hex"], status_field(pid, key), "{set}");
    }
    let want: BTreeSet<String> = DOCKER_DEFAULTS.iter().map(|s| s.to_string()).collect();
    assert_eq!(names(&caps["effective"]["names"]), want);
    assert_eq!(names(&caps["bounding"]["names"]), want);
    assert!(names(&caps["ambient"]["names"]).is_empty());
    assert_eq!(r["no_new_privs"], false);
    assert_eq!(status_field(pid, "NoNewPrivs"), "0");

    // Seccomp: the kernel's mode and filter count, the rules counted in the bundle's config.
    assert_eq!(status_field(pid, "Seccomp"), "2");
    assert_eq!(r["seccomp"]["mode"], "filter");
    assert_eq!(
        r["seccomp"]["filters"].as_u64().unwrap().to_string(),
        status_field(pid, "Seccomp_filters")
    );
    let config: Value = serde_json::from_slice(
        &std::fs::read(
            fx.root()
                .join(format!("containers/{id}/bundle/config.json")),
        )
        .unwrap(),
    )
    .unwrap();
    let sec = &config["linux"]["seccomp"];
    let mut filtered = BTreeSet::new();
    for rule in sec["syscalls"].as_array().unwrap() {
        if rule["action"] != sec["defaultAction"] {
            filtered.extend(names(&rule["names"]));
        }
    }
    assert_eq!(r["seccomp"]["default_action"], sec["defaultAction"]);
    assert_eq!(r["seccomp"]["filtered_syscalls"], filtered.len());
    assert!(filtered.len() > 250);

    // The cgroup the init is in, with the limits asked for and live usage.
    let cg = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap();
    let path = cg
        .lines()
        .find_map(|l| {
            let mut f = l.splitn(3, ':');
            let (_, c, p) = (f.next()?, f.next()?, f.next()?);
            c.split(',').any(|c| c == "pids").then(|| p.to_owned())
        })
        .or_else(|| {
            cg.lines()
                .find_map(|l| l.strip_prefix("0::").map(String::from))
        })
        .unwrap();
    assert_eq!(r["cgroup"]["path"], path);
    assert!(path.starts_with(&fx.cgroup_parent), "{path}");
    assert_eq!(r["cgroup"]["memory"]["limit"], 64 << 20);
    assert!(r["cgroup"]["memory"]["usage"].as_u64().unwrap() > 0);
    assert_eq!(r["cgroup"]["pids"]["limit"], 100);
    assert_eq!(r["cgroup"]["pids"]["current"], 1);
    assert_eq!(r["cgroup"]["cpu"]["quota_us"], 50_000);
    assert_eq!(r["cgroup"]["cpu"]["period_us"], 100_000);
    assert_eq!(r["cgroup"]["cpu"]["cpus"], 0.5);

    // The LSM label as the kernel gives it; without an LSM (this host) the report says so
    // rather than inventing one. Identity id maps: no user namespace.
    match std::fs::read_to_string(format!("/proc/{pid}/attr/current")) {
        Ok(label) => assert_eq!(r["lsm_label"], label.trim_end_matches(['\n', '\0'])),
        Err(_) => assert!(r["lsm_label"].is_null()),
    }
    assert_eq!(
        r["uid_map"],
        serde_json::json!([{"container": 0, "host": 0, "size": 4294967295u64}])
    );

    // The overlay: the image's single layer as lower directory, the snapshot's upper one.
    let rootfs = &r["rootfs"];
    assert_eq!(rootfs["fstype"], "overlay");
    assert_eq!(rootfs["read_only"], false);
    let layers = rootfs["layers"].as_array().unwrap();
    assert_eq!(layers.len(), 1);
    assert!(layers[0]["diff_id"]
        .as_str()
        .unwrap()
        .starts_with("sha256:"));
    assert!(std::path::Path::new(layers[0]["dir"].as_str().unwrap()).is_dir());
    assert!(rootfs["upperdir"].as_str().unwrap().contains(&id));

    // Every mount of the container's mount namespace, in mountinfo's order.
    let mi = std::fs::read_to_string(format!("/proc/{pid}/mountinfo")).unwrap();
    let mounts = r["mounts"].as_array().unwrap();
    assert_eq!(mounts.len(), mi.lines().count());
    let dests: Vec<&str> = mounts
        .iter()
        .map(|m| m["destination"].as_str().unwrap())
        .collect();
    for d in ["/", "/proc", "/dev", "/sys", "/etc/hostname", "/proc/sys"] {
        assert!(dests.contains(&d), "{d} missing: {dests:?}");
    }

    // The text form carries the same facts.
    let out = fx.berth(&["inspect", "--isolation", "iso1"]);
    assert!(out.status.success());
    let t = text(&out.stdout);
    assert!(
        t.contains(&ns_inode(&pid.to_string(), "net").to_string()),
        "{t}"
    );
    assert!(t.contains("Seccomp:    filter"), "{t}");
    assert!(t.contains("limit 64.0MiB"), "{t}");
    assert!(t.contains("KILL"), "{t}");
    // A template over the JSON form.
    let out = fx.berth(&[
        "inspect",
        "--isolation",
        "-f",
        "{{.seccomp.mode}} {{.cgroup.pids.limit}}",
        "iso1",
    ]);
    assert_eq!(text(&out.stdout).trim(), "filter 100");

    // Bad input: unknown and not running containers.
    let out = fx.berth(&["inspect", "--isolation", "nosuch"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("no such container"));
    let out = fx.berth(&[
        "create",
        "--cgroup-parent",
        &fx.cgroup_parent,
        "--name",
        "idle",
        "busybox",
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let out = fx.berth(&["inspect", "--isolation", "idle"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("not running"),
        "{}",
        text(&out.stderr)
    );

    assert!(fx.berth(&["rm", "-f", "iso1", "idle"]).status.success());
    fx.assert_no_leaks();
}

#[test]
fn isolation_report_of_privileged_and_capless_containers() {
    if !prerequisites() {
        return;
    }
    let fx = Fixture::new();
    let out = fx.run(&[
        "-d",
        "--name",
        "priv",
        "--privileged",
        "busybox",
        "sleep",
        "1000",
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let out = fx.run(&[
        "-d",
        "--name",
        "nocaps",
        "--cap-drop",
        "ALL",
        "--security-opt",
        "no-new-privileges",
        "--read-only",
        "busybox",
        "sleep",
        "1000",
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));

    let pid = pid_of(&fx, "priv");
    let r = report(&fx, "priv");
    let last: u32 = std::fs::read_to_string("/proc/sys/kernel/cap_last_cap")
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    // Every capability of the kernel that the caller's bounding set holds (as podman does).
    let kernel = if last >= 63 {
        u64::MAX
    } else {
        (1u64 << (last + 1)) - 1
    };
    let all = kernel
        & u64::from_str_radix(&status_field(std::process::id() as i32, "CapBnd"), 16).unwrap();
    assert_eq!(status_field(pid, "CapEff"), format!("{all:016x}"));
    assert_eq!(r["capabilities"]["effective"]["hex"], format!("{all:016x}"));
    assert!(names(&r["capabilities"]["effective"]["names"]).contains("CAP_SYS_ADMIN"));
    assert_eq!(status_field(pid, "Seccomp"), "0");
    assert_eq!(r["seccomp"]["mode"], "disabled");
    assert_eq!(r["seccomp"]["filters"], 0);
    assert!(r["seccomp"]["default_action"].is_null());
    // /sys is read-write for a privileged container, as Docker mounts it.
    let sys = r["mounts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["destination"] == "/sys")
        .unwrap();
    assert!(sys["options"].as_str().unwrap().starts_with("rw"), "{sys}");
    // So is the cgroup filesystem (moby's WithMounts); for others it is read-only.
    let cgroup_mounts = |r: &Value| -> Vec<String> {
        r["mounts"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|m| m["fstype"] == "cgroup" || m["fstype"] == "cgroup2")
            .map(|m| m["options"].as_str().unwrap().to_owned())
            .collect()
    };
    let opts = cgroup_mounts(&r);
    assert!(!opts.is_empty());
    assert!(opts.iter().all(|o| o.starts_with("rw,")), "{opts:?}");

    let pid = pid_of(&fx, "nocaps");
    let r = report(&fx, "nocaps");
    for (set, key) in [("effective", "CapEff"), ("bounding", "CapBnd")] {
        assert_eq!(status_field(pid, key), "0000000000000000");
        assert_eq!(r["capabilities"][set]["hex"], "0000000000000000");
        assert!(names(&r["capabilities"][set]["names"]).is_empty());
    }
    assert_eq!(status_field(pid, "NoNewPrivs"), "1");
    assert_eq!(r["no_new_privs"], true);
    // --read-only: the root mount as mountinfo has it.
    let mi = std::fs::read_to_string(format!("/proc/{pid}/mountinfo")).unwrap();
    let root_ro = mi
        .lines()
        .rfind(|l| l.split(' ').nth(4) == Some("/"))
        .unwrap()
        .split(' ')
        .nth(5)
        .unwrap()
        .split(',')
        .any(|o| o == "ro");
    assert!(root_ro);
    assert_eq!(r["rootfs"]["read_only"], true);
    let opts = cgroup_mounts(&r);
    assert!(opts.iter().all(|o| o.starts_with("ro,")), "{opts:?}");
    // With no capabilities Docker's profile allows fewer syscalls than with the defaults.
    assert_eq!(r["seccomp"]["mode"], "filter");
    let out = fx.berth(&["inspect", "--isolation", "nocaps"]);
    assert!(
        text(&out.stdout).contains("effective     (none)"),
        "{}",
        text(&out.stdout)
    );

    assert!(fx.berth(&["rm", "-f", "priv", "nocaps"]).status.success());
    fx.assert_no_leaks();
}

#[test]
fn isolation_report_shows_namespaces_shared_between_containers() {
    if !prerequisites() {
        return;
    }
    let fx = Fixture::new();
    let out = fx.run(&["-d", "--name", "db", "busybox", "sleep", "1000"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let out = fx.run(&[
        "-d",
        "--name",
        "web",
        "--network",
        "container:db",
        "--ipc",
        "container:db",
        "busybox",
        "sleep",
        "1000",
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let out = fx.run(&[
        "-d", "--name", "hostpid", "--pid", "host", "busybox", "sleep", "1000",
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));

    let (db_pid, web_pid) = (pid_of(&fx, "db"), pid_of(&fx, "web"));
    let db = report(&fx, "db");
    let web = report(&fx, "web");
    for kind in ["net", "ipc"] {
        let inode = ns_inode(&db_pid.to_string(), kind);
        assert_eq!(inode, ns_inode(&web_pid.to_string(), kind));
        assert_eq!(ns(&db, kind)["inode"], inode);
        assert_eq!(ns(&web, kind)["inode"], inode);
        assert_eq!(ns(&db, kind)["shared_with"], serde_json::json!(["web"]));
        assert_eq!(ns(&web, kind)["shared_with"], serde_json::json!(["db"]));
        assert_eq!(ns(&web, kind)["host"], false);
    }
    for kind in ["pid", "mnt", "uts"] {
        assert_ne!(ns(&db, kind)["inode"], ns(&web, kind)["inode"]);
        assert_eq!(ns(&web, kind)["shared_with"], serde_json::json!([]));
    }
    // user, cgroup and time are the host's for all three, hence shared by all of them.
    let mut shared = names(&ns(&db, "user")["shared_with"]);
    shared.insert("db".into());
    assert_eq!(
        shared,
        ["db", "web", "hostpid"]
            .iter()
            .map(|s| s.to_string())
            .collect()
    );
    let hp = report(&fx, "hostpid");
    assert_eq!(ns(&hp, "pid")["host"], true);
    assert_eq!(ns(&hp, "pid")["inode"], ns_inode("self", "pid"));
    let out = fx.berth(&["inspect", "--isolation", "web"]);
    let t = text(&out.stdout);
    let net_line = t
        .lines()
        .find(|l| l.trim_start().starts_with("net "))
        .unwrap();
    assert!(net_line.ends_with("db"), "{net_line}");

    assert!(fx
        .berth(&["rm", "-f", "web", "db", "hostpid"])
        .status
        .success());
    fx.assert_no_leaks();
}

/// Major and minor of a device number (glibc's `gnu_dev_major`/`gnu_dev_minor`).
fn major_minor(rdev: u64) -> (u64, u64) {
    (
        ((rdev >> 8) & 0xfff) | ((rdev >> 32) & !0xfff),
        (rdev & 0xff) | ((rdev >> 12) & !0xff),
    )
}

#[test]
fn device_option_creates_the_node_and_allows_only_its_permissions() {
    use std::os::unix::fs::{FileTypeExt, MetadataExt};
    if !prerequisites() {
        return;
    }
    // A character device outside the defaults every container gets.
    let host = "/dev/fuse";
    let Ok(md) = std::fs::metadata(host) else {
        eprintln!("skipping: needs {host}");
        return;
    };
    assert!(md.file_type().is_char_device());
    let (major, minor) = major_minor(md.rdev());
    let fx = Fixture::new();
    let script = "busybox stat -c '%F %t %T' /dev/xfuse; (true < /dev/xfuse) && echo read-ok; \
                  (echo x > /dev/xfuse) 2>/dev/null || echo write-denied";
    let out = fx.run(&[
        "--rm",
        "--device",
        &format!("{host}:/dev/xfuse:r"),
        "busybox",
        "sh",
        "-c",
        script,
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(
        text(&out.stdout),
        format!("character special file {major:x} {minor:x}\nread-ok\nwrite-denied\n")
    );
    // Without --device the same node, made by hand, cannot be opened: the rule is what allows it.
    let out = fx.run(&[
        "--rm",
        "busybox",
        "sh",
        "-c",
        &format!(
            "busybox mknod /dev/xfuse c {major} {minor} && ((true < /dev/xfuse) 2>/dev/null || echo denied)"
        ),
    ]);
    assert_eq!(text(&out.stdout), "denied\n", "{}", text(&out.stderr));
    // HOST alone: the same path, rwm; the cgroup rule shows in the isolation report.
    let out = fx.run(&[
        "-d", "--name", "dev", "--device", host, "busybox", "sleep", "1000",
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let out = fx.berth(&["exec", "dev", "busybox", "stat", "-c", "%t %T", host]);
    assert_eq!(text(&out.stdout), format!("{major:x} {minor:x}\n"));
    let r = report(&fx, "dev");
    if let Some(list) = r["cgroup"]["devices"].as_array() {
        assert!(
            list.contains(&Value::from(format!("c {major}:{minor} rwm"))),
            "{list:?}"
        );
    }
    let out = fx.berth(&["inspect", "dev"]);
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        v[0]["HostConfig"]["Devices"],
        serde_json::json!([{"PathOnHost": host, "PathInContainer": host, "CgroupPermissions": "rwm"}])
    );
    assert!(fx.berth(&["rm", "-f", "dev"]).status.success());

    // Bad input: exit 125, a message naming the problem, nothing left behind.
    for (dev, msg) in [
        ("/dev/berth-no-such-device", "/dev/berth-no-such-device"),
        ("/dev/fuse:/dev/x:rwz", "permissions"),
        ("/dev/fuse:dev/x", "absolute"),
        ("/proc/self/status", "neither a device"),
    ] {
        let out = fx.run(&["--rm", "--device", dev, "busybox", "true"]);
        assert_eq!(out.status.code(), Some(125), "{dev}");
        assert!(
            text(&out.stderr).contains(msg),
            "{dev}: {}",
            text(&out.stderr)
        );
    }
    fx.assert_no_leaks();
}

#[test]
fn privileged_containers_get_the_hosts_devices() {
    use std::os::unix::fs::{FileTypeExt, MetadataExt};
    if !prerequisites() {
        return;
    }
    let fx = Fixture::new();
    // The host's device nodes directly in /dev (the console and ptmx are the runtime's own).
    let mut host: Vec<(String, char, u64, u64)> = std::fs::read_dir("/dev")
        .unwrap()
        .flatten()
        .filter_map(|e| {
            let md = std::fs::symlink_metadata(e.path()).ok()?;
            let kind = if md.file_type().is_char_device() {
                'c'
            } else if md.file_type().is_block_device() {
                'b'
            } else {
                return None;
            };
            let name = e.file_name().into_string().ok()?;
            let (ma, mi) = major_minor(md.rdev());
            (name != "console" && name != "ptmx").then_some((name, kind, ma, mi))
        })
        .collect();
    host.sort();
    let out = fx.run(&[
        "--rm",
        "--privileged",
        "busybox",
        "sh",
        "-c",
        "for f in /dev/*; do [ -c $f ] && echo \"${f#/dev/} c $(busybox stat -c '%t %T' $f)\"; \
         [ -b $f ] && echo \"${f#/dev/} b $(busybox stat -c '%t %T' $f)\"; done; true",
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let seen = text(&out.stdout);
    for (name, kind, ma, mi) in &host {
        let line = format!("{name} {kind} {ma:x} {mi:x}");
        assert!(seen.lines().any(|l| l == line), "{line} missing:\n{seen}");
    }
    // Not privileged: only the runtime's defaults.
    let out = fx.run(&["--rm", "busybox", "ls", "/dev"]);
    let names: Vec<String> = text(&out.stdout)
        .split_whitespace()
        .map(String::from)
        .collect();
    assert!(!names.contains(&"fuse".to_owned()) && !names.contains(&"vda".to_owned()));
    fx.assert_no_leaks();
}

#[test]
fn exec_privileged_gets_every_capability_and_no_seccomp() {
    if !prerequisites() {
        return;
    }
    let fx = Fixture::new();
    let out = fx.run(&["-d", "--name", "box", "busybox", "sleep", "1000"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let fields = |priv_: bool| {
        let mut args = vec!["exec"];
        if priv_ {
            args.push("--privileged");
        }
        args.extend(["box", "cat", "/proc/self/status"]);
        let out = fx.berth(&args);
        assert!(out.status.success(), "{}", text(&out.stderr));
        let t = text(&out.stdout);
        let get = |k: &str| {
            t.lines()
                .find_map(|l| l.strip_prefix(&format!("{k}:")))
                .unwrap()
                .trim()
                .to_owned()
        };
        // CVE-2022-29162: widening the capabilities must not touch the inheritable set.
        assert_eq!(get("CapInh"), "0000000000000000");
        assert_eq!(get("CapAmb"), "0000000000000000");
        (get("CapEff"), get("CapBnd"), get("Seccomp"))
    };
    let init = pid_of(&fx, "box");
    let (eff, bnd, sec) = fields(false);
    assert_eq!(eff, status_field(init, "CapEff"));
    assert_eq!(bnd, status_field(init, "CapBnd"));
    assert_eq!(sec, "2");
    // All of the caller's bounding set (the container's init keeps its own).
    let ours = status_field(std::process::id() as i32, "CapBnd");
    let last: u32 = std::fs::read_to_string("/proc/sys/kernel/cap_last_cap")
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let want = u64::from_str_radix(&ours, 16).unwrap() & ((1u64 << (last + 1)) - 1);
    let (eff, bnd, sec) = fields(true);
    assert_eq!(eff, format!("{want:016x}"));
    assert_eq!(bnd, format!("{want:016x}"));
    assert_eq!(sec, "0");
    assert_eq!(status_field(init, "Seccomp"), "2");
    assert_eq!(status_field(init, "CapEff"), "00000000a80425fb");
    // A privileged exec can do what the container cannot, e.g. mount a tmpfs.
    assert!(fx
        .berth(&["exec", "box", "busybox", "mkdir", "-p", "/mnt"])
        .status
        .success());
    let out = fx.berth(&[
        "exec", "box", "busybox", "mount", "-t", "tmpfs", "t", "/mnt",
    ]);
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("denied") || text(&out.stderr).contains("not permitted"),
        "{}",
        text(&out.stderr)
    );
    let out = fx.berth(&[
        "exec",
        "--privileged",
        "box",
        "sh",
        "-c",
        "busybox mount -t tmpfs t /mnt && busybox umount /mnt && echo ok",
    ]);
    assert_eq!(text(&out.stdout), "ok\n", "{}", text(&out.stderr));
    assert!(fx.berth(&["rm", "-f", "box"]).status.success());
    fx.assert_no_leaks();
}

#[test]
fn security_opt_seccomp_file_in_docker_and_oci_form() {
    if !prerequisites() {
        return;
    }
    let fx = Fixture::new();
    let dir = fx.dir.path();
    // OCI form: everything allowed but mkdir, which fails with EPERM.
    let oci = dir.join("oci.json");
    std::fs::write(
        &oci,
        r#"{"defaultAction":"SCMP_ACT_ALLOW","syscalls":[
            {"names":["mkdir","mkdirat"],"action":"SCMP_ACT_ERRNO","errnoRet":1}]}"#,
    )
    .unwrap();
    let opt = format!("seccomp={}", oci.display());
    let out = fx.run(&[
        "--rm",
        "--security-opt",
        &opt,
        "busybox",
        "sh",
        "-c",
        "busybox mkdir /tmp/x 2>&1; echo rc=$?",
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).contains("Operation not permitted\nrc=1"),
        "{}",
        text(&out.stdout)
    );
    // Docker's form: archMap and rules guarded by capabilities (moby's includes/excludes).
    let docker = dir.join("docker.json");
    std::fs::write(
        &docker,
        r#"{"defaultAction":"SCMP_ACT_ALLOW","defaultErrnoRet":1,
            "archMap":[{"architecture":"SCMP_ARCH_X86_64","subArchitectures":["SCMP_ARCH_X86","SCMP_ARCH_X32"]},
                       {"architecture":"SCMP_ARCH_AARCH64","subArchitectures":["SCMP_ARCH_ARM"]}],
            "syscalls":[
              {"names":["mkdir","mkdirat"],"action":"SCMP_ACT_ERRNO","errnoRet":1,
               "excludes":{"caps":["CAP_SYS_ADMIN"]}},
              {"names":["rmdir"],"action":"SCMP_ACT_ERRNO","errnoRet":1,
               "includes":{"caps":["CAP_SYS_ADMIN"]}}]}"#,
    )
    .unwrap();
    let opt = format!("seccomp={}", docker.display());
    let out = fx.run(&[
        "-d",
        "--name",
        "sc",
        "--security-opt",
        &opt,
        "busybox",
        "sleep",
        "1000",
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let out = fx.berth(&["exec", "sc", "busybox", "mkdir", "/tmp/y"]);
    assert!(!out.status.success());
    assert!(text(&out.stderr).contains("Operation not permitted"));
    let r = report(&fx, "sc");
    assert_eq!(r["seccomp"]["mode"], "filter");
    assert_eq!(r["seccomp"]["default_action"], "SCMP_ACT_ALLOW");
    // Without CAP_SYS_ADMIN: the mkdir rule only.
    assert_eq!(r["seccomp"]["filtered_syscalls"], 2);
    assert_eq!(r["seccomp"]["by_action"]["SCMP_ACT_ERRNO"], 2);
    assert!(fx.berth(&["rm", "-f", "sc"]).status.success());
    // With CAP_SYS_ADMIN the other rule applies instead.
    let out = fx.run(&[
        "--rm",
        "--cap-add",
        "SYS_ADMIN",
        "--security-opt",
        &opt,
        "busybox",
        "sh",
        "-c",
        "busybox mkdir /tmp/z && echo made; busybox rmdir /tmp/z 2>&1; echo rc=$?",
    ]);
    assert!(
        text(&out.stdout).starts_with("made\n") && text(&out.stdout).ends_with("rc=1\n"),
        "{}",
        text(&out.stdout)
    );

    // Bad input: 125, the file named, nothing left behind.
    let bad = dir.join("bad.json");
    std::fs::write(&bad, r#"{"defaultAction":"SCMP_ACT_BOGUS"}"#).unwrap();
    let missing = dir.join("missing.json");
    let both = dir.join("both.json");
    std::fs::write(
        &both,
        r#"{"defaultAction":"SCMP_ACT_ALLOW","architectures":["SCMP_ARCH_X86_64"],
            "archMap":[{"architecture":"SCMP_ARCH_X86_64"}]}"#,
    )
    .unwrap();
    for f in [&bad, &missing, &both] {
        let opt = format!("seccomp={}", f.display());
        let out = fx.run(&["--rm", "--security-opt", &opt, "busybox", "true"]);
        assert_eq!(out.status.code(), Some(125), "{}", f.display());
        assert!(
            text(&out.stderr).contains(f.to_str().unwrap()),
            "{}",
            text(&out.stderr)
        );
    }
    fx.assert_no_leaks();
}

#[test]
fn userns_host_only() {
    if !prerequisites() {
        return;
    }
    let fx = Fixture::new();
    let out = fx.run(&[
        "-d", "--name", "uh", "--userns", "host", "busybox", "sleep", "1000",
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let r = report(&fx, "uh");
    assert_eq!(ns(&r, "user")["host"], true);
    let out = fx.berth(&["inspect", "-f", "{{.HostConfig.UsernsMode}}", "uh"]);
    assert_eq!(text(&out.stdout).trim(), "host");
    assert!(fx.berth(&["rm", "-f", "uh"]).status.success());
    for v in ["private", "keep-id", "auto", "1000:1000"] {
        let out = fx.run(&["--rm", "--userns", v, "busybox", "true"]);
        assert_eq!(out.status.code(), Some(125), "{v}");
        assert!(
            text(&out.stderr).contains("not supported"),
            "{}",
            text(&out.stderr)
        );
    }
    fx.assert_no_leaks();
}

#[test]
fn platform_selects_the_manifest_and_refuses_a_mismatched_local_image() {
    if !prerequisites() {
        return;
    }
    if !std::path::Path::new("/usr/bin/docker-registry").exists() {
        eprintln!("skipping: needs /usr/bin/docker-registry");
        return;
    }
    let reg = common::Registry::start(common::Auth::None, false);
    let client = reg.client(&berth_image::registry::RegistryOptions::default());
    // Both images run the host's busybox; only the marker file tells them apart.
    let base = common::base_layer();
    let marker = common::layer(&[("arm64-marker", b"arm\n")]);
    let (d_amd, b_amd) = common::push_image(&client, "multi", "amd64", "amd64", &[&base], false);
    let (d_arm, b_arm) =
        common::push_image(&client, "multi", "arm64", "arm64", &[&base, &marker], true);
    common::push_index(
        &client,
        "multi",
        "latest",
        &[
            (&d_amd, b_amd.len(), "amd64"),
            (&d_arm, b_arm.len(), "arm64"),
        ],
    );
    let fx = Fixture::in_host_netns();
    let image = format!("{}/multi", reg.host());
    let out = fx.run(&[
        "--rm",
        "--platform",
        "linux/arm64",
        &image,
        "/bin/busybox",
        "cat",
        "/arm64-marker",
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "arm\n");
    // The local image is arm64 now: asking for amd64 is refused, naming both platforms.
    let out = fx.run(&[
        "--rm",
        "--platform",
        "linux/amd64",
        &image,
        "/bin/busybox",
        "true",
    ]);
    assert_eq!(out.status.code(), Some(125));
    let err = text(&out.stderr);
    assert!(
        err.contains("wanted linux/amd64") && err.contains("actual linux/arm64"),
        "{err}"
    );
    // --pull always fetches the asked platform's manifest.
    let out = fx.run(&[
        "--rm",
        "--pull",
        "always",
        "--platform",
        "linux/amd64",
        &image,
        "/bin/sh",
        "-c",
        "[ ! -e /arm64-marker ] && echo amd",
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "amd\n");
    // Bad values: 125 before anything is made.
    for p in ["linux", "linux/s390x"] {
        let out = fx.run(&["--rm", "--pull", "always", "--platform", p, &image, "true"]);
        assert_eq!(out.status.code(), Some(125), "{p}");
        assert!(text(&out.stderr).contains(p), "{}", text(&out.stderr));
    }
    fx.assert_no_leaks();
}

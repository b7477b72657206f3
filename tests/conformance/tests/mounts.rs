//! Root filesystem and mounts: bind (ro), tmpfs options, proc/sysfs/mqueue/devpts/cgroup, /dev
//! defaults, linux.devices, maskedPaths/readonlyPaths, root.readonly.

use berth_conformance::{mount_at, require_root, run_script, Bundle, Runtime};
use serde_json::{json, Value};
use std::fs;

const EROFS: i64 = 30;

/// Merges one-key JSON lines into one object.
fn merge(lines: &[Value]) -> Value {
    let mut m = serde_json::Map::new();
    for l in lines {
        if let Some(o) = l.as_object() {
            m.extend(o.clone());
        }
    }
    Value::Object(m)
}

fn has(list: &Value, item: &str) -> bool {
    list.as_array().is_some_and(|a| a.iter().any(|x| x == item))
}

#[test]
fn mount_bind_readonly() {
    require_root!();
    let rt = Runtime::new();
    let mut b = Bundle::new();
    let src = b.host_dir("data");
    fs::write(src.join("file"), "from the host").unwrap();
    let s = src.to_string_lossy().into_owned();
    b.spec.mount("/data", "bind", &s, &["rbind", "ro"]);
    b.spec.mount("/data-rw", "bind", &s, &["bind", "rw"]);
    let v = run_script(
        &rt,
        &mut b,
        "/probe read /data/file; /probe write /data/file x; /probe write /data-rw/file changed",
    );
    assert_eq!(v[0]["content"], "from the host");
    assert_eq!(v[1]["ok"], false, "ro bind mount is writable: {}", v[1]);
    assert_eq!(v[1]["errno"], EROFS);
    assert_eq!(v[2]["ok"], true, "rw bind mount not writable: {}", v[2]);
    assert!(fs::read_to_string(src.join("file"))
        .unwrap()
        .starts_with("changed"));
}

#[test]
fn mount_tmpfs_with_options() {
    require_root!();
    let rt = Runtime::new();
    let mut b = Bundle::new();
    b.spec.mount(
        "/scratch",
        "tmpfs",
        "tmpfs",
        &["nosuid", "nodev", "size=1m", "mode=1750"],
    );
    let v = run_script(&rt, &mut b, "/probe dump; /probe stat /scratch");
    let m = mount_at(&v[0], "/scratch").unwrap_or_else(|| panic!("no /scratch mount"));
    assert_eq!(m["fstype"], "tmpfs");
    assert!(
        has(&m["options"], "nosuid") && has(&m["options"], "nodev"),
        "{m}"
    );
    assert!(has(&m["super_options"], "size=1024k"), "{m}");
    assert_eq!(v[1]["/scratch"]["mode"], 0o1750);
}

#[test]
fn mount_default_filesystems() {
    require_root!();
    let rt = Runtime::new();
    let mut b = Bundle::new();
    let v = rt.run_probe(&mut b, &[]);
    for (target, fstype) in [
        ("/proc", "proc"),
        ("/sys", "sysfs"),
        ("/dev", "tmpfs"),
        ("/dev/pts", "devpts"),
        ("/dev/shm", "tmpfs"),
        ("/dev/mqueue", "mqueue"),
    ] {
        let m =
            mount_at(&v, target).unwrap_or_else(|| panic!("no {target} mount: {}", v["mounts"]));
        assert_eq!(m["fstype"], fstype, "{target}: {m}");
    }
    assert!(has(&mount_at(&v, "/sys").unwrap()["options"], "ro"));
    let devpts = mount_at(&v, "/dev/pts").unwrap();
    assert!(has(&devpts["super_options"], "gid=5"), "{devpts}");
    // The cgroup mount: cgroup2 at /sys/fs/cgroup, or v1 hierarchies below it.
    let cg: Vec<&Value> = v["mounts"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| {
            m["target"]
                .as_str()
                .unwrap_or("")
                .starts_with("/sys/fs/cgroup")
                && (m["fstype"] == "cgroup" || m["fstype"] == "cgroup2")
        })
        .collect();
    assert!(!cg.is_empty(), "no cgroup filesystem mounted");
    assert!(
        cg.iter().all(|m| has(&m["options"], "ro")),
        "cgroup mount not read-only: {cg:?}"
    );
    // The root is the bundle's rootfs, not the host's /.
    let root = mount_at(&v, "/").unwrap();
    assert!(
        root["root"].as_str().unwrap_or("").ends_with("/rootfs"),
        "{root}"
    );
}

#[test]
fn dev_default_devices_and_links() {
    require_root!();
    let rt = Runtime::new();
    let mut b = Bundle::new();
    let v = rt.run_probe(&mut b, &[]);
    let dev = &v["dev"];
    for (path, major, minor) in [
        ("/dev/null", 1, 3),
        ("/dev/zero", 1, 5),
        ("/dev/full", 1, 7),
        ("/dev/random", 1, 8),
        ("/dev/urandom", 1, 9),
        ("/dev/tty", 5, 0),
    ] {
        assert_eq!(dev[path]["type"], "char", "{path}: {}", dev[path]);
        assert_eq!(dev[path]["major"], major, "{path}");
        assert_eq!(dev[path]["minor"], minor, "{path}");
        assert_eq!(dev[path]["mode"], 0o666, "{path}");
    }
    for (link, target) in [
        ("/dev/fd", "/proc/self/fd"),
        ("/dev/stdin", "/proc/self/fd/0"),
        ("/dev/stdout", "/proc/self/fd/1"),
        ("/dev/stderr", "/proc/self/fd/2"),
        ("/dev/ptmx", "pts/ptmx"),
    ] {
        assert_eq!(dev[link]["type"], "symlink", "{link}");
        assert_eq!(dev[link]["target"], target, "{link}");
    }
    assert_eq!(dev["/dev/shm"]["type"], "dir");
    assert_eq!(dev["/dev/pts/ptmx"]["major"], 5);
}

#[test]
fn linux_devices_created() {
    require_root!();
    let rt = Runtime::new();
    let mut b = Bundle::new();
    b.spec
        .device("/dev/berth-char", "c", (1, 3), 0o640, (1000, 2000))
        .device("/dev/sub/berth-block", "b", (7, 200), 0o600, (0, 6))
        .device("/dev/berth-fifo", "p", (0, 0), 0o620, (0, 0));
    let v = run_script(
        &rt,
        &mut b,
        "/probe stat /dev/berth-char /dev/sub/berth-block /dev/berth-fifo",
    );
    let c = &v[0]["/dev/berth-char"];
    assert_eq!(
        (
            c["type"].clone(),
            c["major"].clone(),
            c["minor"].clone(),
            c["mode"].clone(),
            c["uid"].clone(),
            c["gid"].clone()
        ),
        (
            json!("char"),
            json!(1),
            json!(3),
            json!(0o640),
            json!(1000),
            json!(2000)
        ),
        "{c}"
    );
    let bl = &v[0]["/dev/sub/berth-block"];
    assert_eq!(bl["type"], "block", "{bl}");
    assert_eq!(
        (bl["major"].clone(), bl["minor"].clone()),
        (json!(7), json!(200))
    );
    assert_eq!(bl["mode"], 0o600);
    assert_eq!(bl["gid"], 6);
    let p = &v[0]["/dev/berth-fifo"];
    assert_eq!(p["type"], "fifo", "{p}");
}

#[test]
fn masked_and_readonly_paths() {
    require_root!();
    let rt = Runtime::new();
    let mut b = Bundle::new();
    fs::write(b.rootfs().join("etc/secret"), "top secret").unwrap();
    fs::create_dir_all(b.rootfs().join("srv/hidden")).unwrap();
    fs::write(b.rootfs().join("srv/hidden/x"), "x").unwrap();
    b.spec.masked_paths(&[
        "/proc/timer_list",
        "/etc/secret",
        "/srv/hidden",
        "/sys/firmware",
    ]);
    b.spec.readonly_paths(&["/proc/sys", "/etc"]);
    let lines = run_script(
        &rt,
        &mut b,
        r#"echo "{\"stat\":$(/probe stat /proc/timer_list /etc/secret)}"
           echo "{\"read\":$(/probe read /etc/secret)}"
           echo "{\"hidden\":$(ls /srv/hidden | wc -l)}"
           echo "{\"sys\":$(/probe write /proc/sys/kernel/hostname evil)}"
           echo "{\"etc\":$(/probe write /etc/passwd x)}""#,
    );
    let v = merge(&lines);
    // A masked file is /dev/null bound over it; a masked directory is an empty read-only tmpfs.
    let masked = &v["stat"]["/proc/timer_list"];
    assert_eq!(
        (
            masked["type"].clone(),
            masked["major"].clone(),
            masked["minor"].clone()
        ),
        (json!("char"), json!(1), json!(3)),
        "{masked}"
    );
    assert_eq!(v["stat"]["/etc/secret"]["type"], "char");
    assert_eq!(v["read"]["content"], "", "masked file readable: {v}");
    assert_eq!(v["hidden"], 0, "masked dir not empty: {v}");
    assert_eq!(v["sys"]["ok"], false, "/proc/sys writable: {v}");
    assert_eq!(v["sys"]["errno"], EROFS);
    assert_eq!(v["etc"]["ok"], false, "readonly /etc writable: {v}");
    assert_eq!(v["etc"]["errno"], EROFS);
    assert_eq!(
        fs::read_to_string(b.rootfs().join("etc/secret")).unwrap(),
        "top secret"
    );
}

#[test]
fn root_readonly() {
    require_root!();
    let rt = Runtime::new();
    let mut b = Bundle::new();
    b.spec.readonly_root(true);
    let v = run_script(&rt, &mut b, "/probe write /etc/passwd x; /probe dump");
    assert_eq!(v[0]["ok"], false, "read-only root is writable");
    assert_eq!(v[0]["errno"], EROFS);
    assert!(has(&mount_at(&v[1], "/").unwrap()["options"], "ro"));

    let mut b2 = Bundle::new();
    b2.spec.readonly_root(false);
    let v2 = run_script(
        &rt,
        &mut b2,
        "/probe write /etc/passwd root:x:0:0::/:/bin/sh",
    );
    assert_eq!(
        v2[0]["ok"], true,
        "writable root refused a write: {}",
        v2[0]
    );
}

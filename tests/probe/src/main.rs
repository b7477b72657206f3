//! `berth-probe`: a small static binary that the conformance tests copy into a container's rootfs
//! as `/probe`. It reports what the container sees as one JSON document on stdout, so the host
//! side of a test compares values instead of parsing shell output.
//!
//! It reads everything from `/proc` and the filesystem with the standard library only: no `unsafe`,
//! no libc calls, so it links statically (`-C target-feature=+crt-static`) and runs in a rootfs
//! that has no dynamic loader.
//!
//! Commands (`/probe <command> [args]`):
//! - `dump [SYSCTL...]` (the default): identity, capabilities, seccomp, rlimits, cwd, env, fds,
//!   mounts, namespaces, `/dev`, cgroup, id maps, umask, oom_score_adj, time-namespace offsets and
//!   the values of the named sysctls (`kernel.shmmax` style names).
//! - `stat PATH...`: `lstat` of each path: type, mode, device numbers, symlink target.
//! - `read PATH`: the file's content (or the error).
//! - `write PATH TEXT`: try to write TEXT to PATH (no create, no truncate); reports success/error.
//! - `open-write PATH`: try `open(PATH, O_WRONLY)` without writing; reports success/error.
//! - `fds PID`: the fds of `/proc/PID/fd` with their link targets.
//! - `exe-attack STOPFILE`: until STOPFILE exists (at most 5 minutes), open every other
//!   process's `/proc/N/exe` for writing (the CVE-2019-5736 attack, minus the write); reports
//!   attempts and successes.
//! - `spawn N`: try to start N `/bin/sleep` children (pids limit tests); reports how many
//!   started and the first error, then kills and reaps them.
//! - `exit CODE`: exit with CODE (exit-code propagation tests).

use serde_json::{json, Map, Value};
use std::collections::BTreeSet;
use std::fs::{self, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::Path;
use std::time::{Duration, Instant};

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let cmd = args.first().map(String::as_str).unwrap_or("dump");
    let rest = if args.is_empty() { &[][..] } else { &args[1..] };
    let out = match cmd {
        "dump" => dump(rest),
        "stat" => Value::Object(
            rest.iter()
                .map(|p| (p.clone(), stat(Path::new(p))))
                .collect(),
        ),
        "read" => one_arg(rest).map_or_else(usage, read),
        "write" => match rest {
            [path, text] => write(path, text),
            _ => usage(),
        },
        "open-write" => one_arg(rest).map_or_else(usage, open_write),
        "fds" => one_arg(rest).map_or_else(usage, |pid| fds(&format!("/proc/{pid}/fd"))),
        "exe-attack" => one_arg(rest).map_or_else(usage, exe_attack),
        "fd-attack" => one_arg(rest).map_or_else(usage, fd_attack),
        "spawn" => one_arg(rest)
            .and_then(|n| n.parse().ok())
            .map_or_else(usage, spawn),
        "exit" => {
            let code = one_arg(rest).and_then(|c| c.parse().ok()).unwrap_or(1);
            std::process::exit(code);
        }
        _ => usage(),
    };
    println!("{out}");
}

fn one_arg(rest: &[String]) -> Option<&str> {
    match rest {
        [a] => Some(a),
        _ => None,
    }
}

fn usage() -> Value {
    eprintln!("usage: probe [dump [SYSCTL...] | stat PATH... | read PATH | write PATH TEXT | open-write PATH | fds PID | exe-attack STOPFILE | spawn N | exit CODE]");
    std::process::exit(2);
}

fn err_json(e: &std::io::Error) -> Value {
    json!({ "error": e.to_string(), "errno": e.raw_os_error() })
}

fn read_trim(path: &str) -> Value {
    match fs::read_to_string(path) {
        Ok(s) => Value::String(s.trim_end_matches('\n').to_string()),
        Err(e) => err_json(&e),
    }
}

fn read(path: &str) -> Value {
    match fs::read(path) {
        Ok(b) => json!({ "ok": true, "content": String::from_utf8_lossy(&b) }),
        Err(e) => json!({ "ok": false, "error": e.to_string(), "errno": e.raw_os_error() }),
    }
}

fn write(path: &str, text: &str) -> Value {
    let res = OpenOptions::new()
        .write(true)
        .open(path)
        .and_then(|mut f| f.write_all(text.as_bytes()));
    match res {
        Ok(()) => json!({ "ok": true }),
        Err(e) => json!({ "ok": false, "error": e.to_string(), "errno": e.raw_os_error() }),
    }
}

fn open_write(path: &str) -> Value {
    match OpenOptions::new().write(true).open(path) {
        Ok(_) => json!({ "ok": true }),
        Err(e) => json!({ "ok": false, "error": e.to_string(), "errno": e.raw_os_error() }),
    }
}

/// glibc's `major()`/`minor()` for a 64-bit `dev_t` (see makedev(3)).
fn major_minor(dev: u64) -> (u64, u64) {
    let major = ((dev >> 8) & 0xfff) | ((dev >> 32) & !0xfff);
    let minor = (dev & 0xff) | ((dev >> 12) & !0xff);
    (major, minor)
}

fn stat(path: &Path) -> Value {
    let md = match fs::symlink_metadata(path) {
        Ok(md) => md,
        Err(e) => return err_json(&e),
    };
    let ft = md.file_type();
    let kind = if ft.is_symlink() {
        "symlink"
    } else if ft.is_dir() {
        "dir"
    } else if ft.is_file() {
        "file"
    } else if ft.is_char_device() {
        "char"
    } else if ft.is_block_device() {
        "block"
    } else if ft.is_fifo() {
        "fifo"
    } else if ft.is_socket() {
        "socket"
    } else {
        "unknown"
    };
    let mut v = json!({
        "type": kind,
        "mode": md.mode() & 0o7777,
        "uid": md.uid(),
        "gid": md.gid(),
        "size": md.size(),
    });
    if ft.is_char_device() || ft.is_block_device() {
        let (major, minor) = major_minor(md.rdev());
        v["major"] = json!(major);
        v["minor"] = json!(minor);
    }
    if ft.is_symlink() {
        if let Ok(t) = fs::read_link(path) {
            v["target"] = json!(t.to_string_lossy());
        }
    }
    v
}

/// `/proc/self/status` as a map of the fields the tests care about.
fn status() -> Value {
    let text = match fs::read_to_string("/proc/self/status") {
        Ok(t) => t,
        Err(e) => return err_json(&e),
    };
    let mut m = Map::new();
    for line in text.lines() {
        let Some((k, v)) = line.split_once(':') else {
            continue;
        };
        let v = v.trim();
        let num_list = |v: &str| -> Value {
            v.split_whitespace()
                .filter_map(|x| x.parse::<u64>().ok())
                .collect()
        };
        match k {
            "Uid" | "Gid" => {
                m.insert(k.to_string(), num_list(v));
            }
            "Groups" => {
                m.insert(k.to_string(), num_list(v));
            }
            "CapInh" | "CapPrm" | "CapEff" | "CapBnd" | "CapAmb" => {
                m.insert(k.to_string(), json!(u64::from_str_radix(v, 16).ok()));
            }
            "Seccomp" | "NoNewPrivs" | "Seccomp_filters" => {
                m.insert(k.to_string(), json!(v.parse::<u64>().ok()));
            }
            "Umask" => {
                m.insert(k.to_string(), json!(u32::from_str_radix(v, 8).ok()));
            }
            "Pid" | "PPid" | "NSpid" | "Name" => {
                m.insert(k.to_string(), json!(v));
            }
            _ => {}
        }
    }
    Value::Object(m)
}

/// `/proc/self/limits`, keyed by the `RLIMIT_*` name; `null` means unlimited.
fn limits() -> Value {
    const NAMES: &[(&str, &str)] = &[
        ("Max cpu time", "RLIMIT_CPU"),
        ("Max file size", "RLIMIT_FSIZE"),
        ("Max data size", "RLIMIT_DATA"),
        ("Max stack size", "RLIMIT_STACK"),
        ("Max core file size", "RLIMIT_CORE"),
        ("Max resident set", "RLIMIT_RSS"),
        ("Max processes", "RLIMIT_NPROC"),
        ("Max open files", "RLIMIT_NOFILE"),
        ("Max locked memory", "RLIMIT_MEMLOCK"),
        ("Max address space", "RLIMIT_AS"),
        ("Max file locks", "RLIMIT_LOCKS"),
        ("Max pending signals", "RLIMIT_SIGPENDING"),
        ("Max msgqueue size", "RLIMIT_MSGQUEUE"),
        ("Max nice priority", "RLIMIT_NICE"),
        ("Max realtime priority", "RLIMIT_RTPRIO"),
        ("Max realtime timeout", "RLIMIT_RTTIME"),
    ];
    let text = match fs::read_to_string("/proc/self/limits") {
        Ok(t) => t,
        Err(e) => return err_json(&e),
    };
    let mut m = Map::new();
    for line in text.lines().skip(1) {
        for (label, name) in NAMES {
            if let Some(rest) = line.strip_prefix(label) {
                let mut it = rest.split_whitespace();
                let parse = |s: Option<&str>| -> Value {
                    match s {
                        Some("unlimited") | None => Value::Null,
                        Some(n) => json!(n.parse::<u64>().ok()),
                    }
                };
                let soft = parse(it.next());
                let hard = parse(it.next());
                m.insert((*name).to_string(), json!({ "soft": soft, "hard": hard }));
            }
        }
    }
    Value::Object(m)
}

/// The entries of an fd directory with their link targets. The directory's own fd shows up in
/// the listing while it is being read; it is dropped by checking which targets still resolve.
fn fds(dir: &str) -> Value {
    let entries = match fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) => return err_json(&e),
    };
    let names: Vec<String> = entries
        .filter_map(Result::ok)
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    let mut m = Map::new();
    for n in names {
        // The fd used for read_dir is closed now: its link no longer resolves, so it is skipped.
        if let Ok(t) = fs::read_link(format!("{dir}/{n}")) {
            m.insert(n, json!(t.to_string_lossy()));
        }
    }
    Value::Object(m)
}

/// `/proc/self/mountinfo` (proc(5)), one object per line.
fn mounts() -> Value {
    let text = match fs::read_to_string("/proc/self/mountinfo") {
        Ok(t) => t,
        Err(e) => return err_json(&e),
    };
    let unescape = |s: &str| {
        s.replace("\\040", " ")
            .replace("\\011", "\t")
            .replace("\\012", "\n")
    };
    text.lines()
        .filter_map(|line| {
            let (left, right) = line.split_once(" - ")?;
            let l: Vec<&str> = left.split(' ').collect();
            let r: Vec<&str> = right.split(' ').collect();
            if l.len() < 6 || r.len() < 3 {
                return None;
            }
            Some(json!({
                "id": l[0].parse::<u64>().ok(),
                "parent": l[1].parse::<u64>().ok(),
                "dev": l[2],
                "root": unescape(l[3]),
                "target": unescape(l[4]),
                "options": l[5].split(',').collect::<Vec<_>>(),
                "propagation": l[6..].to_vec(),
                "fstype": r[0],
                "source": unescape(r[1]),
                "super_options": r[2].split(',').collect::<Vec<_>>(),
            }))
        })
        .collect()
}

fn namespaces() -> Value {
    let mut m = Map::new();
    for ns in [
        "cgroup",
        "ipc",
        "mnt",
        "net",
        "pid",
        "pid_for_children",
        "time",
        "time_for_children",
        "user",
        "uts",
    ] {
        let v = match fs::read_link(format!("/proc/self/ns/{ns}")) {
            Ok(t) => json!(t.to_string_lossy()),
            Err(e) => err_json(&e),
        };
        m.insert(ns.to_string(), v);
    }
    Value::Object(m)
}

fn dev_listing() -> Value {
    let mut m = Map::new();
    let mut walk = vec![std::path::PathBuf::from("/dev")];
    while let Some(dir) = walk.pop() {
        let Ok(entries) = fs::read_dir(&dir) else {
            continue;
        };
        for e in entries.filter_map(Result::ok) {
            let p = e.path();
            let st = stat(&p);
            // Descend one level (pts, shm, mqueue) but not further: /dev is small.
            if st["type"] == "dir" && dir == Path::new("/dev") {
                walk.push(p.clone());
            }
            m.insert(p.to_string_lossy().into_owned(), st);
        }
    }
    Value::Object(m)
}

fn sysctls(names: &[String]) -> Value {
    names
        .iter()
        .map(|n| {
            let path = format!("/proc/sys/{}", n.replace('.', "/"));
            (n.clone(), read_trim(&path))
        })
        .collect::<Map<_, _>>()
        .into()
}

fn dump(sysctl_names: &[String]) -> Value {
    let cwd = match std::env::current_dir() {
        Ok(p) => json!(p.to_string_lossy()),
        Err(e) => err_json(&e),
    };
    let env: Map<String, Value> = std::env::vars_os()
        .map(|(k, v)| (k.to_string_lossy().into_owned(), json!(v.to_string_lossy())))
        .collect();
    json!({
        "pid": std::process::id(),
        "hostname": read_trim("/proc/sys/kernel/hostname"),
        "domainname": read_trim("/proc/sys/kernel/domainname"),
        "status": status(),
        "limits": limits(),
        "cwd": cwd,
        "env": env,
        "fds": fds("/proc/self/fd"),
        "mounts": mounts(),
        "ns": namespaces(),
        "dev": dev_listing(),
        "cgroup": read_trim("/proc/self/cgroup"),
        "uid_map": read_trim("/proc/self/uid_map"),
        "gid_map": read_trim("/proc/self/gid_map"),
        "oom_score_adj": read_trim("/proc/self/oom_score_adj"),
        "timens_offsets": read_trim("/proc/self/timens_offsets"),
        "uptime": read_trim("/proc/uptime"),
        "sysctl": sysctls(sysctl_names),
    })
}

/// The CVE-2019-5736 attack without the damage: watch for processes that appear in the
/// container's PID namespace (a runtime joining it for `exec`) and try to open their
/// `/proc/N/exe` for writing. A vulnerable runtime lets the open succeed (the attacker would then
/// write into the host binary); a safe one gives ETXTBSY/EACCES/EPERM or an exe that is a sealed
/// copy. The probe never writes, so a vulnerable runtime is reported, not destroyed.
fn exe_attack(stop_file: &str) -> Value {
    let me = std::process::id().to_string();
    // A safety net only: the host ends the attack by creating the stop file.
    let deadline = Instant::now() + Duration::from_secs(300);
    let mut attempts = 0u64;
    let mut opened: Vec<Value> = Vec::new();
    let mut pids_seen = BTreeSet::new();
    while Instant::now() < deadline && !Path::new(stop_file).exists() {
        let Ok(entries) = fs::read_dir("/proc") else {
            break;
        };
        for e in entries.filter_map(Result::ok) {
            let name = e.file_name().to_string_lossy().into_owned();
            if name == me || !name.bytes().all(|b| b.is_ascii_digit()) {
                continue;
            }
            let exe = format!("/proc/{name}/exe");
            let target = fs::read_link(&exe)
                .map(|t| t.to_string_lossy().into_owned())
                .unwrap_or_default();
            pids_seen.insert(name.clone());
            attempts += 1;
            if OpenOptions::new().write(true).open(&exe).is_ok() {
                opened.push(json!({ "pid": name, "exe": target }));
            }
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    json!({ "attempts": attempts, "pids_seen": pids_seen, "opened_for_write": opened })
}

/// CVE-2016-9962: until the stop file appears, try to reach into every other process of the
/// container while it still runs runtime code (its `comm` is the runtime's, before `execve`):
/// reading `/proc/PID/fd/N` needs the same ptrace access check as attaching to it, so any
/// runtime descriptor read there means a joining `exec` process could be ptraced and its
/// descriptors taken.
fn fd_attack(stop_file: &str) -> Value {
    let me = std::process::id().to_string();
    let deadline = Instant::now() + Duration::from_secs(300);
    let mut attempts = 0u64;
    let mut runtime_seen = 0u64;
    let mut reached: Vec<Value> = Vec::new();
    while Instant::now() < deadline && !Path::new(stop_file).exists() {
        let Ok(entries) = fs::read_dir("/proc") else {
            break;
        };
        for e in entries.filter_map(Result::ok) {
            let name = e.file_name().to_string_lossy().into_owned();
            if name == me || name == "1" || !name.bytes().all(|b| b.is_ascii_digit()) {
                continue;
            }
            let comm = fs::read_to_string(format!("/proc/{name}/comm")).unwrap_or_default();
            let comm = comm.trim();
            if !(comm.contains("runc") || comm.contains("berth")) {
                continue;
            }
            runtime_seen += 1;
            attempts += 1;
            // Reading a descriptor's link takes the ptrace check. Descriptors 0-2 are the stdio
            // the caller hands the process; execve makes the process dumpable again a moment
            // before its comm changes, when only those remain. Anything above 2 that can be
            // read is a runtime descriptor a container process could have taken.
            if let Ok(fds) = fs::read_dir(format!("/proc/{name}/fd")) {
                let leaked: Vec<String> = fds
                    .filter_map(Result::ok)
                    .filter(|f| {
                        f.file_name()
                            .to_str()
                            .and_then(|n| n.parse::<u32>().ok())
                            .is_some_and(|n| n > 2)
                    })
                    .filter_map(|f| fs::read_link(f.path()).ok())
                    .map(|t| t.to_string_lossy().into_owned())
                    .collect();
                if !leaked.is_empty() {
                    reached.push(json!({ "pid": name, "comm": comm, "fds": leaked }));
                }
            }
        }
        std::thread::yield_now();
    }
    json!({ "attempts": attempts, "runtime_processes_seen": runtime_seen, "reached": reached })
}

fn spawn(n: u32) -> Value {
    let mut children = Vec::new();
    let mut first_error = Value::Null;
    for _ in 0..n {
        match std::process::Command::new("/bin/sleep").arg("1000").spawn() {
            Ok(c) => children.push(c),
            Err(e) if first_error.is_null() => first_error = err_json(&e),
            Err(_) => {}
        }
    }
    let started = children.len();
    for mut c in children {
        let _ = c.kill();
        let _ = c.wait();
    }
    json!({ "started": started, "error": first_error })
}

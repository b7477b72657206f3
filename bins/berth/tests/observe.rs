//! End-to-end tests of the observing commands (`stats`, `events`, `ps -s`, the "Restarting"
//! state) against the real `berth` binary, as root, with the engine tests' fixture (own
//! `--root` under /tmp, cgroup parent under /berth-test/, no leaks afterwards).

mod common;

use std::io::Read;
use std::process::Stdio;
use std::time::{Duration, Instant};

use common::fixture::*;
use common::ok;
use serde_json::Value;

/// Runs `berth ARGS` in the background, runs `during`, then reads its stdout until `done`
/// holds for what it printed (or 20 s pass), kills it (by its pid) and returns the output.
fn read_until(
    fx: &Fixture,
    args: &[&str],
    during: impl FnOnce(),
    done: impl Fn(&str) -> bool,
) -> String {
    let mut child = fx
        .cmd(BERTH)
        .arg("--root")
        .arg(fx.root())
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut out = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel::<Vec<u8>>();
    std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        while let Ok(n) = out.read(&mut buf) {
            if n == 0 || tx.send(buf[..n].to_vec()).is_err() {
                break;
            }
        }
    });
    // Killed (by its pid) even when `during` panics.
    struct Kill(std::process::Child);
    impl Drop for Kill {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let guard = Kill(child);
    during();
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut got = Vec::new();
    while !done(&String::from_utf8_lossy(&got)) && Instant::now() < deadline {
        if let Ok(chunk) = rx.recv_timeout(Duration::from_millis(100)) {
            got.extend(chunk);
        }
    }
    drop(guard);
    String::from_utf8_lossy(&got).into_owned()
}

fn json_lines(s: &str) -> Vec<Value> {
    s.lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l:?}")))
        .collect()
}

fn percent(v: &Value) -> f64 {
    v.as_str().unwrap().trim_end_matches('%').parse().unwrap()
}

#[test]
fn stats_reports_cpu_memory_pids_in_every_format_and_streams() {
    if !prerequisites() {
        return;
    }
    let fx = Fixture::new();
    // A busy loop under a 64 MiB limit that also holds 20 MiB in a tmpfs (charged to its
    // memory cgroup) and runs three processes.
    let out = fx.run(&[
        "-d",
        "--name",
        "busy",
        "--network",
        "none",
        "-m",
        "64m",
        "--tmpfs",
        "/fill",
        "busybox",
        "sh",
        "-c",
        "busybox dd if=/dev/zero of=/fill/x bs=1M count=20 2>/dev/null; sleep 1000 & sleep 1000 & while :; do :; done",
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let busy_id = text(&out.stdout).trim().to_owned();
    let out = fx.run(&["-d", "--name", "idle", "busybox", "sleep", "1000"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let out = fx.run(&["--name", "gone", "busybox", "true"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    // Let the shell fill its tmpfs and start its children.
    std::thread::sleep(Duration::from_millis(500));

    // The default table: Docker's columns, one row per running container.
    let table = ok(fx.berth(&["stats", "--no-stream"]));
    let mut lines = table.lines();
    let header = lines.next().unwrap();
    for col in [
        "CONTAINER ID",
        "NAME",
        "CPU %",
        "MEM USAGE / LIMIT",
        "MEM %",
        "NET I/O",
        "BLOCK I/O",
        "PIDS",
    ] {
        assert!(header.contains(col), "{header}");
    }
    let rows: Vec<&str> = lines.collect();
    assert_eq!(rows.len(), 2, "{table}");
    assert!(
        rows.iter().any(|r| r.starts_with(&busy_id[..12])),
        "{table}"
    );
    assert!(
        !table.contains("gone"),
        "a stopped container is shown only with -a"
    );

    // JSON: the numbers are real.
    let all = json_lines(&ok(fx.berth(&["stats", "--no-stream", "--format", "json"])));
    let busy = all.iter().find(|v| v["Name"] == "busy").unwrap();
    let idle = all.iter().find(|v| v["Name"] == "idle").unwrap();
    assert!(percent(&busy["CPUPerc"]) > 1.0, "{busy}");
    let mem = busy["MemUsage"].as_str().unwrap();
    let (usage, limit) = mem.split_once(" / ").unwrap();
    assert_eq!(limit, "64MiB", "{busy}");
    let mib: f64 = usage.trim_end_matches("MiB").parse().unwrap_or(0.0);
    assert!(usage.ends_with("MiB") && mib >= 20.0, "{busy}");
    assert!(percent(&busy["MemPerc"]) >= 30.0, "{busy}");
    assert_eq!(
        busy["PIDs"], "3",
        "the shell and two sleeps (dd is done): {busy}"
    );
    assert_eq!(idle["PIDs"], "1");
    // --network none: only lo, which Docker does not count.
    assert_eq!(busy["NetIO"], "0B / 0B");
    // On the default bridge: eth0's counters, in Docker's units.
    let net = idle["NetIO"].as_str().unwrap();
    assert!(net.contains(" / ") && net.ends_with('B'), "{idle}");
    assert!(busy["BlockIO"].as_str().unwrap().contains(" / "));
    // No limit: the host's memory.
    assert!(
        !idle["MemUsage"].as_str().unwrap().ends_with("/ 0B"),
        "{idle}"
    );

    // Named containers, a template, --no-trunc, -a.
    let out = ok(fx.berth(&[
        "stats",
        "--no-stream",
        "--no-trunc",
        "--format",
        "{{.Container}} {{.ID}} {{.Name}}",
        "busy",
    ]));
    assert_eq!(out, format!("busy {busy_id} busy\n"));
    let out = ok(fx.berth(&[
        "stats",
        "-a",
        "--no-stream",
        "--format",
        "table {{.Name}}\t{{.CPUPerc}}\t{{.PIDs}}",
    ]));
    assert!(out.starts_with("NAME\tCPU %\tPIDS\n"), "{out}");
    assert!(out.contains("gone\t0.00%\t0\n"), "{out}");

    // Streaming redraws (clear screen, home) about every second.
    let stream = read_until(
        &fx,
        &["stats", "busy"],
        || {},
        |s| s.matches("\x1b[2J\x1b[H").count() >= 3,
    );
    let frames = stream.matches("\x1b[2J\x1b[H").count();
    assert!(frames >= 2, "{frames} frames: {stream:?}");
    assert!(stream.contains("busy"));

    // Bad input: an unknown container, an empty format.
    let out = fx.berth(&["stats", "--no-stream", "busy", "nosuch"]);
    assert_eq!(out.status.code(), Some(125));
    assert!(text(&out.stderr).contains("no such container: nosuch"));
    assert!(out.stdout.is_empty());
    let out = fx.berth(&["stats", "--no-stream", "--format", ""]);
    assert_eq!(out.status.code(), Some(125));

    for c in ["busy", "idle", "gone"] {
        ok(fx.berth(&["rm", "-f", c]));
    }
    fx.assert_no_leaks();
}

/// `Type Action name exitCode` of every event line.
fn summary(events: &[Value]) -> Vec<String> {
    events
        .iter()
        .map(|e| {
            let a = &e["Actor"]["Attributes"];
            let mut s = format!(
                "{} {} {}",
                e["Type"].as_str().unwrap(),
                e["Action"].as_str().unwrap(),
                a["name"].as_str().unwrap_or("")
            );
            if let Some(c) = a["exitCode"].as_str() {
                s.push_str(&format!(" {c}"));
            }
            s
        })
        .collect()
}

#[test]
fn events_follow_the_lifecycle_and_filter_by_time_type_container_event_label() {
    if !prerequisites() {
        return;
    }
    let fx = Fixture::new();
    let t0 = ok(fx.berth(&[
        "events", "--since", "1h", "--until", "0s", "--format", "json",
    ]));
    // The fixture's own `import`.
    assert_eq!(summary(&json_lines(&t0)), ["image import busybox:latest"]);
    // --since takes whole seconds here: start in a fresh one, after the import's.
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap();
    std::thread::sleep(Duration::from_nanos(
        1_000_000_000 - now.subsec_nanos() as u64,
    ));
    let start = now.as_secs() + 1;

    // A follower started before the work sees exactly what happens, in order.
    // The follower starts at a fresh second, so however late it gets going it misses
    // nothing (and shows nothing older).
    let start_s = start.to_string();
    let followed = read_until(
        &fx,
        &["events", "--since", &start_s, "--format", "json"],
        || {
            let out = fx.run(&[
                "--rm",
                "--name",
                "once",
                "-l",
                "tier=front",
                "busybox",
                "sh",
                "-c",
                "exit 3",
            ]);
            assert_eq!(out.status.code(), Some(3));
            ok(fx.run(&[
                "-d",
                "--name",
                "web",
                "busybox",
                "sh",
                "-c",
                "trap 'exit 143' TERM; while :; do sleep 0.1; done",
            ]));
            ok(fx.berth(&["pause", "web"]));
            ok(fx.berth(&["unpause", "web"]));
            ok(fx.berth(&["rename", "web", "front"]));
            ok(fx.berth(&["exec", "front", "true"]));
            ok(fx.berth(&["kill", "-s", "TERM", "front"]));
            ok(fx.berth(&["wait", "front"]));
            ok(fx.berth(&["rm", "front"]));
            ok(fx.berth(&["tag", "busybox", "bb:2"]));
            ok(fx.berth(&["rmi", "bb:2"]));
        },
        |s| s.contains("\"untag\""),
    );
    let got = json_lines(&followed);
    let s = summary(&got);
    let want = [
        "container create once",
        "container start once",
        "container die once 3",
        "container destroy once",
        "container create web",
        "container start web",
        "container pause web",
        "container unpause web",
        "container rename front",
        "container exec_create: true front",
        "container exec_start: true front",
        "container exec_die front 0",
        "container kill front",
        "container die front 143",
        "container destroy front",
        "image tag bb:2",
        "image untag bb:2",
    ];
    assert_eq!(s, want, "{followed}");
    assert!(got.iter().all(|e| e["scope"] == "local"));
    assert_eq!(got[0]["from"], "busybox");
    assert_eq!(
        got[0]["Actor"]["Attributes"]["tier"], "front",
        "labels are attributes"
    );
    assert_eq!(got[8]["Actor"]["Attributes"]["oldName"], "/web");
    assert_eq!(got[12]["Actor"]["Attributes"]["signal"], "15");

    // History with --since/--until returns at once; filters combine as Docker's.
    let since = start.to_string();
    let hist = |extra: &[&str]| {
        let mut args = vec![
            "events", "--since", &since, "--until", "0s", "--format", "json",
        ];
        args.extend_from_slice(extra);
        summary(&json_lines(&ok(fx.berth(&args))))
    };
    assert_eq!(hist(&[]), want);
    assert_eq!(
        hist(&["--filter", "event=die"]),
        ["container die once 3", "container die front 143"]
    );
    assert_eq!(
        hist(&[
            "--filter",
            "container=once",
            "--filter",
            "event=start",
            "--filter",
            "event=destroy"
        ]),
        ["container start once", "container destroy once"]
    );
    assert_eq!(
        hist(&["--filter", "type=image"]),
        ["image tag bb:2", "image untag bb:2"]
    );
    assert_eq!(hist(&["--filter", "label=tier=front"]).len(), 4);
    assert_eq!(
        hist(&["--filter", "image=busybox", "--filter", "event=create"]).len(),
        2
    );
    // The default line and a template.
    let line = ok(fx.berth(&[
        "events",
        "--since",
        &since,
        "--until",
        "0s",
        "--filter",
        "event=die",
    ]));
    let first = line.lines().next().unwrap();
    assert!(first.contains("Z container die "), "{first}");
    assert!(
        first.ends_with("(exitCode=3, image=busybox, name=once, tier=front)"),
        "{first}"
    );
    let tpl = ok(fx.berth(&[
        "events",
        "--since",
        &since,
        "--until",
        "0s",
        "--filter",
        "event=rename",
        "--format",
        "{{.Status}} {{.Actor.Attributes.oldName}} {{.From}}",
    ]));
    assert_eq!(tpl, "rename /web busybox\n");
    // --since without --until prints the history, then follows.
    let followed = read_until(
        &fx,
        &[
            "events",
            "--since",
            &since,
            "--filter",
            "event=die",
            "--format",
            "{{.Actor.Attributes.name}}",
        ],
        || {
            let out = fx.run(&["--rm", "--name", "later", "busybox", "true"]);
            assert!(out.status.success());
        },
        |s| s.contains("later"),
    );
    assert_eq!(followed, "once\nfront\nlater\n");
    // SECONDS.NANOSECONDS, as Docker: from just after the first die, only the second.
    let first_die = &got[2];
    assert_eq!(first_die["Action"], "die");
    let t = first_die["timeNano"].as_i64().unwrap() + 1;
    let after = format!("{}.{:09}", t / 1_000_000_000, t % 1_000_000_000);
    let later = ok(fx.berth(&[
        "events",
        "--since",
        &after,
        "--until",
        "0s",
        "--filter",
        "event=die",
        "--format",
        "{{.Actor.Attributes.name}}",
    ]));
    assert_eq!(later, "front\nlater\n");
    // An --until in the future: it follows until then, then exits by itself.
    let until = (std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + 2)
    .to_string();
    let mut child = fx
        .cmd(BERTH)
        .arg("--root")
        .arg(fx.root())
        .args(["events", "--until", &until])
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(15);
    let status = loop {
        if let Some(st) = child.try_wait().unwrap() {
            break Some(st);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(
        status.is_some_and(|s| s.success()),
        "events --until did not end"
    );
    // An --until in the past before everything shows nothing.
    let none = ok(fx.berth(&["events", "--since", "1", "--until", "2"]));
    assert_eq!(none, "");

    // Bad input.
    for bad in [
        &["events", "--filter", "bogus=1"][..],
        &["events", "--filter", "type"],
        &["events", "--since", "yesterday"],
        &["events", "--since", "0s", "--until", "1h"],
        &["events", "--until", "0s", "--format", ""],
    ] {
        let out = fx.berth(bad);
        assert_eq!(
            out.status.code(),
            Some(125),
            "{bad:?}: {}",
            text(&out.stderr)
        );
        assert!(out.stdout.is_empty());
    }
    fx.assert_no_leaks();
}

/// Polls `f` every 50 ms for up to 10 s.
fn eventually(mut f: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    false
}

#[test]
fn ps_size_shows_the_writable_layer_and_restarting_shows_the_back_off() {
    if !prerequisites() {
        return;
    }
    let fx = Fixture::new();
    ok(fx.run(&[
        "-d",
        "--name",
        "writer",
        "busybox",
        "sh",
        "-c",
        "busybox dd if=/dev/zero of=/big bs=1000 count=100 2>/dev/null; sleep 1000",
    ]));
    let size = || {
        ok(fx.berth(&[
            "ps",
            "-s",
            "--filter",
            "name=writer",
            "--format",
            "{{.Size}}",
        ]))
    };
    assert!(
        eventually(|| size().starts_with("100kB (virtual ")),
        "{}",
        size()
    );
    // The image (busybox) is in the virtual size.
    let virt = size();
    let mb: f64 = virt
        .trim()
        .trim_start_matches("100kB (virtual ")
        .trim_end_matches("MB)")
        .parse()
        .unwrap_or_else(|_| panic!("{virt}"));
    assert!(mb > 0.5, "{virt}");
    let table = ok(fx.berth(&["ps", "-s"]));
    assert!(table.lines().next().unwrap().ends_with("SIZE"), "{table}");
    assert!(table.contains("100kB (virtual"), "{table}");

    // A container that keeps failing under --restart always is "Restarting" between runs.
    ok(fx.run(&[
        "-d",
        "--name",
        "flaky",
        "--restart",
        "always",
        "busybox",
        "sh",
        "-c",
        "exit 2",
    ]));
    let status = || {
        ok(fx.berth(&[
            "ps",
            "-a",
            "--filter",
            "status=restarting",
            "--format",
            "{{.Names}} {{.Status}} {{.State}}",
        ]))
    };
    assert!(
        eventually(|| status().starts_with("flaky Restarting (2) ")),
        "{}",
        status()
    );
    assert!(status().trim_end().ends_with(" restarting"));
    // As in Docker, a restarting container counts as running: plain `ps` lists it.
    assert!(eventually(|| ok(fx.berth(&[
        "ps",
        "--format",
        "{{.Names}} {{.State}}"
    ]))
    .contains("flaky restarting")));
    let inspect = || {
        ok(fx.berth(&[
            "inspect",
            "-f",
            "{{.State.Status}} {{.State.Restarting}} {{.State.Running}}",
            "flaky",
        ]))
    };
    assert!(
        eventually(|| inspect() == "restarting true true\n"),
        "{}",
        inspect()
    );
    // stop cancels the restart and the state at once.
    ok(fx.berth(&["stop", "flaky"]));
    assert_eq!(inspect(), "exited false false\n");
    assert_eq!(status(), "");
    let exited = ok(fx.berth(&[
        "ps",
        "-a",
        "--filter",
        "name=flaky",
        "--format",
        "{{.Status}}",
    ]));
    assert!(exited.starts_with("Exited (2)"), "{exited}");

    for c in ["writer", "flaky"] {
        ok(fx.berth(&["rm", "-f", c]));
    }
    fx.assert_no_leaks();
}

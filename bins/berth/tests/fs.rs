//! End-to-end tests of the container filesystem commands (`cp`, `diff`, `export`, `commit`)
//! against the real `berth` binary, as root, with the engine fixture (own `--root`, busybox
//! image, cgroup parent under /berth-test/, leak check). Without root they skip visibly.

mod common;

use std::collections::BTreeSet;
use std::io::Write;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::process::{Output, Stdio};

use common::fixture::{prerequisites, text, Fixture, BERTH};

fn ok(out: &Output, what: &str) -> String {
    assert!(
        out.status.success(),
        "{what}: exit {:?}, stderr {}",
        out.status.code(),
        text(&out.stderr)
    );
    text(&out.stdout)
}

/// Asserts Docker's failure shape: exit code 1 and `msg` in the error.
fn fails(out: &Output, msg: &str) {
    assert_eq!(
        out.status.code(),
        Some(1),
        "expected exit 1 with {msg:?}, got {:?}: {}",
        out.status.code(),
        text(&out.stderr)
    );
    assert!(
        text(&out.stderr).contains(msg),
        "stderr {:?} lacks {msg:?}",
        text(&out.stderr)
    );
}

/// `berth ARGS` with `input` on standard input.
fn berth_stdin(fx: &Fixture, args: &[&str], input: &[u8]) -> Output {
    let mut child = fx
        .cmd(BERTH)
        .arg("--root")
        .arg(fx.root())
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(input).unwrap();
    child.wait_with_output().unwrap()
}

fn tar_names(data: &[u8]) -> BTreeSet<String> {
    tar::Archive::new(data)
        .entries()
        .unwrap()
        .map(|e| {
            e.unwrap()
                .path()
                .unwrap()
                .to_string_lossy()
                .trim_end_matches('/')
                .to_string()
        })
        .collect()
}

fn exec(fx: &Fixture, ctr: &str, script: &str) -> String {
    ok(&fx.berth(&["exec", ctr, "sh", "-c", script]), script)
}

#[test]
fn cp_in_and_out_of_running_and_stopped_containers() {
    if !prerequisites() {
        return;
    }
    let fx = Fixture::new();
    let host = fx.dir.path().join("host");
    std::fs::create_dir_all(host.join("d/sub")).unwrap();
    std::fs::write(host.join("d/sub/f"), "deep\n").unwrap();
    std::fs::write(host.join("hello.txt"), "hello\n").unwrap();
    let h = |p: &str| host.join(p).to_str().unwrap().to_string();

    std::fs::create_dir(host.join("vol")).unwrap();
    let vol = format!("{}:/data", h("vol"));
    ok(
        &fx.run(&[
            "-d", "--name", "web", "-v", &vol, "busybox", "sleep", "1000",
        ]),
        "run -d",
    );
    // A running container's paths are those its processes see, bind mounts included.
    ok(
        &fx.berth(&["cp", &h("hello.txt"), "web:/data/"]),
        "cp to a volume",
    );
    assert_eq!(
        std::fs::read_to_string(host.join("vol/hello.txt")).unwrap(),
        "hello\n"
    );
    // Host -> container: a file into a directory, under a new name, a directory, and a
    // directory's contents (`/.`) into a new and an existing directory.
    ok(&fx.berth(&["cp", &h("hello.txt"), "web:/tmp/"]), "cp file");
    ok(
        &fx.berth(&["cp", &h("hello.txt"), "web:/tmp/renamed"]),
        "cp rename",
    );
    ok(&fx.berth(&["cp", &h("d"), "web:/tmp"]), "cp dir");
    ok(&fx.berth(&["cp", &h("d/."), "web:/tmp/new"]), "cp contents");
    exec(&fx, "web", "mkdir /tmp/existing");
    ok(
        &fx.berth(&["cp", &h("d/."), "web:/tmp/existing"]),
        "cp contents",
    );
    assert_eq!(
        exec(
            &fx,
            "web",
            "cat /tmp/hello.txt /tmp/renamed /tmp/d/sub/f /tmp/new/sub/f /tmp/existing/sub/f"
        ),
        "hello\nhello\ndeep\ndeep\ndeep\n"
    );
    // Without -a the files belong to the container's root.
    assert_eq!(
        exec(&fx, "web", "busybox stat -c %u:%g /tmp/hello.txt"),
        "0:0\n"
    );
    std::os::unix::fs::chown(host.join("hello.txt"), Some(1234), Some(4321)).unwrap();
    ok(
        &fx.berth(&["cp", "-a", &h("hello.txt"), "web:/tmp/owned"]),
        "cp -a in",
    );
    assert_eq!(
        exec(&fx, "web", "busybox stat -c %u:%g /tmp/owned"),
        "1234:4321\n"
    );

    // Container -> host: a directory into an existing directory, a file to a new name, -a,
    // a symlink as is and followed with -L.
    exec(
        &fx,
        "web",
        "echo made-inside > /tmp/inside; busybox chown 1000:50 /tmp/inside; \
         busybox ln -s /tmp/inside /tmp/link",
    );
    let out = host.join("out");
    std::fs::create_dir(&out).unwrap();
    ok(&fx.berth(&["cp", "web:/tmp/d", &h("out")]), "cp dir out");
    assert_eq!(
        std::fs::read_to_string(out.join("d/sub/f")).unwrap(),
        "deep\n"
    );
    ok(&fx.berth(&["cp", "web:/tmp/inside", &h("out/x")]), "cp out");
    assert_eq!(
        std::fs::read_to_string(out.join("x")).unwrap(),
        "made-inside\n"
    );
    assert_eq!(std::fs::metadata(out.join("x")).unwrap().uid(), 0);
    ok(
        &fx.berth(&["cp", "-a", "web:/tmp/inside", &h("out/a")]),
        "-a",
    );
    let m = std::fs::metadata(out.join("a")).unwrap();
    assert_eq!((m.uid(), m.gid()), (1000, 50));
    ok(&fx.berth(&["cp", "web:/tmp/link", &h("out/l")]), "symlink");
    assert_eq!(
        std::fs::read_link(out.join("l")).unwrap(),
        Path::new("/tmp/inside")
    );
    ok(&fx.berth(&["cp", "-L", "web:/tmp/link", &h("out/f")]), "-L");
    assert_eq!(
        std::fs::read_to_string(out.join("f")).unwrap(),
        "made-inside\n"
    );

    // `-`: a tar stream out and in.
    let o = fx.berth(&["cp", "web:/tmp/d", "-"]);
    ok(&o, "cp to stdout");
    assert_eq!(
        tar_names(&o.stdout),
        ["d", "d/sub", "d/sub/f"].map(String::from).into()
    );
    let mut b = tar::Builder::new(Vec::new());
    let mut hd = tar::Header::new_gnu();
    hd.set_size(7);
    hd.set_mode(0o640);
    b.append_data(&mut hd, "streamed/file", &b"stream\n"[..])
        .unwrap();
    let o = berth_stdin(&fx, &["cp", "-", "web:/tmp"], &b.into_inner().unwrap());
    ok(&o, "cp from stdin");
    assert_eq!(
        exec(
            &fx,
            "web",
            "cat /tmp/streamed/file; busybox stat -c %a /tmp/streamed/file"
        ),
        "stream\n640\n"
    );

    // Bad input: Docker's messages and exit code 1, nothing created.
    fails(
        &fx.berth(&["cp", "nosuch:/etc/passwd", &h("out")]),
        "no such container: nosuch",
    );
    fails(
        &fx.berth(&["cp", "web:/nope", &h("out")]),
        "could not find the file /nope in container web",
    );
    fails(
        &fx.berth(&["cp", &h("missing"), "web:/tmp"]),
        "no such file or directory",
    );
    fails(
        &fx.berth(&["cp", "web:/tmp/inside/", &h("out")]),
        "not a directory",
    );
    fails(
        &fx.berth(&["cp", &h("d"), "web:/tmp/inside"]),
        "cannot copy a directory to a file",
    );
    fails(
        &fx.berth(&["cp", &h("hello.txt"), "web:/nodir/"]),
        "does not exist",
    );
    fails(
        &fx.berth(&["cp", &h("hello.txt"), "web:/nodir/sub/x"]),
        "could not find the file /nodir/sub",
    );
    fails(
        &fx.berth(&["cp", &h("hello.txt"), &h("out")]),
        "must specify at least one container",
    );
    fails(
        &fx.berth(&["cp", "web:/proc/1/environ", &h("out")]),
        "procfs or sysfs",
    );
    fails(
        &fx.berth(&["cp", &h("hello.txt"), "web:/proc/sys/kernel/"]),
        "procfs or sysfs",
    );
    assert!(!host.join("out/environ").exists());
    assert_eq!(
        exec(&fx, "web", "ls /nodir 2>&1 || true"),
        "ls: /nodir: No such file or directory\n"
    );

    // A stopped container (created, never started): its rootfs is mounted privately for the
    // copy and nowhere afterwards; the copied file is there when it runs.
    let o = fx.berth(&[
        "create",
        "--name",
        "st",
        "--cgroup-parent",
        &fx.cgroup_parent,
        "busybox",
        "cat",
        "/tmp/hello.txt",
    ]);
    let st_id = ok(&o, "create").trim().to_string();
    ok(
        &fx.berth(&["cp", &h("hello.txt"), "st:/tmp/"]),
        "cp to created",
    );
    ok(
        &fx.berth(&["cp", "st:/etc/passwd", &h("out/pw")]),
        "cp from created",
    );
    assert!(std::fs::read_to_string(out.join("pw"))
        .unwrap()
        .starts_with("root:x:0:0"));
    let mi = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert!(
        !mi.contains(&st_id),
        "a mount of the stopped container is left"
    );
    assert_eq!(ok(&fx.berth(&["start", "-a", "st"]), "start -a"), "hello\n");
    // ... and exited.
    ok(
        &fx.berth(&["cp", "st:/tmp/hello.txt", &h("out/back")]),
        "cp from exited",
    );
    assert_eq!(
        std::fs::read_to_string(out.join("back")).unwrap(),
        "hello\n"
    );

    ok(&fx.berth(&["rm", "-f", "web", "st"]), "rm");
    fx.assert_no_leaks();
}

#[test]
fn diff_and_export_show_the_containers_changes() {
    if !prerequisites() {
        return;
    }
    let fx = Fixture::new();
    ok(
        &fx.run(&[
            "--name",
            "dd",
            "busybox",
            "sh",
            "-c",
            "echo hi > /tmp/new; rm /etc/group; mkdir -p /newdir/sub; echo x >> /etc/passwd",
        ]),
        "run",
    );
    let diff = ok(&fx.berth(&["diff", "dd"]), "diff");
    assert_eq!(
        diff,
        "C /etc\nD /etc/group\nC /etc/passwd\nA /newdir\nA /newdir/sub\nC /tmp\nA /tmp/new\n"
    );
    assert_eq!(
        ok(&fx.berth(&["container", "diff", "dd"]), "container diff"),
        diff
    );

    let file = fx.dir.path().join("export.tar");
    ok(
        &fx.berth(&["export", "-o", file.to_str().unwrap(), "dd"]),
        "export -o",
    );
    let names = tar_names(&std::fs::read(&file).unwrap());
    for n in [
        "bin/busybox",
        "bin/sh",
        "tmp/new",
        "newdir/sub",
        "etc/passwd",
    ] {
        assert!(names.contains(n), "{n} missing from {names:?}");
    }
    assert!(!names.contains("etc/group"));
    let mut a = tar::Archive::new(std::fs::File::open(&file).unwrap());
    for e in a.entries().unwrap() {
        let mut e = e.unwrap();
        if e.path().unwrap() == Path::new("bin/sh") {
            assert_eq!(e.header().entry_type(), tar::EntryType::Symlink);
            assert_eq!(e.link_name().unwrap().unwrap(), Path::new("busybox"));
        }
        if e.path().unwrap() == Path::new("etc/passwd") {
            let mut s = String::new();
            std::io::Read::read_to_string(&mut e, &mut s).unwrap();
            assert!(s.ends_with("x\n"), "{s:?}");
        }
    }
    let o = fx.berth(&["export", "dd"]);
    ok(&o, "export");
    assert_eq!(tar_names(&o.stdout), names);

    // A running container exports and diffs too.
    ok(
        &fx.run(&["-d", "--name", "live", "busybox", "sleep", "1000"]),
        "run -d",
    );
    exec(&fx, "live", "echo 1 > /live-file");
    assert_eq!(ok(&fx.berth(&["diff", "live"]), "diff"), "A /live-file\n");
    assert!(tar_names(&fx.berth(&["export", "live"]).stdout).contains("live-file"));

    fails(&fx.berth(&["diff", "nosuch"]), "no such container: nosuch");
    let missing = fx.dir.path().join("none.tar");
    fails(
        &fx.berth(&["export", "-o", missing.to_str().unwrap(), "nosuch"]),
        "no such container: nosuch",
    );
    assert!(!missing.exists());
    ok(&fx.berth(&["rm", "-f", "dd", "live"]), "rm");
    fx.assert_no_leaks();
}

#[test]
fn commit_makes_an_image_that_runs_with_the_change() {
    if !prerequisites() {
        return;
    }
    let fx = Fixture::new();
    ok(
        &fx.run(&[
            "--name",
            "cc",
            "busybox",
            "sh",
            "-c",
            "echo committed > /tmp/c; rm /etc/group; mkdir /opt; \
             rm -r /home; mkdir /home; echo n > /home/new",
        ]),
        "run",
    );
    let id = ok(
        &fx.berth(&[
            "commit",
            "-m",
            "a message",
            "-a",
            "Jane <jane@example.com>",
            "-c",
            "ENV FOO=bar",
            "-c",
            r#"CMD ["cat", "/tmp/c"]"#,
            "cc",
            "mine:1",
        ]),
        "commit",
    );
    assert!(id.starts_with("sha256:") && id.trim().len() == 71, "{id:?}");
    assert_eq!(ok(&fx.run(&["--rm", "mine:1"]), "run"), "committed\n");
    let o = fx.run(&[
        "--rm",
        "mine:1",
        "sh",
        "-c",
        "echo $FOO; test -d /opt && echo opt; test -e /etc/group || echo no-group; ls /home",
    ]);
    // /home was deleted and re-created: an opaque directory, so the image's home/app is gone.
    assert_eq!(ok(&o, "run"), "bar\nopt\nno-group\nnew\n");
    let hist = ok(&fx.berth(&["history", "mine:1"]), "history");
    assert!(hist.contains("a message"), "{hist}");
    let author = ok(
        &fx.berth(&["image", "inspect", "-f", "{{.Author}}", "mine:1"]),
        "inspect",
    );
    assert_eq!(author.trim(), "Jane <jane@example.com>");

    // A running container is paused for the commit and keeps running afterwards.
    ok(
        &fx.run(&["-d", "--name", "live", "busybox", "sleep", "1000"]),
        "run -d",
    );
    exec(&fx, "live", "echo from-live > /live");
    ok(&fx.berth(&["commit", "live", "live:snap"]), "commit live");
    assert_eq!(
        ok(&fx.run(&["--rm", "live:snap", "cat", "/live"]), "run"),
        "from-live\n"
    );
    let ps = ok(&fx.berth(&["ps", "--format", "{{.Status}}"]), "ps");
    assert!(ps.starts_with("Up") && !ps.contains("Paused"), "{ps}");

    // Bad input leaves no image behind.
    let before = ok(&fx.berth(&["images", "-q"]), "images");
    fails(&fx.berth(&["commit", "nosuch", "x:1"]), "no such container");
    fails(
        &fx.berth(&["commit", "-c", "BOGUS x", "cc", "x:1"]),
        "invalid --change",
    );
    fails(
        &fx.berth(&["commit", "cc", "Bad Ref!"]),
        "invalid reference",
    );
    assert_eq!(ok(&fx.berth(&["images", "-q"]), "images"), before);
    ok(&fx.berth(&["rm", "-f", "cc", "live"]), "rm");
    fx.assert_no_leaks();
}

/// CVE-2018-15664: `docker cp` resolved the container path on the host and then used it, so a
/// container swapping a directory for a symlink to `/` made it read or write host files.
/// Here the container flips `/w/dir` between a real directory and `-> /` in a tight loop
/// while `berth cp` copies out of and into paths below it many times. The host sentinel
/// (whose path the container mirrors below `/w/dir`) is never read or written.
#[test]
fn cve_2018_15664_cp_symlink_swap_race_never_reaches_the_host() {
    if !prerequisites() {
        return;
    }
    let fx = Fixture::new();
    let sentinel_dir = fx.dir.path().join("sentinel");
    std::fs::create_dir(&sentinel_dir).unwrap();
    std::fs::write(sentinel_dir.join("secret"), "host-secret\n").unwrap();
    let rel = sentinel_dir.strip_prefix("/").unwrap().to_str().unwrap();
    let script = format!(
        "mkdir -p /w/dir/{rel} && echo container-data > /w/dir/{rel}/secret && \
         while true; do busybox mv /w/dir /w/real; busybox ln -sfn / /w/dir; \
         busybox rm /w/dir; busybox mv /w/real /w/dir; done"
    );
    ok(
        &fx.run(&["-d", "--name", "race", "busybox", "sh", "-c", &script]),
        "run -d",
    );
    // Wait for the loop to be going (/w/dir seen as the symlink at some moment): without
    // the swaps the copies below would prove nothing.
    let swapping = (0..100).any(|_| {
        let seen = fx
            .berth(&["exec", "race", "sh", "-c", "busybox test -L /w/dir"])
            .status
            .success();
        if !seen {
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        seen
    });
    assert!(swapping, "the symlink swap loop never ran");
    let evil = fx.dir.path().join("evil");
    std::fs::write(&evil, "evil\n").unwrap();
    let out = fx.dir.path().join("out");
    std::fs::create_dir(&out).unwrap();
    let (mut read_ok, mut write_ok) = (0, 0);
    for i in 0..60 {
        // Out of the container: a file, a directory, and a stream.
        let dst = out.join(format!("f{i}"));
        let o = fx.berth(&[
            "cp",
            &format!("race:/w/dir/{rel}/secret"),
            dst.to_str().unwrap(),
        ]);
        if o.status.success() {
            assert_eq!(std::fs::read_to_string(&dst).unwrap(), "container-data\n");
            read_ok += 1;
        }
        let o = fx.berth(&["cp", &format!("race:/w/dir/{rel}"), "-"]);
        assert!(!text(&o.stdout).contains("host-secret"));
        if o.status.success() && text(&o.stdout).contains("container-data") {
            read_ok += 1;
        }
        // Into the container, below the flipping directory.
        let o = fx.berth(&[
            "cp",
            evil.to_str().unwrap(),
            &format!("race:/w/dir/{rel}/evil{i}"),
        ]);
        if o.status.success() {
            write_ok += 1;
        }
        let o = fx.berth(&["cp", evil.to_str().unwrap(), &format!("race:/w/dir/{rel}/")]);
        if o.status.success() {
            write_ok += 1;
        }
        // The sentinel is untouched after every round.
        let names: Vec<_> = std::fs::read_dir(&sentinel_dir)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["secret"], "host sentinel directory changed");
        assert_eq!(
            std::fs::read_to_string(sentinel_dir.join("secret")).unwrap(),
            "host-secret\n"
        );
    }
    // Nothing copied out ever carried the host's data.
    for e in std::fs::read_dir(&out).unwrap() {
        let p = e.unwrap().path();
        if p.is_file() {
            assert_ne!(std::fs::read_to_string(&p).unwrap(), "host-secret\n");
        }
    }
    eprintln!("race rounds: {read_ok} copies out and {write_ok} copies in succeeded");
    // Reads need the directory to be real at the one moment its parent is resolved, which
    // a tight loop makes rare; the total proves the copies ran against the flipping path.
    assert!(
        read_ok + write_ok > 0,
        "the race never let a copy through ({read_ok} reads, {write_ok} writes): the test \
         did not exercise cp"
    );
    ok(&fx.berth(&["rm", "-f", "race"]), "rm");
    fx.assert_no_leaks();
}

#[test]
fn a_rm_containers_writable_layer_is_volatile_and_a_kept_ones_is_not() {
    if !prerequisites() {
        return;
    }
    let fx = Fixture::new();
    fx.import_busybox();
    let root_mount = "grep ' / / ' /proc/self/mountinfo";
    // podman does the same: a --rm container's changes are thrown away, so the kernel need not
    // sync them (nor the whole upper filesystem when the overlay is unmounted).
    let rm = ok(
        &fx.run(&["--rm", "busybox", "sh", "-c", root_mount]),
        "run --rm",
    );
    assert!(rm.contains(" overlay ") && rm.contains("volatile"), "{rm}");
    let kept = ok(
        &fx.run(&["--name", "kept", "busybox", "sh", "-c", root_mount]),
        "run",
    );
    assert!(
        kept.contains(" overlay ") && !kept.contains("volatile"),
        "{kept}"
    );
    ok(&fx.berth(&["start", "-a", "kept"]), "start again");
    ok(&fx.berth(&["rm", "kept"]), "rm");
    fx.assert_no_leaks();
}

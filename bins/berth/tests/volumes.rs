//! End-to-end tests of volumes: `berth volume create|ls|inspect|rm|prune`, `-v NAME:/path`,
//! `--mount`, the image's `Volumes` (anonymous volumes, `rm -v`, `--rm`), Docker's copy-up, and
//! the CVE-2022-23648 regression (image volume paths must not reach the host). As root, with
//! the engine tests' fixture; without root they skip with a visible message.

mod common;

use std::path::Path;

use common::fixture::{prerequisites, text, Fixture};

fn dir(b: &mut tar::Builder<std::fs::File>, path: &str, mode: u32, uid: u64) {
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(tar::EntryType::Directory);
    h.set_mode(mode);
    h.set_uid(uid);
    h.set_gid(uid);
    h.set_size(0);
    b.append_data(&mut h, path, std::io::empty()).unwrap();
}

fn file(b: &mut tar::Builder<std::fs::File>, path: &str, data: &[u8], uid: u64) {
    let mut h = tar::Header::new_gnu();
    h.set_mode(0o640);
    h.set_uid(uid);
    h.set_gid(uid);
    h.set_size(data.len() as u64);
    b.append_data(&mut h, path, data).unwrap();
}

fn symlink(b: &mut tar::Builder<std::fs::File>, path: &str, target: &str) {
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(tar::EntryType::Symlink);
    h.set_mode(0o777);
    h.set_size(0);
    b.append_link(&mut h, path, target).unwrap();
}

/// The volume names `volume ls -q` prints.
fn volumes(fx: &Fixture) -> Vec<String> {
    let out = fx.berth(&["volume", "ls", "-q"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    text(&out.stdout).lines().map(str::to_owned).collect()
}

/// An image `app` whose `/data` holds `seed` (owner 1000, directory mode 0750) and that
/// declares `VOLUME /data`.
fn import_app(fx: &Fixture) {
    fx.import_busybox_with(
        "app:latest",
        |b| {
            dir(b, "data", 0o750, 1000);
            file(b, "data/seed", b"from the image\n", 1000);
        },
        &["VOLUME /data"],
    );
}

#[test]
fn named_volume_is_populated_from_the_image_and_persists_across_containers() {
    if !prerequisites() {
        return;
    }
    let fx = Fixture::new();
    import_app(&fx);
    // First use creates the volume and copies the image's /data into it (Docker's copy-up),
    // owner and mode of the directory included.
    let out = fx.run(&[
        "--rm",
        "-v",
        "store:/data",
        "app",
        "sh",
        "-c",
        "cat /data/seed; busybox stat -c %u:%a /data; echo kept > /data/new",
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "from the image\n1000:750\n");
    assert_eq!(volumes(&fx), ["store"]);
    let out = fx.berth(&["volume", "inspect", "-f", "{{.Mountpoint}}", "store"]);
    let mountpoint = text(&out.stdout).trim().to_owned();
    assert_eq!(
        std::fs::read_to_string(Path::new(&mountpoint).join("new")).unwrap(),
        "kept\n"
    );

    // A second container sees the data; read-only through --mount; the seed is not copied
    // again into a volume that has content (the removed seed stays removed).
    std::fs::remove_file(Path::new(&mountpoint).join("seed")).unwrap();
    let out = fx.run(&[
        "--rm",
        "--mount",
        "type=volume,source=store,target=/data,readonly",
        "app",
        "sh",
        "-c",
        "ls /data; echo x > /data/y",
    ]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "new\n");
    assert!(text(&out.stderr).contains("Read-only file system"));

    // nocopy: a new volume stays empty.
    let out = fx.run(&[
        "--rm",
        "-v",
        "empty:/data:nocopy",
        "app",
        "ls",
        "-A",
        "/data",
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "");

    // A user mount at an image volume's path replaces the anonymous volume: no other volume
    // was created by these runs.
    assert_eq!(volumes(&fx), ["empty", "store"]);
    for v in ["empty", "store"] {
        let out = fx.berth(&["volume", "rm", v]);
        assert!(out.status.success(), "{}", text(&out.stderr));
    }
    assert!(volumes(&fx).is_empty());
    assert!(!Path::new(&mountpoint).exists());
    fx.assert_no_leaks();
}

#[test]
fn volume_create_ls_inspect_and_in_use_refusal() {
    if !prerequisites() {
        return;
    }
    let fx = Fixture::new();
    let out = fx.berth(&[
        "volume",
        "create",
        "--label",
        "tier=db",
        "-o",
        "type=tmpfs",
        "-o",
        "device=tmpfs",
        "-o",
        "o=size=1m",
        "fast",
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "fast\n");
    // Creating it again with the same options is no error (Docker's behaviour).
    let out = fx.berth(&[
        "volume",
        "create",
        "-o",
        "type=tmpfs",
        "-o",
        "device=tmpfs",
        "-o",
        "o=size=1m",
        "fast",
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let out = fx.berth(&["volume", "create"]);
    let random = text(&out.stdout).trim().to_owned();
    assert_eq!(random.len(), 64, "{}", text(&out.stderr));

    let out = fx.berth(&["volume", "inspect", "fast"]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v[0]["Name"], "fast");
    assert_eq!(v[0]["Driver"], "local");
    assert_eq!(v[0]["Scope"], "local");
    assert_eq!(v[0]["Labels"]["tier"], "db");
    assert_eq!(v[0]["Options"]["type"], "tmpfs");
    let created = v[0]["CreatedAt"].as_str().unwrap();
    assert!(created.len() == 20 && created.ends_with('Z'), "{created}");
    let ls = text(&fx.berth(&["volume", "ls"]).stdout);
    assert!(ls.starts_with("DRIVER    VOLUME NAME\n"), "{ls}");
    assert!(ls.contains("local     fast\n"), "{ls}");
    let out = fx.berth(&["volume", "ls", "-q", "--filter", "label=tier=db"]);
    assert_eq!(text(&out.stdout), "fast\n");
    let out = fx.berth(&[
        "volume",
        "ls",
        "--format",
        "{{.Name}} {{.Driver}}",
        "-f",
        "name=ast",
    ]);
    assert_eq!(text(&out.stdout), "fast local\n");

    // The tmpfs volume is mounted as a tmpfs with its options; a created (not running)
    // container keeps it in use.
    let out = fx.run(&["--rm", "-v", "fast:/fast", "busybox", "cat", "/proc/mounts"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let mounts = text(&out.stdout);
    assert!(
        mounts
            .lines()
            .any(|l| l.starts_with("tmpfs /fast tmpfs") && l.contains("size=1024k")),
        "{mounts}"
    );
    let out = fx.berth(&[
        "create",
        "--cgroup-parent",
        &fx.cgroup_parent,
        "--name",
        "holder",
        "-v",
        "fast:/fast",
        "busybox",
        "true",
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let id = text(&out.stdout).trim().to_owned();
    let out = fx.berth(&["volume", "ls", "-q", "-f", "dangling=true"]);
    assert_eq!(text(&out.stdout).trim(), random);
    for args in [
        &["volume", "rm", "fast"][..],
        &["volume", "rm", "-f", "fast"],
    ] {
        let out = fx.berth(args);
        assert_eq!(out.status.code(), Some(1));
        assert_eq!(
            text(&out.stderr),
            format!("berth: removing volume fast: volume is in use - [{id}]\n")
        );
    }
    let out = fx.berth(&["rm", "holder"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let out = fx.berth(&["volume", "rm", "fast", &random]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(volumes(&fx).is_empty());

    // Missing volumes: an error, but not with -f.
    let out = fx.berth(&["volume", "rm", "nope"]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(text(&out.stderr), "berth: no such volume: nope\n");
    assert!(fx.berth(&["volume", "rm", "-f", "nope"]).status.success());
    let out = fx.berth(&["volume", "inspect", "nope"]);
    assert_eq!(out.status.code(), Some(1));

    // Bad input: 125, and nothing created.
    for (args, msg) in [
        (
            &["volume", "create", "b@d"][..],
            "includes invalid characters",
        ),
        (
            &["volume", "create", "-o", "foo=bar", "x1"][..],
            "invalid option key \"foo\"",
        ),
        (
            &["volume", "create", "-o", "type=tmpfs", "x2"][..],
            "need both type and device",
        ),
        (
            &["volume", "create", "-d", "nfs", "x3"][..],
            "driver \"nfs\" is not supported",
        ),
    ] {
        let out = fx.berth(args);
        assert_eq!(out.status.code(), Some(125), "{args:?}");
        assert!(
            text(&out.stderr).contains(msg),
            "{args:?}: {}",
            text(&out.stderr)
        );
    }
    assert!(volumes(&fx).is_empty());
    fx.assert_no_leaks();
}

#[test]
fn prune_removes_unused_anonymous_volumes_and_with_all_named_ones() {
    if !prerequisites() {
        return;
    }
    let fx = Fixture::new();
    // An anonymous volume kept by a plain rm; a named unused one; a named one in use.
    let out = fx.run(&[
        "--name",
        "once",
        "-v",
        "/anon",
        "busybox",
        "sh",
        "-c",
        "echo 12345 > /anon/f",
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(fx.berth(&["rm", "once"]).status.success());
    let anon = volumes(&fx);
    assert_eq!(anon.len(), 1);
    assert_eq!(anon[0].len(), 64);
    // Docker's label on anonymous volumes.
    let out = fx.berth(&[
        "volume",
        "ls",
        "-q",
        "-f",
        "label=com.docker.volume.anonymous",
    ]);
    assert_eq!(text(&out.stdout).trim(), anon[0]);
    // A volume created without a name is not anonymous: prune without -a keeps it.
    let out = fx.berth(&["volume", "create"]);
    let random = text(&out.stdout).trim().to_owned();
    assert!(fx.berth(&["volume", "create", "unused"]).status.success());
    assert!(fx
        .berth(&["volume", "create", "--label", "keep=1", "kept"])
        .status
        .success());
    let out = fx.berth(&[
        "create",
        "--cgroup-parent",
        &fx.cgroup_parent,
        "--name",
        "user",
        "-v",
        "used:/u",
        "busybox",
        "true",
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));

    let out = fx.berth(&["volume", "prune", "-f"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(
        text(&out.stdout),
        format!(
            "Deleted Volumes:\n{}\n\nTotal reclaimed space: 6B\n",
            anon[0]
        )
    );
    let mut left = vec![
        random.clone(),
        "kept".into(),
        "unused".into(),
        "used".into(),
    ];
    left.sort();
    assert_eq!(volumes(&fx), left);
    let out = fx.berth(&["volume", "prune", "-f", "--all", "--filter", "label!=keep"]);
    let mut deleted = [random.as_str(), "unused"];
    deleted.sort();
    assert_eq!(
        text(&out.stdout),
        format!(
            "Deleted Volumes:\n{}\n\nTotal reclaimed space: 0B\n",
            deleted.join("\n")
        )
    );
    assert_eq!(volumes(&fx), ["kept", "used"]);
    assert!(fx.berth(&["rm", "user"]).status.success());
    let out = fx.berth(&["volume", "prune", "-a", "-f"]);
    assert!(text(&out.stdout).contains("used\n"));
    assert!(volumes(&fx).is_empty());
    fx.assert_no_leaks();
}

#[test]
fn image_volumes_are_anonymous_removed_by_rm_v_and_by_rm_flag() {
    if !prerequisites() {
        return;
    }
    let fx = Fixture::new();
    import_app(&fx);

    // --rm removes the anonymous volume with the container, in the foreground...
    let out = fx.run(&["--rm", "app", "cat", "/data/seed"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "from the image\n");
    assert!(volumes(&fx).is_empty());
    // ...and under the monitor.
    let out = fx.run(&["-d", "--rm", "--name", "bg", "app", "true"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while !text(&fx.berth(&["ps", "-aq"]).stdout).is_empty() && std::time::Instant::now() < deadline
    {
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    assert!(volumes(&fx).is_empty());

    // A plain rm keeps it (Docker's semantics); inspect shows it in Mounts.
    let out = fx.run(&[
        "--name",
        "keep",
        "app",
        "sh",
        "-c",
        "echo mine > /data/mine",
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let out = fx.berth(&["inspect", "-f", "{{json .Mounts}}", "keep"]);
    let mounts: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(mounts[0]["Type"], "volume");
    assert_eq!(mounts[0]["Destination"], "/data");
    assert_eq!(mounts[0]["Driver"], "local");
    assert_eq!(mounts[0]["RW"], true);
    let name = mounts[0]["Name"].as_str().unwrap().to_owned();
    assert!(mounts[0]["Source"]
        .as_str()
        .unwrap()
        .ends_with(&format!("/volumes/{name}/_data")));
    assert!(fx.berth(&["rm", "keep"]).status.success());
    assert_eq!(volumes(&fx), std::slice::from_ref(&name));
    // The data is still there.
    let out = fx.run(&[
        "--rm",
        "-v",
        &format!("{name}:/d"),
        "busybox",
        "cat",
        "/d/mine",
    ]);
    assert_eq!(text(&out.stdout), "mine\n", "{}", text(&out.stderr));
    assert!(fx.berth(&["volume", "rm", &name]).status.success());

    // rm -v removes anonymous volumes, never named ones.
    let out = fx.run(&["--name", "two", "-v", "named:/named", "app", "true"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(volumes(&fx).len(), 2);
    let out = fx.berth(&["rm", "-v", "two"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(volumes(&fx), ["named"]);
    assert!(fx.berth(&["volume", "rm", "named"]).status.success());
    fx.assert_no_leaks();
}

#[test]
fn bad_mount_flags_fail_like_docker_and_leave_nothing() {
    if !prerequisites() {
        return;
    }
    let fx = Fixture::new();
    let missing = fx.dir.path().join("no-such-dir");
    let missing_s = missing.to_str().unwrap();
    let cases: Vec<(Vec<String>, String)> = vec![
        (
            vec!["--mount".into(), "type=bind,source=/tmp,target=/x,foo=bar".into()],
            "berth: invalid argument \"type=bind,source=/tmp,target=/x,foo=bar\" for \"--mount\" flag: unexpected key 'foo' in 'foo=bar'\n".into(),
        ),
        (
            vec!["--mount".into(), format!("type=bind,source={missing_s},target=/x")],
            format!("berth: invalid mount config for type \"bind\": bind source path does not exist: {missing_s}\n"),
        ),
        (
            vec!["--mount".into(), "source=v,target=/x".into()],
            "berth: invalid argument \"source=v,target=/x\" for \"--mount\" flag: type is required\n".into(),
        ),
        (
            vec!["--mount".into(), "type=volume,source=v".into()],
            "berth: invalid argument \"type=volume,source=v\" for \"--mount\" flag: target is required\n".into(),
        ),
        (
            vec!["-v".into(), "/foo:rw".into()],
            "berth: invalid volume specification: '/foo:rw'\n".into(),
        ),
        (
            vec!["-v".into(), "vv:/x".into(), "--mount".into(), "type=tmpfs,target=/x".into()],
            "berth: Duplicate mount point: /x\n".into(),
        ),
    ];
    for (flags, msg) in &cases {
        let mut args: Vec<&str> = vec!["--rm"];
        args.extend(flags.iter().map(String::as_str));
        args.extend(["busybox", "true"]);
        let out = fx.run(&args);
        assert_eq!(out.status.code(), Some(125), "{flags:?}");
        assert_eq!(&text(&out.stderr), msg);
    }
    // A failed create (unknown user) undoes the volumes it made.
    let out = fx.run(&[
        "--rm", "-u", "nobody", "-v", "fresh:/x", "-v", "/anon", "busybox", "true",
    ]);
    assert_eq!(out.status.code(), Some(125), "{}", text(&out.stderr));
    assert!(volumes(&fx).is_empty(), "{:?}", volumes(&fx));
    // A run whose command cannot start removes its anonymous volumes with the container
    // (with or without --rm); a named volume stays, as in Docker.
    for rm in [&["--rm"][..], &[]] {
        let mut args = rm.to_vec();
        args.extend(["-v", "fresh:/x", "-v", "/anon", "busybox", "/no/such/cmd"]);
        let out = fx.run(&args);
        assert_eq!(out.status.code(), Some(127), "{}", text(&out.stderr));
        assert_eq!(volumes(&fx), ["fresh"]);
    }
    assert!(fx.berth(&["volume", "rm", "fresh"]).status.success());
    assert!(!missing.exists());

    // Good --mount forms: a bind, read-only, and a sized tmpfs.
    let out = fx.run(&[
        "--rm",
        "--mount",
        "type=bind,src=/proc/self,dst=/host-self,readonly",
        "--mount",
        "type=tmpfs,destination=/scratch,tmpfs-size=2m,tmpfs-mode=1770",
        "busybox",
        "sh",
        "-c",
        "busybox grep -E ' /(host-self|scratch) ' /proc/mounts",
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let m = text(&out.stdout);
    assert!(
        m.lines()
            .any(|l| l.contains(" /host-self ") && l.contains(" ro,")),
        "{m}"
    );
    assert!(
        m.lines().any(|l| l.starts_with("tmpfs /scratch tmpfs")
            && l.contains("size=2048k")
            && l.contains("mode=1770")),
        "{m}"
    );
    // -v with a missing host directory creates it, as Docker does.
    let out = fx.run(&["--rm", "-v", &format!("{missing_s}:/x"), "busybox", "true"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(missing.is_dir());
    fx.assert_no_leaks();
}

/// CVE-2022-23648: containerd's CRI copied an image's `Volumes` path joined to the host root
/// without containment, so `/../../../etc/shadow` exposed host files. Berth refuses paths that
/// climb, and resolves the rest inside the rootfs for both the copy-up and the mount: an image
/// symlink that points at a host directory leads to a fresh directory in the rootfs. A host
/// sentinel stays unchanged and is never copied into a volume.
#[test]
fn cve_2022_23648_image_volume_paths_cannot_reach_the_host() {
    if !prerequisites() {
        return;
    }
    let fx = Fixture::new();
    let sentinel = tempfile::Builder::new()
        .prefix("berth-sentinel-")
        .tempdir_in("/tmp")
        .unwrap();
    std::fs::write(sentinel.path().join("secret"), "host secret\n").unwrap();
    let sentinel_s = sentinel.path().to_str().unwrap().to_owned();

    for (i, path) in ["/../../../etc/shadow", "/data/../../../etc", "relative/etc"]
        .iter()
        .enumerate()
    {
        let reference = format!("evil{i}:latest");
        fx.import_busybox_with(&reference, |_| {}, &[&format!("VOLUME [\"{path}\"]")]);
        let out = fx.run(&["--rm", &reference, "true"]);
        assert_eq!(out.status.code(), Some(125), "{path}");
        assert_eq!(
            text(&out.stderr),
            format!("berth: invalid volume path {path:?} in the image config: it must be absolute, without ..\n")
        );
    }
    assert!(volumes(&fx).is_empty());

    // Symlinks to the host directory, absolute and climbing. The image has a directory of
    // the same path: that one (inside the rootfs) is what the volumes are copied from and
    // mounted on.
    let in_image = sentinel_s.trim_start_matches('/').to_owned();
    let climb = format!("../../../../../../../..{sentinel_s}");
    fx.import_busybox_with(
        "links:latest",
        |b| {
            dir(b, &in_image, 0o755, 0);
            file(b, &format!("{in_image}/image-file"), b"image\n", 0);
            symlink(b, "abs", &sentinel_s);
            symlink(b, "climb", &climb);
        },
        &[r#"VOLUME ["/abs", "/climb"]"#],
    );
    let out = fx.run(&[
        "--name",
        "links",
        "links",
        "sh",
        "-c",
        "cat /abs/image-file /climb/image-file; ls -A /abs; echo pwned > /abs/secret",
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "image\nimage\nimage-file\n");
    let host_unchanged = || {
        assert_eq!(
            std::fs::read_to_string(sentinel.path().join("secret")).unwrap(),
            "host secret\n"
        );
        assert_eq!(std::fs::read_dir(sentinel.path()).unwrap().count(), 1);
    };
    host_unchanged();
    // Both volumes were copied from the image's directory, never from the host's.
    let out = fx.berth(&["inspect", "-f", "{{json .Mounts}}", "links"]);
    let mounts: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(mounts.as_array().unwrap().len(), 2);
    for m in mounts.as_array().unwrap() {
        let src = Path::new(m["Source"].as_str().unwrap());
        assert!(!src.starts_with(sentinel.path()));
        assert_eq!(
            std::fs::read_to_string(src.join("image-file")).unwrap(),
            "image\n"
        );
        let secret = std::fs::read_to_string(src.join("secret")).unwrap_or_default();
        assert!(secret.is_empty() || secret == "pwned\n", "{secret:?}");
    }
    assert!(fx.berth(&["rm", "-v", "links"]).status.success());
    assert!(volumes(&fx).is_empty());

    // A symlink that dangles inside the rootfs (its target exists only on the host) is
    // refused: nothing is created on the host, and nothing is left behind.
    fx.import_busybox_with(
        "dangling:latest",
        |b| symlink(b, "abs", &sentinel_s),
        &["VOLUME /abs"],
    );
    let out = fx.run(&["--rm", "dangling", "sh", "-c", "echo pwned > /abs/secret"]);
    assert_eq!(out.status.code(), Some(125), "{}", text(&out.stdout));
    assert!(text(&out.stderr).contains("/abs"), "{}", text(&out.stderr));
    host_unchanged();
    assert!(volumes(&fx).is_empty());
    fx.assert_no_leaks();
}

/// Volumes are created, populated and removed under one lock with the records that use them:
/// a `volume rm` racing with `run -v` never removes a volume between its creation and the
/// container's mount (every run succeeds), and concurrent first uses copy the image's content
/// exactly once.
#[test]
fn concurrent_runs_and_volume_rm_never_lose_a_volume_in_use() {
    if !prerequisites() {
        return;
    }
    let fx = Fixture::new();
    import_app(&fx);
    let stop = std::sync::atomic::AtomicBool::new(false);
    /// Stops the remover also when a runner panics, so a failure cannot hang the test.
    struct StopOnDrop<'a>(&'a std::sync::atomic::AtomicBool);
    impl Drop for StopOnDrop<'_> {
        fn drop(&mut self) {
            self.0.store(true, std::sync::atomic::Ordering::SeqCst);
        }
    }
    std::thread::scope(|s| {
        let stopper = StopOnDrop(&stop);
        let remover = s.spawn(|| {
            let mut removed = 0;
            while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                if fx.berth(&["volume", "rm", "shared"]).status.success() {
                    removed += 1;
                }
            }
            removed
        });
        let runners: Vec<_> = (0..2)
            .map(|_| {
                s.spawn(|| {
                    for _ in 0..10 {
                        let out = fx.run(&[
                            "--rm",
                            "-v",
                            "shared:/x",
                            "-v",
                            "pop:/data",
                            "app",
                            "sh",
                            "-c",
                            "cat /data/seed > /dev/null && ls /x",
                        ]);
                        assert!(out.status.success(), "{}", text(&out.stderr));
                    }
                })
            })
            .collect();
        let results: Vec<_> = runners.into_iter().map(|r| r.join()).collect();
        drop(stopper);
        for r in results {
            r.unwrap();
        }
        // How often the remover won depends on timing; the runs above must all succeed.
        eprintln!("volume rm succeeded {} times", remover.join().unwrap());
    });
    // `pop` was new to all runners at once: copied once, whole (a second copy would have
    // failed on the existing file).
    let out = fx.run(&["--rm", "-v", "pop:/pop", "busybox", "ls", "-A", "/pop"]);
    assert_eq!(text(&out.stdout), "seed\n", "{}", text(&out.stderr));
    let _ = fx.berth(&["volume", "rm", "shared"]);
    assert!(fx.berth(&["volume", "rm", "pop"]).status.success());
    assert!(volumes(&fx).is_empty());
    fx.assert_no_leaks();
}

#[test]
fn volumes_from_ps_volume_filter_and_inspect_config_volumes() {
    if !prerequisites() {
        return;
    }
    let fx = Fixture::new();
    import_app(&fx);
    let out = fx.run(&[
        "--name",
        "data",
        "-v",
        "shared:/shared",
        "-v",
        "/anon",
        "app",
        "true",
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(volumes(&fx).len(), 3);

    // The other container's volumes (named and anonymous), read-write or read-only.
    let out = fx.run(&[
        "--rm",
        "--volumes-from",
        "data",
        "busybox",
        "sh",
        "-c",
        "cat /data/seed; echo hi > /shared/x; echo there > /anon/y",
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "from the image\n");
    let out = fx.run(&[
        "--rm",
        "--volumes-from",
        "data:ro",
        "busybox",
        "sh",
        "-c",
        "cat /shared/x /anon/y; echo no > /shared/z",
    ]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "hi\nthere\n");
    assert!(text(&out.stderr).contains("Read-only file system"));
    let out = fx.run(&["--rm", "--volumes-from", "nosuch", "busybox", "true"]);
    assert_eq!(out.status.code(), Some(125));
    assert!(text(&out.stderr).contains("no such container: nosuch"));
    let out = fx.run(&["--rm", "--volumes-from", "data:rx", "busybox", "true"]);
    assert_eq!(out.status.code(), Some(125));
    assert!(text(&out.stderr).contains("invalid --volumes-from \"data:rx\""));

    // ps --filter volume= (name or destination) and the Mounts column; inspect's
    // Config.Volumes lists the anonymous ones.
    for v in ["shared", "/data"] {
        let out = fx.berth(&[
            "ps",
            "-a",
            "--filter",
            &format!("volume={v}"),
            "--format",
            "{{.Names}}",
        ]);
        assert_eq!(text(&out.stdout), "data\n", "{v}: {}", text(&out.stderr));
    }
    let out = fx.berth(&["ps", "-a", "--filter", "volume=other", "-q"]);
    assert_eq!(text(&out.stdout), "");
    let out = fx.berth(&["ps", "-a", "--format", "{{.Mounts}}"]);
    let cols = text(&out.stdout);
    assert!(cols.starts_with("shared,"), "{cols}");
    assert!(cols.contains('…'), "{cols}");
    let out = fx.berth(&["inspect", "-f", "{{json .Config.Volumes}}", "data"]);
    assert_eq!(text(&out.stdout), "{\"/anon\":{},\"/data\":{}}\n");

    // rm -v removes the anonymous volumes, not the named one.
    assert!(fx.berth(&["rm", "-v", "data"]).status.success());
    assert_eq!(volumes(&fx), ["shared"]);
    assert!(fx.berth(&["volume", "rm", "shared"]).status.success());
    fx.assert_no_leaks();
}

/// CVE-2021-30465 and CVE-2024-45310 through the engine: one container swaps a directory and a
/// symlink to a host path in a shared volume while others are created with a mount there. The
/// mount target is resolved (and created) inside each container's rootfs and mounted through a
/// descriptor, so whichever the swap shows, nothing is mounted or created on the host: the
/// sentinel directory the symlink points into stays empty.
#[test]
fn cve_2021_30465_symlink_swaps_in_a_shared_volume_never_reach_the_host() {
    if !prerequisites() {
        return;
    }
    let fx = Fixture::new();
    let sentinel = tempfile::Builder::new()
        .prefix("berth-sentinel-")
        .tempdir_in("/tmp")
        .unwrap();
    let target = sentinel.path().to_str().unwrap().to_owned();
    let swapper = format!(
        "cd /shared; while :; do busybox rm -rf m; busybox mkdir m; busybox rm -rf m; busybox ln -s {target}/created m; done"
    );
    let out = fx.run(&[
        "-d",
        "--name",
        "swapper",
        "-v",
        "shared:/shared",
        "busybox",
        "sh",
        "-c",
        &swapper,
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let mounted_on_host = || {
        std::fs::read_to_string("/proc/self/mountinfo")
            .unwrap()
            .lines()
            .any(|l| l.contains(&target))
    };
    let mut started = 0;
    for _ in 0..25 {
        let out = fx.run(&[
            "--rm",
            "-v",
            "shared:/shared",
            "--mount",
            "type=tmpfs,target=/shared/m",
            "busybox",
            "true",
        ]);
        // Created or refused (the symlink dangles inside the rootfs): both are fine.
        match out.status.code() {
            Some(0) => started += 1,
            Some(125) => {}
            other => panic!("{other:?}: {}", text(&out.stderr)),
        }
        assert!(!mounted_on_host());
        assert_eq!(std::fs::read_dir(sentinel.path()).unwrap().count(), 0);
    }
    eprintln!("{started} of 25 victims started");
    assert!(fx.berth(&["rm", "-f", "swapper"]).status.success());
    assert!(fx.berth(&["volume", "rm", "shared"]).status.success());
    assert!(!mounted_on_host());
    assert_eq!(std::fs::read_dir(sentinel.path()).unwrap().count(), 0);
    fx.assert_no_leaks();
}

/// A `berth run` with volumes killed at any step leaves a state that `rm -f -v` and
/// `volume prune` clean completely.
#[test]
fn sigkill_of_run_with_volumes_leaves_a_state_rm_and_prune_clean() {
    if !prerequisites() {
        return;
    }
    let fx = Fixture::new();
    import_app(&fx);
    for delay_ms in [0u64, 1, 2, 4, 7, 10, 15, 20, 30, 50, 80] {
        let mut child = fx
            .cmd(common::fixture::BERTH)
            .arg("--root")
            .arg(fx.root())
            .args(["run", "--rm", "--cgroup-parent", &fx.cgroup_parent])
            .args(["-v", "/anon", "app", "sleep", "1000"])
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(std::time::Duration::from_millis(delay_ms));
        child.kill().unwrap();
        child.wait().unwrap();
    }
    let ps = text(&fx.berth(&["ps", "-aq", "--no-trunc"]).stdout);
    for id in ps.lines() {
        let rm = fx.berth(&["rm", "-f", "-v", id]);
        assert!(rm.status.success(), "{}", text(&rm.stderr));
    }
    // Volumes made by a run killed before its record existed are unused anonymous ones.
    let out = fx.berth(&["volume", "prune", "-f"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(volumes(&fx).is_empty(), "{:?}", volumes(&fx));
    // Nor anything half-made that no command lists.
    let left: Vec<_> = std::fs::read_dir(fx.root().join("volumes"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .filter(|n| n != ".lock")
        .collect();
    assert!(left.is_empty(), "{left:?}");
    fx.assert_no_leaks();
}

//! End-to-end tests of the `berth` image commands against Debian's `docker-registry`.

mod common;

use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::Path;
use std::time::{Duration, Instant};

use berth_image::registry::RegistryOptions;
use common::*;

fn tmp() -> tempfile::TempDir {
    tempfile::tempdir().unwrap()
}

fn pseudo_random(n: usize, seed: u64) -> Vec<u8> {
    // xorshift64*: incompressible enough that gzip cannot shrink it
    let mut x = seed | 1;
    let mut v = Vec::with_capacity(n);
    while v.len() < n {
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        v.extend_from_slice(&x.wrapping_mul(0x2545_f491_4f6c_dd1d).to_le_bytes());
    }
    v.truncate(n);
    v
}

fn find_in_layers(root: &Path, rel: &str) -> Vec<std::path::PathBuf> {
    layer_dirs(root)
        .into_iter()
        .map(|d| d.join("diff").join(rel))
        .filter(|p| p.symlink_metadata().is_ok())
        .collect()
}

#[test]
fn pull_list_inspect_history_tag_rmi_over_plain_http() {
    if !prerequisites() {
        return;
    }
    let reg = Registry::start(Auth::None, false);
    let client = reg.client(&RegistryOptions::default());
    let (base, wh) = (base_layer(), whiteout_layer());
    let (mdigest, _) = push_image(&client, "busybox", "1", "amd64", &[&base, &wh], true);
    let (root, home) = (tmp(), tmp());
    let image = format!("{}/busybox:1", reg.host());

    let out = ok(berth(root.path(), home.path())
        .args(["pull", &image])
        .output()
        .unwrap());
    assert!(out.contains(&format!("Digest: {mdigest}")), "{out}");
    assert!(out.contains("Pull complete"), "{out}");

    // Layers extracted in overlay form: whiteout device, opaque xattr, links, modes.
    let bb = find_in_layers(root.path(), "bin/busybox");
    assert_eq!(bb.len(), 1);
    let m = bb[0].metadata().unwrap();
    assert_eq!((m.mode() & 0o7777, m.nlink()), (0o755, 2));
    assert_eq!(std::fs::read(&bb[0]).unwrap(), busybox());
    let sh = &find_in_layers(root.path(), "bin/sh")[0];
    assert_eq!(std::fs::read_link(sh).unwrap(), Path::new("busybox"));
    let motd = find_in_layers(root.path(), "etc/motd");
    assert_eq!(motd.len(), 2, "base file and whiteout");
    let wh_node = motd
        .iter()
        .map(|p| p.symlink_metadata().unwrap())
        .find(|m| m.file_type().is_char_device())
        .expect("a whiteout device");
    assert_eq!(wh_node.rdev(), 0);
    let cache = find_in_layers(root.path(), "var/cache/new");
    assert_eq!(cache.len(), 1);
    let opq = cache[0].parent().unwrap();
    let mut buf = [0u8; 4];
    let n = rustix::fs::getxattr(opq, "trusted.overlay.opaque", &mut buf).unwrap();
    assert_eq!(&buf[..n], b"y");

    // Listing and formats.
    let out = ok(berth(root.path(), home.path())
        .args(["images", "--format", "{{.Repository}}:{{.Tag}} {{.Digest}}"])
        .output()
        .unwrap());
    assert_eq!(out.trim(), format!("{}/busybox:1 {mdigest}", reg.host()));
    let ids = ok(berth(root.path(), home.path())
        .args(["images", "-q"])
        .output()
        .unwrap());
    assert_eq!(ids.trim().len(), 12);
    let out = ok(berth(root.path(), home.path())
        .args(["images", "--digests"])
        .output()
        .unwrap());
    assert!(
        out.starts_with("REPOSITORY") && out.contains("DIGEST"),
        "{out}"
    );
    let json = ok(berth(root.path(), home.path())
        .args(["images", "--format", "json"])
        .output()
        .unwrap());
    let v: serde_json::Value = serde_json::from_str(json.trim()).unwrap();
    assert_eq!(v["Tag"], "1");

    let out = ok(berth(root.path(), home.path())
        .args(["image", "inspect", &image])
        .output()
        .unwrap());
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v[0]["Architecture"], "amd64");
    assert_eq!(v[0]["RootFS"]["Layers"].as_array().unwrap().len(), 2);
    assert_eq!(v[0]["Config"]["Cmd"][0], "/bin/sh");
    let out = ok(berth(root.path(), home.path())
        .args([
            "image",
            "inspect",
            "--format",
            "{{.Os}}/{{.Architecture}}",
            &image,
        ])
        .output()
        .unwrap());
    assert_eq!(out.trim(), "linux/amd64");
    let out = ok(berth(root.path(), home.path())
        .args(["history", &image])
        .output()
        .unwrap());
    assert!(out.contains("layer 1") && out.contains("layer 0"), "{out}");

    // Tag, then pull again: everything is already there.
    ok(berth(root.path(), home.path())
        .args(["tag", &image, "mine:latest"])
        .output()
        .unwrap());
    let out = ok(berth(root.path(), home.path())
        .args(["pull", &image])
        .output()
        .unwrap());
    assert!(!out.contains("Pull complete"), "{out}");
    let out = ok(berth(root.path(), home.path())
        .args(["images", "--format", "{{.Repository}}"])
        .output()
        .unwrap());
    assert!(out.contains("mine"), "{out}");

    // rmi of one of two tags only untags; the last removes the image and its layers.
    let out = ok(berth(root.path(), home.path())
        .args(["rmi", "mine"])
        .output()
        .unwrap());
    assert!(
        out.contains("Untagged") && !out.contains("Deleted"),
        "{out}"
    );
    assert_eq!(layer_dirs(root.path()).len(), 2);
    let out = ok(berth(root.path(), home.path())
        .args(["system", "df"])
        .output()
        .unwrap());
    assert!(out.contains("Images"), "{out}");
    let out = ok(berth(root.path(), home.path())
        .args(["rmi", &image])
        .output()
        .unwrap());
    assert!(out.contains("Deleted"), "{out}");
    assert!(layer_dirs(root.path()).is_empty(), "layers not reclaimed");
    let blobs = std::fs::read_dir(root.path().join("image/blobs/sha256"))
        .unwrap()
        .count();
    assert_eq!(blobs, 0, "blobs not reclaimed");

    // Bad input: unknown tag names the image and the registry's answer.
    let err = fails(
        berth(root.path(), home.path())
            .args(["pull", &format!("{}/busybox:nope", reg.host())])
            .output()
            .unwrap(),
    );
    assert!(err.contains("busybox:nope") && err.contains("404"), "{err}");
}

#[test]
fn multi_platform_index_selection() {
    if !prerequisites() {
        return;
    }
    let reg = Registry::start(Auth::None, false);
    let client = reg.client(&RegistryOptions::default());
    let amd = base_layer();
    let arm = layer(&[("arm64-marker", b"arm\n")]);
    let (d_amd, b_amd) = push_image(&client, "multi", "amd64", "amd64", &[&amd], false);
    let (d_arm, b_arm) = push_image(&client, "multi", "arm64", "arm64", &[&arm], true);
    push_index(
        &client,
        "multi",
        "latest",
        &[
            (&d_arm, b_arm.len(), "arm64"),
            (&d_amd, b_amd.len(), "amd64"),
        ],
    );
    let image = format!("{}/multi", reg.host());
    let (root, home) = (tmp(), tmp());
    let out = ok(berth(root.path(), home.path())
        .args(["pull", "--platform", "linux/arm64", &image])
        .output()
        .unwrap());
    assert!(out.contains("Pull complete"), "{out}");
    assert_eq!(find_in_layers(root.path(), "arm64-marker").len(), 1);
    let out = ok(berth(root.path(), home.path())
        .args(["image", "inspect", "--format", "{{.Architecture}}", &image])
        .output()
        .unwrap());
    assert_eq!(out.trim(), "arm64");
    let err = fails(
        berth(root.path(), home.path())
            .args(["pull", "--platform", "linux/s390x", &image])
            .output()
            .unwrap(),
    );
    assert!(
        err.contains("linux/s390x") && err.contains("linux/amd64"),
        "{err}"
    );
    if std::env::consts::ARCH == "x86_64" {
        ok(berth(root.path(), home.path())
            .args(["pull", "-q", &image])
            .output()
            .unwrap());
        let out = ok(berth(root.path(), home.path())
            .args(["image", "inspect", "--format", "{{.Architecture}}", &image])
            .output()
            .unwrap());
        assert_eq!(out.trim(), "amd64", "default platform is the host's");
    }
}

#[test]
fn tls_registry_with_a_test_ca() {
    if !prerequisites() {
        return;
    }
    let reg = Registry::start(Auth::None, true);
    let certs = reg.certs_dir();
    let opts = RegistryOptions {
        cert_dirs: vec![certs.clone()],
        ..RegistryOptions::default()
    };
    let client = reg.client(&opts);
    push_image(&client, "busybox", "tls", "amd64", &[&base_layer()], true);
    let image = format!("{}/busybox:tls", reg.host());
    let (root, home) = (tmp(), tmp());
    // Without the CA: refused (no silent downgrade succeeds against a TLS-only server).
    let empty = tmp();
    fails(
        berth(root.path(), home.path())
            .arg("--certs-dir")
            .arg(empty.path())
            .args(["pull", &image])
            .output()
            .unwrap(),
    );
    ok(berth(root.path(), home.path())
        .arg("--certs-dir")
        .arg(&certs)
        .args(["pull", &image])
        .output()
        .unwrap());
}

#[test]
fn htpasswd_basic_auth_login_logout() {
    if !prerequisites() {
        return;
    }
    let reg = Registry::start(
        Auth::Htpasswd {
            user: "alice".into(),
            password: "s3cret".into(),
        },
        true,
    );
    let certs = reg.certs_dir();
    let opts = RegistryOptions {
        cert_dirs: vec![certs.clone()],
        credentials: Some(berth_image::auth::Credentials {
            username: "alice".into(),
            password: "s3cret".into(),
        }),
        ..RegistryOptions::default()
    };
    push_image(
        &reg.client(&opts),
        "private",
        "1",
        "amd64",
        &[&base_layer()],
        true,
    );
    let image = format!("{}/private:1", reg.host());
    let (root, home) = (tmp(), tmp());
    let c = |args: &[&str]| {
        let mut cmd = berth(root.path(), home.path());
        cmd.arg("--certs-dir").arg(&certs).args(args);
        cmd
    };
    let err = fails(c(&["pull", &image]).output().unwrap());
    assert!(err.contains("401") && err.contains("private"), "{err}");
    let err = fails(
        c(&["login", "-u", "alice", "-p", "wrong", &reg.host()])
            .output()
            .unwrap(),
    );
    assert!(err.contains("401"), "{err}");
    let out = ok(c(&["login", "-u", "alice", "-p", "s3cret", &reg.host()])
        .output()
        .unwrap());
    assert!(out.contains("Login Succeeded"));
    let auth = std::fs::read_to_string(home.path().join(".config/berth/auth.json")).unwrap();
    assert!(auth.contains(&reg.host()));
    ok(c(&["pull", &image]).output().unwrap());
    ok(c(&["logout", &reg.host()]).output().unwrap());
    ok(c(&["rmi", &image]).output().unwrap());
    fails(c(&["pull", &image]).output().unwrap());
    // Docker's config.json is read too.
    std::fs::create_dir_all(home.path().join(".docker")).unwrap();
    let b64 = base64_encode(b"alice:s3cret");
    std::fs::write(
        home.path().join(".docker/config.json"),
        format!(r#"{{"auths": {{"{}": {{"auth": "{b64}"}}}}}}"#, reg.host()),
    )
    .unwrap();
    ok(c(&["pull", &image]).output().unwrap());
}

fn base64_encode(b: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(b)
}

#[test]
fn sigkill_mid_pull_then_pull_again() {
    if !prerequisites() {
        return;
    }
    let reg = Registry::start(Auth::None, false);
    let client = reg.client(&RegistryOptions::default());
    let big = layer(&[("data/blob", &pseudo_random(24 << 20, 7))]);
    let base = base_layer();
    push_image(&client, "big", "1", "amd64", &[&base, &big], true);
    // 16 KiB per 2 ms: about 8 MB/s, so the 24 MB layer takes seconds.
    let proxy = SlowProxy::start(reg.port, 16 * 1024, Duration::from_millis(2));
    let image = format!("127.0.0.1:{}/big:1", proxy.port);
    let (root, home) = (tmp(), tmp());
    let mut child = berth(root.path(), home.path())
        .args(["pull", &image])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let partial = root
        .path()
        .join(format!("image/tmp/blob-{}.partial", big.digest.hex()));
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let len = partial.metadata().map(|m| m.len()).unwrap_or(0);
        if len > (2 << 20) {
            break;
        }
        assert!(Instant::now() < deadline, "download never started");
        assert!(
            child.try_wait().unwrap().is_none(),
            "pull ended before it could be killed"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    child.kill().unwrap(); // SIGKILL, this test's own child
    child.wait().unwrap();
    let out = ok(berth(root.path(), home.path())
        .args(["images", "-q"])
        .output()
        .unwrap());
    assert!(
        out.trim().is_empty(),
        "an image was recorded by a killed pull: {out}"
    );

    let out = ok(berth(root.path(), home.path())
        .args(["pull", &image])
        .output()
        .unwrap());
    assert!(out.contains("Resuming download"), "{out}");
    let data = find_in_layers(root.path(), "data/blob");
    assert_eq!(data.len(), 1);
    assert_eq!(std::fs::read(&data[0]).unwrap(), pseudo_random(24 << 20, 7));
    assert!(!partial.exists());
    let leftovers = std::fs::read_dir(root.path().join("image/tmp"))
        .unwrap()
        .count();
    assert_eq!(leftovers, 0, "temporary files left behind");
}

#[test]
fn concurrent_pulls_share_a_layer() {
    if !prerequisites() {
        return;
    }
    let reg = Registry::start(Auth::None, false);
    let client = reg.client(&RegistryOptions::default());
    let base = layer(&[("data/shared", &pseudo_random(8 << 20, 3))]);
    let a = layer(&[("a", b"a")]);
    let b = layer(&[("b", b"b")]);
    push_image(&client, "one", "1", "amd64", &[&base, &a], true);
    push_image(&client, "two", "1", "amd64", &[&base, &b], false);
    let proxy = SlowProxy::start(reg.port, 64 * 1024, Duration::from_millis(1));
    let (root, home) = (tmp(), tmp());
    let spawn = |name: &str| {
        berth(root.path(), home.path())
            .args(["pull", &format!("127.0.0.1:{}/{name}:1", proxy.port)])
            .output()
    };
    let (r1, r2) = std::thread::scope(|s| {
        let h1 = s.spawn(|| spawn("one").unwrap());
        let h2 = s.spawn(|| spawn("two").unwrap());
        (h1.join().unwrap(), h2.join().unwrap())
    });
    let (o1, o2) = (ok(r1), ok(r2));
    // Exactly one of them downloaded the shared layer.
    let short = base.digest.short().to_string();
    let fetched = [&o1, &o2]
        .iter()
        .filter(|o| o.contains(&format!("{short}: Pull complete")))
        .count();
    assert_eq!(fetched, 1, "{o1}\n{o2}");
    assert_eq!(layer_dirs(root.path()).len(), 3);
    let out = ok(berth(root.path(), home.path())
        .args(["images", "-q"])
        .output()
        .unwrap());
    assert_eq!(out.lines().count(), 2);
    // Removing one image keeps the shared layer for the other.
    ok(berth(root.path(), home.path())
        .args(["rmi", &format!("127.0.0.1:{}/one:1", proxy.port)])
        .output()
        .unwrap());
    assert_eq!(layer_dirs(root.path()).len(), 2);
    assert_eq!(find_in_layers(root.path(), "data/shared").len(), 1);
}

#[test]
fn push_skips_blobs_the_registry_has() {
    if !prerequisites() {
        return;
    }
    let reg = Registry::start(Auth::None, false);
    let client = reg.client(&RegistryOptions::default());
    push_image(
        &client,
        "src",
        "1",
        "amd64",
        &[&base_layer(), &whiteout_layer()],
        true,
    );
    let (root, home) = (tmp(), tmp());
    let src = format!("{}/src:1", reg.host());
    let dst = format!("{}/copy:2", reg.host());
    ok(berth(root.path(), home.path())
        .args(["pull", "-q", &src])
        .output()
        .unwrap());
    let out = ok(berth(root.path(), home.path())
        .args(["push", &src, &dst])
        .output()
        .unwrap());
    assert_eq!(out.matches("Pushed").count(), 3, "{out}");
    let out = ok(berth(root.path(), home.path())
        .args(["push", &src, &dst])
        .output()
        .unwrap());
    assert_eq!(out.matches("Layer already exists").count(), 3, "{out}");
    // A fresh store pulls what was pushed.
    let root2 = tmp();
    ok(berth(root2.path(), home.path())
        .args(["pull", &dst])
        .output()
        .unwrap());
    if Path::new("/usr/bin/skopeo").exists() {
        let o = std::process::Command::new("skopeo")
            .args(["inspect", "--tls-verify=false", &format!("docker://{dst}")])
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        assert_eq!(v["Layers"].as_array().unwrap().len(), 2);
    }
}

#[test]
fn hostile_layer_is_refused_and_nothing_is_recorded() {
    if !prerequisites() {
        return;
    }
    let reg = Registry::start(Auth::None, false);
    let client = reg.client(&RegistryOptions::default());
    // A symlink to / followed by a file through it.
    let mut b = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_gnu();
    h.set_path("escape").unwrap();
    h.set_entry_type(tar::EntryType::Symlink);
    h.set_link_name("/").unwrap();
    h.set_size(0);
    h.set_cksum();
    b.append(&h, &[][..]).unwrap();
    let mut h = tar::Header::new_gnu();
    h.set_path("escape/tmp/berth-escaped").unwrap();
    h.set_size(4);
    h.set_mode(0o644);
    h.set_cksum();
    b.append(&h, &b"evil"[..]).unwrap();
    let tar = b.into_inner().unwrap();
    let evil = common::Layer {
        digest: berth_image::Digest::of(&tar),
        diff_id: berth_image::Digest::of(&tar),
        gz: tar,
    };
    push_image(&client, "evil", "1", "amd64", &[&evil], true);
    let (root, home) = (tmp(), tmp());
    let err = fails(
        berth(root.path(), home.path())
            .args(["pull", &format!("{}/evil:1", reg.host())])
            .output()
            .unwrap(),
    );
    assert!(err.contains("escape/tmp/berth-escaped"), "{err}");
    assert!(err.contains(&evil.digest.to_string()), "{err}");
    assert!(!Path::new("/tmp/berth-escaped").exists());
    let out = ok(berth(root.path(), home.path())
        .args(["images", "-q"])
        .output()
        .unwrap());
    assert!(out.trim().is_empty());
    assert!(layer_dirs(root.path()).is_empty());
}

fn token_auth(oauth_only: bool) {
    if !prerequisites() {
        return;
    }
    let tokdir = tmp();
    let issuer = TokenIssuer::start(tokdir.path(), "bob", "pw", oauth_only);
    let reg = Registry::start(
        Auth::Token {
            realm: issuer.realm(),
            cert: issuer.cert.clone(),
        },
        false,
    );
    let creds = berth_image::auth::Credentials {
        username: "bob".into(),
        password: "pw".into(),
    };
    let opts = RegistryOptions {
        credentials: Some(creds),
        ..RegistryOptions::default()
    };
    push_image(
        &reg.client(&opts),
        "tok/app",
        "1",
        "amd64",
        &[&base_layer()],
        true,
    );
    let image = format!("{}/tok/app:1", reg.host());
    let (root, home) = (tmp(), tmp());
    let err = fails(
        berth(root.path(), home.path())
            .args(["pull", &image])
            .output()
            .unwrap(),
    );
    assert!(err.contains("401") || err.contains("405"), "{err}");
    ok(berth(root.path(), home.path())
        .args(["login", "-u", "bob", "--password-stdin", &reg.host()])
        .stdin_bytes(b"pw\n"));
    ok(berth(root.path(), home.path())
        .args(["pull", &image])
        .output()
        .unwrap());
    // Push needs a pull,push token for another repository.
    let out = ok(berth(root.path(), home.path())
        .args(["push", &image, &format!("{}/tok/copy:1", reg.host())])
        .output()
        .unwrap());
    assert!(out.contains("digest:"), "{out}");
    let posts = issuer.posts.load(std::sync::atomic::Ordering::SeqCst);
    if oauth_only {
        assert!(posts > 0, "the OAuth2 POST form was not used");
    } else {
        assert_eq!(posts, 0, "GET should have been enough");
    }
}

#[test]
fn token_auth_with_basic_get() {
    token_auth(false);
}

#[test]
fn token_auth_with_oauth2_post_form() {
    token_auth(true);
}

trait StdinBytes {
    fn stdin_bytes(&mut self, b: &[u8]) -> std::process::Output;
}

impl StdinBytes for std::process::Command {
    fn stdin_bytes(&mut self, b: &[u8]) -> std::process::Output {
        use std::io::Write;
        let mut child = self
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        child.stdin.take().unwrap().write_all(b).unwrap();
        child.wait_with_output().unwrap()
    }
}

#[test]
fn save_load_round_trips_with_skopeo_and_import() {
    if !prerequisites() || !Path::new("/usr/bin/skopeo").exists() {
        return;
    }
    let reg = Registry::start(Auth::None, false);
    let client = reg.client(&RegistryOptions::default());
    push_image(
        &client,
        "busybox",
        "s",
        "amd64",
        &[&base_layer(), &whiteout_layer()],
        false,
    );
    let image = format!("{}/busybox:s", reg.host());
    let (root, home, work) = (tmp(), tmp(), tmp());
    ok(berth(root.path(), home.path())
        .args(["pull", "-q", &image])
        .output()
        .unwrap());
    let id = ok(berth(root.path(), home.path())
        .args(["image", "inspect", "--format", "{{.Id}}", &image])
        .output()
        .unwrap());
    let saved = work.path().join("saved.tar");
    ok(berth(root.path(), home.path())
        .arg("save")
        .arg("-o")
        .arg(&saved)
        .arg(&image)
        .output()
        .unwrap());
    // Both readings of the archive are valid for containers/image.
    for transport in ["oci-archive", "docker-archive"] {
        let o = std::process::Command::new("skopeo")
            .args([
                "inspect",
                "--raw",
                &format!("{transport}:{}", saved.display()),
            ])
            .output()
            .unwrap();
        assert!(
            o.status.success(),
            "{transport}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
    }
    // berth load into a fresh store: same image ID, same tag.
    let root2 = tmp();
    let out = ok(berth(root2.path(), home.path())
        .arg("load")
        .arg("-i")
        .arg(&saved)
        .output()
        .unwrap());
    assert!(out.contains(&format!("Loaded image: {image}")), "{out}");
    let id2 = ok(berth(root2.path(), home.path())
        .args(["image", "inspect", "--format", "{{.Id}}", &image])
        .output()
        .unwrap());
    assert_eq!(id, id2);
    // Archives written by skopeo load too.
    for (transport, file) in [("docker-archive", "d.tar"), ("oci-archive", "o.tar")] {
        let dest = format!(
            "{transport}:{}:example.com/from-skopeo:{}",
            work.path().join(file).display(),
            transport
        );
        let o = std::process::Command::new("skopeo")
            .args([
                "copy",
                "-q",
                "--src-tls-verify=false",
                &format!("docker://{image}"),
                &dest,
            ])
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        let root3 = tmp();
        let out = ok(berth(root3.path(), home.path())
            .arg("load")
            .arg("-i")
            .arg(work.path().join(file))
            .output()
            .unwrap());
        assert!(out.contains("Loaded image"), "{transport}: {out}");
        assert_eq!(layer_dirs(root3.path()).len(), 2);
    }
    // import from stdin with --change
    let mut b = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_gnu();
    h.set_path("bin/busybox").unwrap();
    let bb = busybox();
    h.set_size(bb.len() as u64);
    h.set_mode(0o755);
    h.set_cksum();
    b.append(&h, &bb[..]).unwrap();
    let tarball = b.into_inner().unwrap();
    let mut child = berth(root.path(), home.path())
        .args([
            "import",
            "--change",
            "CMD [\"/bin/busybox\", \"sh\"]",
            "--change",
            "ENV X=1",
            "-",
            "imported:1",
        ])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    {
        use std::io::Write;
        child.stdin.take().unwrap().write_all(&tarball).unwrap();
    }
    ok(child.wait_with_output().unwrap());
    let out = ok(berth(root.path(), home.path())
        .args([
            "image",
            "inspect",
            "--format",
            "{{json .Config.Cmd}} {{json .Config.Env}}",
            "imported:1",
        ])
        .output()
        .unwrap());
    assert_eq!(out.trim(), r#"["/bin/busybox","sh"] ["X=1"]"#);
}

#[test]
fn prune_reclaims_a_dangling_image_and_df_counts_shared_layers_once() {
    if !prerequisites() {
        return;
    }
    let reg = Registry::start(Auth::None, false);
    let client = reg.client(&RegistryOptions::default());
    let base = base_layer();
    let v1 = layer(&[("version", b"1")]);
    let v2 = layer(&[("version", b"2")]);
    push_image(&client, "app", "latest", "amd64", &[&base, &v1], true);
    let image = format!("{}/app", reg.host());
    let (root, home) = (tmp(), tmp());
    ok(berth(root.path(), home.path())
        .args(["pull", "-q", &image])
        .output()
        .unwrap());
    // The tag moves to a new image sharing the base layer: the old one is dangling.
    push_image(&client, "app", "latest", "amd64", &[&base, &v2], true);
    ok(berth(root.path(), home.path())
        .args(["pull", "-q", &image])
        .output()
        .unwrap());
    assert_eq!(layer_dirs(root.path()).len(), 3, "base layer shared");
    let out = ok(berth(root.path(), home.path())
        .args(["images", "--format", "{{.Repository}}:{{.Tag}}"])
        .output()
        .unwrap());
    assert!(out.contains("<none>:<none>"), "{out}");
    let df = ok(berth(root.path(), home.path())
        .args(["system", "df", "--format", "json"])
        .output()
        .unwrap());
    // One JSON row per type, as Docker's: Images first, then Containers.
    let v: serde_json::Value = serde_json::from_str(df.lines().next().unwrap()).unwrap();
    assert_eq!(v["Type"], "Images");
    assert_eq!(v["TotalCount"], 2);
    assert_eq!(v["Layers"], 3);

    let out = ok(berth(root.path(), home.path())
        .args(["image", "prune", "-f"])
        .output()
        .unwrap());
    assert!(out.contains("Deleted images: 1"), "{out}");
    assert_eq!(
        layer_dirs(root.path()).len(),
        2,
        "dangling layer not reclaimed"
    );
    assert_eq!(find_in_layers(root.path(), "version").len(), 1);
    let ids = ok(berth(root.path(), home.path())
        .args(["images", "-q"])
        .output()
        .unwrap());
    assert_eq!(ids.lines().count(), 1);
}

/// Imports a busybox rootfs with `/etc/motd` as image `name` into the store at `root`, saves
/// it to `work/berth.tar`; returns its image ID (hex, no `sha256:`) and the archive's path.
fn import_and_save(
    root: &Path,
    home: &Path,
    work: &Path,
    name: &str,
    motd: &[u8],
) -> (String, std::path::PathBuf) {
    let rootfs = work.join("rootfs.tar");
    let l = layer(&[
        ("bin/", b""),
        ("bin/busybox", &busybox()),
        ("bin/sh", b"->busybox"),
        ("etc/", b""),
        ("etc/motd", motd),
    ]);
    let mut gz = flate2::read::GzDecoder::new(&l.gz[..]);
    let mut plain = Vec::new();
    std::io::Read::read_to_end(&mut gz, &mut plain).unwrap();
    std::fs::write(&rootfs, plain).unwrap();
    ok(berth(root, home)
        .arg("import")
        .arg(&rootfs)
        .arg(name)
        .args(["--change", r#"CMD ["/bin/sh"]"#])
        .output()
        .unwrap());
    let id = ok(berth(root, home)
        .args(["image", "inspect", "--format", "{{.Id}}"])
        .arg(name)
        .output()
        .unwrap());
    let saved = work.join("berth.tar");
    ok(berth(root, home)
        .arg("save")
        .arg("-o")
        .arg(&saved)
        .arg(name)
        .output()
        .unwrap());
    (id.trim().trim_start_matches("sha256:").to_owned(), saved)
}

/// `podman` with a private, throw-away storage (vfs: no mounts), so the host's podman images
/// are never touched.
fn podman(storage: &Path) -> std::process::Command {
    let mut c = std::process::Command::new("podman");
    c.arg("--root")
        .arg(storage.join("root"))
        .arg("--runroot")
        .arg(storage.join("run"))
        .args(["--storage-driver", "vfs"]);
    c
}

/// `berth save` archives load in podman (read as docker-archive, as oci-archive, and by
/// `podman load`), and podman's
/// own `save` archives (both formats) load in Berth, keeping the image ID each way.
#[test]
fn save_load_interoperate_with_podman() {
    if !prerequisites() || !Path::new("/usr/bin/podman").exists() {
        return;
    }
    let (root, home, work, storage) = (tmp(), tmp(), tmp(), tmp());
    let (id, saved) = import_and_save(
        root.path(),
        home.path(),
        work.path(),
        "example.com/interop:berth",
        b"from berth\n",
    );
    for transport in ["docker-archive", "oci-archive"] {
        // `podman pull TRANSPORT:FILE` reads the archive one way only; `podman load` guesses.
        let o = podman(storage.path())
            .arg("pull")
            .arg("-q")
            .arg(format!("{transport}:{}", saved.display()))
            .output()
            .unwrap();
        assert!(
            o.status.success(),
            "podman pull {transport}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        let o = podman(storage.path())
            .args(["image", "inspect", "--format", "{{.Id}}"])
            .arg(&id)
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        assert_eq!(String::from_utf8_lossy(&o.stdout).trim(), id);
        let o = podman(storage.path())
            .args(["rmi", "-f", &id])
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    }
    // And back: podman's archives, both formats, into fresh Berth stores.
    let o = podman(storage.path())
        .arg("load")
        .arg("-i")
        .arg(&saved)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    for format in ["docker-archive", "oci-archive"] {
        let file = work.path().join(format!("podman-{format}.tar"));
        let o = podman(storage.path())
            .args(["save", "--format", format, "-o"])
            .arg(&file)
            .arg("example.com/interop:berth")
            .output()
            .unwrap();
        assert!(
            o.status.success(),
            "podman save {format}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        let root2 = tmp();
        let out = ok(berth(root2.path(), home.path())
            .arg("load")
            .arg("-i")
            .arg(&file)
            .output()
            .unwrap());
        assert!(out.contains("Loaded image"), "{format}: {out}");
        let id2 = ok(berth(root2.path(), home.path())
            .args(["image", "inspect", "--format", "{{.Id}}"])
            .arg(&id)
            .output()
            .unwrap());
        assert_eq!(
            id2.trim().trim_start_matches("sha256:"),
            id,
            "{format}: image ID changed through podman"
        );
    }
    let _ = podman(storage.path()).args(["rmi", "-a", "-f"]).output();
}

/// A dockerd of the test's own: its own data and exec roots, socket and network namespace (a
/// bind mount below its directory), no bridge, iptables or forwarding, vfs storage. Stopped by
/// its pid on drop, which also unmounts whatever is left below its directory.
struct Dockerd {
    child: std::process::Child,
    dir: std::path::PathBuf,
}

impl Dockerd {
    fn start(dockerd: &str, dir: &Path) -> Dockerd {
        std::fs::create_dir_all(dir).unwrap();
        let netns = dir.join("netns");
        std::fs::write(&netns, b"").unwrap();
        let made = std::process::Command::new("unshare")
            .arg(format!("--net={}", netns.display()))
            .arg("true")
            .status()
            .unwrap();
        assert!(made.success(), "unshare --net");
        let log = std::fs::File::create(dir.join("dockerd.log")).unwrap();
        let child = std::process::Command::new("nsenter")
            .arg(format!("--net={}", netns.display()))
            .arg(dockerd)
            .arg("--data-root")
            .arg(dir.join("data"))
            .arg("--exec-root")
            .arg(dir.join("exec"))
            .arg("--pidfile")
            .arg(dir.join("dockerd.pid"))
            .arg("-H")
            .arg(format!("unix://{}", dir.join("docker.sock").display()))
            .args([
                "--bridge=none",
                "--iptables=false",
                "--ip6tables=false",
                "--ip-forward=false",
                "--ip-masq=false",
                "--storage-driver=vfs",
            ])
            .stdout(std::process::Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        let d = Dockerd {
            child,
            dir: dir.to_owned(),
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        while !d.docker().arg("version").output().unwrap().status.success() {
            assert!(
                Instant::now() < deadline,
                "dockerd did not come up: {}",
                std::fs::read_to_string(dir.join("dockerd.log")).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        d
    }

    fn docker(&self) -> std::process::Command {
        let mut c = std::process::Command::new("docker");
        c.arg("-H")
            .arg(format!("unix://{}", self.dir.join("docker.sock").display()));
        c
    }
}

impl Drop for Dockerd {
    fn drop(&mut self) {
        // SIGTERM (by pid) lets dockerd stop the containerd it started; SIGKILL if it hangs.
        let _ = std::process::Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            match self.child.try_wait() {
                Ok(Some(_)) | Err(_) => break,
                Ok(None) if Instant::now() >= deadline => {
                    let _ = self.child.kill();
                    let _ = self.child.wait();
                    break;
                }
                Ok(None) => std::thread::sleep(Duration::from_millis(50)),
            }
        }
        let mi = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
        let dir = self.dir.to_string_lossy().into_owned();
        let mut mounts: Vec<&str> = mi
            .lines()
            .filter_map(|l| l.split_whitespace().nth(4))
            .filter(|m| m.starts_with(&dir))
            .collect();
        mounts.sort_by_key(|m| std::cmp::Reverse(m.len()));
        for m in mounts {
            let _ = std::process::Command::new("umount")
                .args(["-l", m])
                .status();
        }
    }
}

/// `berth save` archives load in Docker's own daemon (`docker load`), and `docker save`
/// archives load in Berth, keeping the image ID each way. The daemon is the test's own (see
/// [`Dockerd`]): nothing of the host's Docker, if any, is used or touched.
#[test]
fn save_load_interoperate_with_docker() {
    if !prerequisites() {
        return;
    }
    let Some(dockerd) = ["/usr/sbin/dockerd", "/usr/bin/dockerd"]
        .into_iter()
        .find(|p| Path::new(p).exists())
    else {
        eprintln!("skipping: needs dockerd (docker.io, scripts/install-deps.sh installs it)");
        return;
    };
    let (root, home, work) = (tmp(), tmp(), tmp());
    let (id, saved) = import_and_save(
        root.path(),
        home.path(),
        work.path(),
        "example.com/interop:docker",
        b"from berth to docker\n",
    );

    let d = Dockerd::start(dockerd, &work.path().join("docker"));
    let loaded = d
        .docker()
        .arg("load")
        .arg("-i")
        .arg(&saved)
        .output()
        .unwrap();
    assert!(
        loaded.status.success(),
        "docker load: {}",
        String::from_utf8_lossy(&loaded.stderr)
    );
    assert!(
        String::from_utf8_lossy(&loaded.stdout).contains("example.com/interop:docker"),
        "{}",
        String::from_utf8_lossy(&loaded.stdout)
    );
    let o = d
        .docker()
        .args([
            "image",
            "inspect",
            "--format",
            "{{.Id}}",
            "example.com/interop:docker",
        ])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(
        String::from_utf8_lossy(&o.stdout).trim(),
        format!("sha256:{id}"),
        "docker sees another image ID"
    );

    // And back: Docker's own archive of it, under a name only Docker gave it.
    let tagged = d
        .docker()
        .args(["tag", "example.com/interop:docker", "docker.test/back:1"])
        .output()
        .unwrap();
    assert!(
        tagged.status.success(),
        "{}",
        String::from_utf8_lossy(&tagged.stderr)
    );
    let theirs = work.path().join("docker.tar");
    let o = d
        .docker()
        .args(["save", "-o"])
        .arg(&theirs)
        .arg("docker.test/back:1")
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "docker save: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    drop(d);
    let root2 = tmp();
    let out = ok(berth(root2.path(), home.path())
        .arg("load")
        .arg("-i")
        .arg(&theirs)
        .output()
        .unwrap());
    assert!(out.contains("docker.test/back:1"), "{out}");
    let id2 = ok(berth(root2.path(), home.path())
        .args([
            "image",
            "inspect",
            "--format",
            "{{.Id}}",
            "docker.test/back:1",
        ])
        .output()
        .unwrap());
    assert_eq!(
        id2.trim().trim_start_matches("sha256:"),
        id,
        "the image ID changed through docker"
    );
}

/// (thread id, event) from `strace -f` output: "sync" when a syncfs(2) returned, or
/// "FROM -> TO" for a rename. Calls split by other threads ("<unfinished ...>" / "resumed") are
/// taken where they end for syncfs and where they start for rename.
fn sync_and_rename_events(trace: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for line in trace.lines() {
        let Some((tid, rest)) = line.split_once(' ') else {
            continue;
        };
        let rest = rest.trim_start();
        if (rest.starts_with("syncfs(") && !rest.contains("<unfinished"))
            || rest.starts_with("<... syncfs resumed>")
        {
            assert!(rest.ends_with("= 0"), "syncfs failed: {line}");
            out.push((tid.to_string(), "sync".to_string()));
        } else if rest.starts_with("rename") {
            // rename("from", "to") / renameat2(AT_FDCWD, "from", AT_FDCWD, "to", 0)
            let quoted: Vec<&str> = rest.split('"').skip(1).step_by(2).collect();
            if let [from, to, ..] = quoted[..] {
                out.push((tid.to_string(), format!("{from} -> {to}")));
            }
        }
    }
    out
}

#[test]
fn pulled_layers_are_flushed_before_they_are_published_and_recorded() {
    // Durability: the extracted files and the blob of a layer reach the disk (one syncfs by
    // the thread that extracted it) before the blob and the layer are renamed into place, and
    // the store is flushed again after the last of them before the image record is written.
    if !prerequisites() {
        return;
    }
    if std::process::Command::new("strace")
        .arg("-V")
        .output()
        .is_err()
    {
        eprintln!("skipping: strace is not installed");
        return;
    }
    let reg = Registry::start(Auth::None, false);
    let client = reg.client(&RegistryOptions::default());
    let many: Vec<(String, Vec<u8>)> = (0..300)
        .map(|i| {
            (
                format!("data/small/f{i}"),
                pseudo_random(3000 + i, i as u64),
            )
        })
        .collect();
    let mut entries: Vec<(&str, &[u8])> = vec![("data/", b""), ("data/small/", b"")];
    entries.extend(many.iter().map(|(n, d)| (n.as_str(), d.as_slice())));
    let small = layer(&entries);
    let (base, wh) = (base_layer(), whiteout_layer());
    push_image(
        &client,
        "durable",
        "1",
        "amd64",
        &[&base, &small, &wh],
        true,
    );
    let (root, home, scratch) = (tmp(), tmp(), tmp());
    let trace = scratch.path().join("strace.out");
    let out = std::process::Command::new("strace")
        .args([
            "-f",
            "-qq",
            "-e",
            "trace=syncfs,rename,renameat,renameat2",
            "-o",
        ])
        .arg(&trace)
        .arg(env!("CARGO_BIN_EXE_berth"))
        .arg("--root")
        .arg(root.path())
        .args(["pull", "-q", &format!("{}/durable:1", reg.host())])
        .env("HOME", home.path())
        .output()
        .unwrap();
    ok(out);
    let events = sync_and_rename_events(&std::fs::read_to_string(&trace).unwrap());
    let is_layer = |e: &str| e.contains(" -> ") && e.contains("/image/layers/");
    let is_partial_blob = |e: &str| e.contains(".partial -> ") && e.contains("/image/blobs/");
    let (mut layers, mut blobs, mut last_publish) = (0, 0, 0);
    for (i, (tid, e)) in events.iter().enumerate() {
        if !is_layer(e) && !is_partial_blob(e) {
            continue;
        }
        if is_layer(e) {
            layers += 1;
        } else {
            blobs += 1;
        }
        last_publish = i;
        // The same thread flushed since it last published a layer.
        let flushed = events[..i]
            .iter()
            .rev()
            .filter(|(t, _)| t == tid)
            .take_while(|(_, e)| !is_layer(e))
            .any(|(_, e)| e == "sync");
        assert!(flushed, "{e} without a syncfs before it: {events:#?}");
    }
    assert_eq!((layers, blobs), (3, 3), "{events:#?}");
    let record = events
        .iter()
        .position(|(_, e)| e.contains("/image/images/"))
        .expect("the image record is renamed into place");
    assert!(record > last_publish, "{events:#?}");
    assert!(
        events[last_publish..record]
            .iter()
            .any(|(_, e)| e == "sync"),
        "no syncfs between the last layer and the record: {events:#?}"
    );
    // And the many-files layer arrived whole.
    for (name, data) in many.iter().step_by(37) {
        let found = find_in_layers(root.path(), name);
        assert_eq!(found.len(), 1, "{name}");
        assert_eq!(&std::fs::read(&found[0]).unwrap(), data);
    }
}

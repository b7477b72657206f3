//! Test helpers for the `berth` end-to-end tests: a real `docker-registry` on 127.0.0.1 with
//! its own config and storage (killed by PID on drop), and fixture images built in-process from
//! /bin/busybox and pushed with berth-image's own registry client.
#![allow(dead_code)]

pub mod fixture;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use berth_image::registry::{Client, RegistryOptions, ReqBody};
use berth_image::Digest;
use serde_json::json;

pub fn is_root() -> bool {
    // /proc/self/status "Uid:" real effective ...
    let s = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    s.lines()
        .find(|l| l.starts_with("Uid:"))
        .and_then(|l| l.split_whitespace().nth(2))
        == Some("0")
}

/// Skips (with a visible message) when a prerequisite is missing.
pub fn prerequisites() -> bool {
    if !is_root() {
        eprintln!("skipping: needs root");
        return false;
    }
    for tool in ["/usr/bin/docker-registry", "/bin/busybox"] {
        if !Path::new(tool).exists() {
            eprintln!("skipping: needs {tool}");
            return false;
        }
    }
    true
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

pub enum Auth {
    None,
    Htpasswd { user: String, password: String },
    Token { realm: String, cert: PathBuf },
}

/// A running registry; killed and its files removed on drop.
pub struct Registry {
    pub dir: tempfile::TempDir,
    pub port: u16,
    child: Child,
    pub tls: Option<PathBuf>,
}

impl Registry {
    pub fn start(auth: Auth, tls: bool) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let mut cfg = format!(
            "version: 0.1\nlog:\n  level: error\n  accesslog:\n    disabled: true\n\
             storage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\n\
             http:\n  addr: 127.0.0.1:{port}\n",
            dir.path().join("storage").display()
        );
        let mut ca = None;
        if tls {
            let d = dir.path();
            let run = |args: &[&str]| {
                let st = Command::new("openssl")
                    .args(args)
                    .current_dir(d)
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .status()
                    .unwrap();
                assert!(st.success(), "openssl {args:?}");
            };
            run(&[
                "req",
                "-x509",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-days",
                "2",
                "-subj",
                "/CN=berth test CA",
                "-keyout",
                "ca.key",
                "-out",
                "ca.crt",
            ]);
            std::fs::write(
                d.join("ext.cnf"),
                "subjectAltName=IP:127.0.0.1,DNS:localhost\n",
            )
            .unwrap();
            run(&[
                "req",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-subj",
                "/CN=127.0.0.1",
                "-keyout",
                "server.key",
                "-out",
                "server.csr",
            ]);
            run(&[
                "x509",
                "-req",
                "-in",
                "server.csr",
                "-CA",
                "ca.crt",
                "-CAkey",
                "ca.key",
                "-CAcreateserial",
                "-days",
                "2",
                "-extfile",
                "ext.cnf",
                "-out",
                "server.crt",
            ]);
            cfg.push_str(&format!(
                "  tls:\n    certificate: {}\n    key: {}\n",
                d.join("server.crt").display(),
                d.join("server.key").display()
            ));
            ca = Some(d.join("ca.crt"));
        }
        match auth {
            Auth::None => {}
            Auth::Htpasswd { user, password } => {
                let hash = bcrypt::hash(password, 4).unwrap();
                let p = dir.path().join("htpasswd");
                std::fs::write(&p, format!("{user}:{hash}\n")).unwrap();
                cfg.push_str(&format!(
                    "auth:\n  htpasswd:\n    realm: berth-test\n    path: {}\n",
                    p.display()
                ));
            }
            Auth::Token { realm, cert } => {
                cfg.push_str(&format!(
                    "auth:\n  token:\n    realm: {realm}\n    service: berth-registry\n    \
                     issuer: berth-test-issuer\n    rootcertbundle: {}\n",
                    cert.display()
                ));
            }
        }
        let cfg_path = dir.path().join("config.yml");
        std::fs::write(&cfg_path, cfg).unwrap();
        let child = Command::new("/usr/bin/docker-registry")
            .arg("serve")
            .arg(&cfg_path)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let r = Self {
            dir,
            port,
            child,
            tls: ca,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "registry did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
        r
    }

    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// A certs.d-style directory trusting this registry's CA.
    pub fn certs_dir(&self) -> PathBuf {
        let d = self.dir.path().join("certs.d");
        let h = d.join(self.host());
        std::fs::create_dir_all(&h).unwrap();
        std::fs::copy(self.tls.as_ref().unwrap(), h.join("ca.crt")).unwrap();
        d
    }

    pub fn client(&self, opts: &RegistryOptions) -> Client {
        Client::for_registry(&self.host(), &self.host(), opts).unwrap()
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        // Only the process this test started, by its PID.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A fixture layer: a gzip-compressed tar and the digests that describe it.
pub struct Layer {
    pub gz: Vec<u8>,
    pub digest: Digest,
    pub diff_id: Digest,
}

fn header(name: &str, kind: tar::EntryType, size: u64, mode: u32) -> tar::Header {
    let mut h = tar::Header::new_gnu();
    h.set_path(name).unwrap();
    h.set_entry_type(kind);
    h.set_size(size);
    h.set_mode(mode);
    h.set_mtime(1_700_000_000);
    h.set_cksum();
    h
}

/// Builds a layer from (name, content) pairs; names ending in '/' are directories,
/// `->target` contents make symlinks, `=>target` hardlinks.
pub fn layer(entries: &[(&str, &[u8])]) -> Layer {
    let mut b = tar::Builder::new(Vec::new());
    for (name, data) in entries {
        if name.ends_with('/') {
            b.append(&header(name, tar::EntryType::Directory, 0, 0o755), &[][..])
                .unwrap();
        } else if let Some(t) = data.strip_prefix(b"->") {
            let mut h = header(name, tar::EntryType::Symlink, 0, 0o777);
            h.set_link_name(std::str::from_utf8(t).unwrap()).unwrap();
            h.set_cksum();
            b.append(&h, &[][..]).unwrap();
        } else if let Some(t) = data.strip_prefix(b"=>") {
            let mut h = header(name, tar::EntryType::Link, 0, 0o755);
            h.set_link_name(std::str::from_utf8(t).unwrap()).unwrap();
            h.set_cksum();
            b.append(&h, &[][..]).unwrap();
        } else {
            let mode = if name.starts_with("bin/") {
                0o755
            } else {
                0o644
            };
            b.append(
                &header(name, tar::EntryType::Regular, data.len() as u64, mode),
                *data,
            )
            .unwrap();
        }
    }
    let tar = b.into_inner().unwrap();
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(&tar).unwrap();
    let gz = gz.finish().unwrap();
    Layer {
        digest: Digest::of(&gz),
        diff_id: Digest::of(&tar),
        gz,
    }
}

pub fn busybox() -> Vec<u8> {
    std::fs::read("/bin/busybox").unwrap()
}

/// The base layer: busybox with a symlink and a hardlink.
pub fn base_layer() -> Layer {
    let bb = busybox();
    layer(&[
        ("bin/", b""),
        ("bin/busybox", &bb),
        ("bin/sh", b"->busybox"),
        ("bin/ls", b"=>bin/busybox"),
        ("etc/", b""),
        ("etc/motd", b"hello\n"),
        ("var/cache/", b""),
        ("var/cache/old", b"old\n"),
    ])
}

/// A layer with both kinds of whiteout over the base layer.
pub fn whiteout_layer() -> Layer {
    layer(&[
        ("etc/", b""),
        ("etc/.wh.motd", b""),
        ("etc/hostname", b"berth\n"),
        ("var/cache/", b""),
        ("var/cache/.wh..wh..opq", b""),
        ("var/cache/new", b"new\n"),
    ])
}

/// Uploads an image made of `layers` as `repo:tag`; returns the manifest digest.
/// `oci_without_media_type` leaves out the optional `mediaType` field (OCI allows it).
pub fn push_image(
    client: &Client,
    repo: &str,
    tag: &str,
    arch: &str,
    layers: &[&Layer],
    oci_without_media_type: bool,
) -> (Digest, Vec<u8>) {
    let config = json!({
        "architecture": arch,
        "os": "linux",
        "created": "2024-01-01T00:00:00Z",
        "config": {"Env": ["PATH=/bin"], "Cmd": ["/bin/sh"]},
        "rootfs": {"type": "layers", "diff_ids": layers.iter().map(|l| l.diff_id.to_string()).collect::<Vec<_>>()},
        "history": layers.iter().enumerate().map(|(i, _)| json!({"created": "2024-01-01T00:00:00Z", "created_by": format!("layer {i}")})).collect::<Vec<_>>(),
    });
    let config = serde_json::to_vec(&config).unwrap();
    let config_digest = Digest::of(&config);
    for l in layers {
        if !client.blob_exists(repo, &l.digest).unwrap() {
            client
                .upload_blob(
                    repo,
                    &l.digest,
                    ReqBody::Bytes(l.gz.clone(), "application/octet-stream".into()),
                )
                .unwrap();
        }
    }
    client
        .upload_blob(
            repo,
            &config_digest,
            ReqBody::Bytes(config.clone(), "application/octet-stream".into()),
        )
        .unwrap();
    let (mt, cfg_mt, layer_mt) = if oci_without_media_type {
        (
            "application/vnd.oci.image.manifest.v1+json",
            "application/vnd.oci.image.config.v1+json",
            "application/vnd.oci.image.layer.v1.tar+gzip",
        )
    } else {
        (
            "application/vnd.docker.distribution.manifest.v2+json",
            "application/vnd.docker.container.image.v1+json",
            "application/vnd.docker.image.rootfs.diff.tar.gzip",
        )
    };
    let mut manifest = json!({
        "schemaVersion": 2,
        "config": {"mediaType": cfg_mt, "digest": config_digest.to_string(), "size": config.len()},
        "layers": layers.iter().map(|l| json!({"mediaType": layer_mt, "digest": l.digest.to_string(), "size": l.gz.len()})).collect::<Vec<_>>(),
    });
    if !oci_without_media_type {
        manifest["mediaType"] = json!(mt);
    }
    let bytes = serde_json::to_vec(&manifest).unwrap();
    client.put_manifest(repo, tag, bytes.clone(), mt).unwrap();
    (Digest::of(&bytes), bytes)
}

/// Uploads an OCI index over two already pushed manifests.
pub fn push_index(client: &Client, repo: &str, tag: &str, entries: &[(&Digest, usize, &str)]) {
    let index = json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": entries.iter().map(|(d, size, arch)| json!({
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": d.to_string(), "size": size,
            "platform": {"os": "linux", "architecture": arch},
        })).collect::<Vec<_>>(),
    });
    client
        .put_manifest(
            repo,
            tag,
            serde_json::to_vec(&index).unwrap(),
            "application/vnd.oci.image.index.v1+json",
        )
        .unwrap();
}

/// The `berth` binary with `--root`, isolated from the caller's credentials.
pub fn berth(root: &Path, home: &Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_berth"));
    c.arg("--root").arg(root);
    c.env("HOME", home).env_remove("REGISTRY_AUTH_FILE");
    c
}

pub fn ok(out: Output) -> String {
    let so = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "berth failed: {}\nstdout: {so}",
        String::from_utf8_lossy(&out.stderr)
    );
    so
}

pub fn fails(out: Output) -> String {
    assert!(
        !out.status.success(),
        "berth succeeded unexpectedly: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// A TCP proxy that forwards to `target` slowly, so a test can interrupt a transfer.
pub struct SlowProxy {
    pub port: u16,
}

impl SlowProxy {
    pub fn start(target: u16, chunk: usize, pause: Duration) -> Self {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        std::thread::spawn(move || {
            for c in l.incoming() {
                let Ok(client) = c else { return };
                let Ok(upstream) = TcpStream::connect(("127.0.0.1", target)) else {
                    continue;
                };
                let (mut c_r, mut u_w) =
                    (client.try_clone().unwrap(), upstream.try_clone().unwrap());
                std::thread::spawn(move || {
                    let _ = std::io::copy(&mut c_r, &mut u_w);
                    let _ = u_w.shutdown(std::net::Shutdown::Write);
                });
                let (mut u_r, mut c_w) = (upstream, client);
                std::thread::spawn(move || {
                    let mut buf = vec![0u8; chunk];
                    loop {
                        match u_r.read(&mut buf) {
                            Ok(0) | Err(_) => break,
                            Ok(n) => {
                                if c_w.write_all(&buf[..n]).is_err() {
                                    break;
                                }
                                std::thread::sleep(pause);
                            }
                        }
                    }
                    let _ = c_w.shutdown(std::net::Shutdown::Both);
                });
            }
        });
        Self { port }
    }
}

/// Checks the image's extracted layers: whiteouts in overlay form, links preserved.
pub fn layer_dirs(root: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(root.join("image/layers"))
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .collect();
    v.sort();
    v
}

/// A small token issuer (distribution docs/spec/auth/token.md) for the registry's `token` auth:
/// RS256 JWTs carrying the signing certificate in `x5c`, signed with the openssl CLI.
/// `oauth_only` refuses GET, so clients must use the OAuth2 password-grant POST form.
pub struct TokenIssuer {
    pub port: u16,
    pub cert: PathBuf,
    pub gets: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    pub posts: std::sync::Arc<std::sync::atomic::AtomicUsize>,
}

impl TokenIssuer {
    pub fn start(dir: &Path, user: &str, password: &str, oauth_only: bool) -> Self {
        let run = |args: &[&str]| {
            let st = Command::new("openssl")
                .args(args)
                .current_dir(dir)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .unwrap();
            assert!(st.success(), "openssl {args:?}");
        };
        run(&[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "2",
            "-subj",
            "/CN=berth token issuer",
            "-keyout",
            "token.key",
            "-out",
            "token.crt",
        ]);
        run(&[
            "x509",
            "-in",
            "token.crt",
            "-outform",
            "DER",
            "-out",
            "token.der",
        ]);
        use base64::Engine;
        let der = std::fs::read(dir.join("token.der")).unwrap();
        let x5c = base64::engine::general_purpose::STANDARD.encode(der);
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        let expected = format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
        );
        let (user, password) = (user.to_string(), password.to_string());
        let cert = dir.join("token.crt");
        let dir = dir.to_path_buf();
        let gets = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let posts = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let (g, p) = (gets.clone(), posts.clone());
        std::thread::spawn(move || {
            for (n, conn) in l.incoming().enumerate() {
                let Ok(mut conn) = conn else { return };
                let Some((method, target, headers, body)) = read_request(&mut conn) else {
                    continue;
                };
                let query = target.split_once('?').map(|(_, q)| q).unwrap_or("");
                let params: Vec<(String, String)> = if method == "POST" { &body } else { query }
                    .split('&')
                    .filter_map(|kv| kv.split_once('='))
                    .map(|(k, v)| (k.to_string(), pct_decode(v)))
                    .collect();
                let param = |k: &str| {
                    params
                        .iter()
                        .find(|(pk, _)| pk == k)
                        .map(|(_, v)| v.clone())
                };
                let authorized = if method == "POST" {
                    p.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    param("grant_type").as_deref() == Some("password")
                        && param("username").as_deref() == Some(user.as_str())
                        && param("password").as_deref() == Some(password.as_str())
                } else {
                    g.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    if oauth_only {
                        respond(&mut conn, "405 Method Not Allowed", "");
                        continue;
                    }
                    headers
                        .iter()
                        .any(|(k, v)| k.eq_ignore_ascii_case("authorization") && *v == expected)
                };
                if !authorized {
                    respond(
                        &mut conn,
                        "401 Unauthorized",
                        r#"{"details":"bad credentials"}"#,
                    );
                    continue;
                }
                let access: Vec<serde_json::Value> = param("scope")
                    .into_iter()
                    .filter_map(|s| {
                        let mut it = s.splitn(3, ':');
                        let (t, name, actions) = (it.next()?, it.next()?, it.next()?);
                        Some(json!({"type": t, "name": name, "actions": actions.split(',').collect::<Vec<_>>()}))
                    })
                    .collect();
                let now = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .unwrap()
                    .as_secs();
                let b64 = |v: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v);
                let header = json!({"alg": "RS256", "typ": "JWT", "x5c": [x5c]});
                let claims = json!({
                    "iss": "berth-test-issuer", "sub": user, "aud": param("service").unwrap_or_default(),
                    "exp": now + 300, "nbf": now - 10, "iat": now - 10, "jti": format!("t{n}"),
                    "access": access,
                });
                let signing_input = format!(
                    "{}.{}",
                    b64(header.to_string().as_bytes()),
                    b64(claims.to_string().as_bytes())
                );
                let input = dir.join(format!("jwt-{n}.in"));
                std::fs::write(&input, &signing_input).unwrap();
                let sig = Command::new("openssl")
                    .args(["dgst", "-sha256", "-binary", "-sign"])
                    .arg(dir.join("token.key"))
                    .arg(&input)
                    .output()
                    .unwrap();
                let jwt = format!("{signing_input}.{}", b64(&sig.stdout));
                let field = if method == "POST" {
                    "access_token"
                } else {
                    "token"
                };
                respond(
                    &mut conn,
                    "200 OK",
                    &json!({field: jwt, "expires_in": 300}).to_string(),
                );
            }
        });
        Self {
            port,
            cert,
            gets,
            posts,
        }
    }

    pub fn realm(&self) -> String {
        format!("http://127.0.0.1:{}/token", self.port)
    }
}

fn pct_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'%' if i + 2 < b.len() => {
                out.push(u8::from_str_radix(&s[i + 1..i + 3], 16).unwrap_or(b'?'));
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            c => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

type Request = (String, String, Vec<(String, String)>, String);

fn read_request(conn: &mut TcpStream) -> Option<Request> {
    let mut buf = Vec::new();
    let mut byte = [0u8; 1];
    while !buf.ends_with(b"\r\n\r\n") {
        if conn.read(&mut byte).ok()? == 0 {
            return None;
        }
        buf.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&buf).into_owned();
    let mut lines = head.split("\r\n");
    let mut first = lines.next()?.split(' ');
    let (method, target) = (first.next()?.to_string(), first.next()?.to_string());
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect();
    let len: usize = headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("content-length"))
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(0);
    let mut body = vec![0u8; len];
    conn.read_exact(&mut body).ok()?;
    Some((
        method,
        target,
        headers,
        String::from_utf8_lossy(&body).into_owned(),
    ))
}

fn respond(conn: &mut TcpStream, status: &str, body: &str) {
    let _ = write!(
        conn,
        "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
}

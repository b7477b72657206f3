//! A synchronous client for the OCI distribution spec (Docker registry API v2).
//!
//! Authentication follows the registry's `WWW-Authenticate` challenge: Basic (RFC 7617) with
//! stored credentials, or Bearer tokens from the token service (distribution
//! docs/spec/auth/token.md: `GET realm?service=&scope=` with Basic credentials, and the OAuth2
//! password grant `POST` form of docs/spec/auth/oauth.md when the GET is refused). TLS uses the
//! system roots plus per-registry CAs from `certs.d/HOST:PORT/*.crt`. Like Docker, registries on
//! localhost/127.0.0.0/8 and those listed as insecure are tried over HTTPS first and then over
//! plain HTTP. Connection failures, 429 and 5xx are retried with exponential backoff.

use std::collections::HashMap;
use std::fs;
use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ureq::http::Response;
use ureq::tls::{Certificate, RootCerts, TlsConfig};
use ureq::Body;

use crate::auth::{self, AuthFileError, Challenge, Credentials, TokenResponse};
use crate::digest::Digest;
use crate::manifest::ACCEPT_MANIFESTS;
use crate::reference::Reference;

/// Where to find CAs, credentials and which registries may use plain HTTP.
#[derive(Clone, Debug)]
pub struct RegistryOptions {
    /// Registries (`host:port`) allowed over plain HTTP besides localhost and 127.0.0.0/8.
    pub insecure: Vec<String>,
    /// Directories holding `HOST:PORT/ca.crt` (and other `*.crt`) files.
    pub cert_dirs: Vec<PathBuf>,
    /// Credential files, searched in order.
    pub auth_files: Vec<PathBuf>,
    /// Credentials that override the files (used by `berth login`).
    pub credentials: Option<Credentials>,
    /// Attempts per request for retryable failures.
    pub attempts: u32,
}

impl Default for RegistryOptions {
    fn default() -> Self {
        Self {
            insecure: Vec::new(),
            cert_dirs: vec!["/etc/berth/certs.d".into(), "/etc/docker/certs.d".into()],
            auth_files: auth::lookup_files(),
            credentials: None,
            attempts: 4,
        }
    }
}

/// Why a registry request failed.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error("cannot reach registry {registry}")]
    Transport {
        registry: String,
        #[source]
        source: ureq::Error,
    },
    #[error("{op} {what}: registry {registry} answered {status}{detail}")]
    Status {
        op: &'static str,
        what: String,
        registry: String,
        status: u16,
        detail: String,
    },
    #[error("token request to {realm} failed with status {status}{detail}")]
    Token {
        realm: String,
        status: u16,
        detail: String,
    },
    #[error("token service {realm} returned no token")]
    NoToken { realm: String },
    #[error(
        "registry {registry} asked for an authentication scheme Berth does not support: {header:?}"
    )]
    Challenge { registry: String, header: String },
    #[error("reading {what} from registry {registry}")]
    Body {
        what: String,
        registry: String,
        #[source]
        source: io::Error,
    },
    #[error("reading {what} from registry {registry}")]
    BodyHttp {
        what: String,
        registry: String,
        #[source]
        source: ureq::Error,
    },
    #[error("cannot read CA certificates {path}")]
    CaFile {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("registry {registry} sent {what} with digest {actual}, expected {expected}")]
    DigestMismatch {
        registry: String,
        what: String,
        expected: Digest,
        actual: Digest,
    },
    #[error("registry {registry} gave no upload location for {what}")]
    NoLocation { registry: String, what: String },
    #[error("credentials for {registry}")]
    Credentials {
        registry: String,
        #[source]
        source: AuthFileError,
    },
}

/// The body of a request, re-creatable for retries.
#[derive(Clone, Debug)]
pub enum ReqBody {
    Empty,
    Bytes(Vec<u8>, String),
    File(PathBuf),
}

#[derive(Debug, Default)]
struct AuthState {
    basic: bool,
    bearer: Option<(String, Option<String>)>,
    tokens: HashMap<String, String>,
}

/// A client for one registry.
#[derive(Clone)]
pub struct Client {
    registry: String,
    host: String,
    agent: ureq::Agent,
    creds: Option<Credentials>,
    insecure_ok: bool,
    attempts: u32,
    scheme: Arc<Mutex<Option<&'static str>>>,
    auth: Arc<Mutex<AuthState>>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("registry", &self.registry)
            .field("host", &self.host)
            .finish_non_exhaustive()
    }
}

fn is_local(host: &str) -> bool {
    let h = host.rsplit_once(':').map(|(h, _)| h).unwrap_or(host);
    h == "localhost" || h.starts_with("127.") || h == "[::1]"
}

fn load_certs(path: &Path, out: &mut Vec<Certificate<'static>>) -> Result<(), RegistryError> {
    let pem = fs::read(path).map_err(|source| RegistryError::CaFile {
        path: path.into(),
        source,
    })?;
    for item in ureq::tls::parse_pem(&pem) {
        match item {
            Ok(ureq::tls::PemItem::Certificate(c)) => out.push(c),
            Ok(_) => {}
            Err(e) => {
                return Err(RegistryError::CaFile {
                    path: path.into(),
                    source: io::Error::new(io::ErrorKind::InvalidData, e.to_string()),
                })
            }
        }
    }
    Ok(())
}

/// Short registry error text from a JSON error body (`{"errors":[{"code","message"}]}`).
fn error_detail(resp: Response<Body>) -> String {
    let mut body = resp.into_body();
    let Ok(text) = body.with_config().limit(64 * 1024).read_to_string() else {
        return String::new();
    };
    #[derive(serde::Deserialize)]
    struct E {
        code: Option<String>,
        message: Option<String>,
    }
    #[derive(serde::Deserialize)]
    struct Errs {
        errors: Vec<E>,
    }
    if let Ok(e) = serde_json::from_str::<Errs>(&text) {
        let parts: Vec<String> = e
            .errors
            .into_iter()
            .map(|e| {
                format!(
                    "{}: {}",
                    e.code.unwrap_or_default(),
                    e.message.unwrap_or_default()
                )
            })
            .collect();
        if !parts.is_empty() {
            return format!(" ({})", parts.join("; "));
        }
    }
    let t = text.trim();
    if t.is_empty() {
        String::new()
    } else {
        format!(" ({})", t.chars().take(200).collect::<String>())
    }
}

/// Percent-encodes everything but RFC 3986 unreserved characters.
fn enc(s: &str) -> String {
    let mut o = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            o.push(b as char);
        } else {
            o.push_str(&format!("%{b:02X}"));
        }
    }
    o
}

fn form_encode(pairs: &[(&str, &str)]) -> String {
    pairs
        .iter()
        .map(|(k, v)| format!("{}={}", enc(k), enc(v)))
        .collect::<Vec<_>>()
        .join("&")
}

impl Client {
    /// A client for the registry of `reference`.
    pub fn new(reference: &Reference, opts: &RegistryOptions) -> Result<Self, RegistryError> {
        Self::for_registry(&reference.registry, reference.api_host(), opts)
    }

    /// A client for registry `registry` served at `host`.
    pub fn for_registry(
        registry: &str,
        host: &str,
        opts: &RegistryOptions,
    ) -> Result<Self, RegistryError> {
        let mut certs = Vec::new();
        for bundle in [
            "/etc/ssl/certs/ca-certificates.crt",
            "/etc/pki/tls/certs/ca-bundle.crt",
        ] {
            if Path::new(bundle).is_file() {
                load_certs(Path::new(bundle), &mut certs)?;
                break;
            }
        }
        for dir in &opts.cert_dirs {
            let d = dir.join(host);
            if let Ok(rd) = fs::read_dir(&d) {
                for e in rd.flatten() {
                    if e.path().extension().is_some_and(|x| x == "crt") {
                        load_certs(&e.path(), &mut certs)?;
                    }
                }
            }
        }
        let roots = if certs.is_empty() {
            RootCerts::WebPki
        } else {
            RootCerts::Specific(Arc::new(certs))
        };
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .max_redirects(10)
            .user_agent(concat!("berth/", env!("CARGO_PKG_VERSION")))
            .timeout_connect(Some(Duration::from_secs(30)))
            .timeout_recv_response(Some(Duration::from_secs(120)))
            .tls_config(TlsConfig::builder().root_certs(roots).build())
            .build()
            .into();
        let creds = match &opts.credentials {
            Some(c) => Some(c.clone()),
            None => auth::find_credentials(&opts.auth_files, registry).map_err(|source| {
                RegistryError::Credentials {
                    registry: registry.into(),
                    source,
                }
            })?,
        };
        Ok(Self {
            registry: registry.into(),
            host: host.into(),
            agent,
            creds,
            insecure_ok: is_local(host) || opts.insecure.iter().any(|h| h == registry || h == host),
            attempts: opts.attempts.max(1),
            scheme: Arc::new(Mutex::new(None)),
            auth: Arc::new(Mutex::new(AuthState::default())),
        })
    }

    pub fn registry(&self) -> &str {
        &self.registry
    }

    fn base(&self, scheme: &str) -> String {
        format!("{scheme}://{}", self.host)
    }

    fn auth_header(&self, scope: &str) -> Option<String> {
        let st = self.auth.lock().expect("auth state lock");
        if let Some(t) = st.tokens.get(scope) {
            return Some(format!("Bearer {t}"));
        }
        if st.basic {
            return self.creds.as_ref().map(Credentials::basic_header);
        }
        None
    }

    /// Sends one request, following the auth challenge once and retrying transient failures.
    /// `path` is relative to `/v2/` unless it is an absolute URL (upload locations).
    pub fn send(
        &self,
        method: &str,
        path: &str,
        scope: &str,
        headers: &[(&str, String)],
        body: &ReqBody,
        what: &str,
    ) -> Result<Response<Body>, RegistryError> {
        let mut authed = false;
        let mut attempt = 0;
        loop {
            let scheme = (*self.scheme.lock().expect("scheme lock")).unwrap_or("https");
            let url = if path.starts_with("http://") || path.starts_with("https://") {
                path.to_string()
            } else if path.starts_with('/') {
                format!("{}{path}", self.base(scheme))
            } else {
                format!("{}/v2/{path}", self.base(scheme))
            };
            let mut hs: Vec<(&str, String)> = headers.to_vec();
            if let Some(a) = self.auth_header(scope) {
                hs.push(("Authorization", a));
            }
            let result = self.raw(method, &url, &hs, body);
            match result {
                Err(source) => {
                    let decided = self.scheme.lock().expect("scheme lock").is_some();
                    if !decided && scheme == "https" && self.insecure_ok {
                        // Docker's rule for insecure registries: HTTPS first, then plain HTTP.
                        *self.scheme.lock().expect("scheme lock") = Some("http");
                        continue;
                    }
                    attempt += 1;
                    if attempt >= self.attempts || !retryable(&source) {
                        return Err(RegistryError::Transport {
                            registry: self.registry.clone(),
                            source,
                        });
                    }
                    backoff(attempt);
                }
                Ok(resp) => {
                    self.scheme.lock().expect("scheme lock").get_or_insert(
                        if url.starts_with("http://") {
                            "http"
                        } else {
                            "https"
                        },
                    );
                    let status = resp.status().as_u16();
                    if status == 401 && !authed {
                        authed = true;
                        let header = resp
                            .headers()
                            .get("www-authenticate")
                            .and_then(|v| v.to_str().ok())
                            .unwrap_or("")
                            .to_string();
                        if self.answer_challenge(&header, scope)? {
                            continue;
                        }
                        return Err(self.status_error(method_op(method), what, resp));
                    }
                    if status == 429 || (500..=599).contains(&status) {
                        attempt += 1;
                        if attempt < self.attempts {
                            backoff(attempt);
                            continue;
                        }
                    }
                    return Ok(resp);
                }
            }
        }
    }

    fn raw(
        &self,
        method: &str,
        url: &str,
        headers: &[(&str, String)],
        body: &ReqBody,
    ) -> Result<Response<Body>, ureq::Error> {
        macro_rules! with_headers {
            ($req:expr) => {{
                let mut r = $req;
                for (k, v) in headers {
                    r = r.header(*k, v.as_str());
                }
                r
            }};
        }
        match method {
            "GET" => with_headers!(self.agent.get(url)).call(),
            "HEAD" => with_headers!(self.agent.head(url)).call(),
            "DELETE" => with_headers!(self.agent.delete(url)).call(),
            m => {
                let r = if m == "PUT" {
                    with_headers!(self.agent.put(url))
                } else if m == "PATCH" {
                    with_headers!(self.agent.patch(url))
                } else {
                    with_headers!(self.agent.post(url))
                };
                match body {
                    ReqBody::Empty => r.send_empty(),
                    ReqBody::Bytes(b, ct) => r.header("Content-Type", ct.as_str()).send(&b[..]),
                    ReqBody::File(p) => {
                        let f = fs::File::open(p).map_err(ureq::Error::Io)?;
                        r.header("Content-Type", "application/octet-stream")
                            .send(&f)
                    }
                }
            }
        }
    }

    /// Handles a 401: returns true when a retry with new credentials makes sense.
    fn answer_challenge(&self, header: &str, scope: &str) -> Result<bool, RegistryError> {
        match auth::parse_challenge(header) {
            Some(Challenge::Basic) => {
                let mut st = self.auth.lock().expect("auth state lock");
                if st.basic || self.creds.is_none() {
                    return Ok(false);
                }
                st.basic = true;
                Ok(true)
            }
            Some(Challenge::Bearer { realm, service, .. }) => {
                // Berth's own scope, not the challenge's: a push needs pull,push even when the
                // first challenge only asked for pull.
                let token = self.fetch_token(&realm, service.as_deref(), scope)?;
                let mut st = self.auth.lock().expect("auth state lock");
                st.bearer = Some((realm, service));
                st.tokens.insert(scope.to_string(), token);
                Ok(true)
            }
            None => Err(RegistryError::Challenge {
                registry: self.registry.clone(),
                header: header.into(),
            }),
        }
    }

    fn fetch_token(
        &self,
        realm: &str,
        service: Option<&str>,
        scope: &str,
    ) -> Result<String, RegistryError> {
        let mut q = Vec::new();
        if let Some(s) = service {
            q.push(("service", s));
        }
        if !scope.is_empty() {
            q.push(("scope", scope));
        }
        let sep = if realm.contains('?') { '&' } else { '?' };
        let url = format!("{realm}{sep}{}", form_encode(&q));
        let transport = |source| RegistryError::Transport {
            registry: realm.to_string(),
            source,
        };
        let mut req = self.agent.get(&url);
        if let Some(c) = &self.creds {
            req = req.header("Authorization", c.basic_header());
        }
        let mut resp = req.call().map_err(transport)?;
        let mut status = resp.status().as_u16();
        if status != 200 {
            if let Some(c) = &self.creds {
                if matches!(status, 400 | 401 | 403 | 404 | 405) {
                    // OAuth2 password grant (distribution docs/spec/auth/oauth.md).
                    let mut form = vec![
                        ("grant_type", "password"),
                        ("client_id", "berth"),
                        ("username", c.username.as_str()),
                        ("password", c.password.as_str()),
                    ];
                    form.extend(q.iter().copied());
                    resp = self
                        .agent
                        .post(realm)
                        .header("Content-Type", "application/x-www-form-urlencoded")
                        .send(form_encode(&form))
                        .map_err(transport)?;
                    status = resp.status().as_u16();
                }
            }
        }
        if status != 200 {
            return Err(RegistryError::Token {
                realm: realm.into(),
                status,
                detail: error_detail(resp),
            });
        }
        let bytes = self.read_small(resp, "token", 1 << 20)?;
        let t: TokenResponse =
            serde_json::from_slice(&bytes).map_err(|_| RegistryError::NoToken {
                realm: realm.into(),
            })?;
        t.into_token().ok_or_else(|| RegistryError::NoToken {
            realm: realm.into(),
        })
    }

    fn status_error(&self, op: &'static str, what: &str, resp: Response<Body>) -> RegistryError {
        let status = resp.status().as_u16();
        RegistryError::Status {
            op,
            what: what.into(),
            registry: self.registry.clone(),
            status,
            detail: error_detail(resp),
        }
    }

    fn read_small(
        &self,
        resp: Response<Body>,
        what: &str,
        limit: u64,
    ) -> Result<Vec<u8>, RegistryError> {
        resp.into_body()
            .with_config()
            .limit(limit)
            .read_to_vec()
            .map_err(|source| RegistryError::BodyHttp {
                what: what.into(),
                registry: self.registry.clone(),
                source,
            })
    }

    /// Checks that the registry answers and the credentials work (`GET /v2/`).
    pub fn ping(&self) -> Result<(), RegistryError> {
        let resp = self.send("GET", "", "", &[], &ReqBody::Empty, "/v2/")?;
        if resp.status().is_success() {
            Ok(())
        } else {
            Err(self.status_error("checking", "/v2/", resp))
        }
    }

    /// Fetches a manifest: (bytes, content type, digest of the bytes).
    pub fn get_manifest(
        &self,
        repo: &str,
        reference: &str,
    ) -> Result<(Vec<u8>, Option<String>, Digest), RegistryError> {
        let what = format!("manifest {repo}:{reference}");
        let resp = self.send(
            "GET",
            &format!("{repo}/manifests/{reference}"),
            &pull_scope(repo),
            &[("Accept", ACCEPT_MANIFESTS.to_string())],
            &ReqBody::Empty,
            &what,
        )?;
        if resp.status().as_u16() != 200 {
            return Err(self.status_error("fetching", &what, resp));
        }
        let ct = resp
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let bytes = self.read_small(resp, &what, 4 << 20)?;
        let actual = Digest::of(&bytes);
        if let Ok(expected) = reference.parse::<Digest>() {
            if expected != actual {
                return Err(RegistryError::DigestMismatch {
                    registry: self.registry.clone(),
                    what,
                    expected,
                    actual,
                });
            }
        }
        Ok((bytes, ct, actual))
    }

    /// Fetches a small blob (a config) and verifies it.
    pub fn get_blob_bytes(&self, repo: &str, d: &Digest) -> Result<Vec<u8>, RegistryError> {
        let what = format!("blob {d}");
        let resp = self.send(
            "GET",
            &format!("{repo}/blobs/{d}"),
            &pull_scope(repo),
            &[],
            &ReqBody::Empty,
            &what,
        )?;
        if resp.status().as_u16() != 200 {
            return Err(self.status_error("fetching", &what, resp));
        }
        let bytes = self.read_small(resp, &what, 64 << 20)?;
        let actual = Digest::of(&bytes);
        if actual != *d {
            return Err(RegistryError::DigestMismatch {
                registry: self.registry.clone(),
                what,
                expected: d.clone(),
                actual,
            });
        }
        Ok(bytes)
    }

    /// Opens a blob stream from byte `offset` (HTTP Range, RFC 9110 section 14). Returns the
    /// reader positioned at `offset` whether or not the server honoured the range.
    pub fn get_blob(
        &self,
        repo: &str,
        d: &Digest,
        offset: u64,
    ) -> Result<Box<dyn Read + Send>, RegistryError> {
        let what = format!("blob {d}");
        let mut headers = Vec::new();
        if offset > 0 {
            headers.push(("Range", format!("bytes={offset}-")));
        }
        let resp = self.send(
            "GET",
            &format!("{repo}/blobs/{d}"),
            &pull_scope(repo),
            &headers,
            &ReqBody::Empty,
            &what,
        )?;
        let status = resp.status().as_u16();
        if status != 200 && status != 206 {
            return Err(self.status_error("fetching", &what, resp));
        }
        let mut r: Box<dyn Read + Send> = Box::new(resp.into_body().into_reader());
        if offset > 0 && status == 200 {
            // The server sent the whole blob: skip what is already on disk.
            let skipped =
                io::copy(&mut (&mut r).take(offset), &mut io::sink()).map_err(|source| {
                    RegistryError::Body {
                        what: what.clone(),
                        registry: self.registry.clone(),
                        source,
                    }
                })?;
            if skipped != offset {
                return Err(RegistryError::Body {
                    what,
                    registry: self.registry.clone(),
                    source: io::ErrorKind::UnexpectedEof.into(),
                });
            }
        }
        Ok(r)
    }

    /// Whether the registry already has blob `d` in `repo` (HEAD).
    pub fn blob_exists(&self, repo: &str, d: &Digest) -> Result<bool, RegistryError> {
        let what = format!("blob {d}");
        let resp = self.send(
            "HEAD",
            &format!("{repo}/blobs/{d}"),
            &push_scope(repo),
            &[],
            &ReqBody::Empty,
            &what,
        )?;
        match resp.status().as_u16() {
            200 => Ok(true),
            404 => Ok(false),
            _ => Err(self.status_error("checking", &what, resp)),
        }
    }

    /// Uploads a blob monolithically: `POST` an upload session, then `PUT ?digest=`.
    pub fn upload_blob(&self, repo: &str, d: &Digest, body: ReqBody) -> Result<(), RegistryError> {
        let what = format!("blob {d}");
        let scope = push_scope(repo);
        let resp = self.send(
            "POST",
            &format!("{repo}/blobs/uploads/"),
            &scope,
            &[],
            &ReqBody::Empty,
            &what,
        )?;
        if resp.status().as_u16() != 202 {
            return Err(self.status_error("starting upload of", &what, resp));
        }
        let loc = resp
            .headers()
            .get("location")
            .and_then(|v| v.to_str().ok())
            .ok_or_else(|| RegistryError::NoLocation {
                registry: self.registry.clone(),
                what: what.clone(),
            })?
            .to_string();
        let sep = if loc.contains('?') { '&' } else { '?' };
        let url = format!("{loc}{sep}digest={}", enc(&d.to_string()));
        let resp = self.send("PUT", &url, &scope, &[], &body, &what)?;
        if resp.status().as_u16() != 201 {
            return Err(self.status_error("uploading", &what, resp));
        }
        Ok(())
    }

    /// Uploads a manifest under `reference` (a tag or its digest).
    pub fn put_manifest(
        &self,
        repo: &str,
        reference: &str,
        bytes: Vec<u8>,
        media_type: &str,
    ) -> Result<(), RegistryError> {
        let what = format!("manifest {repo}:{reference}");
        let resp = self.send(
            "PUT",
            &format!("{repo}/manifests/{reference}"),
            &push_scope(repo),
            &[],
            &ReqBody::Bytes(bytes, media_type.into()),
            &what,
        )?;
        if resp.status().as_u16() != 201 {
            return Err(self.status_error("uploading", &what, resp));
        }
        Ok(())
    }
}

fn method_op(m: &str) -> &'static str {
    match m {
        "GET" | "HEAD" => "fetching",
        _ => "uploading",
    }
}

/// The token scope for reading a repository.
pub fn pull_scope(repo: &str) -> String {
    format!("repository:{repo}:pull")
}

/// The token scope for writing a repository.
pub fn push_scope(repo: &str) -> String {
    format!("repository:{repo}:pull,push")
}

fn retryable(e: &ureq::Error) -> bool {
    matches!(
        e,
        ureq::Error::Io(_)
            | ureq::Error::Timeout(_)
            | ureq::Error::ConnectionFailed
            | ureq::Error::Protocol(_)
    )
}

fn backoff(attempt: u32) {
    std::thread::sleep(Duration::from_millis(200u64 << attempt.min(5)));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn local_hosts_may_use_http() {
        assert!(is_local("localhost:5000"));
        assert!(is_local("127.0.0.1:5000"));
        assert!(is_local("127.1.2.3"));
        assert!(!is_local("registry-1.docker.io"));
        assert!(!is_local("127example.com"));
    }

    #[test]
    fn form_encoding() {
        assert_eq!(
            form_encode(&[("scope", "repository:a/b:pull,push"), ("p", "a b&c")]),
            "scope=repository%3Aa%2Fb%3Apull%2Cpush&p=a%20b%26c"
        );
    }
}

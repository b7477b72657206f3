//! Registry credentials and `WWW-Authenticate` challenges.
//!
//! Credentials live in Docker's `config.json` format (`{"auths": {"host": {"auth":
//! base64("user:pass")}}}`), looked up in `$REGISTRY_AUTH_FILE`, then Berth's own
//! `~/.config/berth/auth.json` (written by `berth login`), then `~/.docker/config.json`.
//! Challenges follow RFC 7235 section 4.1 and the distribution token spec
//! (docs/spec/auth/token.md): `Bearer realm="...",service="...",scope="..."` or `Basic realm=..`.

use std::collections::BTreeMap;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use base64::Engine as _;
use serde::{Deserialize, Serialize};

use crate::reference::DOCKER_HUB;

/// A username and password (or identity token as password).
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    pub username: String,
    pub password: String,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Credentials({}, <redacted>)", self.username)
    }
}

impl Credentials {
    /// The `Authorization: Basic` value (RFC 7617).
    pub fn basic_header(&self) -> String {
        let raw = format!("{}:{}", self.username, self.password);
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(raw)
        )
    }
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct AuthFile {
    #[serde(default)]
    auths: BTreeMap<String, AuthEntry>,
    #[serde(flatten)]
    other: BTreeMap<String, serde_json::Value>,
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct AuthEntry {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    auth: Option<String>,
    #[serde(flatten)]
    other: BTreeMap<String, serde_json::Value>,
}

/// Why a credentials file could not be used.
#[derive(Debug, thiserror::Error)]
pub enum AuthFileError {
    #[error("cannot read credentials file {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("malformed credentials file {path}")]
    Json {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    #[error("cannot write credentials file {path}")]
    Write {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("malformed \"auth\" entry for {registry} in {path}")]
    Entry { registry: String, path: PathBuf },
    #[error("no home directory ($HOME unset) to keep credentials in")]
    NoHome,
}

fn home() -> Option<PathBuf> {
    std::env::var_os("HOME").map(PathBuf::from)
}

/// The file `berth login` writes: `$REGISTRY_AUTH_FILE`, else `~/.config/berth/auth.json`.
pub fn login_file() -> Result<PathBuf, AuthFileError> {
    if let Some(p) = std::env::var_os("REGISTRY_AUTH_FILE") {
        return Ok(p.into());
    }
    Ok(home()
        .ok_or(AuthFileError::NoHome)?
        .join(".config/berth/auth.json"))
}

/// Every file credentials are read from, in priority order.
pub fn lookup_files() -> Vec<PathBuf> {
    let mut v = Vec::new();
    if let Some(p) = std::env::var_os("REGISTRY_AUTH_FILE") {
        v.push(p.into());
    }
    if let Some(h) = home() {
        v.push(h.join(".config/berth/auth.json"));
        v.push(h.join(".docker/config.json"));
    }
    v
}

/// The keys a registry may be stored under (Docker Hub has historical spellings).
fn keys_for(registry: &str) -> Vec<String> {
    if registry == DOCKER_HUB {
        vec![
            "https://index.docker.io/v1/".into(),
            "index.docker.io".into(),
            "docker.io".into(),
            "registry-1.docker.io".into(),
        ]
    } else {
        vec![
            registry.to_string(),
            format!("https://{registry}"),
            format!("http://{registry}"),
        ]
    }
}

fn read_file(path: &Path) -> Result<Option<AuthFile>, AuthFileError> {
    match fs::read(path) {
        Ok(b) => serde_json::from_slice(&b)
            .map(Some)
            .map_err(|source| AuthFileError::Json {
                path: path.into(),
                source,
            }),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(AuthFileError::Read {
            path: path.into(),
            source,
        }),
    }
}

/// Finds stored credentials for `registry` in `files` (first match wins).
pub fn find_credentials(
    files: &[PathBuf],
    registry: &str,
) -> Result<Option<Credentials>, AuthFileError> {
    for path in files {
        let Some(f) = read_file(path)? else { continue };
        for key in keys_for(registry) {
            let Some(auth) = f.auths.get(&key).and_then(|e| e.auth.as_ref()) else {
                continue;
            };
            let bad = || AuthFileError::Entry {
                registry: registry.into(),
                path: path.clone(),
            };
            let raw = base64::engine::general_purpose::STANDARD
                .decode(auth.trim())
                .map_err(|_| bad())?;
            let raw = String::from_utf8(raw).map_err(|_| bad())?;
            let (u, p) = raw.split_once(':').ok_or_else(bad)?;
            return Ok(Some(Credentials {
                username: u.into(),
                password: p.into(),
            }));
        }
    }
    Ok(None)
}

fn write_file(path: &Path, f: &AuthFile) -> Result<(), AuthFileError> {
    let werr = |source| AuthFileError::Write {
        path: path.into(),
        source,
    };
    if let Some(dir) = path.parent() {
        fs::create_dir_all(dir).map_err(werr)?;
    }
    let json = serde_json::to_vec_pretty(f).expect("auth file serialises");
    // 0600: the file holds passwords.
    let tmp = path.with_extension("tmp");
    {
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;
        let mut out = fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)
            .map_err(werr)?;
        out.write_all(&json).map_err(werr)?;
    }
    fs::rename(&tmp, path).map_err(werr)
}

/// Stores credentials for `registry` in `path`, keeping other entries and fields.
pub fn store_credentials(
    path: &Path,
    registry: &str,
    c: &Credentials,
) -> Result<(), AuthFileError> {
    let mut f = read_file(path)?.unwrap_or_default();
    let key = keys_for(registry).remove(0);
    let raw = format!("{}:{}", c.username, c.password);
    f.auths.entry(key).or_default().auth =
        Some(base64::engine::general_purpose::STANDARD.encode(raw));
    write_file(path, &f)
}

/// Removes credentials for `registry` from `path`; returns whether there were any.
pub fn remove_credentials(path: &Path, registry: &str) -> Result<bool, AuthFileError> {
    let Some(mut f) = read_file(path)? else {
        return Ok(false);
    };
    let mut removed = false;
    for k in keys_for(registry) {
        removed |= f.auths.remove(&k).is_some();
    }
    if removed {
        write_file(path, &f)?;
    }
    Ok(removed)
}

/// A parsed `WWW-Authenticate` challenge.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Challenge {
    Basic,
    Bearer {
        realm: String,
        service: Option<String>,
        scope: Option<String>,
    },
}

/// Parses the first challenge Berth can answer, or None.
pub fn parse_challenge(header: &str) -> Option<Challenge> {
    let header = header.trim();
    let (scheme, rest) = header.split_once(' ').unwrap_or((header, ""));
    if scheme.eq_ignore_ascii_case("basic") {
        return Some(Challenge::Basic);
    }
    if !scheme.eq_ignore_ascii_case("bearer") {
        return None;
    }
    let params = parse_params(rest);
    Some(Challenge::Bearer {
        realm: params.get("realm")?.clone(),
        service: params.get("service").cloned(),
        scope: params.get("scope").cloned(),
    })
}

/// `k=v` or `k="quoted, with \"escapes\""`, comma separated (RFC 7235 auth-param).
fn parse_params(s: &str) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut chars = s.chars().peekable();
    loop {
        while matches!(chars.peek(), Some(' ' | ',')) {
            chars.next();
        }
        let mut key = String::new();
        while let Some(&c) = chars.peek() {
            if c == '=' {
                break;
            }
            key.push(c);
            chars.next();
        }
        if chars.next().is_none() {
            break;
        }
        let mut val = String::new();
        if chars.peek() == Some(&'"') {
            chars.next();
            while let Some(c) = chars.next() {
                match c {
                    '\\' => {
                        if let Some(n) = chars.next() {
                            val.push(n);
                        }
                    }
                    '"' => break,
                    c => val.push(c),
                }
            }
        } else {
            while let Some(&c) = chars.peek() {
                if c == ',' {
                    break;
                }
                val.push(c);
                chars.next();
            }
        }
        out.insert(key.trim().to_ascii_lowercase(), val.trim().to_string());
    }
    out
}

/// A token endpoint's answer: `token` per the distribution spec, `access_token` per OAuth2.
#[derive(Debug, Deserialize)]
pub struct TokenResponse {
    pub token: Option<String>,
    pub access_token: Option<String>,
}

impl TokenResponse {
    pub fn into_token(self) -> Option<String> {
        self.token
            .filter(|t| !t.is_empty())
            .or(self.access_token)
            .filter(|t| !t.is_empty())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_bearer_challenges() {
        let c = parse_challenge(
            r#"Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/busybox:pull""#,
        )
        .unwrap();
        assert_eq!(
            c,
            Challenge::Bearer {
                realm: "https://auth.docker.io/token".into(),
                service: Some("registry.docker.io".into()),
                scope: Some("repository:library/busybox:pull".into()),
            }
        );
        // multiple actions in one quoted scope, unquoted values, odd spacing
        let c = parse_challenge(
            r#"bearer realm=http://127.0.0.1:1/t, scope="repository:a/b:pull,push", error="insufficient_scope""#,
        )
        .unwrap();
        let Challenge::Bearer {
            realm,
            scope,
            service,
        } = c
        else {
            panic!("not bearer")
        };
        assert_eq!(realm, "http://127.0.0.1:1/t");
        assert_eq!(scope.as_deref(), Some("repository:a/b:pull,push"));
        assert_eq!(service, None);
        assert_eq!(
            parse_challenge(r#"Basic realm="Registry Realm""#),
            Some(Challenge::Basic)
        );
        assert_eq!(parse_challenge("Negotiate"), None);
        assert_eq!(parse_challenge("Bearer service=x"), None);
    }

    #[test]
    fn token_response_forms() {
        let t: TokenResponse = serde_json::from_str(r#"{"token":"a","expires_in":60}"#).unwrap();
        assert_eq!(t.into_token().as_deref(), Some("a"));
        let t: TokenResponse = serde_json::from_str(r#"{"access_token":"b"}"#).unwrap();
        assert_eq!(t.into_token().as_deref(), Some("b"));
        let t: TokenResponse = serde_json::from_str(r#"{"token":""}"#).unwrap();
        assert_eq!(t.into_token(), None);
    }

    #[test]
    fn credentials_round_trip_and_docker_files() {
        let dir = tempfile::tempdir().unwrap();
        let berth = dir.path().join("auth.json");
        let docker = dir.path().join("config.json");
        fs::write(
            &docker,
            r#"{"auths": {"https://index.docker.io/v1/": {"auth": "aHViOnNlY3JldA=="},
                "127.0.0.1:5000": {"auth": "dTpw"}}, "credsStore": "none"}"#,
        )
        .unwrap();
        let files = vec![berth.clone(), docker.clone()];
        let hub = find_credentials(&files, "docker.io").unwrap().unwrap();
        assert_eq!(
            (hub.username.as_str(), hub.password.as_str()),
            ("hub", "secret")
        );
        let c = Credentials {
            username: "me".into(),
            password: "pa:ss".into(),
        };
        store_credentials(&berth, "127.0.0.1:5000", &c).unwrap();
        assert_eq!(find_credentials(&files, "127.0.0.1:5000").unwrap(), Some(c));
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            fs::metadata(&berth).unwrap().permissions().mode() & 0o777,
            0o600
        );
        assert!(remove_credentials(&berth, "127.0.0.1:5000").unwrap());
        // falls through to the docker file's entry
        let u = find_credentials(&files, "127.0.0.1:5000").unwrap().unwrap();
        assert_eq!(u.username, "u");
        assert_eq!(find_credentials(&files, "quay.io").unwrap(), None);
        fs::write(&berth, r#"{"auths": {"quay.io": {"auth": "!!!"}}}"#).unwrap();
        assert!(find_credentials(&files, "quay.io").is_err());
    }
}

//! `save`, `load` and `import`: images as tarballs.
//!
//! `save` writes one tarball that is at once an OCI image layout (image-layout.md: `oci-layout`,
//! `index.json`, `blobs/sha256/`) and a docker-archive (`manifest.json` naming config and layer
//! paths), the combined format Docker 25+ writes, so `docker load`, `podman load` and
//! `skopeo` (`oci-archive:` and `docker-archive:`) read it. Blobs are the stored bytes, so
//! digests survive the round trip. `load` accepts either kind (and the legacy
//! `<id>/layer.tar` docker-archive), verifying every layer against the config's DiffIDs.
//! Archive member names are never used as paths: members are spooled to numbered files.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::{self, File};
use std::io::{self, Read, Seek, Write};
use std::path::{Path, PathBuf};

use serde_json::{json, Value};

use crate::digest::{chain_ids, Digest, HashingReader, HashingWriter};
use crate::extract::{self, ExtractError, ExtractOptions};
use crate::manifest::{self, Platform};
use crate::reference::Reference;
use crate::store::{ImageRecord, LayerMeta, LayerRecord, Store, StoreError};

/// Why a save, load or import failed.
#[derive(Debug, thiserror::Error)]
pub enum ArchiveError {
    #[error("{op} image archive")]
    Io {
        op: &'static str,
        #[source]
        source: io::Error,
    },
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("archive member {name} is missing")]
    Missing { name: String },
    #[error("archive member {name} is not valid JSON")]
    Json {
        name: String,
        #[source]
        source: serde_json::Error,
    },
    #[error("archive has neither manifest.json nor index.json")]
    Format,
    #[error("image {config} lists {layers} layers but its config {diff_ids} diff_ids")]
    LayerCount {
        config: String,
        layers: usize,
        diff_ids: usize,
    },
    #[error("layer {member}")]
    Extract {
        member: String,
        #[source]
        source: ExtractError,
    },
    #[error("layer {member} has DiffID {actual}, the config says {expected}")]
    DiffId {
        member: String,
        expected: Digest,
        actual: Digest,
    },
    #[error(
        "invalid --change {value:?}: expected one of CMD ENTRYPOINT ENV WORKDIR USER LABEL EXPOSE VOLUME"
    )]
    Change { value: String },
}

fn io_err(op: &'static str) -> impl FnOnce(io::Error) -> ArchiveError {
    move |source| ArchiveError::Io { op, source }
}

fn append_file<W: Write>(
    b: &mut tar::Builder<W>,
    name: &str,
    path: &Path,
) -> Result<(), ArchiveError> {
    let mut f = File::open(path).map_err(io_err("reading blob for"))?;
    let len = f.metadata().map_err(io_err("reading blob for"))?.len();
    let mut h = tar::Header::new_ustar();
    h.set_path(name).map_err(io_err("writing"))?;
    h.set_size(len);
    h.set_mode(0o444);
    h.set_mtime(0);
    h.set_cksum();
    b.append(&h, &mut f).map_err(io_err("writing"))
}

fn append_bytes<W: Write>(
    b: &mut tar::Builder<W>,
    name: &str,
    data: &[u8],
) -> Result<(), ArchiveError> {
    let mut h = tar::Header::new_ustar();
    h.set_path(name).map_err(io_err("writing"))?;
    h.set_size(data.len() as u64);
    h.set_mode(0o444);
    h.set_mtime(0);
    h.set_cksum();
    b.append(&h, data).map_err(io_err("writing"))
}

/// Writes `images` (names or IDs) to `out` as a combined OCI layout / docker-archive.
pub fn save<W: Write>(store: &Store, images: &[String], out: W) -> Result<(), ArchiveError> {
    let mut b = tar::Builder::new(out);
    let mut written = BTreeSet::new();
    let mut index = Vec::new();
    let mut docker = Vec::new();
    for name in images {
        let rec = store.resolve(name)?;
        // `save name:tag` carries that tag; `save <id>` carries all the image's tags.
        let tags: Vec<String> = match name.parse::<Reference>().ok().and_then(|r| r.tagged()) {
            Some(t) if store.tags_of(&rec.id)?.contains(&t) => vec![t],
            _ => store.tags_of(&rec.id)?,
        };
        let mut blobs = vec![rec.manifest_digest.clone(), rec.id.clone()];
        blobs.extend(rec.layers.iter().map(|l| l.digest.clone()));
        for d in &blobs {
            if written.insert(d.clone()) {
                append_file(
                    &mut b,
                    &format!("blobs/sha256/{}", d.hex()),
                    &store.blob_path(d),
                )?;
            }
        }
        let msize = fs::metadata(store.blob_path(&rec.manifest_digest))
            .map_err(io_err("reading blob for"))?
            .len();
        let familiar: Vec<String> = tags
            .iter()
            .filter_map(|t| t.parse::<Reference>().ok())
            .map(|r| format!("{}:{}", r.familiar_name(), r.tag.unwrap_or_default()))
            .collect();
        if tags.is_empty() {
            index.push(json!({"mediaType": rec.manifest_media_type, "digest": rec.manifest_digest.to_string(), "size": msize}));
        }
        for (full, r) in tags
            .iter()
            .zip(tags.iter().filter_map(|t| t.parse::<Reference>().ok()))
        {
            index.push(json!({
                "mediaType": rec.manifest_media_type,
                "digest": rec.manifest_digest.to_string(),
                "size": msize,
                "annotations": {
                    "io.containerd.image.name": full,
                    "org.opencontainers.image.ref.name": r.tag.unwrap_or_default(),
                },
            }));
        }
        docker.push(json!({
            "Config": format!("blobs/sha256/{}", rec.id.hex()),
            "RepoTags": familiar,
            "Layers": rec.layers.iter().map(|l| format!("blobs/sha256/{}", l.digest.hex())).collect::<Vec<_>>(),
        }));
    }
    append_bytes(&mut b, "oci-layout", br#"{"imageLayoutVersion":"1.0.0"}"#)?;
    let index = json!({"schemaVersion": 2, "mediaType": manifest::OCI_INDEX, "manifests": index});
    append_bytes(&mut b, "index.json", index.to_string().as_bytes())?;
    append_bytes(
        &mut b,
        "manifest.json",
        Value::Array(docker).to_string().as_bytes(),
    )?;
    b.into_inner()
        .and_then(|mut w| w.flush())
        .map_err(io_err("writing"))
}

/// Archive members spooled to numbered files in the store's tmp dir; removed on drop.
struct Spool {
    dir: PathBuf,
    files: BTreeMap<String, PathBuf>,
}

impl Drop for Spool {
    fn drop(&mut self) {
        let _ = extract::remove_tree(&self.dir);
    }
}

impl Spool {
    fn read<R: Read>(store: &Store, input: R) -> Result<Self, ArchiveError> {
        let dir = store
            .tmp_dir()
            .join(format!("load-{}-{}", std::process::id(), unique()));
        fs::create_dir_all(&dir).map_err(io_err("spooling"))?;
        let mut spool = Self {
            dir,
            files: BTreeMap::new(),
        };
        let mut ar = tar::Archive::new(input);
        for (n, e) in ar.entries().map_err(io_err("reading"))?.enumerate() {
            let mut e = e.map_err(io_err("reading"))?;
            if !matches!(
                e.header().entry_type(),
                tar::EntryType::Regular | tar::EntryType::Continuous
            ) {
                continue;
            }
            let name = String::from_utf8_lossy(&e.path_bytes())
                .trim_start_matches("./")
                .to_string();
            let p = spool.dir.join(n.to_string());
            let mut f = File::create(&p).map_err(io_err("spooling"))?;
            io::copy(&mut e, &mut f).map_err(io_err("spooling"))?;
            spool.files.insert(name, p);
        }
        Ok(spool)
    }

    fn path(&self, name: &str) -> Result<&Path, ArchiveError> {
        self.files
            .get(name.trim_start_matches("./"))
            .map(PathBuf::as_path)
            .ok_or_else(|| ArchiveError::Missing { name: name.into() })
    }

    fn json(&self, name: &str) -> Result<Value, ArchiveError> {
        let b = fs::read(self.path(name)?).map_err(io_err("reading"))?;
        serde_json::from_slice(&b).map_err(|source| ArchiveError::Json {
            name: name.into(),
            source,
        })
    }

    fn blob(&self, d: &str) -> Result<&Path, ArchiveError> {
        let hex = d.strip_prefix("sha256:").unwrap_or(d);
        self.path(&format!("blobs/sha256/{hex}"))
    }
}

fn unique() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0)
}

/// Brings one layer file into the store: its blob (as-is) and its extraction, verified against
/// `diff_id`. Returns (blob digest, size, media type).
pub(crate) fn ingest_layer(
    store: &Store,
    file: &Path,
    member: &str,
    diff_id: &Digest,
    chain: &Digest,
    opts: &ExtractOptions,
) -> Result<(Digest, u64, String), ArchiveError> {
    let mut f = File::open(file).map_err(io_err("reading"))?;
    let mut magic = [0u8; 4];
    let n = f.read(&mut magic).map_err(io_err("reading"))?;
    f.rewind().map_err(io_err("reading"))?;
    let media_type = if n >= 2 && magic[..2] == [0x1f, 0x8b] {
        manifest::OCI_LAYER_GZIP
    } else if n == 4 && magic == [0x28, 0xb5, 0x2f, 0xfd] {
        manifest::OCI_LAYER_ZSTD
    } else {
        manifest::OCI_LAYER
    };
    let _lock = store.lock_layer(chain)?;
    let mut compressed = HashingReader::new(f);
    if store.has_layer(chain) {
        io::copy(&mut compressed, &mut io::sink()).map_err(io_err("reading"))?;
    } else {
        let tmp = store.begin_layer(chain)?;
        let result = (|| {
            let dec = extract::decompress(&mut compressed).map_err(io_err("reading"))?;
            let mut plain = HashingReader::new(dec);
            let stats =
                extract::extract_tar(&mut plain, &tmp.join("diff"), opts).map_err(|source| {
                    ArchiveError::Extract {
                        member: member.into(),
                        source,
                    }
                })?;
            io::copy(&mut plain, &mut io::sink()).map_err(io_err("reading"))?;
            let (actual, _) = plain.finish();
            if actual != *diff_id {
                return Err(ArchiveError::DiffId {
                    member: member.into(),
                    expected: diff_id.clone(),
                    actual,
                });
            }
            Ok(stats)
        })();
        let stats = match result {
            Ok(s) => s,
            Err(e) => {
                let _ = extract::remove_tree(&tmp);
                return Err(e);
            }
        };
        io::copy(&mut compressed, &mut io::sink()).map_err(io_err("reading"))?;
        // Durable before published (see store.rs): the extracted files and the spooled blob.
        store.sync()?;
        store.commit_layer(
            &tmp,
            chain,
            &LayerMeta {
                diff_id: diff_id.clone(),
                size: stats.bytes,
            },
        )?;
    }
    let (digest, size) = compressed.finish();
    if !store.has_blob(&digest) {
        // The spool is in the store's tmp/, on the same filesystem: a hardlink, not a copy
        // (the spooled member may serve another image of the same archive).
        let staged = store.tmp_dir().join(format!("blob-{}.load", digest.hex()));
        let _ = fs::remove_file(&staged);
        if fs::hard_link(file, &staged).is_err() {
            fs::copy(file, &staged).map_err(io_err("storing"))?;
            store.sync()?;
        }
        store.commit_partial_blob(&staged, &digest)?;
    }
    Ok((digest, size, media_type.to_string()))
}

/// Records an image from a config and its layer files; builds an OCI manifest for it.
fn record_image(
    store: &Store,
    spool: &Spool,
    config_bytes: &[u8],
    layer_members: &[String],
    names: &[String],
    opts: &ExtractOptions,
) -> Result<ImageRecord, ArchiveError> {
    let config: Value =
        serde_json::from_slice(config_bytes).map_err(|source| ArchiveError::Json {
            name: "config".into(),
            source,
        })?;
    let diff_ids: Vec<Digest> = config["rootfs"]["diff_ids"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|d| d.as_str().and_then(|s| s.parse().ok()))
                .collect()
        })
        .unwrap_or_default();
    let config_digest = Digest::of(config_bytes);
    if diff_ids.len() != layer_members.len() {
        return Err(ArchiveError::LayerCount {
            config: config_digest.to_string(),
            layers: layer_members.len(),
            diff_ids: diff_ids.len(),
        });
    }
    let chains = chain_ids(&diff_ids);
    let _gc = store.lock_gc_shared()?;
    let mut layers = Vec::new();
    for (i, m) in layer_members.iter().enumerate() {
        let (digest, size, media_type) =
            ingest_layer(store, spool.path(m)?, m, &diff_ids[i], &chains[i], opts)?;
        layers.push(LayerRecord {
            digest,
            diff_id: diff_ids[i].clone(),
            chain_id: chains[i].clone(),
            size,
            media_type,
        });
    }
    store.put_blob(config_bytes, None)?;
    let created = config["created"].as_str().map(str::to_string);
    let rec = record_oci_image(store, &config, config_bytes, config_digest, layers, created)?;
    store.put_image(&rec, names)?;
    Ok(rec)
}

fn normalise_tags(tags: &[String]) -> Vec<String> {
    tags.iter()
        .filter_map(|t| t.parse::<Reference>().ok())
        .filter_map(|r| r.tagged())
        .collect()
}

/// Loads a docker-archive or OCI archive; returns the loaded names (or IDs of untagged images).
pub fn load<R: Read>(
    store: &Store,
    input: R,
    opts: &ExtractOptions,
) -> Result<Vec<String>, ArchiveError> {
    let spool = Spool::read(store, input)?;
    let mut loaded = Vec::new();
    if spool.files.contains_key("manifest.json") {
        let m = spool.json("manifest.json")?;
        for item in m.as_array().cloned().unwrap_or_default() {
            let cfg_name = item["Config"].as_str().unwrap_or_default().to_string();
            let config = fs::read(spool.path(&cfg_name)?).map_err(io_err("reading"))?;
            let layers: Vec<String> = item["Layers"]
                .as_array()
                .map(|a| {
                    a.iter()
                        .filter_map(|l| l.as_str().map(str::to_string))
                        .collect()
                })
                .unwrap_or_default();
            let tags: Vec<String> = item["RepoTags"]
                .as_array()
                .map(|a| {
                    a.iter()
                        .filter_map(|l| l.as_str().map(str::to_string))
                        .collect()
                })
                .unwrap_or_default();
            let names = normalise_tags(&tags);
            let rec = record_image(store, &spool, &config, &layers, &names, opts)?;
            if names.is_empty() {
                loaded.push(rec.id.to_string());
            }
            loaded.extend(names);
        }
        return Ok(loaded);
    }
    if spool.files.contains_key("index.json") {
        let idx = spool.json("index.json")?;
        for d in idx["manifests"].as_array().cloned().unwrap_or_default() {
            let digest = d["digest"].as_str().unwrap_or_default();
            let mbytes = fs::read(spool.blob(digest)?).map_err(io_err("reading"))?;
            let m: Value =
                serde_json::from_slice(&mbytes).map_err(|source| ArchiveError::Json {
                    name: digest.into(),
                    source,
                })?;
            if m.get("manifests").is_some() {
                // A nested index (multi-platform) is not loaded; save/load carry one platform.
                continue;
            }
            let cfg = m["config"]["digest"].as_str().unwrap_or_default();
            let config = fs::read(spool.blob(cfg)?).map_err(io_err("reading"))?;
            let layers: Vec<String> = m["layers"]
                .as_array()
                .map(|a| {
                    a.iter()
                        .filter_map(|l| l["digest"].as_str())
                        .map(|d| format!("blobs/sha256/{}", d.trim_start_matches("sha256:")))
                        .collect()
                })
                .unwrap_or_default();
            let ann = &d["annotations"];
            let name = ann["io.containerd.image.name"]
                .as_str()
                .or(ann["org.opencontainers.image.ref.name"].as_str())
                .map(str::to_string);
            let names = normalise_tags(&name.into_iter().collect::<Vec<_>>());
            let rec = record_image(store, &spool, &config, &layers, &names, opts)?;
            if names.is_empty() {
                loaded.push(rec.id.to_string());
            }
            loaded.extend(names);
        }
        return Ok(loaded);
    }
    Err(ArchiveError::Format)
}

/// Applies one Dockerfile-style `--change` to a config's `config` object.
pub(crate) fn apply_change(cfg: &mut Value, change: &str) -> Result<(), ArchiveError> {
    let bad = || ArchiveError::Change {
        value: change.into(),
    };
    let (instr, arg) = change
        .trim()
        .split_once(char::is_whitespace)
        .ok_or_else(bad)?;
    let arg = arg.trim();
    // JSON (exec) form, or shell form wrapped in /bin/sh -c as Docker does.
    let list = || -> Value {
        serde_json::from_str::<Vec<String>>(arg)
            .map(|v| json!(v))
            .unwrap_or_else(|_| json!(["/bin/sh", "-c", arg]))
    };
    match instr.to_ascii_uppercase().as_str() {
        "CMD" => cfg["Cmd"] = list(),
        "ENTRYPOINT" => cfg["Entrypoint"] = list(),
        "WORKDIR" => cfg["WorkingDir"] = json!(arg),
        "USER" => cfg["User"] = json!(arg),
        "ENV" => {
            let (k, v) = arg
                .split_once('=')
                .or_else(|| arg.split_once(' '))
                .ok_or_else(bad)?;
            let mut env: Vec<Value> = cfg["Env"].as_array().cloned().unwrap_or_default();
            env.retain(|e| !e.as_str().is_some_and(|s| s.starts_with(&format!("{k}="))));
            env.push(json!(format!("{k}={}", v.trim())));
            cfg["Env"] = json!(env);
        }
        "LABEL" => {
            let (k, v) = arg.split_once('=').ok_or_else(bad)?;
            if !cfg["Labels"].is_object() {
                cfg["Labels"] = json!({});
            }
            cfg["Labels"][k.trim()] = json!(v.trim().trim_matches('"'));
        }
        "EXPOSE" => {
            if !cfg["ExposedPorts"].is_object() {
                cfg["ExposedPorts"] = json!({});
            }
            for p in arg.split_whitespace() {
                let p = if p.contains('/') {
                    p.to_string()
                } else {
                    format!("{p}/tcp")
                };
                cfg["ExposedPorts"][p] = json!({});
            }
        }
        "VOLUME" => {
            // JSON form `["/a", "/b"]` or paths separated by spaces, as in a Dockerfile.
            let paths = serde_json::from_str::<Vec<String>>(arg)
                .unwrap_or_else(|_| arg.split_whitespace().map(str::to_string).collect());
            if paths.is_empty() {
                return Err(bad());
            }
            if !cfg["Volumes"].is_object() {
                cfg["Volumes"] = json!({});
            }
            for p in paths {
                cfg["Volumes"][p] = json!({});
            }
        }
        _ => return Err(bad()),
    }
    Ok(())
}

/// Imports a root filesystem tarball (plain or compressed) as a one-layer image.
pub fn import<R: Read>(
    store: &Store,
    input: R,
    changes: &[String],
    name: Option<&Reference>,
    opts: &ExtractOptions,
) -> Result<ImageRecord, ArchiveError> {
    let mut config_section = json!({});
    for c in changes {
        apply_change(&mut config_section, c)?;
    }
    let spool = {
        let dir = store
            .tmp_dir()
            .join(format!("import-{}-{}", std::process::id(), unique()));
        fs::create_dir_all(&dir).map_err(io_err("spooling"))?;
        Spool {
            dir,
            files: BTreeMap::new(),
        }
    };
    // The layer is stored uncompressed, exactly as given after decompression: its blob
    // digest is then its DiffID.
    let p = spool.dir.join("layer.tar");
    let diff_id = {
        let f = File::create(&p).map_err(io_err("spooling"))?;
        let mut w = HashingWriter::new(f);
        let mut dec = extract::decompress(input).map_err(io_err("reading"))?;
        io::copy(&mut dec, &mut w).map_err(io_err("spooling"))?;
        let (d, _, mut f) = w.finish();
        f.flush().map_err(io_err("spooling"))?;
        d
    };
    let now = rfc3339_now();
    let host = Platform::host();
    let config = json!({
        "architecture": host.architecture,
        "os": host.os,
        "created": now,
        "config": config_section,
        "rootfs": {"type": "layers", "diff_ids": [diff_id.to_string()]},
        "history": [{"created": now, "created_by": "berth import", "comment": "imported from tarball"}],
    });
    let mut spool = spool;
    spool.files.insert("layer.tar".into(), p);
    let names: Vec<String> = name.and_then(|r| r.tagged()).into_iter().collect();
    record_image(
        store,
        &spool,
        &serde_json::to_vec(&config).expect("config serialises"),
        &["layer.tar".to_string()],
        &names,
        opts,
    )
}

/// The current time as RFC 3339 UTC (civil_from_days, Howard Hinnant's algorithm).
pub fn rfc3339_now() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0);
    let (days, rem) = (secs.div_euclid(86400), secs.rem_euclid(86400));
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + if m <= 2 { 1 } else { 0 };
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// Writes the OCI manifest of an image whose config blob is already stored, and returns the
/// image's record (to be named with `Store::put_image`): shared by `load`, `import` and
/// `commit`.
pub(crate) fn record_oci_image(
    store: &Store,
    config: &Value,
    config_bytes: &[u8],
    config_digest: Digest,
    layers: Vec<LayerRecord>,
    created: Option<String>,
) -> Result<ImageRecord, StoreError> {
    let manifest = json!({
        "schemaVersion": 2,
        "mediaType": manifest::OCI_MANIFEST,
        "config": {"mediaType": manifest::OCI_CONFIG, "digest": config_digest.to_string(), "size": config_bytes.len()},
        "layers": layers.iter().map(|l| json!({"mediaType": l.media_type, "digest": l.digest.to_string(), "size": l.size})).collect::<Vec<_>>(),
    });
    let manifest_bytes = serde_json::to_vec(&manifest).expect("manifest serialises");
    let manifest_digest = store.put_blob(&manifest_bytes, None)?;
    Ok(ImageRecord {
        id: config_digest,
        manifest_digest,
        manifest_media_type: manifest::OCI_MANIFEST.into(),
        repo_digests: Vec::new(),
        layers,
        platform: Platform {
            os: config["os"].as_str().unwrap_or("linux").into(),
            architecture: config["architecture"]
                .as_str()
                .unwrap_or(&Platform::host().architecture)
                .into(),
            variant: config["variant"].as_str().map(str::to_string),
        },
        created,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn changes() {
        let mut c = json!({});
        apply_change(&mut c, r#"CMD ["/bin/sh", "-c", "echo hi"]"#).unwrap();
        apply_change(&mut c, "ENTRYPOINT /init --flag").unwrap();
        apply_change(&mut c, "ENV A=1").unwrap();
        apply_change(&mut c, "ENV A=2").unwrap();
        apply_change(&mut c, "WORKDIR /srv").unwrap();
        apply_change(&mut c, "EXPOSE 80 53/udp").unwrap();
        apply_change(&mut c, r#"VOLUME ["/data", "/../../../etc/shadow"]"#).unwrap();
        apply_change(&mut c, "VOLUME /cache /logs").unwrap();
        for v in ["/data", "/../../../etc/shadow", "/cache", "/logs"] {
            assert!(c["Volumes"][v].is_object(), "{v}");
        }
        apply_change(&mut c, "LABEL x=\"y\"").unwrap();
        assert_eq!(c["Cmd"], json!(["/bin/sh", "-c", "echo hi"]));
        assert_eq!(c["Entrypoint"], json!(["/bin/sh", "-c", "/init --flag"]));
        assert_eq!(c["Env"], json!(["A=2"]));
        assert_eq!(c["WorkingDir"], "/srv");
        assert!(c["ExposedPorts"]["80/tcp"].is_object() && c["ExposedPorts"]["53/udp"].is_object());
        assert_eq!(c["Labels"]["x"], "y");
        assert!(apply_change(&mut c, "RUN rm -rf /").is_err());
        assert!(apply_change(&mut c, "CMD").is_err());
    }

    #[test]
    fn now_is_rfc3339() {
        let n = rfc3339_now();
        assert_eq!(n.len(), 20, "{n}");
        assert!(n.starts_with("20") && n.ends_with('Z'));
    }

    #[test]
    fn save_load_import_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("a")).unwrap();
        let mut b = tar::Builder::new(Vec::new());
        let mut h = tar::Header::new_gnu();
        h.set_path("hello.txt").unwrap();
        h.set_size(5);
        h.set_mode(0o644);
        h.set_cksum();
        b.append(&h, &b"hello"[..]).unwrap();
        let tar = b.into_inner().unwrap();
        let name: Reference = "example.com/imported:1".parse().unwrap();
        let opts = ExtractOptions {
            preserve_owner: false,
            ..ExtractOptions::default()
        };
        let rec = import(&store, &tar[..], &["CMD /hello".into()], Some(&name), &opts).unwrap();
        assert!(store.has_layer(&rec.layers[0].chain_id));
        let mut out = Vec::new();
        save(&store, &["example.com/imported:1".into()], &mut out).unwrap();

        let other = Store::open(&dir.path().join("b")).unwrap();
        let loaded = load(&other, &out[..], &opts).unwrap();
        assert_eq!(loaded, vec!["example.com/imported:1".to_string()]);
        let rec2 = other.resolve("example.com/imported:1").unwrap();
        assert_eq!(rec2.id, rec.id);
        assert_eq!(rec2.layers[0].digest, rec.layers[0].digest);
        let f = other.layer_diff(&rec2.layers[0].chain_id).join("hello.txt");
        assert_eq!(fs::read(f).unwrap(), b"hello");
        // nothing left in tmp/
        assert_eq!(fs::read_dir(other.tmp_dir()).unwrap().count(), 0);
    }
}

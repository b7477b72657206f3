//! The pull pipeline: manifest -> config -> layers in parallel -> image record.
//!
//! Each layer is one stream, with no temporary tarball: bytes from the registry are appended to
//! a partial blob file (kept for `Range` resume) and, in the same pass, hashed, decompressed,
//! hashed again (the DiffID) and extracted. A layer is published only when both digests and the
//! size match, and only after its files and blob are on disk (`Store::sync`); the image is
//! recorded only after every layer is published. A killed pull leaves
//! a partial blob (resumed next time) and a temporary layer directory (removed next time).

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

use oci_spec::image::ImageConfiguration;

use crate::digest::{chain_ids, Digest, HashingReader};
use crate::extract::{self, ExtractError, ExtractOptions};
use crate::manifest::{self, Manifest, ManifestError, Platform};
use crate::reference::Reference;
use crate::registry::{Client, RegistryError, RegistryOptions};
use crate::store::{ImageRecord, LayerMeta, LayerRecord, Store, StoreError};

/// How to pull.
#[derive(Clone, Debug)]
pub struct PullOptions {
    pub platform: Platform,
    /// Layers fetched at once.
    pub jobs: usize,
    pub registry: RegistryOptions,
    pub extract: ExtractOptions,
}

impl Default for PullOptions {
    fn default() -> Self {
        Self {
            platform: Platform::host(),
            jobs: 6,
            registry: RegistryOptions::default(),
            extract: ExtractOptions::default(),
        }
    }
}

/// What a pull reports while it runs; the CLI turns these into bars or lines.
#[derive(Clone, Debug)]
pub enum PullEvent {
    Resolved {
        manifest: Digest,
    },
    LayerPresent {
        digest: Digest,
    },
    LayerStart {
        digest: Digest,
        size: u64,
        resumed_at: u64,
    },
    LayerProgress {
        digest: Digest,
        done: u64,
    },
    LayerDone {
        digest: Digest,
    },
    Recorded {
        id: Digest,
    },
}

/// Receives pull events (from several threads).
pub trait Progress: Sync {
    fn event(&self, ev: PullEvent);
}

/// Ignores events.
#[derive(Debug)]
pub struct NoProgress;
impl Progress for NoProgress {
    fn event(&self, _: PullEvent) {}
}

/// Why one layer could not be brought into the store.
#[derive(Debug, thiserror::Error)]
pub enum LayerError {
    #[error("fetching")]
    Fetch(#[source] RegistryError),
    #[error("download interrupted after {attempts} attempts")]
    Interrupted {
        attempts: u32,
        #[source]
        source: io::Error,
    },
    #[error("extracting")]
    Extract(#[source] ExtractError),
    #[error("digest mismatch: content hashes to {actual}")]
    DigestMismatch { actual: Digest },
    #[error("size mismatch: manifest says {expected} bytes, got {actual}")]
    SizeMismatch { expected: u64, actual: u64 },
    #[error("uncompressed content hashes to {actual}, config says {expected}")]
    DiffIdMismatch { expected: Digest, actual: Digest },
    #[error("cannot {op} {path}")]
    Partial {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("storing")]
    Store(#[source] StoreError),
}

/// Why a pull failed.
#[derive(Debug, thiserror::Error)]
pub enum PullError {
    #[error("pulling {image}")]
    Registry {
        image: String,
        #[source]
        source: Box<RegistryError>,
    },
    #[error("pulling {image}: unusable manifest")]
    Manifest {
        image: String,
        #[source]
        source: ManifestError,
    },
    #[error("pulling {image}: index entry {digest} is not an image manifest")]
    NestedIndex { image: String, digest: Digest },
    #[error("pulling {image}: malformed image config {digest}")]
    Config {
        image: String,
        digest: Digest,
        #[source]
        source: serde_json::Error,
    },
    #[error("pulling {image}: manifest lists {layers} layers but the config {diff_ids} diff_ids")]
    LayerCount {
        image: String,
        layers: usize,
        diff_ids: usize,
    },
    #[error("pulling {image}: layer {digest}")]
    Layer {
        image: String,
        digest: Digest,
        #[source]
        source: Box<LayerError>,
    },
    #[error("pulling {image}")]
    Store {
        image: String,
        #[source]
        source: StoreError,
    },
}

/// One layer to bring into the store.
struct Job {
    digest: Digest,
    diff_id: Digest,
    chain: Digest,
    size: u64,
}

/// Pulls `reference` into `store` and records it under its tag.
pub fn pull(
    store: &Store,
    reference: &Reference,
    opts: &PullOptions,
    progress: &dyn Progress,
) -> Result<ImageRecord, PullError> {
    let image = reference.to_string();
    let reg = |source| PullError::Registry {
        image: image.clone(),
        source: Box::new(source),
    };
    let man = |source| PullError::Manifest {
        image: image.clone(),
        source,
    };
    let st = |source| PullError::Store {
        image: image.clone(),
        source,
    };
    let client = Client::new(reference, &opts.registry).map_err(reg)?;
    let repo = reference.repository.as_str();

    // 1. Resolve the reference to one image manifest (through an index if needed).
    let (top_bytes, top_ct, top_digest) = client
        .get_manifest(repo, &reference.manifest_selector())
        .map_err(reg)?;
    let (manifest_bytes, manifest_digest, m) =
        match manifest::parse_manifest(&top_bytes, top_ct.as_deref()).map_err(man)? {
            Manifest::Image(m) => (top_bytes, top_digest.clone(), m),
            Manifest::Index(idx) => {
                let d = manifest::select_platform(&idx, &opts.platform).map_err(man)?;
                let d = manifest::descriptor_digest(d).map_err(man)?;
                let (b, ct, _) = client.get_manifest(repo, &d.to_string()).map_err(reg)?;
                match manifest::parse_manifest(&b, ct.as_deref()).map_err(man)? {
                    Manifest::Image(m) => (b, d, m),
                    Manifest::Index(_) => {
                        return Err(PullError::NestedIndex {
                            image: image.clone(),
                            digest: d,
                        })
                    }
                }
            }
        };
    progress.event(PullEvent::Resolved {
        manifest: top_digest.clone(),
    });

    // 2. The config: its digest is the image ID, its diff_ids key the layers.
    let config_digest = manifest::descriptor_digest(m.config()).map_err(man)?;
    let config_bytes = if store.has_blob(&config_digest) {
        store.read_blob(&config_digest).map_err(st)?
    } else {
        client.get_blob_bytes(repo, &config_digest).map_err(reg)?
    };
    let config: ImageConfiguration =
        serde_json::from_slice(&config_bytes).map_err(|source| PullError::Config {
            image: image.clone(),
            digest: config_digest.clone(),
            source,
        })?;
    let diff_ids: Vec<Digest> = config
        .rootfs()
        .diff_ids()
        .iter()
        .map(|d| d.parse::<Digest>())
        .collect::<Result<_, _>>()
        .map_err(|e| man(ManifestError::Digest(e)))?;
    if diff_ids.len() != m.layers().len() {
        return Err(PullError::LayerCount {
            image,
            layers: m.layers().len(),
            diff_ids: diff_ids.len(),
        });
    }
    let chains = chain_ids(&diff_ids);
    let mut jobs = Vec::new();
    let mut records = Vec::new();
    for (i, l) in m.layers().iter().enumerate() {
        let digest = manifest::descriptor_digest(l).map_err(man)?;
        records.push(LayerRecord {
            digest: digest.clone(),
            diff_id: diff_ids[i].clone(),
            chain_id: chains[i].clone(),
            size: l.size(),
            media_type: l.media_type().to_string(),
        });
        jobs.push(Job {
            digest,
            diff_id: diff_ids[i].clone(),
            chain: chains[i].clone(),
            size: l.size(),
        });
    }

    // 3. Layers in parallel. The shared gc lock keeps prune from collecting layers that are
    //    extracted but not yet recorded.
    let _gc = store.lock_gc_shared().map_err(st)?;
    let next = AtomicUsize::new(0);
    let first_error: Mutex<Option<(Digest, LayerError)>> = Mutex::new(None);
    let workers = opts.jobs.clamp(1, 16).min(jobs.len().max(1));
    std::thread::scope(|s| {
        for _ in 0..workers {
            s.spawn(|| loop {
                if first_error.lock().expect("error slot").is_some() {
                    return;
                }
                let i = next.fetch_add(1, Ordering::SeqCst);
                let Some(job) = jobs.get(i) else { return };
                if let Err(e) = ensure_layer(store, &client, repo, job, opts, progress) {
                    first_error
                        .lock()
                        .expect("error slot")
                        .get_or_insert((job.digest.clone(), e));
                    return;
                }
            });
        }
    });
    if let Some((digest, source)) = first_error.into_inner().expect("error slot") {
        return Err(PullError::Layer {
            image,
            digest,
            source: Box::new(source),
        });
    }

    // 4. Every layer verified: store the documents and record the image.
    store
        .put_blob(&manifest_bytes, Some(&manifest_digest))
        .map_err(st)?;
    store
        .put_blob(&config_bytes, Some(&config_digest))
        .map_err(st)?;
    let rec = ImageRecord {
        id: config_digest.clone(),
        manifest_digest,
        manifest_media_type: m
            .media_type()
            .as_ref()
            .map(|t| t.to_string())
            .unwrap_or_else(|| manifest::OCI_MANIFEST.to_string()),
        repo_digests: vec![format!("{}@{top_digest}", reference.name())],
        layers: records,
        platform: Platform {
            os: config.os().to_string(),
            architecture: config.architecture().to_string(),
            variant: config.variant().clone(),
        },
        created: config.created().clone(),
    };
    let names: Vec<String> = reference.tagged().into_iter().collect();
    store.put_image(&rec, &names).map_err(st)?;
    progress.event(PullEvent::Recorded { id: config_digest });
    Ok(rec)
}

/// Appends what it reads from the network to the partial blob file, and remembers whether
/// the network (not the extraction) failed, which makes the layer worth retrying.
struct Tee<'a, R> {
    inner: R,
    file: File,
    net_error: &'a Mutex<Option<io::ErrorKind>>,
    done: u64,
    digest: &'a Digest,
    progress: &'a dyn Progress,
}

impl<R: Read> Read for Tee<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = match self.inner.read(buf) {
            Ok(n) => n,
            Err(e) => {
                *self.net_error.lock().expect("net error slot") = Some(e.kind());
                return Err(e);
            }
        };
        self.file.write_all(&buf[..n])?;
        self.done += n as u64;
        self.progress.event(PullEvent::LayerProgress {
            digest: self.digest.clone(),
            done: self.done,
        });
        Ok(n)
    }
}

fn ensure_layer(
    store: &Store,
    client: &Client,
    repo: &str,
    job: &Job,
    opts: &PullOptions,
    progress: &dyn Progress,
) -> Result<(), LayerError> {
    if store.has_layer(&job.chain) {
        progress.event(PullEvent::LayerPresent {
            digest: job.digest.clone(),
        });
        return Ok(());
    }
    // Another process may be extracting the same layer: wait for it, then look again.
    let _layer_lock = store.lock_layer(&job.chain).map_err(LayerError::Store)?;
    if store.has_layer(&job.chain) {
        progress.event(PullEvent::LayerPresent {
            digest: job.digest.clone(),
        });
        return Ok(());
    }
    let _blob_lock = store.lock_blob(&job.digest).map_err(LayerError::Store)?;
    let attempts = opts.registry.attempts.max(1);
    let mut attempt = 0;
    loop {
        attempt += 1;
        match fetch_and_extract(store, client, repo, job, opts, progress) {
            Ok(()) => break,
            Err((e, Some(kind))) => {
                if attempt >= attempts {
                    return Err(LayerError::Interrupted {
                        attempts,
                        source: io::Error::new(kind, e),
                    });
                }
                std::thread::sleep(std::time::Duration::from_millis(200 << attempt.min(5)));
            }
            Err((e, _)) => return Err(e),
        }
    }
    progress.event(PullEvent::LayerDone {
        digest: job.digest.clone(),
    });
    Ok(())
}

/// One attempt. On failure also returns the network error kind when the network failed.
fn fetch_and_extract(
    store: &Store,
    client: &Client,
    repo: &str,
    job: &Job,
    opts: &PullOptions,
    progress: &dyn Progress,
) -> Result<(), (LayerError, Option<io::ErrorKind>)> {
    let partial_err = |op, path: &PathBuf| {
        let path = path.clone();
        move |source| -> (LayerError, Option<io::ErrorKind>) {
            (LayerError::Partial { op, path, source }, None)
        }
    };
    let tmp = store
        .begin_layer(&job.chain)
        .map_err(|e| (LayerError::Store(e), None))?;
    let net_error = Mutex::new(None);
    let have_blob = store.has_blob(&job.digest);
    let partial = if have_blob {
        store.blob_path(&job.digest)
    } else {
        store.partial_blob_path(&job.digest)
    };
    let result = (|| {
        // Bytes already on disk (a finished blob, or a partial download) are read back first;
        // only the rest comes from the network, with a Range request.
        let mut on_disk = fs::metadata(&partial).map(|m| m.len()).unwrap_or(0);
        if !have_blob && on_disk > job.size {
            // Longer than the manifest says: not a prefix of this blob. Start over.
            fs::remove_file(&partial).map_err(partial_err("remove", &partial))?;
            on_disk = 0;
        }
        // A complete partial (killed between download and publish) needs no network at all.
        let complete = have_blob || on_disk == job.size;
        let local = match File::open(&partial) {
            Ok(f) => Some(f),
            Err(e) if e.kind() == io::ErrorKind::NotFound => None,
            Err(e) => return Err(partial_err("open", &partial)(e)),
        };
        let remote: Box<dyn Read + '_> = if complete {
            Box::new(io::empty())
        } else {
            let append = OpenOptions::new()
                .create(true)
                .append(true)
                .open(&partial)
                .map_err(partial_err("open", &partial))?;
            progress.event(PullEvent::LayerStart {
                digest: job.digest.clone(),
                size: job.size,
                resumed_at: on_disk,
            });
            let body = match client.get_blob(repo, &job.digest, on_disk) {
                Ok(b) => b,
                // 416 Range Not Satisfiable: the partial file is not what the registry has
                // (RFC 9110 section 15.5.17). Drop it; the retry starts from zero.
                Err(e @ RegistryError::Status { status: 416, .. }) => {
                    let _ = fs::remove_file(&partial);
                    return Err((LayerError::Fetch(e), Some(io::ErrorKind::InvalidData)));
                }
                Err(e) => return Err((LayerError::Fetch(e), None)),
            };
            Box::new(Tee {
                inner: body,
                file: append,
                net_error: &net_error,
                done: on_disk,
                digest: &job.digest,
                progress,
            })
        };
        let local: Box<dyn Read> = match local {
            Some(f) => Box::new(f.take(on_disk)),
            None => Box::new(io::empty()),
        };
        let mut compressed = HashingReader::new(local.chain(remote));
        let diff_meta = {
            let dec = extract::decompress(&mut compressed)
                .map_err(|e| (LayerError::Extract(ExtractError::Read(e)), None))?;
            let mut uncompressed = HashingReader::new(dec);
            let stats = extract::extract_tar(&mut uncompressed, &tmp.join("diff"), &opts.extract)
                .map_err(|e| (LayerError::Extract(e), None))?;
            // Zero padding after the tar end marker is part of the DiffID.
            io::copy(&mut uncompressed, &mut io::sink())
                .map_err(|e| (LayerError::Extract(ExtractError::Read(e)), None))?;
            let (diff, _) = uncompressed.finish();
            (diff, stats)
        };
        io::copy(&mut compressed, &mut io::sink())
            .map_err(|e| (LayerError::Extract(ExtractError::Read(e)), None))?;
        let (actual, size) = compressed.finish();
        if actual != job.digest || size != job.size {
            // Bad content, not a bad connection: drop it so the next attempt starts clean.
            let _ = fs::remove_file(&partial);
            if actual != job.digest {
                return Err((LayerError::DigestMismatch { actual }, None));
            }
            return Err((
                LayerError::SizeMismatch {
                    expected: job.size,
                    actual: size,
                },
                None,
            ));
        }
        let (diff, stats) = diff_meta;
        if diff != job.diff_id {
            return Err((
                LayerError::DiffIdMismatch {
                    expected: job.diff_id.clone(),
                    actual: diff,
                },
                None,
            ));
        }
        // Durable before published: one flush for the blob and all the layer's files, instead
        // of an fsync per file; a crash before this point leaves only tmp/ debris.
        store.sync().map_err(|e| (LayerError::Store(e), None))?;
        if !have_blob {
            store
                .commit_partial_blob(&partial, &job.digest)
                .map_err(|e| (LayerError::Store(e), None))?;
        }
        store
            .commit_layer(
                &tmp,
                &job.chain,
                &LayerMeta {
                    diff_id: job.diff_id.clone(),
                    size: stats.bytes,
                },
            )
            .map_err(|e| (LayerError::Store(e), None))
    })();
    if let Err((e, retry)) = result {
        let _ = extract::remove_tree(&tmp);
        let net = *net_error.lock().expect("net error slot");
        // A network failure surfaces as an extraction read error: retry it, resuming.
        return Err(match (e, net, retry) {
            (LayerError::Extract(x), Some(kind), _) => (LayerError::Extract(x), Some(kind)),
            (e, _, retry) => (e, retry),
        });
    }
    Ok(())
}

//! `commit`: a new image made of a parent image plus one layer (a container's changes).
//!
//! The engine writes the layer as an uncompressed OCI layer tar (whiteouts already in the
//! `.wh.` form) into the store's `tmp/`; this module hashes it (its DiffID, which is also its
//! blob digest since it is stored uncompressed), extracts it into the store like any pulled
//! layer, and records an image whose config is the parent's with the new DiffID, a history
//! entry and the Dockerfile-style changes applied.

use std::fs::File;
use std::io;
use std::path::Path;

use serde_json::{json, Value};

use crate::archive::{apply_change, ingest_layer, record_oci_image, rfc3339_now, ArchiveError};
use crate::digest::{chain_ids, Digest, HashingReader};
use crate::extract::ExtractOptions;
use crate::reference::Reference;
use crate::store::{ImageRecord, LayerRecord, Store};

/// What goes into the new image besides the layer.
#[derive(Debug, Default, Clone)]
pub struct CommitOptions {
    /// Dockerfile instructions (`CMD`, `ENV`, ...) applied to the parent's config.
    pub changes: Vec<String>,
    /// `-a`: the image's `author`.
    pub author: Option<String>,
    /// `-m`: the history entry's comment.
    pub comment: Option<String>,
    /// The container the layer came from (the config's `container` field, as Docker writes).
    pub container: String,
    /// `name[:tag]` for the new image.
    pub reference: Option<Reference>,
}

/// Checks `changes` without committing anything, so bad input fails before any work.
pub fn check_changes(changes: &[String]) -> Result<(), ArchiveError> {
    let mut scratch = json!({});
    for c in changes {
        apply_change(&mut scratch, c)?;
    }
    Ok(())
}

/// Records a new image: `parent`'s layers plus the uncompressed layer tar at `layer_tar`
/// (which must be in the store's tmp directory: it is hard-linked into the blobs).
pub fn commit(
    store: &Store,
    parent: &ImageRecord,
    layer_tar: &Path,
    opts: &CommitOptions,
    extract_opts: &ExtractOptions,
) -> Result<ImageRecord, ArchiveError> {
    let mut config: Value =
        serde_json::from_slice(&store.read_blob(&parent.id)?).map_err(|source| {
            ArchiveError::Json {
                name: parent.id.to_string(),
                source,
            }
        })?;
    if !config["config"].is_object() {
        config["config"] = json!({});
    }
    for c in &opts.changes {
        apply_change(&mut config["config"], c)?;
    }
    // 1. The layer's DiffID: the digest of the uncompressed tar.
    let diff_id = {
        let f = File::open(layer_tar).map_err(|source| ArchiveError::Io {
            op: "reading the committed layer of",
            source,
        })?;
        let mut r = HashingReader::new(f);
        io::copy(&mut r, &mut io::sink()).map_err(|source| ArchiveError::Io {
            op: "reading the committed layer of",
            source,
        })?;
        r.finish().0
    };
    // 2. The config: the parent's, plus the DiffID and a history entry.
    let mut diff_ids: Vec<Digest> = parent.layers.iter().map(|l| l.diff_id.clone()).collect();
    diff_ids.push(diff_id.clone());
    let now = rfc3339_now();
    config["created"] = json!(now);
    config["container"] = json!(opts.container);
    match &opts.author {
        Some(a) => config["author"] = json!(a),
        None => {
            if let Some(o) = config.as_object_mut() {
                o.remove("author");
            }
        }
    }
    config["rootfs"] = json!({
        "type": "layers",
        "diff_ids": diff_ids.iter().map(Digest::to_string).collect::<Vec<_>>(),
    });
    let mut entry = json!({"created": now, "created_by": "berth commit"});
    if let Some(a) = &opts.author {
        entry["author"] = json!(a);
    }
    if let Some(m) = &opts.comment {
        entry["comment"] = json!(m);
    }
    if !config["history"].is_array() {
        config["history"] = json!([]);
    }
    if let Some(h) = config["history"].as_array_mut() {
        h.push(entry);
    }
    // 3. The layer into the store (extracted like a pulled one), then config and manifest.
    let chain = chain_ids(&diff_ids)
        .pop()
        .expect("at least the committed layer");
    let _gc = store.lock_gc_shared()?;
    let (digest, size, media_type) = ingest_layer(
        store,
        layer_tar,
        "committed layer",
        &diff_id,
        &chain,
        extract_opts,
    )?;
    let mut layers = parent.layers.clone();
    layers.push(LayerRecord {
        digest,
        diff_id,
        chain_id: chain,
        size,
        media_type,
    });
    let config_bytes = serde_json::to_vec(&config).expect("config serialises");
    let config_digest = store.put_blob(&config_bytes, None)?;
    let rec = record_oci_image(
        store,
        &config,
        &config_bytes,
        config_digest,
        layers,
        Some(now),
    )?;
    let names: Vec<String> = opts
        .reference
        .as_ref()
        .and_then(|r| r.tagged())
        .into_iter()
        .collect();
    store.put_image(&rec, &names)?;
    Ok(rec)
}

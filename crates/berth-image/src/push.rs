//! Pushing a stored image to a registry: blobs the registry has are not sent again
//! (distribution spec, "Checking if content exists in the registry"), then the manifest.

use crate::digest::Digest;
use crate::reference::Reference;
use crate::registry::{Client, RegistryError, RegistryOptions, ReqBody};
use crate::store::{Store, StoreError};

/// What a push did.
#[derive(Clone, Debug, Default)]
pub struct PushReport {
    pub uploaded: Vec<Digest>,
    pub skipped: Vec<Digest>,
    pub manifest: Option<Digest>,
}

/// Why a push failed.
#[derive(Debug, thiserror::Error)]
pub enum PushError {
    #[error("pushing {image}")]
    Store {
        image: String,
        #[source]
        source: StoreError,
    },
    #[error("pushing {image}: blob {digest} is not in the local store")]
    MissingBlob { image: String, digest: Digest },
    #[error("pushing {image}")]
    Registry {
        image: String,
        #[source]
        source: Box<RegistryError>,
    },
}

/// Pushes the local image `source` to `target`.
pub fn push(
    store: &Store,
    source: &str,
    target: &Reference,
    opts: &RegistryOptions,
    mut on_blob: impl FnMut(&Digest, bool),
) -> Result<PushReport, PushError> {
    let image = target.to_string();
    let st = |source| PushError::Store {
        image: image.clone(),
        source,
    };
    let reg = |source| PushError::Registry {
        image: image.clone(),
        source: Box::new(source),
    };
    let rec = store.resolve(source).map_err(st)?;
    let client = Client::new(target, opts).map_err(reg)?;
    let repo = target.repository.as_str();
    let mut report = PushReport::default();
    let mut blobs: Vec<Digest> = rec.layers.iter().map(|l| l.digest.clone()).collect();
    blobs.push(rec.id.clone());
    for d in blobs {
        if !store.has_blob(&d) {
            return Err(PushError::MissingBlob { image, digest: d });
        }
        if client.blob_exists(repo, &d).map_err(reg)? {
            on_blob(&d, false);
            report.skipped.push(d);
            continue;
        }
        client
            .upload_blob(repo, &d, ReqBody::File(store.blob_path(&d)))
            .map_err(reg)?;
        on_blob(&d, true);
        report.uploaded.push(d);
    }
    let bytes = store.read_blob(&rec.manifest_digest).map_err(st)?;
    let tag = target.manifest_selector();
    client
        .put_manifest(repo, &tag, bytes, &rec.manifest_media_type)
        .map_err(reg)?;
    report.manifest = Some(rec.manifest_digest);
    Ok(report)
}

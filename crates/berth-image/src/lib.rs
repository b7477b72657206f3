//! Berth's image library: everything between a registry and a container's root filesystem.
//!
//! It promises: references and manifests parsed as Docker and the OCI specs define them, blobs
//! verified against their digest while they stream, layers extracted so that nothing is ever
//! written outside the layer directory, a content-addressed store safe under concurrent
//! commands, and overlay snapshots for the engine. It knows nothing about running containers
//! and must not depend on `berth-runtime`.
#![forbid(unsafe_code)]

pub mod archive;
pub mod auth;
pub mod commit;
pub mod digest;
pub mod extract;
pub mod manifest;
pub mod pull;
pub mod push;
pub mod reference;
pub mod registry;
pub mod snapshot;
pub mod store;

pub use digest::Digest;
pub use manifest::Platform;
pub use reference::Reference;

//! Berth's OCI runtime library.
//!
//! It promises the contract runc, crun and youki offer: given an OCI bundle (a `config.json`
//! and a root filesystem) it creates, starts, signals, inspects and deletes containers, keeping
//! per-container state under a runtime root directory. It knows OCI bundles and nothing else:
//! it must not depend on images, networks or engine state.
//!
//! Layout:
//! - [`spec`]: loading and validating `config.json`;
//! - [`state`]: the per-container state directory, its lock and `state.json`;
//! - [`cgroups`]: cgroup v1, v2 and hybrid hosts;
//! - [`rootfs`]: mounts, `/dev`, `pivot_root`, masked and read-only paths;
//! - [`security`]: capabilities, seccomp, no_new_privs, AppArmor and SELinux;
//! - [`spawn`]: the plan for a new process and the code each process runs (parent, init);
//! - [`ops`]: one module per runtime verb (`create`, `start`, `kill`, ...).
//!
//! All `unsafe` code lives in [`sys`]-private wrappers; the rest of the crate forbids it.

pub mod cgroups;
pub mod hooks;
pub mod ops;
pub mod procfs;
pub mod rootfs;
pub mod security;
pub mod spawn;
pub mod spec;
pub mod state;
#[allow(unsafe_code)]
mod sys;

pub use oci_spec::runtime::Spec;

//! The only place with `unsafe` code: thin wrappers over raw system calls. Each area owns one
//! file. Every `unsafe` block carries a `// SAFETY:` comment naming the invariant it relies on.

pub(crate) mod cgroup;
pub(crate) mod mount;
pub(crate) mod process;
pub(crate) mod seccomp;
pub(crate) mod security;
pub(crate) mod socket;

//! Verified access to procfs.
//!
//! Every write to `/proc` (uid/gid maps, `oom_score_adj`, sysctls, LSM labels) goes through a
//! file descriptor whose filesystem `fstatfs` reports as procfs, opened without crossing a mount
//! point or following a magic link. A bind mount over `/proc/sys/...` or a symlinked `/proc`
//! therefore cannot redirect the write (CVE-2019-16884, CVE-2019-19921, CVE-2025-52881).

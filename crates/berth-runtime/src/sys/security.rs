//! Raw calls for process security: capability sets (capget/capset, the bounding and ambient
//! sets through prctl), keep-caps, no_new_privs and personality.
//!
//! Capabilities are per thread (capabilities(7)); these calls act on the calling thread, which in
//! the container's init is the only one.

use nix::errno::Errno;

/// `_LINUX_CAPABILITY_VERSION_3` from `<linux/capability.h>`: two 32-bit words per set, so all
/// 64 possible capability numbers fit.
const LINUX_CAPABILITY_VERSION_3: u32 = 0x2008_0522;

/// `struct __user_cap_header_struct` (capget(2)).
#[repr(C)]
struct CapHeader {
    version: u32,
    pid: libc::c_int,
}

/// `struct __user_cap_data_struct` (capget(2)); version 3 uses an array of two.
#[repr(C)]
#[derive(Clone, Copy, Default)]
struct CapData {
    effective: u32,
    permitted: u32,
    inheritable: u32,
}

/// The effective, permitted and inheritable sets of a thread, one bit per capability number.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct ThreadCaps {
    pub(crate) effective: u64,
    pub(crate) permitted: u64,
    pub(crate) inheritable: u64,
}

fn split(mask: u64) -> (u32, u32) {
    (mask as u32, (mask >> 32) as u32)
}

/// Sets the three sets of the calling thread in one `capset(2)`, so the kernel checks the new
/// triple as a whole (effective ⊆ permitted ⊆ old permitted) instead of one set at a time.
pub(crate) fn capset(caps: ThreadCaps) -> Result<(), Errno> {
    let mut header = CapHeader {
        version: LINUX_CAPABILITY_VERSION_3,
        pid: 0,
    };
    let (e0, e1) = split(caps.effective);
    let (p0, p1) = split(caps.permitted);
    let (i0, i1) = split(caps.inheritable);
    let data = [
        CapData {
            effective: e0,
            permitted: p0,
            inheritable: i0,
        },
        CapData {
            effective: e1,
            permitted: p1,
            inheritable: i1,
        },
    ];
    // SAFETY: the header and the two-element data array are live locals laid out as
    // `<linux/capability.h>` defines them for version 3 (which reads exactly two entries); the
    // kernel only reads them during the call.
    let res = unsafe {
        libc::syscall(
            libc::SYS_capset,
            &mut header as *mut CapHeader,
            data.as_ptr(),
        )
    };
    Errno::result(res).map(drop)
}

/// `prctl(PR_CAPBSET_DROP, cap)`: removes `cap` from the bounding set (needs CAP_SETPCAP).
pub(crate) fn bounding_drop(cap: u32) -> Result<(), Errno> {
    // SAFETY: PR_CAPBSET_DROP takes a capability number and touches no memory of ours.
    let res = unsafe { libc::prctl(libc::PR_CAPBSET_DROP, cap as libc::c_ulong, 0, 0, 0) };
    Errno::result(res).map(drop)
}

/// `prctl(PR_CAPBSET_READ, cap)`: whether `cap` is in the bounding set.
pub(crate) fn bounding_has(cap: u32) -> Result<bool, Errno> {
    // SAFETY: PR_CAPBSET_READ takes a capability number and touches no memory of ours.
    let res = unsafe { libc::prctl(libc::PR_CAPBSET_READ, cap as libc::c_ulong, 0, 0, 0) };
    Errno::result(res).map(|v| v == 1)
}

/// `prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL)`.
pub(crate) fn ambient_clear_all() -> Result<(), Errno> {
    // SAFETY: PR_CAP_AMBIENT_CLEAR_ALL takes no pointer argument and touches no memory of ours.
    let res = unsafe {
        libc::prctl(
            libc::PR_CAP_AMBIENT,
            libc::PR_CAP_AMBIENT_CLEAR_ALL as libc::c_ulong,
            0,
            0,
            0,
        )
    };
    Errno::result(res).map(drop)
}

/// `prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_RAISE, cap)`; the kernel requires `cap` to be in both
/// the permitted and the inheritable set.
pub(crate) fn ambient_raise(cap: u32) -> Result<(), Errno> {
    // SAFETY: PR_CAP_AMBIENT_RAISE takes a capability number and touches no memory of ours.
    let res = unsafe {
        libc::prctl(
            libc::PR_CAP_AMBIENT,
            libc::PR_CAP_AMBIENT_RAISE as libc::c_ulong,
            cap as libc::c_ulong,
            0,
            0,
        )
    };
    Errno::result(res).map(drop)
}

/// `prctl(PR_SET_KEEPCAPS, on)`: keep the permitted set across the switch away from uid 0.
pub(crate) fn set_keepcaps(on: bool) -> Result<(), Errno> {
    // SAFETY: PR_SET_KEEPCAPS takes an integer flag and touches no memory of ours.
    let res = unsafe { libc::prctl(libc::PR_SET_KEEPCAPS, libc::c_ulong::from(on), 0, 0, 0) };
    Errno::result(res).map(drop)
}

/// `prctl(PR_SET_NO_NEW_PRIVS, 1)`: execve can no longer grant privileges (setuid bits, file
/// capabilities), and an unprivileged process may load a seccomp filter.
pub(crate) fn set_no_new_privs() -> Result<(), Errno> {
    // SAFETY: PR_SET_NO_NEW_PRIVS takes integer arguments (the unused ones must be zero) and
    // touches no memory of ours.
    let res = unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) };
    Errno::result(res).map(drop)
}

/// `personality(persona)` (personality(2)); returns the previous persona.
pub(crate) fn set_personality(persona: u32) -> Result<u32, Errno> {
    // SAFETY: personality(2) takes an integer and touches no memory of ours.
    let res = unsafe { libc::personality(persona as libc::c_ulong) };
    Errno::result(res).map(|p| p as u32)
}

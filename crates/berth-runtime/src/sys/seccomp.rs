//! Raw seccomp(2) calls: loading a precompiled classic-BPF program, and probing which actions
//! and filter flags the running kernel supports.
//!
//! Berth compiles filters with libseccomp in the parent and loads the exported program itself,
//! so the container's init runs no libseccomp code and the load can happen as the very last step
//! before `execve` (runc does the same through its own `seccomp(2)` call).

use std::os::fd::{FromRawFd, OwnedFd};

use nix::errno::Errno;

/// `SECCOMP_SET_MODE_FILTER` (seccomp(2)).
const SECCOMP_SET_MODE_FILTER: libc::c_uint = 1;
/// `SECCOMP_GET_ACTION_AVAIL` (seccomp(2), Linux 4.14).
const SECCOMP_GET_ACTION_AVAIL: libc::c_uint = 2;
/// `SECCOMP_FILTER_FLAG_NEW_LISTENER` (Linux 5.0): the call returns a notification fd.
pub(crate) const FLAG_NEW_LISTENER: u32 = 1 << 3;
/// `SECCOMP_FILTER_FLAG_TSYNC_ESRCH` (Linux 5.7): lets TSYNC be combined with NEW_LISTENER.
pub(crate) const FLAG_TSYNC_ESRCH: u32 = 1 << 4;

/// Size of one `struct sock_filter` instruction.
pub(crate) const BPF_INSN_LEN: usize = 8;

/// Loads `program` (an exported array of `struct sock_filter`) as a seccomp filter on the calling
/// thread with `flags`. When `flags` holds [`FLAG_NEW_LISTENER`] the kernel returns a user
/// notification fd, which is handed back.
pub(crate) fn load_filter(program: &[u8], flags: u32) -> Result<Option<OwnedFd>, Errno> {
    if program.is_empty() || !program.len().is_multiple_of(BPF_INSN_LEN) {
        return Err(Errno::EINVAL);
    }
    let len = u16::try_from(program.len() / BPF_INSN_LEN).map_err(|_| Errno::E2BIG)?;
    // The program bytes are copied into properly aligned instructions: a `Vec<u8>` has no
    // alignment guarantee for `struct sock_filter` (u16, u8, u8, u32).
    let insns: Vec<libc::sock_filter> = program
        .chunks_exact(BPF_INSN_LEN)
        .map(|c| libc::sock_filter {
            code: u16::from_ne_bytes([c[0], c[1]]),
            jt: c[2],
            jf: c[3],
            k: u32::from_ne_bytes([c[4], c[5], c[6], c[7]]),
        })
        .collect();
    let prog = libc::sock_fprog {
        len,
        filter: insns.as_ptr() as *mut libc::sock_filter,
    };
    // SAFETY: `prog` points at `insns`, a live vector of exactly `len` instructions; the kernel
    // copies the program during the call and keeps no pointer to our memory.
    let res = unsafe {
        libc::syscall(
            libc::SYS_seccomp,
            SECCOMP_SET_MODE_FILTER,
            flags as libc::c_uint,
            &prog as *const libc::sock_fprog,
        )
    };
    let ret = Errno::result(res)?;
    if flags & FLAG_NEW_LISTENER != 0 && ret > 0 {
        // SAFETY: with SECCOMP_FILTER_FLAG_NEW_LISTENER a successful call returns a new file
        // descriptor owned by nobody else; wrapping it transfers ownership exactly once.
        return Ok(Some(unsafe { OwnedFd::from_raw_fd(ret as libc::c_int) }));
    }
    Ok(None)
}

/// Whether the kernel supports the filter return action `action` (`SECCOMP_RET_*`).
pub(crate) fn action_available(action: u32) -> bool {
    // SAFETY: SECCOMP_GET_ACTION_AVAIL reads one u32 through the pointer, which points at a live
    // local for the whole call.
    let res = unsafe {
        libc::syscall(
            libc::SYS_seccomp,
            SECCOMP_GET_ACTION_AVAIL,
            0 as libc::c_uint,
            &action as *const u32,
        )
    };
    res == 0
}

/// Whether the kernel knows the filter flag `flag`. The probe passes a NULL program: the kernel
/// validates the flags first, so EFAULT means "flag known", EINVAL means "unknown flag"
/// (the same probe libseccomp and runc use). Nothing is ever loaded.
pub(crate) fn flag_supported(flag: u32) -> bool {
    // SAFETY: the NULL program pointer is never dereferenced successfully: the kernel returns
    // EINVAL for an unknown flag or EFAULT when it tries to copy the program, and loads nothing.
    let res = unsafe {
        libc::syscall(
            libc::SYS_seccomp,
            SECCOMP_SET_MODE_FILTER,
            flag as libc::c_uint,
            std::ptr::null::<libc::sock_fprog>(),
        )
    };
    res == -1 && Errno::last() == Errno::EFAULT
}

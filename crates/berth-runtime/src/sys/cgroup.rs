//! Raw `bpf(2)` calls for the cgroup v2 device filter: load a `BPF_PROG_TYPE_CGROUP_DEVICE`
//! program and attach it to a cgroup directory fd. The libc crate has no `union bpf_attr`, so
//! the two members used are declared here with the kernel's layout (include/uapi/linux/bpf.h);
//! the kernel accepts a shorter attr and treats the missing tail as zero.

use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};

use nix::errno::Errno;

use crate::cgroups::devices::BpfInsn;

const BPF_PROG_LOAD: libc::c_int = 5;
const BPF_PROG_ATTACH: libc::c_int = 8;
const BPF_PROG_TYPE_CGROUP_DEVICE: u32 = 15;
const BPF_CGROUP_DEVICE: u32 = 6;

/// The `BPF_PROG_LOAD` member of `union bpf_attr`, up to `expected_attach_type`.
#[repr(C)]
#[derive(Default)]
struct ProgLoadAttr {
    prog_type: u32,
    insn_cnt: u32,
    insns: u64,
    license: u64,
    log_level: u32,
    log_size: u32,
    log_buf: u64,
    kern_version: u32,
    prog_flags: u32,
    prog_name: [u8; 16],
    prog_ifindex: u32,
    expected_attach_type: u32,
}

/// The `BPF_PROG_ATTACH` member of `union bpf_attr`.
#[repr(C)]
#[derive(Default)]
struct ProgAttachAttr {
    target_fd: u32,
    attach_bpf_fd: u32,
    attach_type: u32,
    attach_flags: u32,
    replace_bpf_fd: u32,
}

/// Loads a cgroup device program. On failure returns the errno and the verifier's log.
pub(crate) fn load_device_program(insns: &[BpfInsn]) -> Result<OwnedFd, (Errno, String)> {
    // First without a log: with one, a log buffer that turns out too small fails the load
    // (ENOSPC) even for a valid program. Only a refused program is loaded again for its log.
    match prog_load(insns, None) {
        Ok(fd) => Ok(fd),
        Err(errno) => {
            let mut log = vec![0u8; 256 * 1024];
            let _ = prog_load(insns, Some(&mut log));
            let end = log.iter().position(|&b| b == 0).unwrap_or(log.len());
            Err((
                errno,
                String::from_utf8_lossy(&log[..end]).trim().to_owned(),
            ))
        }
    }
}

fn prog_load(insns: &[BpfInsn], log: Option<&mut [u8]>) -> Result<OwnedFd, Errno> {
    let license = c"Apache-2.0";
    let mut name = [0u8; 16];
    name[..12].copy_from_slice(b"berth_device");
    let (log_level, log_size, log_buf) = match log {
        Some(buf) => (1, buf.len() as u32, buf.as_mut_ptr() as u64),
        None => (0, 0, 0),
    };
    let attr = ProgLoadAttr {
        prog_type: BPF_PROG_TYPE_CGROUP_DEVICE,
        insn_cnt: insns.len() as u32,
        insns: insns.as_ptr() as u64,
        license: license.as_ptr() as u64,
        log_level,
        log_size,
        log_buf,
        prog_name: name,
        expected_attach_type: BPF_CGROUP_DEVICE,
        ..Default::default()
    };
    // SAFETY: `attr` is a fully initialised `bpf_attr` prefix whose pointers (`insns`,
    // `license`, `log_buf`) point into `insns`, the static `license` and the caller's `log`
    // buffer, all of which outlive the call; the kernel reads at most `insn_cnt` instructions
    // and writes at most `log_size` bytes of log. The size passed is exactly the struct's size.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            BPF_PROG_LOAD,
            &attr as *const ProgLoadAttr,
            std::mem::size_of::<ProgLoadAttr>(),
        )
    };
    let fd = Errno::result(fd)?;
    // SAFETY: BPF_PROG_LOAD returned a new file descriptor that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

/// Attaches `prog` to the cgroup open at `cgroup` as its device filter. Flags 0 (no
/// `BPF_F_ALLOW_MULTI`, no `BPF_F_ALLOW_OVERRIDE`): a second attach replaces the program (used by
/// `update`), and descendants cannot install a more permissive one.
pub(crate) fn attach_device_program(
    cgroup: BorrowedFd<'_>,
    prog: BorrowedFd<'_>,
) -> Result<(), Errno> {
    let attr = ProgAttachAttr {
        target_fd: cgroup.as_raw_fd() as u32,
        attach_bpf_fd: prog.as_raw_fd() as u32,
        attach_type: BPF_CGROUP_DEVICE,
        attach_flags: 0,
        replace_bpf_fd: 0,
    };
    // SAFETY: `attr` is an initialised `bpf_attr` prefix that lives across the call; the
    // descriptors are borrowed, so they stay open for the call's duration, and the kernel takes
    // its own reference on the program.
    let res = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            BPF_PROG_ATTACH,
            &attr as *const ProgAttachAttr,
            std::mem::size_of::<ProgAttachAttr>(),
        )
    };
    Errno::result(res).map(drop)
}

/// `eventfd(0, EFD_CLOEXEC)`: the counter the v1 memory controller signals on OOM once it is
/// registered through `cgroup.event_control` (cgroup-v1/memory.rst, "OOM Control").
pub(crate) fn eventfd() -> Result<OwnedFd, Errno> {
    // SAFETY: eventfd(2) takes no pointers; on success it returns a new descriptor that
    // nothing else owns, which is wrapped at once.
    let fd = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC) };
    let fd = Errno::result(fd)?;
    // SAFETY: `fd` was just returned by eventfd(2) and is owned by no one else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

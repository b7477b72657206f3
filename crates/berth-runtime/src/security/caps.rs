//! Capability names, numbers and the five sets of capabilities(7).
//!
//! The spec lists capabilities by name; the kernel takes bit masks. Names are resolved in the
//! parent so an unknown one fails before anything is created. Capabilities the running kernel
//! does not know (numbers above `/proc/sys/kernel/cap_last_cap`) are left out, as runc does: a
//! config written for a newer kernel still runs, with the capabilities that exist.

use oci_spec::runtime::{Capabilities, LinuxCapabilities};
use serde::{Deserialize, Serialize};

/// Every capability of `<linux/capability.h>` by number (index = capability number).
pub const KNOWN_CAPABILITIES: [&str; 41] = [
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_DAC_READ_SEARCH",
    "CAP_FOWNER",
    "CAP_FSETID",
    "CAP_KILL",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETPCAP",
    "CAP_LINUX_IMMUTABLE",
    "CAP_NET_BIND_SERVICE",
    "CAP_NET_BROADCAST",
    "CAP_NET_ADMIN",
    "CAP_NET_RAW",
    "CAP_IPC_LOCK",
    "CAP_IPC_OWNER",
    "CAP_SYS_MODULE",
    "CAP_SYS_RAWIO",
    "CAP_SYS_CHROOT",
    "CAP_SYS_PTRACE",
    "CAP_SYS_PACCT",
    "CAP_SYS_ADMIN",
    "CAP_SYS_BOOT",
    "CAP_SYS_NICE",
    "CAP_SYS_RESOURCE",
    "CAP_SYS_TIME",
    "CAP_SYS_TTY_CONFIG",
    "CAP_MKNOD",
    "CAP_LEASE",
    "CAP_AUDIT_WRITE",
    "CAP_AUDIT_CONTROL",
    "CAP_SETFCAP",
    "CAP_MAC_OVERRIDE",
    "CAP_MAC_ADMIN",
    "CAP_SYSLOG",
    "CAP_WAKE_ALARM",
    "CAP_BLOCK_SUSPEND",
    "CAP_AUDIT_READ",
    "CAP_PERFMON",
    "CAP_BPF",
    "CAP_CHECKPOINT_RESTORE",
];

/// The capabilities Docker (and `berth-runc spec`'s engine) grants a container by default
/// (moby `oci/caps/defaults.go`).
pub const DOCKER_DEFAULT_CAPABILITIES: [&str; 14] = [
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_FSETID",
    "CAP_FOWNER",
    "CAP_MKNOD",
    "CAP_NET_RAW",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETFCAP",
    "CAP_SETPCAP",
    "CAP_NET_BIND_SERVICE",
    "CAP_SYS_CHROOT",
    "CAP_KILL",
    "CAP_AUDIT_WRITE",
];

/// A capability name is not one of [`KNOWN_CAPABILITIES`].
#[derive(Debug, thiserror::Error)]
#[error("unknown capability {name:?}")]
pub struct UnknownCapability {
    pub name: String,
}

/// Resolves a name (`CAP_NET_RAW`, `net_raw` or `NET_RAW`, as runc and Kubernetes accept) to
/// its number.
pub fn cap_number(name: &str) -> Result<u32, UnknownCapability> {
    let upper = name.trim().to_ascii_uppercase();
    let full = if upper.starts_with("CAP_") {
        upper
    } else {
        format!("CAP_{upper}")
    };
    KNOWN_CAPABILITIES
        .iter()
        .position(|c| *c == full)
        .map(|n| n as u32)
        .ok_or_else(|| UnknownCapability {
            name: name.to_owned(),
        })
}

/// The name of capability number `n`, if Berth knows it.
pub fn cap_name(n: u32) -> Option<&'static str> {
    KNOWN_CAPABILITIES.get(n as usize).copied()
}

/// The five capability sets as bit masks (bit N = capability number N).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CapSets {
    pub bounding: u64,
    pub effective: u64,
    pub permitted: u64,
    pub inheritable: u64,
    pub ambient: u64,
}

/// Mask of every capability number up to and including `last_cap`.
pub fn all_caps_mask(last_cap: u32) -> u64 {
    if last_cap >= 63 {
        u64::MAX
    } else {
        (1u64 << (last_cap + 1)) - 1
    }
}

/// Turns names into a mask, refusing unknown names and skipping numbers above `last_cap`.
pub fn mask_from_names<S: AsRef<str>>(
    names: &[S],
    last_cap: u32,
) -> Result<u64, UnknownCapability> {
    let mut mask = 0u64;
    for name in names {
        let n = cap_number(name.as_ref())?;
        mask |= 1u64 << n;
    }
    Ok(mask & all_caps_mask(last_cap))
}

fn mask_from_set(set: &Option<Capabilities>, last_cap: u32) -> Result<u64, UnknownCapability> {
    let Some(set) = set else { return Ok(0) };
    // oci-spec's `Capability` displays as `CHOWN`, `NET_RAW`, ...
    let names: Vec<String> = set.iter().map(|c| c.to_string()).collect();
    mask_from_names(&names, last_cap)
}

/// Resolves the spec's `process.capabilities` into masks for a kernel whose highest capability is
/// `last_cap`. A set the spec leaves out is empty, as in runc.
pub fn resolve(caps: &LinuxCapabilities, last_cap: u32) -> Result<CapSets, UnknownCapability> {
    Ok(CapSets {
        bounding: mask_from_set(caps.bounding(), last_cap)?,
        effective: mask_from_set(caps.effective(), last_cap)?,
        permitted: mask_from_set(caps.permitted(), last_cap)?,
        inheritable: mask_from_set(caps.inheritable(), last_cap)?,
        ambient: mask_from_set(caps.ambient(), last_cap)?,
    })
}

/// Names of the capabilities set in `mask`, in number order.
pub fn names_of(mask: u64) -> Vec<&'static str> {
    (0..64u32)
        .filter(|n| mask & (1u64 << n) != 0)
        .filter_map(cap_name)
        .collect()
}

/// The highest capability number of the running kernel (`/proc/sys/kernel/cap_last_cap`).
pub fn kernel_last_cap() -> Result<u32, std::io::Error> {
    let s = std::fs::read_to_string("/proc/sys/kernel/cap_last_cap")?;
    s.trim()
        .parse()
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))
}

#[cfg(test)]
mod tests {
    use super::*;
    use oci_spec::runtime::{Capability, LinuxCapabilitiesBuilder};

    #[test]
    fn names_resolve_with_or_without_prefix() {
        assert_eq!(cap_number("CAP_CHOWN").unwrap(), 0);
        assert_eq!(cap_number("net_raw").unwrap(), 13);
        assert_eq!(cap_number("SYS_ADMIN").unwrap(), 21);
        assert_eq!(cap_number("CAP_CHECKPOINT_RESTORE").unwrap(), 40);
    }

    #[test]
    fn unknown_name_is_refused_by_name() {
        let err = cap_number("CAP_MAKE_COFFEE").unwrap_err();
        assert_eq!(err.to_string(), "unknown capability \"CAP_MAKE_COFFEE\"");
        assert!(mask_from_names(&["CAP_CHOWN", "CAP_BOGUS"], 40).is_err());
    }

    #[test]
    fn capabilities_newer_than_the_kernel_are_skipped() {
        // A kernel whose last capability is CAP_AUDIT_READ (37) knows neither PERFMON nor BPF.
        let mask = mask_from_names(&["CAP_CHOWN", "CAP_PERFMON", "CAP_BPF"], 37).unwrap();
        assert_eq!(mask, 1);
        assert_eq!(all_caps_mask(40), 0x1ff_ffff_ffff);
        assert_eq!(all_caps_mask(63), u64::MAX);
    }

    #[test]
    fn docker_defaults_mask() {
        let mask = mask_from_names(&DOCKER_DEFAULT_CAPABILITIES, 40).unwrap();
        // The value `docker run` shows as CapBnd/CapEff.
        assert_eq!(mask, 0xa804_25fb);
        assert_eq!(names_of(mask).len(), DOCKER_DEFAULT_CAPABILITIES.len());
    }

    #[test]
    fn spec_sets_resolve_independently() {
        let caps = LinuxCapabilitiesBuilder::default()
            .bounding(
                [Capability::NetRaw, Capability::Chown]
                    .into_iter()
                    .collect::<Capabilities>(),
            )
            .effective([Capability::NetRaw].into_iter().collect::<Capabilities>())
            .permitted([Capability::NetRaw].into_iter().collect::<Capabilities>())
            .inheritable(Capabilities::new())
            .ambient(Capabilities::new())
            .build()
            .unwrap();
        let sets = resolve(&caps, 40).unwrap();
        assert_eq!(sets.bounding, (1 << 13) | 1);
        assert_eq!(sets.effective, 1 << 13);
        assert_eq!(sets.permitted, 1 << 13);
        assert_eq!(sets.inheritable, 0);
        assert_eq!(sets.ambient, 0);
    }

    #[test]
    fn every_oci_capability_name_is_known() {
        for n in 0..=40u32 {
            let name = cap_name(n).unwrap();
            let cap: Capability = serde_json::from_str(&format!("\"{name}\"")).unwrap();
            assert_eq!(cap_number(&cap.to_string()).unwrap(), n, "{name}");
        }
    }
}

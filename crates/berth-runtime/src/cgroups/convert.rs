//! The documented conversions between the OCI (cgroup v1 shaped) resource values and cgroup v2
//! files. They are the ones runc and crun publish, so a container gets the same share of the
//! machine whichever runtime starts it:
//! <https://github.com/containers/crun/blob/main/crun.1.md#cgroup-v2> and runc's
//! `libcontainer/cgroups/utils.go`.

/// `cpu.shares` (2..=262144, default 1024) to `cpu.weight` (1..=10000, default 100):
/// `weight = 1 + ((shares - 2) * 9999) / 262142`. 0 means "not set".
pub fn shares_to_weight(shares: u64) -> u64 {
    if shares == 0 {
        return 0;
    }
    let shares = shares.clamp(2, 262_144);
    1 + ((shares - 2) * 9999) / 262_142
}

/// `blkio.weight` (10..=1000) to `io.weight` (1..=10000): `1 + (weight - 10) * 9999 / 990`.
/// 0 means "not set".
pub fn blkio_weight_to_io_weight(weight: u64) -> u64 {
    if weight == 0 {
        return 0;
    }
    let weight = weight.clamp(10, 1000);
    1 + (weight - 10) * 9999 / 990
}

/// Why a swap value has no cgroup v2 equivalent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SwapError {
    #[error("a swap limit needs a memory limit")]
    NoMemoryLimit,
    #[error("memory+swap ({swap}) is below the memory limit ({memory})")]
    BelowMemory { swap: i64, memory: i64 },
}

/// OCI `memory.swap` is memory+swap (the v1 `memory.memsw.limit_in_bytes`); cgroup v2's
/// `memory.swap.max` is swap alone. Returns the v2 value (-1 = "max", `None` = leave unset), as
/// runc's `ConvertMemorySwapToCgroupV2Value`, except that memory+swap equal to memory gives
/// `Some(0)` ("no swap", as crun writes it) where runc writes nothing.
pub fn memsw_to_swap_max(memsw: i64, memory: i64) -> Result<Option<i64>, SwapError> {
    // memory unlimited and swap not given: "both unlimited", for v1 compatibility.
    if memory == -1 && memsw == 0 {
        return Ok(Some(-1));
    }
    if memsw == 0 {
        return Ok(None);
    }
    if memsw < 0 {
        return Ok(Some(-1));
    }
    if memory <= 0 {
        return Err(SwapError::NoMemoryLimit);
    }
    if memsw < memory {
        return Err(SwapError::BelowMemory {
            swap: memsw,
            memory,
        });
    }
    Ok(Some(memsw - memory))
}

/// A byte limit as cgroup v2 writes it: negative means "max".
pub fn v2_limit(value: i64) -> String {
    if value < 0 {
        "max".to_owned()
    } else {
        value.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shares_to_weight_matches_runc_and_crun() {
        assert_eq!(shares_to_weight(0), 0);
        assert_eq!(shares_to_weight(2), 1);
        assert_eq!(shares_to_weight(1024), 39);
        assert_eq!(shares_to_weight(262_144), 10_000);
        // Out of range values are clamped as the kernel clamps cpu.shares.
        assert_eq!(shares_to_weight(1), 1);
        assert_eq!(shares_to_weight(1 << 30), 10_000);
    }

    #[test]
    fn blkio_weight_maps_onto_io_weight_range() {
        assert_eq!(blkio_weight_to_io_weight(0), 0);
        assert_eq!(blkio_weight_to_io_weight(10), 1);
        assert_eq!(blkio_weight_to_io_weight(500), 4950);
        assert_eq!(blkio_weight_to_io_weight(1000), 10_000);
    }

    #[test]
    fn memsw_is_converted_to_swap_alone() {
        assert_eq!(memsw_to_swap_max(0, -1), Ok(Some(-1)));
        assert_eq!(memsw_to_swap_max(-1, 100), Ok(Some(-1)));
        assert_eq!(memsw_to_swap_max(0, 100), Ok(None));
        assert_eq!(memsw_to_swap_max(300, 100), Ok(Some(200)));
        assert_eq!(memsw_to_swap_max(100, 100), Ok(Some(0)));
        assert_eq!(memsw_to_swap_max(300, 0), Err(SwapError::NoMemoryLimit));
        assert_eq!(
            memsw_to_swap_max(50, 100),
            Err(SwapError::BelowMemory {
                swap: 50,
                memory: 100
            })
        );
    }

    #[test]
    fn negative_limits_are_max_on_v2() {
        assert_eq!(v2_limit(-1), "max");
        assert_eq!(v2_limit(4096), "4096");
    }
}

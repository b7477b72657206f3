//! Plan, then apply: `linux.resources` becomes an ordered list of file writes (and, on cgroup
//! v2, a device rule list for the eBPF filter) before anything touches the kernel. The plan is
//! data, so the order and every value are unit-tested without root.
//!
//! Each resource group goes to the hierarchy that carries its controller: a v1 hierarchy when
//! one has it, else the unified one. On the hybrid layout this sends hugetlb to cgroup2 when no
//! v1 hugetlb hierarchy exists.

use oci_spec::runtime::{LinuxBlockIo, LinuxCpu, LinuxMemory, LinuxResources};

use super::convert::{blkio_weight_to_io_weight, memsw_to_swap_max, shares_to_weight, v2_limit};
use super::devices::{self, DeviceRule};
use super::layout::Version;
use super::{CgroupError, Warning};

/// One write to a cgroup file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Write {
    pub version: Version,
    pub controller: &'static str,
    pub file: String,
    pub value: String,
    /// The OCI field this write comes from, for error messages.
    pub setting: &'static str,
}

/// Reads the current state of the cgroup the plan is for (some writes depend on it: the v1
/// memory/swap order, bfq vs. plain weight files, `unified` key validation).
pub(crate) trait Probe {
    fn exists(&self, version: Version, controller: &str, file: &str) -> bool;
    fn read(&self, version: Version, controller: &str, file: &str) -> Option<String>;
}

/// Which controllers the cgroup's hierarchies offer.
#[derive(Debug, Clone, Default)]
pub(crate) struct Targets {
    /// Controllers that have a v1 hierarchy.
    pub v1: Vec<String>,
    /// Controllers available in the unified hierarchy, if this cgroup has a v2 directory.
    pub v2: Option<Vec<String>>,
}

impl Targets {
    fn version_for(&self, controller: &str) -> Option<Version> {
        if self.v1.iter().any(|c| c == controller) {
            Some(Version::V1)
        } else if self
            .v2
            .as_ref()
            .is_some_and(|l| l.iter().any(|c| c == controller))
        {
            Some(Version::V2)
        } else {
            None
        }
    }

    fn is_pure_v2(&self) -> bool {
        self.v1.is_empty() && self.v2.is_some()
    }
}

/// The result of planning.
#[derive(Debug, Default)]
pub(crate) struct Plan {
    pub writes: Vec<Write>,
    /// Device rules for the cgroup v2 eBPF filter (v1 device rules are plain writes).
    pub bpf_devices: Option<Vec<DeviceRule>>,
    pub warnings: Vec<Warning>,
}

struct Planner<'a> {
    targets: &'a Targets,
    probe: &'a dyn Probe,
    plan: Plan,
}

/// Plans every setting present in `r`. Settings that are absent (or 0 where runc treats 0 as
/// "unset") are left alone, which is what makes the same function serve `update`.
pub(crate) fn plan(
    r: &LinuxResources,
    targets: &Targets,
    probe: &dyn Probe,
) -> Result<Plan, CgroupError> {
    let mut p = Planner {
        targets,
        probe,
        plan: Plan::default(),
    };
    if let Some(m) = r.memory() {
        p.memory(m)?;
    }
    if let Some(c) = r.cpu() {
        p.cpu(c)?;
        p.cpuset(c)?;
    }
    if let Some(pids) = r.pids() {
        let limit = pids.limit();
        if limit != 0 {
            let v = p.need("pids", "pids.limit")?;
            let value = if limit < 0 {
                "max".into()
            } else {
                limit.to_string()
            };
            p.push(v, "pids", "pids.max", value, "pids.limit");
        }
    }
    if let Some(b) = r.block_io() {
        p.block_io(b)?;
    }
    if let Some(limits) = r.hugepage_limits() {
        for h in limits {
            let size = h.page_size();
            if !valid_page_size(size) {
                return Err(CgroupError::InvalidValue {
                    setting: "hugepageLimits.pageSize",
                    value: size.clone(),
                    reason: "expected a size such as 2MB or 1GB",
                });
            }
            let v = p.need("hugetlb", "hugepageLimits")?;
            let (file, value) = match v {
                Version::V1 => (
                    format!("hugetlb.{size}.limit_in_bytes"),
                    h.limit().to_string(),
                ),
                Version::V2 => (format!("hugetlb.{size}.max"), v2_limit(h.limit())),
            };
            p.push(v, "hugetlb", file, value, "hugepageLimits");
        }
    }
    if let Some(n) = r.network() {
        p.network(n)?;
    }
    if let Some(rdma) = r.rdma() {
        let mut devices: Vec<_> = rdma.iter().collect();
        devices.sort_by(|a, b| a.0.cmp(b.0));
        for (dev, limit) in devices {
            let v = p.need("rdma", "rdma")?;
            let num = |n: Option<u32>| n.map_or("max".to_owned(), |n| n.to_string());
            let value = format!(
                "{dev} hca_handle={} hca_object={}",
                num(limit.hca_handles()),
                num(limit.hca_objects())
            );
            p.push(v, "rdma", "rdma.max", value, "rdma");
        }
    }
    if let Some(list) = r.devices() {
        p.devices(list)?;
    }
    if let Some(unified) = r.unified() {
        p.unified(unified)?;
    }
    Ok(p.plan)
}

impl Planner<'_> {
    fn push(
        &mut self,
        version: Version,
        controller: &'static str,
        file: impl Into<String>,
        value: impl Into<String>,
        setting: &'static str,
    ) {
        self.plan.writes.push(Write {
            version,
            controller,
            file: file.into(),
            value: value.into(),
            setting,
        });
    }

    fn warn(&mut self, setting: &str, reason: &str) {
        self.plan.warnings.push(Warning {
            setting: setting.to_owned(),
            reason: reason.to_owned(),
        });
    }

    /// The hierarchy version that carries `controller`, or the error naming the setting that
    /// needed it.
    fn need(
        &self,
        controller: &'static str,
        setting: &'static str,
    ) -> Result<Version, CgroupError> {
        self.targets
            .version_for(controller)
            .ok_or(CgroupError::ControllerUnavailable {
                controller,
                setting,
            })
    }

    fn memory(&mut self, m: &LinuxMemory) -> Result<(), CgroupError> {
        let limit = m.limit().unwrap_or(0);
        let swap = m.swap().unwrap_or(0);
        let reservation = m.reservation().unwrap_or(0);
        let any = limit != 0
            || swap != 0
            || reservation != 0
            || m.swappiness().is_some()
            || m.disable_oom_killer().is_some()
            || m.kernel_tcp().is_some_and(|v| v != 0)
            || m.use_hierarchy().is_some();
        if m.kernel().is_some_and(|v| v != 0) {
            // Kernel memory limits were deprecated in Linux 5.4 and removed in 6.1; runc 1.2
            // and crun ignore them too.
            self.warn(
                "memory.kernel",
                "kernel memory limits are not supported by current kernels; ignored",
            );
        }
        if !any {
            return Ok(());
        }
        let v = self.need("memory", "memory")?;
        if let Some(sw) = m.swappiness() {
            if sw > 100 {
                return Err(CgroupError::InvalidValue {
                    setting: "memory.swappiness",
                    value: sw.to_string(),
                    reason: "must be between 0 and 100",
                });
            }
        }
        if m.check_before_update() == Some(true) && limit > 0 {
            let usage_file = match v {
                Version::V1 => "memory.usage_in_bytes",
                Version::V2 => "memory.current",
            };
            let usage = self
                .probe
                .read(v, "memory", usage_file)
                .and_then(|s| s.trim().parse::<u64>().ok());
            if let Some(usage) = usage {
                if (limit as u64) < usage {
                    return Err(CgroupError::BelowUsage {
                        setting: "memory.limit",
                        value: limit,
                        usage,
                    });
                }
            }
        }
        match v {
            Version::V1 => self.memory_v1(m, limit, swap, reservation),
            Version::V2 => self.memory_v2(m, limit, swap, reservation)?,
        }
        Ok(())
    }

    fn memory_v1(&mut self, m: &LinuxMemory, limit: i64, mut swap: i64, reservation: i64) {
        const LIMIT: &str = "memory.limit_in_bytes";
        const MEMSW: &str = "memory.memsw.limit_in_bytes";
        let v = Version::V1;
        let has_memsw = self.probe.exists(v, "memory", MEMSW);
        // memory unlimited without a swap value means "both unlimited" (runc's behaviour),
        // when the kernel accounts swap at all.
        if limit == -1 && swap == 0 && has_memsw {
            swap = -1;
        }
        // The kernel keeps memory.limit <= memory.memsw.limit at every step (EINVAL otherwise),
        // so when the new memsw is above the current limit, raise memsw first; otherwise lower
        // the memory limit first. This is runc's `setMemoryAndSwap` order.
        let swap_first = limit != 0 && swap != 0 && {
            let current = self
                .probe
                .read(v, "memory", LIMIT)
                .and_then(|s| s.trim().parse::<u64>().ok())
                .unwrap_or(u64::MAX);
            swap == -1 || current < swap as u64
        };
        if swap_first {
            self.push(v, "memory", MEMSW, swap.to_string(), "memory.swap");
            self.push(v, "memory", LIMIT, limit.to_string(), "memory.limit");
        } else {
            if limit != 0 {
                self.push(v, "memory", LIMIT, limit.to_string(), "memory.limit");
            }
            if swap != 0 {
                self.push(v, "memory", MEMSW, swap.to_string(), "memory.swap");
            }
        }
        if reservation != 0 {
            let value = reservation.to_string();
            self.push(
                v,
                "memory",
                "memory.soft_limit_in_bytes",
                value,
                "memory.reservation",
            );
        }
        if let Some(tcp) = m.kernel_tcp().filter(|&t| t != 0) {
            let value = tcp.to_string();
            self.push(
                v,
                "memory",
                "memory.kmem.tcp.limit_in_bytes",
                value,
                "memory.kernelTCP",
            );
        }
        if let Some(sw) = m.swappiness() {
            self.push(
                v,
                "memory",
                "memory.swappiness",
                sw.to_string(),
                "memory.swappiness",
            );
        }
        if let Some(disable) = m.disable_oom_killer() {
            let value = if disable { "1" } else { "0" };
            self.push(
                v,
                "memory",
                "memory.oom_control",
                value,
                "memory.disableOOMKiller",
            );
        }
        if let Some(h) = m.use_hierarchy() {
            let value = if h { "1" } else { "0" };
            self.push(
                v,
                "memory",
                "memory.use_hierarchy",
                value,
                "memory.useHierarchy",
            );
        }
    }

    fn memory_v2(
        &mut self,
        m: &LinuxMemory,
        limit: i64,
        swap: i64,
        reservation: i64,
    ) -> Result<(), CgroupError> {
        let v = Version::V2;
        // On `update` the swap value may come without a memory limit: convert it against the
        // limit the cgroup has now.
        let effective_limit = if limit != 0 {
            limit
        } else if swap > 0 {
            match self
                .probe
                .read(v, "memory", "memory.max")
                .as_deref()
                .map(str::trim)
            {
                Some("max") => -1,
                Some(s) => s.parse().unwrap_or(0),
                None => 0,
            }
        } else {
            0
        };
        let swap_max =
            memsw_to_swap_max(swap, effective_limit).map_err(|source| CgroupError::Swap {
                swap,
                memory: effective_limit,
                source,
            })?;
        if let Some(s) = swap_max {
            // The implicit "both unlimited" case is skipped when the kernel has no swap
            // accounting (memory.swap.max absent); an explicit value is written and fails
            // loudly there.
            let implicit = swap == 0;
            if !implicit || self.probe.exists(v, "memory", "memory.swap.max") {
                self.push(v, "memory", "memory.swap.max", v2_limit(s), "memory.swap");
            }
        }
        if limit != 0 {
            self.push(v, "memory", "memory.max", v2_limit(limit), "memory.limit");
        }
        if reservation != 0 {
            self.push(
                v,
                "memory",
                "memory.low",
                v2_limit(reservation),
                "memory.reservation",
            );
        }
        if m.kernel_tcp().is_some_and(|t| t != 0) {
            self.warn("memory.kernelTCP", "no cgroup v2 equivalent; ignored");
        }
        if m.swappiness().is_some() {
            self.warn("memory.swappiness", "no cgroup v2 equivalent; ignored");
        }
        if m.disable_oom_killer() == Some(true) {
            self.warn(
                "memory.disableOOMKiller",
                "cgroup v2 cannot disable the OOM killer; ignored",
            );
        }
        if m.use_hierarchy() == Some(false) {
            self.warn(
                "memory.useHierarchy",
                "cgroup v2 accounting is always hierarchical; ignored",
            );
        }
        Ok(())
    }

    fn cpu(&mut self, c: &LinuxCpu) -> Result<(), CgroupError> {
        let shares = c.shares().unwrap_or(0);
        let quota = c.quota().unwrap_or(0);
        let period = c.period().unwrap_or(0);
        let rt_runtime = c.realtime_runtime().unwrap_or(0);
        let rt_period = c.realtime_period().unwrap_or(0);
        let any = shares != 0
            || quota != 0
            || period != 0
            || c.burst().is_some()
            || c.idle().is_some()
            || rt_runtime != 0
            || rt_period != 0;
        if !any {
            return Ok(());
        }
        let v = self.need("cpu", "cpu")?;
        match v {
            Version::V1 => {
                if shares != 0 {
                    self.push(v, "cpu", "cpu.shares", shares.to_string(), "cpu.shares");
                }
                // Period before quota, as runc: the quota is validated against the period.
                if period != 0 {
                    self.push(
                        v,
                        "cpu",
                        "cpu.cfs_period_us",
                        period.to_string(),
                        "cpu.period",
                    );
                }
                if quota != 0 {
                    self.push(v, "cpu", "cpu.cfs_quota_us", quota.to_string(), "cpu.quota");
                }
                // The burst must not exceed the quota, so it follows it.
                if let Some(b) = c.burst() {
                    self.push(v, "cpu", "cpu.cfs_burst_us", b.to_string(), "cpu.burst");
                }
                if rt_period != 0 {
                    let value = rt_period.to_string();
                    self.push(v, "cpu", "cpu.rt_period_us", value, "cpu.realtimePeriod");
                }
                if rt_runtime != 0 {
                    let value = rt_runtime.to_string();
                    self.push(v, "cpu", "cpu.rt_runtime_us", value, "cpu.realtimeRuntime");
                }
                if let Some(i) = c.idle() {
                    self.push(v, "cpu", "cpu.idle", i.to_string(), "cpu.idle");
                }
            }
            Version::V2 => {
                if rt_runtime != 0 || rt_period != 0 {
                    // cgroup v2 has no realtime bandwidth control (cgroup-v2.rst, "CPU"):
                    // silently dropping it would run the container without the limit.
                    return Err(CgroupError::NotOnV2 {
                        setting: "cpu.realtimeRuntime/realtimePeriod",
                    });
                }
                if shares != 0 {
                    let w = shares_to_weight(shares).to_string();
                    self.push(v, "cpu", "cpu.weight", w, "cpu.shares");
                }
                if quota != 0 || period != 0 {
                    // "$MAX $PERIOD"; without a period the kernel keeps the current one.
                    let mut value = if quota > 0 {
                        quota.to_string()
                    } else {
                        "max".into()
                    };
                    if period != 0 {
                        value.push_str(&format!(" {period}"));
                    }
                    self.push(v, "cpu", "cpu.max", value, "cpu.quota/period");
                }
                if let Some(b) = c.burst() {
                    self.push(v, "cpu", "cpu.max.burst", b.to_string(), "cpu.burst");
                }
                if let Some(i) = c.idle() {
                    self.push(v, "cpu", "cpu.idle", i.to_string(), "cpu.idle");
                }
            }
        }
        Ok(())
    }

    fn cpuset(&mut self, c: &LinuxCpu) -> Result<(), CgroupError> {
        let cpus = c.cpus().as_deref().filter(|s| !s.is_empty());
        let mems = c.mems().as_deref().filter(|s| !s.is_empty());
        if let Some(cpus) = cpus {
            let v = self.need("cpuset", "cpu.cpus")?;
            self.push(v, "cpuset", "cpuset.cpus", cpus, "cpu.cpus");
        }
        if let Some(mems) = mems {
            let v = self.need("cpuset", "cpu.mems")?;
            self.push(v, "cpuset", "cpuset.mems", mems, "cpu.mems");
        }
        Ok(())
    }

    fn block_io(&mut self, b: &LinuxBlockIo) -> Result<(), CgroupError> {
        let weight = b.weight().unwrap_or(0);
        let throttles = [
            (
                b.throttle_read_bps_device(),
                "read_bps",
                "rbps",
                "blockIO.throttleReadBpsDevice",
            ),
            (
                b.throttle_write_bps_device(),
                "write_bps",
                "wbps",
                "blockIO.throttleWriteBpsDevice",
            ),
            (
                b.throttle_read_iops_device(),
                "read_iops",
                "riops",
                "blockIO.throttleReadIOPSDevice",
            ),
            (
                b.throttle_write_iops_device(),
                "write_iops",
                "wiops",
                "blockIO.throttleWriteIOPSDevice",
            ),
        ];
        let any = weight != 0
            || b.leaf_weight().is_some_and(|w| w != 0)
            || b.weight_device().as_ref().is_some_and(|d| !d.is_empty())
            || throttles
                .iter()
                .any(|t| t.0.as_ref().is_some_and(|d| !d.is_empty()));
        if !any {
            return Ok(());
        }
        match self.targets.version_for("blkio") {
            Some(v @ Version::V1) => {
                // Kernels with the BFQ scheduler and no CFQ expose only the bfq files.
                let bfq = !self.probe.exists(v, "blkio", "blkio.weight")
                    && self.probe.exists(v, "blkio", "blkio.bfq.weight");
                let (wfile, wdfile) = if bfq {
                    ("blkio.bfq.weight", "blkio.bfq.weight_device")
                } else {
                    ("blkio.weight", "blkio.weight_device")
                };
                if weight != 0 {
                    self.push(v, "blkio", wfile, weight.to_string(), "blockIO.weight");
                }
                if let Some(lw) = b.leaf_weight().filter(|&w| w != 0) {
                    let value = lw.to_string();
                    self.push(v, "blkio", "blkio.leaf_weight", value, "blockIO.leafWeight");
                }
                for d in b.weight_device().iter().flatten() {
                    let dev = format!("{}:{}", d.major(), d.minor());
                    if let Some(w) = d.weight() {
                        let value = format!("{dev} {w}");
                        self.push(v, "blkio", wdfile, value, "blockIO.weightDevice");
                    }
                    if let Some(w) = d.leaf_weight() {
                        let value = format!("{dev} {w}");
                        let file = "blkio.leaf_weight_device";
                        self.push(v, "blkio", file, value, "blockIO.weightDevice.leafWeight");
                    }
                }
                for (list, name, _, setting) in &throttles {
                    for d in list.iter().flatten() {
                        let file = format!("blkio.throttle.{name}_device");
                        let value = format!("{}:{} {}", d.major(), d.minor(), d.rate());
                        self.push(v, "blkio", file, value, setting);
                    }
                }
            }
            _ => {
                let v = self.need("io", "blockIO")?;
                let bfq = self.probe.exists(v, "io", "io.bfq.weight");
                if weight != 0 {
                    // io.bfq.weight takes the v1 range (1..1000) as is; io.weight needs the
                    // conversion.
                    if bfq {
                        self.push(
                            v,
                            "io",
                            "io.bfq.weight",
                            weight.to_string(),
                            "blockIO.weight",
                        );
                    } else {
                        let w = blkio_weight_to_io_weight(u64::from(weight));
                        self.push(
                            v,
                            "io",
                            "io.weight",
                            format!("default {w}"),
                            "blockIO.weight",
                        );
                    }
                }
                if b.leaf_weight().is_some_and(|w| w != 0) {
                    self.warn("blockIO.leafWeight", "no cgroup v2 equivalent; ignored");
                }
                for d in b.weight_device().iter().flatten() {
                    let dev = format!("{}:{}", d.major(), d.minor());
                    if let Some(w) = d.weight() {
                        let (file, value) = if bfq {
                            ("io.bfq.weight", format!("{dev} {w}"))
                        } else {
                            let w = blkio_weight_to_io_weight(u64::from(w));
                            ("io.weight", format!("{dev} {w}"))
                        };
                        self.push(v, "io", file, value, "blockIO.weightDevice");
                    }
                    if d.leaf_weight().is_some() {
                        self.warn(
                            "blockIO.weightDevice.leafWeight",
                            "no cgroup v2 equivalent; ignored",
                        );
                    }
                }
                for (list, _, key, setting) in &throttles {
                    for d in list.iter().flatten() {
                        // v1 uses 0 to remove a limit; v2 spells it "max".
                        let rate = if d.rate() == 0 {
                            "max".to_owned()
                        } else {
                            d.rate().to_string()
                        };
                        let value = format!("{}:{} {key}={rate}", d.major(), d.minor());
                        self.push(v, "io", "io.max", value, setting);
                    }
                }
            }
        }
        Ok(())
    }

    fn network(&mut self, n: &oci_spec::runtime::LinuxNetwork) -> Result<(), CgroupError> {
        let prios = n.priorities().as_ref().filter(|p| !p.is_empty());
        if n.class_id().is_none() && prios.is_none() {
            return Ok(());
        }
        if self.targets.is_pure_v2() {
            // net_cls and net_prio have no v2 controller; classification moved to eBPF
            // programs and nftables `socket cgroupv2` matches.
            self.warn(
                "network",
                "net_cls/net_prio do not exist on cgroup v2; ignored",
            );
            return Ok(());
        }
        if let Some(id) = n.class_id() {
            if !self.targets.v1.iter().any(|c| c == "net_cls") {
                return Err(CgroupError::ControllerUnavailable {
                    controller: "net_cls",
                    setting: "network.classID",
                });
            }
            self.push(
                Version::V1,
                "net_cls",
                "net_cls.classid",
                id.to_string(),
                "network.classID",
            );
        }
        for p in prios.into_iter().flatten() {
            if !self.targets.v1.iter().any(|c| c == "net_prio") {
                return Err(CgroupError::ControllerUnavailable {
                    controller: "net_prio",
                    setting: "network.priorities",
                });
            }
            let value = format!("{} {}", p.name(), p.priority());
            let file = "net_prio.ifpriomap";
            self.push(Version::V1, "net_prio", file, value, "network.priorities");
        }
        Ok(())
    }

    fn devices(
        &mut self,
        list: &[oci_spec::runtime::LinuxDeviceCgroup],
    ) -> Result<(), CgroupError> {
        let mut rules = Vec::with_capacity(list.len());
        for d in list {
            match DeviceRule::from_oci(d)? {
                Some(rule) => rules.push(rule),
                None => self.warn(
                    "devices",
                    "fifo rules (type p) are not device-cgroup rules; ignored",
                ),
            }
        }
        rules.extend(devices::default_allowed());
        if self.targets.v1.iter().any(|c| c == "devices") {
            for rule in &rules {
                let file = if rule.allow {
                    "devices.allow"
                } else {
                    "devices.deny"
                };
                self.push(Version::V1, "devices", file, rule.to_v1(), "devices");
            }
        } else if self.targets.v2.is_some() {
            // cgroup v2 has no device files: access is decided by a BPF_PROG_TYPE_CGROUP_DEVICE
            // program attached to the cgroup.
            self.plan.bpf_devices = Some(rules);
        } else {
            return Err(CgroupError::ControllerUnavailable {
                controller: "devices",
                setting: "devices",
            });
        }
        Ok(())
    }

    fn unified(
        &mut self,
        map: &std::collections::HashMap<String, String>,
    ) -> Result<(), CgroupError> {
        if map.is_empty() {
            return Ok(());
        }
        let mut keys: Vec<_> = map.iter().collect();
        keys.sort();
        for (key, value) in keys {
            // A key is a file name in the container's cgroup directory, never a path, and never
            // an interface file of the cgroup core (moving processes, killing, delegation).
            let bad_name = key.is_empty()
                || key.contains('/')
                || key.starts_with('.')
                || key.starts_with("cgroup.")
                || !key.contains('.');
            if bad_name {
                return Err(CgroupError::UnifiedKeyRefused { key: key.clone() });
            }
            if self.targets.v2.is_none() {
                return Err(CgroupError::UnifiedOnV1 { key: key.clone() });
            }
            let controller = key.split('.').next().unwrap_or_default();
            if !self.probe.exists(Version::V2, controller, key) {
                return Err(CgroupError::UnifiedKeyUnknown { key: key.clone() });
            }
            let controller = static_controller(controller);
            self.push(
                Version::V2,
                controller,
                key.clone(),
                value.clone(),
                "unified",
            );
        }
        Ok(())
    }
}

/// The controller names this module knows, as `'static` strings for error messages; unknown
/// ones (new kernels) map to "unified".
fn static_controller(name: &str) -> &'static str {
    const KNOWN: &[&str] = &[
        "cpu", "cpuset", "io", "memory", "pids", "hugetlb", "rdma", "misc", "net_cls", "net_prio",
    ];
    KNOWN
        .iter()
        .find(|k| **k == name)
        .copied()
        .unwrap_or("unified")
}

/// `2MB`, `1GB`, `64KB`: the spelling of hugetlb file names.
fn valid_page_size(s: &str) -> bool {
    let digits = s.trim_end_matches(|c: char| c.is_ascii_alphabetic());
    let unit = &s[digits.len()..];
    !digits.is_empty()
        && digits.bytes().all(|b| b.is_ascii_digit())
        && matches!(unit, "KB" | "MB" | "GB" | "TB" | "PB")
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use oci_spec::runtime::{
        LinuxBlockIoBuilder, LinuxCpuBuilder, LinuxDeviceCgroupBuilder, LinuxDeviceType,
        LinuxHugepageLimitBuilder, LinuxMemoryBuilder, LinuxPidsBuilder, LinuxResourcesBuilder,
        LinuxThrottleDeviceBuilder, LinuxWeightDeviceBuilder,
    };

    use super::*;

    /// A probe over a fixed map `(version, file) -> content`.
    #[derive(Default)]
    struct FakeProbe(HashMap<(Version, String), String>);

    impl FakeProbe {
        fn with(mut self, v: Version, file: &str, content: &str) -> Self {
            self.0.insert((v, file.to_owned()), content.to_owned());
            self
        }
    }

    impl Probe for FakeProbe {
        fn exists(&self, v: Version, _: &str, file: &str) -> bool {
            self.0.contains_key(&(v, file.to_owned()))
        }
        fn read(&self, v: Version, _: &str, file: &str) -> Option<String> {
            self.0.get(&(v, file.to_owned())).cloned()
        }
    }

    fn v1_targets() -> Targets {
        Targets {
            v1: [
                "cpu", "cpuacct", "cpuset", "memory", "devices", "freezer", "blkio", "pids",
            ]
            .map(String::from)
            .to_vec(),
            v2: Some(vec![]),
        }
    }

    fn v2_targets() -> Targets {
        Targets {
            v1: vec![],
            v2: Some(
                [
                    "cpuset", "cpu", "io", "memory", "hugetlb", "pids", "rdma", "misc",
                ]
                .map(String::from)
                .to_vec(),
            ),
        }
    }

    fn files(p: &Plan) -> Vec<(String, String)> {
        p.writes
            .iter()
            .map(|w| (w.file.clone(), w.value.clone()))
            .collect()
    }

    fn pair(f: &str, v: &str) -> (String, String) {
        (f.to_owned(), v.to_owned())
    }

    fn memory(limit: i64, swap: i64) -> LinuxResources {
        LinuxResourcesBuilder::default()
            .memory(
                LinuxMemoryBuilder::default()
                    .limit(limit)
                    .swap(swap)
                    .build()
                    .unwrap(),
            )
            .build()
            .unwrap()
    }

    #[test]
    fn v1_raising_memory_writes_memsw_first() {
        let probe = FakeProbe::default()
            .with(Version::V1, "memory.memsw.limit_in_bytes", "1000")
            .with(Version::V1, "memory.limit_in_bytes", "1000");
        let p = plan(&memory(2000, 4000), &v1_targets(), &probe).unwrap();
        assert_eq!(
            files(&p),
            [
                pair("memory.memsw.limit_in_bytes", "4000"),
                pair("memory.limit_in_bytes", "2000")
            ]
        );
    }

    #[test]
    fn v1_lowering_memory_writes_the_limit_first() {
        let probe = FakeProbe::default()
            .with(Version::V1, "memory.memsw.limit_in_bytes", "9000")
            .with(Version::V1, "memory.limit_in_bytes", "8000");
        let p = plan(&memory(1000, 2000), &v1_targets(), &probe).unwrap();
        assert_eq!(
            files(&p),
            [
                pair("memory.limit_in_bytes", "1000"),
                pair("memory.memsw.limit_in_bytes", "2000")
            ]
        );
    }

    #[test]
    fn v1_unlimited_memory_also_unlimits_swap_when_accounted() {
        let probe = FakeProbe::default().with(Version::V1, "memory.memsw.limit_in_bytes", "1");
        let r = LinuxResourcesBuilder::default()
            .memory(LinuxMemoryBuilder::default().limit(-1).build().unwrap())
            .build()
            .unwrap();
        let p = plan(&r, &v1_targets(), &probe).unwrap();
        assert_eq!(
            files(&p),
            [
                pair("memory.memsw.limit_in_bytes", "-1"),
                pair("memory.limit_in_bytes", "-1")
            ]
        );
    }

    #[test]
    fn v2_memory_converts_swap_and_warns_on_v1_only_fields() {
        let r = LinuxResourcesBuilder::default()
            .memory(
                LinuxMemoryBuilder::default()
                    .limit(100)
                    .swap(300)
                    .reservation(50)
                    .kernel(10)
                    .swappiness(10u64)
                    .disable_oom_killer(true)
                    .build()
                    .unwrap(),
            )
            .build()
            .unwrap();
        let p = plan(&r, &v2_targets(), &FakeProbe::default()).unwrap();
        assert_eq!(
            files(&p),
            [
                pair("memory.swap.max", "200"),
                pair("memory.max", "100"),
                pair("memory.low", "50")
            ]
        );
        let warned: Vec<_> = p.warnings.iter().map(|w| w.setting.as_str()).collect();
        assert_eq!(
            warned,
            [
                "memory.kernel",
                "memory.swappiness",
                "memory.disableOOMKiller"
            ]
        );
    }

    #[test]
    fn v2_swap_update_without_limit_uses_the_current_limit() {
        let r = LinuxResourcesBuilder::default()
            .memory(LinuxMemoryBuilder::default().swap(300).build().unwrap())
            .build()
            .unwrap();
        let probe = FakeProbe::default().with(Version::V2, "memory.max", "100\n");
        let p = plan(&r, &v2_targets(), &probe).unwrap();
        assert_eq!(files(&p), [pair("memory.swap.max", "200")]);
    }

    #[test]
    fn swappiness_above_100_is_refused() {
        let r = LinuxResourcesBuilder::default()
            .memory(
                LinuxMemoryBuilder::default()
                    .swappiness(101u64)
                    .build()
                    .unwrap(),
            )
            .build()
            .unwrap();
        let err = plan(&r, &v1_targets(), &FakeProbe::default()).unwrap_err();
        assert_eq!(
            err.to_string(),
            "invalid memory.swappiness \"101\": must be between 0 and 100"
        );
    }

    #[test]
    fn check_before_update_refuses_a_limit_below_usage() {
        let r = LinuxResourcesBuilder::default()
            .memory(
                LinuxMemoryBuilder::default()
                    .limit(100)
                    .check_before_update(true)
                    .build()
                    .unwrap(),
            )
            .build()
            .unwrap();
        let probe = FakeProbe::default().with(Version::V2, "memory.current", "4096\n");
        let err = plan(&r, &v2_targets(), &probe).unwrap_err();
        assert!(matches!(err, CgroupError::BelowUsage { usage: 4096, .. }));
    }

    fn cpu() -> LinuxResources {
        LinuxResourcesBuilder::default()
            .cpu(
                LinuxCpuBuilder::default()
                    .shares(1024u64)
                    .quota(50_000)
                    .period(100_000u64)
                    .burst(1000u64)
                    .cpus("0")
                    .mems("0")
                    .build()
                    .unwrap(),
            )
            .build()
            .unwrap()
    }

    #[test]
    fn v1_cpu_writes_period_before_quota_before_burst() {
        let p = plan(&cpu(), &v1_targets(), &FakeProbe::default()).unwrap();
        assert_eq!(
            files(&p),
            [
                pair("cpu.shares", "1024"),
                pair("cpu.cfs_period_us", "100000"),
                pair("cpu.cfs_quota_us", "50000"),
                pair("cpu.cfs_burst_us", "1000"),
                pair("cpuset.cpus", "0"),
                pair("cpuset.mems", "0"),
            ]
        );
    }

    #[test]
    fn v2_cpu_uses_weight_and_cpu_max() {
        let p = plan(&cpu(), &v2_targets(), &FakeProbe::default()).unwrap();
        assert_eq!(
            files(&p),
            [
                pair("cpu.weight", "39"),
                pair("cpu.max", "50000 100000"),
                pair("cpu.max.burst", "1000"),
                pair("cpuset.cpus", "0"),
                pair("cpuset.mems", "0"),
            ]
        );
        let unlimited = LinuxResourcesBuilder::default()
            .cpu(LinuxCpuBuilder::default().quota(-1).build().unwrap())
            .build()
            .unwrap();
        let p = plan(&unlimited, &v2_targets(), &FakeProbe::default()).unwrap();
        assert_eq!(files(&p), [pair("cpu.max", "max")]);
    }

    #[test]
    fn realtime_is_refused_on_v2() {
        let r = LinuxResourcesBuilder::default()
            .cpu(
                LinuxCpuBuilder::default()
                    .realtime_runtime(1000)
                    .build()
                    .unwrap(),
            )
            .build()
            .unwrap();
        let err = plan(&r, &v2_targets(), &FakeProbe::default()).unwrap_err();
        assert!(matches!(err, CgroupError::NotOnV2 { .. }), "{err}");
    }

    #[test]
    fn pids_limit_negative_means_max_and_zero_means_unset() {
        let with = |limit| {
            let r = LinuxResourcesBuilder::default()
                .pids(LinuxPidsBuilder::default().limit(limit).build().unwrap())
                .build()
                .unwrap();
            files(&plan(&r, &v2_targets(), &FakeProbe::default()).unwrap())
        };
        assert_eq!(with(10), [pair("pids.max", "10")]);
        assert_eq!(with(-1), [pair("pids.max", "max")]);
        assert!(with(0).is_empty());
    }

    fn blkio() -> LinuxResources {
        let t = |rate: u64| {
            vec![LinuxThrottleDeviceBuilder::default()
                .major(8)
                .minor(0)
                .rate(rate)
                .build()
                .unwrap()]
        };
        LinuxResourcesBuilder::default()
            .block_io(
                LinuxBlockIoBuilder::default()
                    .weight(500u16)
                    .weight_device(vec![LinuxWeightDeviceBuilder::default()
                        .major(8)
                        .minor(0)
                        .weight(100u16)
                        .build()
                        .unwrap()])
                    .throttle_read_bps_device(t(1000))
                    .throttle_write_iops_device(t(0))
                    .build()
                    .unwrap(),
            )
            .build()
            .unwrap()
    }

    #[test]
    fn v1_blkio_files() {
        let probe = FakeProbe::default().with(Version::V1, "blkio.weight", "500");
        let p = plan(&blkio(), &v1_targets(), &probe).unwrap();
        assert_eq!(
            files(&p),
            [
                pair("blkio.weight", "500"),
                pair("blkio.weight_device", "8:0 100"),
                pair("blkio.throttle.read_bps_device", "8:0 1000"),
                pair("blkio.throttle.write_iops_device", "8:0 0"),
            ]
        );
    }

    #[test]
    fn v2_io_files_convert_weights_and_zero_rates() {
        let p = plan(&blkio(), &v2_targets(), &FakeProbe::default()).unwrap();
        assert_eq!(
            files(&p),
            [
                pair("io.weight", "default 4950"),
                pair("io.weight", "8:0 910"),
                pair("io.max", "8:0 rbps=1000"),
                pair("io.max", "8:0 wiops=max"),
            ]
        );
        let bfq = FakeProbe::default().with(Version::V2, "io.bfq.weight", "100");
        let p = plan(&blkio(), &v2_targets(), &bfq).unwrap();
        assert_eq!(
            files(&p)[..2],
            [
                pair("io.bfq.weight", "500"),
                pair("io.bfq.weight", "8:0 100")
            ]
        );
    }

    #[test]
    fn hugetlb_goes_to_the_unified_hierarchy_on_a_hybrid_host() {
        let r = LinuxResourcesBuilder::default()
            .hugepage_limits(vec![LinuxHugepageLimitBuilder::default()
                .page_size("2MB")
                .limit(1 << 21)
                .build()
                .unwrap()])
            .build()
            .unwrap();
        let mut hybrid = v1_targets();
        hybrid.v2 = Some(vec!["hugetlb".into()]);
        let p = plan(&r, &hybrid, &FakeProbe::default()).unwrap();
        assert_eq!(p.writes[0].version, Version::V2);
        assert_eq!(files(&p), [pair("hugetlb.2MB.max", "2097152")]);
        // Without it anywhere: an error naming the controller and the setting.
        let err = plan(&r, &v1_targets(), &FakeProbe::default()).unwrap_err();
        assert_eq!(
            err.to_string(),
            "linux.resources.hugepageLimits needs the hugetlb controller, which this host does not offer to this cgroup"
        );
    }

    #[test]
    fn bad_hugepage_sizes_are_refused() {
        assert!(valid_page_size("2MB") && valid_page_size("1GB") && valid_page_size("64KB"));
        assert!(!valid_page_size("2mb") && !valid_page_size("MB") && !valid_page_size("../x"));
    }

    #[test]
    fn devices_v1_rules_keep_order_then_defaults() {
        let r = LinuxResourcesBuilder::default()
            .devices(vec![
                LinuxDeviceCgroupBuilder::default()
                    .allow(false)
                    .access("rwm")
                    .build()
                    .unwrap(),
                LinuxDeviceCgroupBuilder::default()
                    .allow(true)
                    .typ(LinuxDeviceType::B)
                    .major(8)
                    .access("r")
                    .build()
                    .unwrap(),
            ])
            .build()
            .unwrap();
        let p = plan(&r, &v1_targets(), &FakeProbe::default()).unwrap();
        let f = files(&p);
        assert_eq!(f[0], pair("devices.deny", "a *:* rwm"));
        assert_eq!(f[1], pair("devices.allow", "b 8:* r"));
        assert!(f.contains(&pair("devices.allow", "c 1:3 rwm")));
        // On v2 the same rules go to the eBPF filter instead of files.
        let p = plan(&r, &v2_targets(), &FakeProbe::default()).unwrap();
        assert!(p.writes.is_empty());
        assert_eq!(p.bpf_devices.unwrap().len(), f.len());
    }

    fn unified(key: &str) -> LinuxResources {
        LinuxResourcesBuilder::default()
            .unified(HashMap::from([(key.to_owned(), "1".to_owned())]))
            .build()
            .unwrap()
    }

    #[test]
    fn unified_keys_are_checked() {
        let probe = FakeProbe::default().with(Version::V2, "memory.high", "max");
        let p = plan(&unified("memory.high"), &v2_targets(), &probe).unwrap();
        assert_eq!(files(&p), [pair("memory.high", "1")]);
        let err = plan(&unified("memory.nonsense"), &v2_targets(), &probe).unwrap_err();
        assert_eq!(
            err.to_string(),
            "unknown unified key \"memory.nonsense\": no such file in the cgroup (controller not enabled or not a cgroup v2 file)"
        );
        for bad in [
            "cgroup.procs",
            "../memory.max",
            "noprefix",
            "cgroup.subtree_control",
        ] {
            let err = plan(&unified(bad), &v2_targets(), &probe).unwrap_err();
            assert!(
                matches!(err, CgroupError::UnifiedKeyRefused { .. }),
                "{bad}: {err}"
            );
        }
        let v1_only = Targets {
            v1: vec!["memory".into()],
            v2: None,
        };
        let err = plan(&unified("memory.high"), &v1_only, &probe).unwrap_err();
        assert!(matches!(err, CgroupError::UnifiedOnV1 { .. }));
    }
}

//! `berth stats`: a container's resource usage, computed as Docker's CLI does from two samples.
//!
//! A [`Sample`] reads the container's cgroup (through the runtime's [`Cgroup::stats`], which
//! knows cgroup v1, v2 and the hybrid layout), its network namespace's `/proc/PID/net/dev`, and
//! the host's `/proc/stat` (total CPU time, online CPUs) and `/proc/meminfo`. [`Usage::between`]
//! turns two samples into Docker's numbers:
//!
//! - CPU %: `(container CPU delta / host CPU delta) * online CPUs * 100`
//!   (docker/cli `calculateCPUPercentUnix`);
//! - memory: usage minus the inactive file cache (`total_inactive_file` on v1, `inactive_file`
//!   on v2, docker/cli `calculateMemUsageUnixNoCache`), over the limit, or the host's memory
//!   when the container has none;
//! - block I/O: the sums of the `Read` and `Write` entries of `io_service_bytes_recursive`;
//! - network I/O: received and sent bytes of every interface but `lo` in the container's own
//!   network namespace (none for `--network host`, whose counters are the host's);
//! - PIDs: `pids.current`.
//!
//! [`Cgroup::stats`]: berth_runtime::cgroups::Cgroup::stats

use std::time::Instant;

use berth_runtime::cgroups::stats::Stats;
use serde::Serialize;

use crate::record::{ContainerRecord, Status};
use crate::Engine;

/// The host's CPU counters from `/proc/stat`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct HostCpu {
    /// Nanoseconds of CPU time of all CPUs together (Docker's `SystemUsage`).
    pub total_ns: u64,
    /// Online CPUs (the `cpuN` lines).
    pub online: u32,
}

/// Parses `/proc/stat`: the first `cpu` line summed over user, nice, system, idle, iowait,
/// irq, softirq and steal, in USER_HZ ticks (100 per second, times(2)), as Docker's
/// `getSystemCPUUsage` does.
pub fn parse_proc_stat(text: &str) -> HostCpu {
    let mut h = HostCpu::default();
    for line in text.lines() {
        let mut f = line.split_whitespace();
        match f.next() {
            Some("cpu") => {
                let ticks: u64 = f.take(8).filter_map(|x| x.parse::<u64>().ok()).sum();
                h.total_ns = ticks * (1_000_000_000 / 100);
            }
            Some(c) if c.starts_with("cpu") => h.online += 1,
            _ => {}
        }
    }
    h
}

/// `MemTotal` of `/proc/meminfo`, in bytes.
pub fn parse_mem_total(text: &str) -> u64 {
    text.lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|r| r.split_whitespace().next())
        .and_then(|kb| kb.parse::<u64>().ok())
        .map(|kb| kb * 1024)
        .unwrap_or(0)
}

/// Received and sent bytes of `/proc/PID/net/dev`, every interface but `lo`.
pub fn parse_net_dev(text: &str) -> (u64, u64) {
    let mut rx = 0;
    let mut tx = 0;
    // Two header lines, then "  eth0: rx_bytes rx_packets ... (8 fields) tx_bytes ...".
    for line in text.lines().skip(2) {
        let Some((name, rest)) = line.split_once(':') else {
            continue;
        };
        if name.trim() == "lo" {
            continue;
        }
        let f: Vec<u64> = rest
            .split_whitespace()
            .filter_map(|x| x.parse().ok())
            .collect();
        if f.len() >= 9 {
            rx += f[0];
            tx += f[8];
        }
    }
    (rx, tx)
}

/// One reading of a container and the host.
#[derive(Debug, Clone)]
pub struct Sample {
    pub at: Instant,
    /// `None` when the container is not running (or its cgroup is gone).
    pub cgroup: Option<Stats>,
    pub net: (u64, u64),
    pub host: HostCpu,
    pub host_memory: u64,
}

/// Docker's numbers for one container between two samples.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Usage {
    pub cpu_percent: f64,
    pub memory_usage: u64,
    pub memory_limit: u64,
    pub memory_percent: f64,
    pub net_rx: u64,
    pub net_tx: u64,
    pub block_read: u64,
    pub block_write: u64,
    pub pids: u64,
}

impl Usage {
    /// The usage shown for `cur`, with `prev` an earlier sample of the same container.
    pub fn between(prev: &Sample, cur: &Sample) -> Self {
        let Some(s) = &cur.cgroup else {
            return Usage::default();
        };
        let mut u = Usage::default();
        if let Some(p) = &prev.cgroup {
            let cpu_delta = s.cpu.usage.total.saturating_sub(p.cpu.usage.total) as f64;
            let sys_delta = cur.host.total_ns.saturating_sub(prev.host.total_ns) as f64;
            let online = if cur.host.online > 0 {
                cur.host.online as f64
            } else {
                s.cpu.usage.percpu.len() as f64
            };
            if sys_delta > 0.0 && cpu_delta > 0.0 {
                u.cpu_percent = cpu_delta / sys_delta * online * 100.0;
            }
        }
        let raw = &s.memory.raw;
        let usage = s.memory.usage.usage;
        let inactive = raw
            .get("total_inactive_file")
            .or_else(|| raw.get("inactive_file"))
            .copied()
            .unwrap_or(0);
        u.memory_usage = if inactive < usage {
            usage - inactive
        } else {
            usage
        };
        // v1 reports "no limit" as a huge page-aligned number and v2 as "max": Docker shows
        // the host's memory then.
        let limit = s.memory.usage.limit;
        u.memory_limit = if limit == 0 || (cur.host_memory > 0 && limit > cur.host_memory) {
            cur.host_memory
        } else {
            limit
        };
        if u.memory_limit > 0 {
            u.memory_percent = u.memory_usage as f64 / u.memory_limit as f64 * 100.0;
        }
        for e in &s.blkio.io_service_bytes_recursive {
            match e.op.as_str() {
                "Read" | "read" => u.block_read += e.value,
                "Write" | "write" => u.block_write += e.value,
                _ => {}
            }
        }
        (u.net_rx, u.net_tx) = cur.net;
        u.pids = s.pids.current;
        u
    }
}

fn host_now() -> (HostCpu, u64) {
    (
        parse_proc_stat(&std::fs::read_to_string("/proc/stat").unwrap_or_default()),
        parse_mem_total(&std::fs::read_to_string("/proc/meminfo").unwrap_or_default()),
    )
}

impl Engine {
    /// `ps -s`: bytes in the container's writable layer (the overlay upper directory, or the
    /// whole copied root filesystem where overlay is unavailable), and that plus its image's
    /// layers (Docker's "virtual" size). A container whose snapshot is gone counts 0.
    pub fn container_size(&self, rec: &ContainerRecord) -> (u64, u64) {
        use berth_image::snapshot::{SnapshotKind, Snapshotter};
        use berth_image::store::{dir_size, Store};
        let Ok(store) = Store::open(&self.root) else {
            return (0, 0);
        };
        let Ok((srec, snap)) = Snapshotter::new(store.clone()).get(&rec.id) else {
            return (0, 0);
        };
        let rw = match snap.kind {
            SnapshotKind::Copy => dir_size(&snap.rootfs),
            SnapshotKind::Overlay => dir_size(&snap.upper),
        };
        let image: u64 = srec
            .chain_ids
            .iter()
            .map(|c| store.layer_meta(c).map(|m| m.size).unwrap_or(0))
            .sum();
        (rw, rw + image)
    }

    /// Reads container `rec` now. A container that is not running (or whose runtime state
    /// or cgroup vanished meanwhile: it just exited) gives a sample without cgroup numbers.
    pub fn sample(&self, rec: &ContainerRecord) -> Sample {
        let (host, host_memory) = host_now();
        let mut s = Sample {
            at: Instant::now(),
            cgroup: None,
            net: (0, 0),
            host,
            host_memory,
        };
        if rec.state.status != Status::Running || rec.state.pid <= 0 {
            return s;
        }
        if let Ok((_, st, _)) = self.runtime.load(&rec.id) {
            s.cgroup = st.cgroup.as_ref().and_then(|cg| cg.stats().ok());
        }
        // The container's own network namespace; `host` would report the host's counters
        // and `container:X` is X's (Docker shows neither).
        if rec.network_mode != "host" && !rec.network_mode.starts_with("container:") {
            if let Ok(t) = std::fs::read_to_string(format!("/proc/{}/net/dev", rec.state.pid)) {
                s.net = parse_net_dev(&t);
            }
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proc_stat_sums_eight_fields_and_counts_cpus() {
        let h = parse_proc_stat(
            "cpu  10 1 5 100 2 0 1 1 50 50\ncpu0 5 0 3 50 1 0 0 0 0 0\ncpu1 5 1 2 50 1 0 1 1 0 0\nintr 1\n",
        );
        assert_eq!(h.total_ns, 120 * 10_000_000);
        assert_eq!(h.online, 2);
    }

    #[test]
    fn net_dev_skips_lo_and_the_headers() {
        let t = "Inter-|   Receive                                                |  Transmit\n \
                 face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs drop fifo colls carrier compressed\n    \
                 lo:     100       1    0    0    0     0          0         0      100       1    0    0    0     0       0          0\n  \
                 eth0:    1500      10    0    0    0     0          0         0      700       5    0    0    0     0       0          0\n  \
                 eth1:      20       1    0    0    0     0          0         0        3       1    0    0    0     0       0          0\n";
        assert_eq!(parse_net_dev(t), (1520, 703));
        assert_eq!(
            parse_mem_total("MemTotal:       1000 kB\nMemFree: 1 kB\n"),
            1_024_000
        );
    }

    fn sample(cpu_ns: u64, host_ns: u64, stats: Option<Stats>) -> Sample {
        Sample {
            at: Instant::now(),
            cgroup: stats.map(|mut s| {
                s.cpu.usage.total = cpu_ns;
                s
            }),
            net: (5, 6),
            host: HostCpu {
                total_ns: host_ns,
                online: 2,
            },
            host_memory: 1000,
        }
    }

    #[test]
    fn dockers_cpu_and_memory_formulas() {
        let mut st = Stats::default();
        st.memory.usage.usage = 300;
        st.memory.usage.limit = u64::MAX;
        st.memory.raw.insert("total_inactive_file".into(), 100);
        st.blkio.io_service_bytes_recursive = vec![
            berth_runtime::cgroups::stats::BlkioEntry {
                major: 8,
                minor: 0,
                op: "Read".into(),
                value: 7,
            },
            berth_runtime::cgroups::stats::BlkioEntry {
                major: 8,
                minor: 0,
                op: "Write".into(),
                value: 9,
            },
        ];
        st.pids.current = 3;
        let a = sample(1_000, 10_000, Some(st.clone()));
        let b = sample(1_500, 12_000, Some(st.clone()));
        let u = Usage::between(&a, &b);
        // 500 of 2000 host ns on 2 CPUs: 50 %.
        assert!((u.cpu_percent - 50.0).abs() < 1e-9, "{}", u.cpu_percent);
        assert_eq!(u.memory_usage, 200);
        assert_eq!(u.memory_limit, 1000, "no limit shows the host's memory");
        assert!((u.memory_percent - 20.0).abs() < 1e-9);
        assert_eq!((u.block_read, u.block_write, u.pids), (7, 9, 3));
        assert_eq!((u.net_rx, u.net_tx), (5, 6));
        // A v2 limit below the host's memory is the limit.
        st.memory.usage.limit = 400;
        st.memory.raw.clear();
        st.memory.raw.insert("inactive_file".into(), 0);
        let u = Usage::between(&a, &sample(1_000, 12_000, Some(st)));
        assert_eq!((u.memory_usage, u.memory_limit), (300, 400));
        assert_eq!(u.cpu_percent, 0.0);
        // A stopped container shows zeros.
        assert_eq!(Usage::between(&a, &sample(0, 0, None)), Usage::default());
    }
}

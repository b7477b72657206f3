//! Resource usage in the shape of the `data` object of runc's `events --stats` JSON
//! (runc `types/events.go`), so tools that parse runc's output parse ours.
//!
//! Missing files (a controller that is not there) leave the zero value, as runc does.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::layout::Version;
use super::plan::Probe;

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stats {
    pub cpu: Cpu,
    pub memory: Memory,
    pub pids: Pids,
    pub blkio: Blkio,
    /// Keyed by page size (`2MB`).
    pub hugetlb: BTreeMap<String, Hugetlb>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cpu {
    pub usage: CpuUsage,
    pub throttling: Throttling,
}

/// Nanoseconds.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CpuUsage {
    pub total: u64,
    #[serde(skip_serializing_if = "Vec::is_empty", default)]
    pub percpu: Vec<u64>,
    pub kernel: u64,
    pub user: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Throttling {
    pub periods: u64,
    pub throttled_periods: u64,
    /// Nanoseconds.
    pub throttled_time: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemoryEntry {
    pub limit: u64,
    pub usage: u64,
    pub max: u64,
    pub failcnt: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Memory {
    pub cache: u64,
    pub usage: MemoryEntry,
    pub swap: MemoryEntry,
    /// `memory.stat`, as numbers.
    #[serde(skip_serializing_if = "BTreeMap::is_empty", default)]
    pub raw: BTreeMap<String, u64>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pids {
    pub current: u64,
    /// 0 means no limit, as in runc.
    pub limit: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlkioEntry {
    pub major: u64,
    pub minor: u64,
    pub op: String,
    pub value: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Blkio {
    #[serde(skip_serializing_if = "Vec::is_empty", default)]
    pub io_service_bytes_recursive: Vec<BlkioEntry>,
    #[serde(skip_serializing_if = "Vec::is_empty", default)]
    pub io_serviced_recursive: Vec<BlkioEntry>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hugetlb {
    pub usage: u64,
    pub max: u64,
    pub failcnt: u64,
}

/// Which version serves each controller for this cgroup.
pub(crate) type Where<'a> = &'a dyn Fn(&str) -> Option<Version>;

/// "max" is `u64::MAX`, as runc reports an unlimited v2 value.
fn num(s: &str) -> Option<u64> {
    let s = s.trim();
    if s == "max" {
        Some(u64::MAX)
    } else {
        s.parse().ok()
    }
}

/// `key value` lines (`cpu.stat`, `memory.stat`, `memory.events`).
pub(crate) fn flat_keyed(text: &str) -> BTreeMap<String, u64> {
    text.lines()
        .filter_map(|l| {
            let (k, v) = l.split_once(' ')?;
            Some((k.to_owned(), num(v)?))
        })
        .collect()
}

pub(crate) fn collect(at: Where<'_>, probe: &dyn Probe, hugepage_sizes: &[String]) -> Stats {
    let get = |v: Version, c: &str, f: &str| probe.read(v, c, f);
    let get_num = |v: Version, c: &str, f: &str| get(v, c, f).as_deref().and_then(num).unwrap_or(0);
    let mut s = Stats::default();

    // cpu
    match at("cpuacct").or_else(|| at("cpu")) {
        Some(Version::V1) => {
            let acct = if at("cpuacct").is_some() {
                "cpuacct"
            } else {
                "cpu"
            };
            s.cpu.usage.total = get_num(Version::V1, acct, "cpuacct.usage");
            s.cpu.usage.percpu = get(Version::V1, acct, "cpuacct.usage_percpu")
                .map(|t| {
                    t.split_whitespace()
                        .filter_map(|x| x.parse().ok())
                        .collect()
                })
                .unwrap_or_default();
            // cpuacct.stat is in USER_HZ ticks (100 per second on every architecture
            // Linux exports to user space, see times(2)).
            if let Some(t) = get(Version::V1, acct, "cpuacct.stat") {
                let m = flat_keyed(&t);
                let tick_ns = 1_000_000_000 / 100;
                s.cpu.usage.user = m.get("user").copied().unwrap_or(0) * tick_ns;
                s.cpu.usage.kernel = m.get("system").copied().unwrap_or(0) * tick_ns;
            }
        }
        Some(Version::V2) => {
            if let Some(t) = get(Version::V2, "cpu", "cpu.stat") {
                let m = flat_keyed(&t);
                let us = |k: &str| m.get(k).copied().unwrap_or(0) * 1000;
                s.cpu.usage.total = us("usage_usec");
                s.cpu.usage.user = us("user_usec");
                s.cpu.usage.kernel = us("system_usec");
                s.cpu.throttling.periods = m.get("nr_periods").copied().unwrap_or(0);
                s.cpu.throttling.throttled_periods = m.get("nr_throttled").copied().unwrap_or(0);
                s.cpu.throttling.throttled_time = us("throttled_usec");
            }
        }
        None => {}
    }
    if at("cpu") == Some(Version::V1) {
        if let Some(t) = get(Version::V1, "cpu", "cpu.stat") {
            let m = flat_keyed(&t);
            s.cpu.throttling.periods = m.get("nr_periods").copied().unwrap_or(0);
            s.cpu.throttling.throttled_periods = m.get("nr_throttled").copied().unwrap_or(0);
            s.cpu.throttling.throttled_time = m.get("throttled_time").copied().unwrap_or(0);
        }
    }

    // memory
    match at("memory") {
        Some(v @ Version::V1) => {
            let m = &mut s.memory;
            m.usage = MemoryEntry {
                usage: get_num(v, "memory", "memory.usage_in_bytes"),
                limit: get_num(v, "memory", "memory.limit_in_bytes"),
                max: get_num(v, "memory", "memory.max_usage_in_bytes"),
                failcnt: get_num(v, "memory", "memory.failcnt"),
            };
            m.swap = MemoryEntry {
                usage: get_num(v, "memory", "memory.memsw.usage_in_bytes"),
                limit: get_num(v, "memory", "memory.memsw.limit_in_bytes"),
                max: get_num(v, "memory", "memory.memsw.max_usage_in_bytes"),
                failcnt: get_num(v, "memory", "memory.memsw.failcnt"),
            };
            m.raw = get(v, "memory", "memory.stat")
                .map(|t| flat_keyed(&t))
                .unwrap_or_default();
            m.cache = m
                .raw
                .get("total_cache")
                .or(m.raw.get("cache"))
                .copied()
                .unwrap_or(0);
        }
        Some(v @ Version::V2) => {
            let m = &mut s.memory;
            let events = get(v, "memory", "memory.events").map(|t| flat_keyed(&t));
            m.usage = MemoryEntry {
                usage: get_num(v, "memory", "memory.current"),
                limit: get_num(v, "memory", "memory.max"),
                // memory.peak appeared in Linux 5.19.
                max: get_num(v, "memory", "memory.peak"),
                failcnt: events
                    .as_ref()
                    .and_then(|e| e.get("max").copied())
                    .unwrap_or(0),
            };
            // runc reports v2 swap as memory+swap, to match the v1 memsw numbers.
            let swap = get_num(v, "memory", "memory.swap.current");
            let swap_max = get_num(v, "memory", "memory.swap.max");
            m.swap = MemoryEntry {
                usage: swap.saturating_add(m.usage.usage),
                limit: swap_max.saturating_add(m.usage.limit),
                max: 0,
                failcnt: 0,
            };
            m.raw = get(v, "memory", "memory.stat")
                .map(|t| flat_keyed(&t))
                .unwrap_or_default();
            m.cache = m.raw.get("file").copied().unwrap_or(0);
        }
        None => {}
    }

    // pids
    if let Some(v) = at("pids") {
        s.pids.current = get_num(v, "pids", "pids.current");
        s.pids.limit = match get(v, "pids", "pids.max").as_deref().map(str::trim) {
            Some("max") | None => 0,
            Some(n) => n.parse().unwrap_or(0),
        };
    }

    // block I/O
    match (at("blkio"), at("io")) {
        (Some(v @ Version::V1), _) => {
            let parse = |file: &str| -> Vec<BlkioEntry> {
                get(v, "blkio", file)
                    .map(|t| {
                        t.lines()
                            .filter_map(|l| {
                                let mut f = l.split_whitespace();
                                let (dev, op, val) = (f.next()?, f.next()?, f.next()?);
                                let (ma, mi) = dev.split_once(':')?;
                                Some(BlkioEntry {
                                    major: ma.parse().ok()?,
                                    minor: mi.parse().ok()?,
                                    op: op.to_owned(),
                                    value: val.parse().ok()?,
                                })
                            })
                            .collect()
                    })
                    .unwrap_or_default()
            };
            s.blkio.io_service_bytes_recursive = parse("blkio.throttle.io_service_bytes_recursive");
            s.blkio.io_serviced_recursive = parse("blkio.throttle.io_serviced_recursive");
        }
        (_, Some(v @ Version::V2)) => {
            // io.stat: "8:0 rbytes=1 wbytes=2 rios=3 wios=4 dbytes=0 dios=0"
            for line in get(v, "io", "io.stat").unwrap_or_default().lines() {
                let mut f = line.split_whitespace();
                let Some((ma, mi)) = f.next().and_then(|d| d.split_once(':')) else {
                    continue;
                };
                let (Ok(major), Ok(minor)) = (ma.parse(), mi.parse()) else {
                    continue;
                };
                for kv in f {
                    let Some((k, val)) = kv.split_once('=') else {
                        continue;
                    };
                    let Ok(value) = val.parse() else { continue };
                    let entry = |op: &str| BlkioEntry {
                        major,
                        minor,
                        op: op.to_owned(),
                        value,
                    };
                    match k {
                        "rbytes" => s.blkio.io_service_bytes_recursive.push(entry("Read")),
                        "wbytes" => s.blkio.io_service_bytes_recursive.push(entry("Write")),
                        "rios" => s.blkio.io_serviced_recursive.push(entry("Read")),
                        "wios" => s.blkio.io_serviced_recursive.push(entry("Write")),
                        _ => {}
                    }
                }
            }
        }
        _ => {}
    }

    // hugetlb
    if let Some(v) = at("hugetlb") {
        for size in hugepage_sizes {
            let h = match v {
                Version::V1 => Hugetlb {
                    usage: get_num(v, "hugetlb", &format!("hugetlb.{size}.usage_in_bytes")),
                    max: get_num(v, "hugetlb", &format!("hugetlb.{size}.max_usage_in_bytes")),
                    failcnt: get_num(v, "hugetlb", &format!("hugetlb.{size}.failcnt")),
                },
                Version::V2 => Hugetlb {
                    usage: get_num(v, "hugetlb", &format!("hugetlb.{size}.current")),
                    max: get_num(v, "hugetlb", &format!("hugetlb.{size}.max")),
                    failcnt: get(v, "hugetlb", &format!("hugetlb.{size}.events"))
                        .and_then(|t| flat_keyed(&t).get("max").copied())
                        .unwrap_or(0),
                },
            };
            s.hugetlb.insert(size.clone(), h);
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    struct Files(HashMap<&'static str, &'static str>);

    impl Probe for Files {
        fn exists(&self, _: Version, _: &str, f: &str) -> bool {
            self.0.contains_key(f)
        }
        fn read(&self, _: Version, _: &str, f: &str) -> Option<String> {
            self.0.get(f).map(|s| s.to_string())
        }
    }

    #[test]
    fn v2_stats_follow_runcs_conversions() {
        let files = Files(HashMap::from([
            ("cpu.stat", "usage_usec 10\nuser_usec 6\nsystem_usec 4\nnr_periods 5\nnr_throttled 2\nthrottled_usec 7\n"),
            ("memory.current", "100\n"),
            ("memory.max", "max\n"),
            ("memory.events", "low 0\nhigh 0\nmax 3\noom 1\noom_kill 1\n"),
            ("memory.swap.current", "5\n"),
            ("memory.swap.max", "0\n"),
            ("pids.current", "2\n"),
            ("pids.max", "max\n"),
            ("io.stat", "8:0 rbytes=4096 wbytes=0 rios=1 wios=0 dbytes=0 dios=0\n"),
        ]));
        let at = |_: &str| Some(Version::V2);
        let s = collect(&at, &files, &[]);
        assert_eq!(s.cpu.usage.total, 10_000);
        assert_eq!(s.cpu.throttling.throttled_periods, 2);
        assert_eq!(s.cpu.throttling.throttled_time, 7000);
        assert_eq!(s.memory.usage.usage, 100);
        assert_eq!(s.memory.usage.limit, u64::MAX);
        assert_eq!(s.memory.usage.failcnt, 3);
        assert_eq!(s.memory.swap.usage, 105);
        assert_eq!(
            s.pids,
            Pids {
                current: 2,
                limit: 0
            }
        );
        assert_eq!(s.blkio.io_service_bytes_recursive[0].value, 4096);
        assert_eq!(s.blkio.io_service_bytes_recursive[0].op, "Read");
        let json = serde_json::to_value(&s).unwrap();
        assert_eq!(json["cpu"]["throttling"]["throttledPeriods"], 2);
        assert_eq!(json["blkio"]["ioServicedRecursive"][0]["op"], "Read");
    }

    #[test]
    fn v1_stats_convert_ticks_and_read_memsw() {
        let files = Files(HashMap::from([
            ("cpuacct.usage", "123\n"),
            ("cpuacct.usage_percpu", "100 23 \n"),
            ("cpuacct.stat", "user 3\nsystem 1\n"),
            (
                "cpu.stat",
                "nr_periods 4\nnr_throttled 1\nthrottled_time 999\n",
            ),
            ("memory.usage_in_bytes", "4096\n"),
            ("memory.limit_in_bytes", "9223372036854771712\n"),
            ("memory.failcnt", "0\n"),
            ("memory.memsw.usage_in_bytes", "8192\n"),
            ("pids.current", "1\n"),
            ("pids.max", "10\n"),
            (
                "blkio.throttle.io_service_bytes_recursive",
                "8:0 Read 512\n8:0 Write 0\nTotal 512\n",
            ),
        ]));
        let at = |_: &str| Some(Version::V1);
        let s = collect(&at, &files, &[]);
        assert_eq!(s.cpu.usage.total, 123);
        assert_eq!(s.cpu.usage.percpu, [100, 23]);
        assert_eq!(s.cpu.usage.user, 30_000_000);
        assert_eq!(s.cpu.throttling.throttled_time, 999);
        assert_eq!(s.memory.swap.usage, 8192);
        assert_eq!(
            s.pids,
            Pids {
                current: 1,
                limit: 10
            }
        );
        assert_eq!(s.blkio.io_service_bytes_recursive.len(), 2);
    }
}

//! Which events a full spool gives up first, and the ledger of what was given up.
//!
//! Every event kind belongs to a [`Tier`]. A tier may fill the spool only up to its share of the
//! bound: by default low-priority kinds (fork, exit, signal, io_uring) stop being accepted at
//! 70 % full, normal ones (file, network, ptrace, bpf, memfd, namespace) at 90 %, and the high
//! tier (exec, credential, module) may use all of it. So as the spool fills, low kinds are shed
//! first and exec, credential and module events last. Whatever is shed is counted per kind in the
//! [`ShedLedger`], which the spool writer turns into Gap records.

use std::collections::BTreeMap;

use kestrel_ebpf_abi::KIND_NAMES;
use kestrel_proto::Gap;

/// Event kind names indexed by the code stored in record headers: the ABI's kinds and names.
pub const KINDS: [&str; KIND_NAMES.len()] = KIND_NAMES;

/// The code of an event kind name (0, `unknown`, for names not in [`KINDS`]).
pub fn kind_code(name: &str) -> u8 {
    KINDS.iter().position(|k| *k == name).unwrap_or(0) as u8
}

/// The kind name of a code.
pub fn kind_name(code: u8) -> &'static str {
    KINDS.get(usize::from(code)).copied().unwrap_or("unknown")
}

/// How much a kind matters when the spool is full.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Tier {
    /// Shed first.
    Low,
    /// Shed after the low tier.
    Normal,
    /// Shed last: exec, credential and module events by default.
    High,
}

impl std::str::FromStr for Tier {
    type Err = String;

    fn from_str(s: &str) -> Result<Tier, String> {
        match s {
            "low" => Ok(Tier::Low),
            "normal" => Ok(Tier::Normal),
            "high" => Ok(Tier::High),
            other => Err(format!("unknown priority '{other}' (low, normal or high)")),
        }
    }
}

/// Kind-to-tier mapping and the share of the spool each tier may fill.
#[derive(Debug, Clone, PartialEq)]
pub struct Priorities {
    tiers: [Tier; KINDS.len()],
    /// Fraction of the spool bound up to which low, normal and high kinds are accepted.
    pub fill_limits: [f64; 3],
}

impl Default for Priorities {
    fn default() -> Priorities {
        let mut tiers = [Tier::Low; KINDS.len()];
        for (code, name) in KINDS.iter().enumerate() {
            tiers[code] = match *name {
                "exec" | "credential" | "module" => Tier::High,
                "file" | "network" | "ptrace" | "bpf" | "memfd" | "namespace"
                | "process_rename" => Tier::Normal,
                _ => Tier::Low,
            };
        }
        Priorities {
            tiers,
            fill_limits: [0.7, 0.9, 1.0],
        }
    }
}

impl Priorities {
    /// The tier of a kind code.
    pub fn tier(&self, kind: u8) -> Tier {
        self.tiers
            .get(usize::from(kind))
            .copied()
            .unwrap_or(Tier::Low)
    }

    /// Sets the tier of a kind from `KIND=TIER` (for example `file=high`).
    pub fn set(&mut self, assignment: &str) -> Result<(), String> {
        let (kind, tier) = assignment
            .split_once('=')
            .ok_or_else(|| format!("'{assignment}': expected KIND=low|normal|high"))?;
        let code = KINDS
            .iter()
            .position(|k| *k == kind.trim())
            .ok_or_else(|| format!("'{assignment}': unknown event kind '{kind}'"))?;
        self.tiers[code] = tier.trim().parse()?;
        Ok(())
    }

    /// Most bytes the spool may hold when accepting an event of `kind`, for a bound of `max`.
    pub fn limit(&self, kind: u8, max: u64) -> u64 {
        let share = self.fill_limits[self.tier(kind) as usize].clamp(0.0, 1.0);
        (max as f64 * share) as u64
    }
}

/// Why events were given up; the Gap `reason` string.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum ShedReason {
    /// The spool was full for this kind's tier.
    SpoolFull,
    /// The queue from the pipeline to the spool writer was full.
    QueueFull,
    /// Writing to the spool failed (for example, the disk is full).
    WriteError,
}

impl ShedReason {
    /// The reason as sent in `Gap.reason`.
    pub fn as_str(self) -> &'static str {
        match self {
            ShedReason::SpoolFull => "spool_full",
            ShedReason::QueueFull => "queue_full",
            ShedReason::WriteError => "spool_error",
        }
    }

    /// The reason named by a `Gap.reason` string.
    pub fn parse(reason: &str) -> Option<ShedReason> {
        [
            ShedReason::SpoolFull,
            ShedReason::QueueFull,
            ShedReason::WriteError,
        ]
        .into_iter()
        .find(|r| r.as_str() == reason)
    }
}

/// Events of one kind given up for one reason, not yet reported.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Shed {
    count: u64,
    first_time_unix_ns: u64,
    last_time_unix_ns: u64,
}

/// Counts of events given up, per reason and kind, until they are reported as Gap records.
#[derive(Debug, Default)]
pub struct ShedLedger {
    pending: BTreeMap<(ShedReason, u8), Shed>,
    /// Gaps reported as they are (kernel drops), waiting to be written.
    reported: Vec<Gap>,
    /// Every event ever given up (reported or not).
    pub total: u64,
}

impl ShedLedger {
    /// Counts one event of `kind` at `time_unix_ns` given up for `reason`.
    pub fn record(&mut self, reason: ShedReason, kind: u8, time_unix_ns: u64) {
        self.total += 1;
        crate::metrics::figures::figures().lost(kind_name(kind), reason.as_str(), 1);
        let entry = self.pending.entry((reason, kind)).or_insert(Shed {
            count: 0,
            first_time_unix_ns: time_unix_ns,
            last_time_unix_ns: time_unix_ns,
        });
        entry.count += 1;
        entry.first_time_unix_ns = entry.first_time_unix_ns.min(time_unix_ns);
        entry.last_time_unix_ns = entry.last_time_unix_ns.max(time_unix_ns);
    }

    /// Puts back the counts of a Gap that could not be written, to be reported later.
    pub fn restore(&mut self, gap: &Gap) {
        let reason = ShedReason::parse(&gap.reason).unwrap_or(ShedReason::WriteError);
        let entry = self
            .pending
            .entry((reason, kind_code(&gap.kind)))
            .or_insert(Shed {
                count: 0,
                first_time_unix_ns: gap.first_time_unix_ns,
                last_time_unix_ns: gap.last_time_unix_ns,
            });
        entry.count += gap.count;
        entry.first_time_unix_ns = entry.first_time_unix_ns.min(gap.first_time_unix_ns);
        entry.last_time_unix_ns = entry.last_time_unix_ns.max(gap.last_time_unix_ns);
    }

    /// Adds a Gap built elsewhere, to be written as it is.
    pub fn report(&mut self, gap: Gap) {
        self.total += gap.count;
        self.reported.push(gap);
    }

    /// Puts back a Gap built elsewhere that could not be written (already counted).
    pub fn requeue(&mut self, gap: Gap) {
        self.reported.push(gap);
    }

    /// True when nothing is waiting to be reported.
    pub fn is_empty(&self) -> bool {
        self.pending.is_empty() && self.reported.is_empty()
    }

    /// Takes what is pending as Gap messages (one per reason and kind, then those reported as
    /// they are), leaving the ledger empty.
    pub fn take_gaps(&mut self) -> Vec<Gap> {
        let reported = std::mem::take(&mut self.reported);
        std::mem::take(&mut self.pending)
            .into_iter()
            .map(|((reason, kind), shed)| Gap {
                kind: kind_name(kind).to_owned(),
                cpu: 0,
                count: shed.count,
                first_time_unix_ns: shed.first_time_unix_ns,
                last_time_unix_ns: shed.last_time_unix_ns,
                reason: reason.as_str().to_owned(),
                first_seq: 0,
                last_seq: 0,
            })
            .chain(reported)
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exec_credential_and_module_are_shed_last_by_default() {
        let p = Priorities::default();
        let max = 1000;
        for kind in ["exec", "credential", "module"] {
            assert_eq!(p.limit(kind_code(kind), max), 1000, "{kind}");
        }
        for kind in KINDS {
            assert!(p.limit(kind_code(kind), max) <= 1000);
        }
        assert!(p.limit(kind_code("fork"), max) < p.limit(kind_code("file"), max));
        assert!(p.limit(kind_code("file"), max) < p.limit(kind_code("exec"), max));
    }

    #[test]
    fn tiers_are_configurable_per_kind() {
        let mut p = Priorities::default();
        p.set("fork=high").unwrap();
        assert_eq!(p.tier(kind_code("fork")), Tier::High);
        assert!(p.set("fork").unwrap_err().contains("KIND="));
        assert!(p
            .set("nope=high")
            .unwrap_err()
            .contains("unknown event kind"));
        assert!(p
            .set("exec=urgent")
            .unwrap_err()
            .contains("unknown priority"));
    }

    #[test]
    fn ledger_counts_per_reason_and_kind_with_time_range() {
        let mut ledger = ShedLedger::default();
        ledger.record(ShedReason::SpoolFull, kind_code("fork"), 20);
        ledger.record(ShedReason::SpoolFull, kind_code("fork"), 10);
        ledger.record(ShedReason::QueueFull, kind_code("exec"), 30);
        let gaps = ledger.take_gaps();
        assert!(ledger.is_empty());
        assert_eq!(ledger.total, 3);
        assert_eq!(gaps.len(), 2);
        let fork = gaps.iter().find(|g| g.kind == "fork").unwrap();
        assert_eq!(
            (fork.count, fork.first_time_unix_ns, fork.last_time_unix_ns),
            (2, 10, 20)
        );
        assert_eq!(fork.reason, "spool_full");
        assert_eq!(
            gaps.iter().find(|g| g.kind == "exec").unwrap().reason,
            "queue_full"
        );
    }

    #[test]
    fn kind_codes_match_the_abi_numbers() {
        use kestrel_ebpf_abi as abi;
        assert_eq!(kind_code("exec") as u32, abi::KIND_EXEC);
        assert_eq!(kind_code("fork") as u32, abi::KIND_FORK);
        assert_eq!(kind_code("module") as u32, abi::KIND_MODULE);
        assert_eq!(kind_code("io_uring") as u32, abi::KIND_IO_URING);
        assert_eq!(KINDS.len() as u32, abi::KIND_SLOTS);
    }
}

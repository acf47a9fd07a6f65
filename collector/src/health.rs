//! What `/healthz` and `/readyz` answer (served by [`crate::endpoint`]).
//!
//! Alive (`/healthz`): the process answers HTTP. Ready (`/readyz`): the store takes a committed
//! write now ([`Store::probe_write`]), at least one rule is loaded (a collector without rules
//! stores events but detects nothing), and no sink is dead (its worker stopped, or
//! `meta_alert_after` deliveries in a row failed: see [`crate::alerting::sink_status`]).

use std::sync::Arc;

use kestrel_detect::SharedRules;
pub use kestrel_service::readiness::{Check, Readiness};

use crate::alerting::AlertPipeline;
use crate::clock::now_unix_ns;
use crate::store::Store;

/// What readiness looks at; cheap to clone.
#[derive(Clone)]
pub struct Health {
    /// The store the probe writes to.
    pub store: Store,
    /// The rules detection uses now (after any reload).
    pub rules: Arc<SharedRules>,
    /// The sinks' delivery state.
    pub alerts: AlertPipeline,
}

impl Health {
    /// The checks now. Blocking: the store probe commits a write.
    pub fn readiness(&self) -> Readiness {
        let store = match self.store.probe_write(now_unix_ns()) {
            Ok(()) => Check {
                name: "store_writable",
                ok: true,
                detail: "a write to the store committed".into(),
            },
            Err(e) => Check {
                name: "store_writable",
                ok: false,
                detail: format!("the store refused a write: {e}"),
            },
        };
        let loaded = self.rules.current().len();
        let rules = Check {
            name: "rules_loaded",
            ok: loaded > 0,
            detail: format!("{loaded} rules loaded"),
        };
        let (alive, dead): (Vec<_>, Vec<_>) = self
            .alerts
            .sink_statuses()
            .iter()
            .map(|sink| sink.alive())
            .partition(Result::is_ok);
        let sinks = Check {
            name: "sinks_alive",
            ok: dead.is_empty(),
            detail: match dead.is_empty() {
                true => format!("{} sinks delivering", alive.len()),
                false => dead
                    .into_iter()
                    .filter_map(Result::err)
                    .collect::<Vec<_>>()
                    .join("; "),
            },
        };
        let checks = vec![store, rules, sinks];
        Readiness::of(checks)
    }
}

//! The answer of `GET /readyz`: every check a binary makes, and 200 when all hold, else 503,
//! so that an orchestrator takes a process that is alive but not doing its job out of service.

use axum::{http::StatusCode, Json};
use serde::Serialize;

/// One readiness condition and what was found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Check {
    /// What is checked (`programs_attached`, `ring_read`, `store_writable`, …).
    pub name: &'static str,
    /// Whether it holds.
    pub ok: bool,
    /// What was found, for the operator.
    pub detail: String,
}

/// The answer of `/readyz`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Readiness {
    /// Every check holds.
    pub ready: bool,
    /// Each check.
    pub checks: Vec<Check>,
}

impl Readiness {
    /// The readiness of `checks`: ready when every one holds.
    pub fn of(checks: Vec<Check>) -> Readiness {
        Readiness {
            ready: checks.iter().all(|c| c.ok),
            checks,
        }
    }

    /// The HTTP answer: 200 when ready, 503 otherwise, with the checks as JSON.
    pub fn response(self) -> (StatusCode, Json<Readiness>) {
        let status = if self.ready {
            StatusCode::OK
        } else {
            StatusCode::SERVICE_UNAVAILABLE
        };
        (status, Json(self))
    }
}

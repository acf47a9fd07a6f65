//! What the agent and the collector both need to run as a service under an init system or an
//! orchestrator: the shape of their logs ([`logging`]), the answer of their readiness endpoint
//! ([`readiness`]) and systemd's notify protocol ([`service_manager`]). Each binary decides what
//! its own readiness checks and watchdog test are.

pub mod logging;
pub mod readiness;
pub mod service_manager;

//! Kubernetes metadata of the pods on this node, from the API server: labels, namespace, owner
//! workload, service account and node name, merged by pod uid into the container context that
//! the runtime gives ([`super::container`]).
//!
//! - [`config`]: the `[kubernetes]` section and where the API server is.
//! - [`client`]: the API client ([`line_limit`] bounds its answers).
//! - [`watcher`]: list and watch of this node's pods into the [`directory`].
//! - [`pod`] and [`owner`]: what is kept of one pod, and its owning workload.

pub mod client;
pub mod config;
pub mod directory;
pub mod line_limit;
pub mod owner;
pub mod pod;
pub mod watcher;

pub use config::KubernetesConfig;
pub use directory::PodDirectory;

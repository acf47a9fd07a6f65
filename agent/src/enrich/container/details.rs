//! What a container runtime says about a container, and why it could not say: the types every
//! runtime client ([`super::runtime`], [`super::containerd`]) returns.

use std::{collections::HashMap, path::PathBuf, time::Duration};

/// Label with the Kubernetes pod name.
pub const LABEL_POD_NAME: &str = "io.kubernetes.pod.name";
/// Label with the Kubernetes pod namespace.
pub const LABEL_POD_NAMESPACE: &str = "io.kubernetes.pod.namespace";
/// Label with the Kubernetes pod uid.
pub const LABEL_POD_UID: &str = "io.kubernetes.pod.uid";
/// Label with the container's name in its Kubernetes pod spec.
pub const LABEL_CONTAINER_NAME: &str = "io.kubernetes.container.name";

/// What a runtime API says about one container.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ContainerDetails {
    /// The runtime's name for the container (without Docker's leading `/`).
    pub name: String,
    /// The image as the container was created from it (`localhost/app:1`,
    /// `docker.io/library/nginx:latest`), or its id when the runtime has no name for it.
    pub image: String,
    /// All container labels.
    pub labels: HashMap<String, String>,
}

impl ContainerDetails {
    /// Value of label `key`, or the empty string.
    pub fn label(&self, key: &str) -> &str {
        self.labels.get(key).map_or("", String::as_str)
    }

    /// The container's name: its Kubernetes container name when it has one, else the runtime's.
    pub fn display_name(&self) -> &str {
        match self.label(LABEL_CONTAINER_NAME) {
            "" => &self.name,
            name => name,
        }
    }
}

/// Why a runtime API could not describe a container.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    /// Nothing listens on the socket (or it does not exist).
    #[error("runtime socket {socket}: cannot connect: {source}")]
    Connect {
        /// The socket.
        socket: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The HTTP exchange failed.
    #[error("runtime socket {socket}: HTTP GET {path}: {source}")]
    Http {
        /// The socket.
        socket: PathBuf,
        /// Request path.
        path: String,
        /// The HTTP error.
        source: hyper::Error,
    },
    /// The response body could not be read or exceeded [`super::runtime::MAX_RESPONSE_BYTES`].
    #[error("runtime socket {socket}: GET {path}: reading body: {reason}")]
    Body {
        /// The socket.
        socket: PathBuf,
        /// Request path.
        path: String,
        /// What went wrong.
        reason: String,
    },
    /// The runtime does not know the container.
    #[error("runtime socket {socket}: no container {id}")]
    NotFound {
        /// The socket.
        socket: PathBuf,
        /// The container id asked for.
        id: String,
    },
    /// The runtime answered with an error status.
    #[error("runtime socket {socket}: GET {path}: HTTP {status}: {body}")]
    Status {
        /// The socket.
        socket: PathBuf,
        /// Request path.
        path: String,
        /// HTTP status code.
        status: u16,
        /// The start of the response body.
        body: String,
    },
    /// The response was not the JSON expected.
    #[error("runtime socket {socket}: GET {path}: unexpected JSON: {source}")]
    Json {
        /// The socket.
        socket: PathBuf,
        /// Request path.
        path: String,
        /// The parse error.
        source: serde_json::Error,
    },
    /// A gRPC call failed (containerd).
    #[error("runtime socket {socket}: gRPC {method}: {status}")]
    Grpc {
        /// The socket.
        socket: PathBuf,
        /// The method called.
        method: &'static str,
        /// The gRPC status.
        status: Box<tonic::Status>,
    },
    /// The gRPC connection could not be set up (containerd).
    #[error("runtime socket {socket}: gRPC connection: {source}")]
    Transport {
        /// The socket.
        socket: PathBuf,
        /// The transport error.
        source: tonic::transport::Error,
    },
    /// The runtime did not answer in time.
    #[error("runtime socket {socket}: no answer within {after:?}")]
    Timeout {
        /// The socket.
        socket: PathBuf,
        /// The time waited.
        after: Duration,
    },
}

impl RuntimeError {
    /// True when the runtime answered but does not know the container (as opposed to being
    /// unreachable or broken).
    pub fn is_not_found(&self) -> bool {
        matches!(self, RuntimeError::NotFound { .. })
    }
}

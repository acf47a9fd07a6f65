//! The Kubernetes API client for an [`ApiSource`], with every answer's lines bounded
//! ([`super::line_limit`]).

use kube::{
    client::ClientBuilder,
    config::{InClusterError, KubeConfigOptions, Kubeconfig, KubeconfigError},
    Client, Config,
};

use super::{
    config::ApiSource,
    line_limit::{self, MAX_LINE_BYTES},
};

/// Why no client could be made.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    /// The in-cluster environment (service variables, service-account token and CA) is
    /// incomplete.
    #[error("in-cluster Kubernetes API settings: {0}")]
    InCluster(#[source] InClusterError),
    /// `kubernetes.api_server` is no URL.
    #[error("kubernetes.api_server '{url}': {reason}")]
    Url {
        /// The setting.
        url: String,
        /// Why it does not parse.
        reason: String,
    },
    /// The kubeconfig file is unreadable or unusable.
    #[error("kubeconfig {path}: {source}")]
    Kubeconfig {
        /// The file.
        path: std::path::PathBuf,
        /// What is wrong.
        source: KubeconfigError,
    },
    /// The client could not be built (TLS settings).
    #[error("Kubernetes API client: {0}")]
    Client(#[source] kube::Error),
}

/// A client for the API server that `source` names.
pub async fn connect(source: &ApiSource) -> Result<Client, ConnectError> {
    let config =
        match source {
            ApiSource::InCluster => Config::incluster().map_err(ConnectError::InCluster)?,
            ApiSource::Url(url) => Config::new(url.parse().map_err(
                |e: http::uri::InvalidUri| ConnectError::Url {
                    url: url.clone(),
                    reason: e.to_string(),
                },
            )?),
            ApiSource::Kubeconfig(path) => {
                let kubeconfig = |source| ConnectError::Kubeconfig {
                    path: path.clone(),
                    source,
                };
                let file = Kubeconfig::read_from(path).map_err(kubeconfig)?;
                Config::from_custom_kubeconfig(file, &KubeConfigOptions::default())
                    .await
                    .map_err(kubeconfig)?
            }
        };
    let builder = ClientBuilder::try_from(config).map_err(ConnectError::Client)?;
    Ok(builder
        .with_layer(&line_limit::layer(MAX_LINE_BYTES))
        .build())
}

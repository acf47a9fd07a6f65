//! Clients for the container runtimes' API sockets: what a runtime says about a container id.
//!
//! - Docker and Podman speak the Docker Engine API, HTTP over a Unix socket:
//!   `GET /containers/<id>/json` gives `Name`, `Config.Image` (Podman also `ImageName`) and
//!   `Config.Labels`.
//! - CRI-O serves its own inspect endpoint on its socket: `GET /containers/<id>` gives `name`,
//!   `image`, `image_ref` and `labels`.
//! - containerd speaks gRPC: `containerd.services.containers.v1.Containers/Get` in a namespace
//!   (`k8s.io` for Kubernetes, `moby` for Docker, `default` for `ctr`), giving `image` and
//!   `labels` (see [`super::containerd`]).
//!
//! Kubernetes runtimes copy the pod's identity into container labels (`io.kubernetes.pod.name`,
//! `io.kubernetes.pod.namespace`, `io.kubernetes.pod.uid`, `io.kubernetes.container.name`), so
//! every client returns the labels and [`ContainerDetails`] reads the pod from them.

use std::{
    collections::HashMap,
    path::{Path, PathBuf},
};

use http_body_util::{BodyExt as _, Empty, Limited};
use hyper::{body::Bytes, Request, StatusCode};
use hyper_util::rt::TokioIo;
use serde::{Deserialize, Serialize};
use tokio::net::UnixStream;

use super::details::{ContainerDetails, RuntimeError};

/// Largest response body read from a runtime API (an inspect document is a few KiB; a
/// container with huge labels or environment may reach a few hundred).
pub const MAX_RESPONSE_BYTES: usize = 4 << 20;

/// The protocol an API socket speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ApiKind {
    /// Podman's service (`podman system service`), Docker-compatible endpoints.
    Podman,
    /// The Docker Engine API.
    Docker,
    /// CRI-O's inspect endpoints.
    CriO,
    /// containerd's gRPC API.
    Containerd,
}

impl ApiKind {
    /// The runtime name this API belongs to, as in [`kestrel_proto::Container::runtime`].
    pub fn runtime_name(self) -> &'static str {
        match self {
            ApiKind::Podman => "podman",
            ApiKind::Docker => "docker",
            ApiKind::CriO => "cri-o",
            ApiKind::Containerd => "containerd",
        }
    }
}

/// One runtime API socket.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Endpoint {
    /// The protocol it speaks.
    pub kind: ApiKind,
    /// Path of the Unix socket.
    pub socket: PathBuf,
}

impl Endpoint {
    /// An endpoint of `kind` at `socket`.
    pub fn new(kind: ApiKind, socket: impl Into<PathBuf>) -> Self {
        Self {
            kind,
            socket: socket.into(),
        }
    }

    /// The sockets the runtimes listen on by default, in the order they are tried: Podman
    /// (`/run/podman/podman.sock`), Docker (`/var/run/docker.sock`), CRI-O
    /// (`/var/run/crio/crio.sock`), containerd (`/run/containerd/containerd.sock`).
    pub fn defaults() -> Vec<Endpoint> {
        vec![
            Endpoint::new(ApiKind::Podman, "/run/podman/podman.sock"),
            Endpoint::new(ApiKind::Docker, "/var/run/docker.sock"),
            Endpoint::new(ApiKind::CriO, "/var/run/crio/crio.sock"),
            Endpoint::new(ApiKind::Containerd, "/run/containerd/containerd.sock"),
        ]
    }

    /// Asks this runtime about container `id`; containerd is searched in `namespaces` in order.
    pub async fn inspect(
        &self,
        id: &str,
        namespaces: &[String],
    ) -> Result<ContainerDetails, RuntimeError> {
        match self.kind {
            ApiKind::Podman | ApiKind::Docker => inspect_docker(&self.socket, id).await,
            ApiKind::CriO => inspect_crio(&self.socket, id).await,
            ApiKind::Containerd => super::containerd::inspect(&self.socket, id, namespaces).await,
        }
    }
}

/// `GET path` over HTTP/1.1 on the Unix socket `socket`: status and body.
pub async fn http_get(socket: &Path, path: &str) -> Result<(StatusCode, Bytes), RuntimeError> {
    let stream = UnixStream::connect(socket)
        .await
        .map_err(|source| RuntimeError::Connect {
            socket: socket.to_owned(),
            source,
        })?;
    let http_error = |source| RuntimeError::Http {
        socket: socket.to_owned(),
        path: path.to_owned(),
        source,
    };
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(http_error)?;
    // The connection task ends when `sender` is dropped or the peer closes.
    let driver = tokio::spawn(connection);
    let request = Request::get(path)
        .header(hyper::header::HOST, "localhost")
        .body(Empty::<Bytes>::new())
        .map_err(|e| RuntimeError::Body {
            socket: socket.to_owned(),
            path: path.to_owned(),
            reason: format!("building request: {e}"),
        })?;
    let response = sender.send_request(request).await.map_err(http_error)?;
    let status = response.status();
    let body = Limited::new(response.into_body(), MAX_RESPONSE_BYTES)
        .collect()
        .await
        .map_err(|e| RuntimeError::Body {
            socket: socket.to_owned(),
            path: path.to_owned(),
            reason: e.to_string(),
        })?
        .to_bytes();
    drop(sender);
    driver.abort();
    Ok((status, body))
}

/// Fetches `path` and parses a 2xx answer as `T`; 404 is [`RuntimeError::NotFound`].
async fn get_json<T: serde::de::DeserializeOwned>(
    socket: &Path,
    path: &str,
    id: &str,
) -> Result<T, RuntimeError> {
    let (status, body) = http_get(socket, path).await?;
    if status == StatusCode::NOT_FOUND {
        return Err(RuntimeError::NotFound {
            socket: socket.to_owned(),
            id: id.to_owned(),
        });
    }
    if !status.is_success() {
        let text = String::from_utf8_lossy(&body[..body.len().min(200)]).into_owned();
        return Err(RuntimeError::Status {
            socket: socket.to_owned(),
            path: path.to_owned(),
            status: status.as_u16(),
            body: text.trim().to_owned(),
        });
    }
    serde_json::from_slice(&body).map_err(|source| RuntimeError::Json {
        socket: socket.to_owned(),
        path: path.to_owned(),
        source,
    })
}

/// The parts of a Docker Engine API `ContainerInspect` answer that Kestrel reads.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
struct DockerInspect {
    name: String,
    /// Image id (`sha256:…`).
    image: String,
    /// Podman only: the image name the container was created from.
    image_name: String,
    config: DockerConfig,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
struct DockerConfig {
    image: String,
    labels: Option<HashMap<String, String>>,
}

impl From<DockerInspect> for ContainerDetails {
    fn from(inspect: DockerInspect) -> Self {
        let image = [inspect.config.image, inspect.image_name, inspect.image]
            .into_iter()
            .find(|s| !s.is_empty())
            .unwrap_or_default();
        ContainerDetails {
            name: inspect.name.trim_start_matches('/').to_owned(),
            image,
            labels: inspect.config.labels.unwrap_or_default(),
        }
    }
}

/// Docker Engine API (Docker, Podman): `GET /containers/<id>/json`.
async fn inspect_docker(socket: &Path, id: &str) -> Result<ContainerDetails, RuntimeError> {
    let path = format!("/containers/{id}/json");
    get_json::<DockerInspect>(socket, &path, id)
        .await
        .map(ContainerDetails::from)
}

/// The parts of CRI-O's `GET /containers/<id>` answer that Kestrel reads.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct CrioInspect {
    name: String,
    image: String,
    image_ref: String,
    labels: Option<HashMap<String, String>>,
}

impl From<CrioInspect> for ContainerDetails {
    fn from(inspect: CrioInspect) -> Self {
        ContainerDetails {
            name: inspect.name,
            image: if inspect.image.is_empty() {
                inspect.image_ref
            } else {
                inspect.image
            },
            labels: inspect.labels.unwrap_or_default(),
        }
    }
}

/// CRI-O: `GET /containers/<id>`.
async fn inspect_crio(socket: &Path, id: &str) -> Result<ContainerDetails, RuntimeError> {
    let path = format!("/containers/{id}");
    get_json::<CrioInspect>(socket, &path, id)
        .await
        .map(ContainerDetails::from)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::enrich::container::details::{
        LABEL_CONTAINER_NAME, LABEL_POD_NAME, LABEL_POD_NAMESPACE, LABEL_POD_UID,
    };
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    use tokio::net::UnixListener;

    const ID: &str = "cd78013b81ff3e3e3396d97ac91c7f0c363ef9388a32eafb1f7873654248f0ec";

    /// A one-answer HTTP server on a Unix socket: replies `status` and `body` to the first
    /// request and hands back the request line it saw.
    fn serve_once(
        socket: &Path,
        status: &'static str,
        body: String,
    ) -> tokio::task::JoinHandle<String> {
        let listener = UnixListener::bind(socket).expect("bind test socket");
        tokio::spawn(async move {
            let (mut stream, _) = listener.accept().await.expect("accept");
            let mut request = Vec::new();
            let mut buf = [0u8; 1024];
            while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                let n = stream.read(&mut buf).await.expect("read request");
                if n == 0 {
                    break;
                }
                request.extend_from_slice(&buf[..n]);
            }
            let response = format!(
                "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
                body.len()
            );
            stream
                .write_all(response.as_bytes())
                .await
                .expect("write response");
            let text = String::from_utf8_lossy(&request).into_owned();
            text.lines().next().unwrap_or_default().to_owned()
        })
    }

    #[tokio::test]
    async fn docker_inspect_reads_name_image_and_kubernetes_labels() {
        let dir = tempfile::tempdir().unwrap();
        let socket = dir.path().join("docker.sock");
        let body = serde_json::json!({
            "Id": ID,
            "Name": "/k8s_app_web-0_prod_3c1a_0",
            "Image": "sha256:814cb5a70d11",
            "Config": {
                "Image": "registry.local/web:1.2",
                "Labels": {
                    LABEL_POD_NAME: "web-0",
                    LABEL_POD_NAMESPACE: "prod",
                    LABEL_POD_UID: "3c1a4e7f-0c1d-4a5b-9f7e-2b1c3d4e5f60",
                    LABEL_CONTAINER_NAME: "app"
                }
            }
        });
        let server = serve_once(&socket, "200 OK", body.to_string());
        let details = Endpoint::new(ApiKind::Docker, &socket)
            .inspect(ID, &[])
            .await
            .expect("inspect");
        assert_eq!(
            server.await.unwrap(),
            format!("GET /containers/{ID}/json HTTP/1.1")
        );
        assert_eq!(details.name, "k8s_app_web-0_prod_3c1a_0");
        assert_eq!(details.display_name(), "app");
        assert_eq!(details.image, "registry.local/web:1.2");
        assert_eq!(details.label(LABEL_POD_NAME), "web-0");
        assert_eq!(details.label(LABEL_POD_NAMESPACE), "prod");
    }

    #[tokio::test]
    async fn podman_inspect_without_config_image_falls_back_to_image_name_and_null_labels() {
        let dir = tempfile::tempdir().unwrap();
        let socket = dir.path().join("podman.sock");
        let body = serde_json::json!({
            "Name": "kt1",
            "Image": "sha256:814cb5a70d11",
            "ImageName": "localhost/kestrel-busybox:test",
            "Config": { "Image": "", "Labels": null }
        });
        let server = serve_once(&socket, "200 OK", body.to_string());
        let details = Endpoint::new(ApiKind::Podman, &socket)
            .inspect(ID, &[])
            .await
            .expect("inspect");
        server.await.unwrap();
        assert_eq!(details.name, "kt1");
        assert_eq!(details.display_name(), "kt1");
        assert_eq!(details.image, "localhost/kestrel-busybox:test");
        assert!(details.labels.is_empty());
    }

    #[tokio::test]
    async fn crio_inspect_reads_its_own_endpoint() {
        let dir = tempfile::tempdir().unwrap();
        let socket = dir.path().join("crio.sock");
        let body = serde_json::json!({
            "name": "k8s_app_web-0_prod_3c1a_0",
            "pid": 4242,
            "image": "",
            "image_ref": "quay.io/org/web@sha256:abcd",
            "labels": { LABEL_POD_NAME: "web-0", LABEL_CONTAINER_NAME: "app" },
            "annotations": {}
        });
        let server = serve_once(&socket, "200 OK", body.to_string());
        let details = Endpoint::new(ApiKind::CriO, &socket)
            .inspect(ID, &[])
            .await
            .expect("inspect");
        assert_eq!(
            server.await.unwrap(),
            format!("GET /containers/{ID} HTTP/1.1")
        );
        assert_eq!(details.image, "quay.io/org/web@sha256:abcd");
        assert_eq!(details.display_name(), "app");
        assert_eq!(details.label(LABEL_POD_NAME), "web-0");
    }

    #[tokio::test]
    async fn unknown_container_is_not_found_naming_the_socket() {
        let dir = tempfile::tempdir().unwrap();
        let socket = dir.path().join("docker.sock");
        let server = serve_once(
            &socket,
            "404 Not Found",
            r#"{"message":"No such container"}"#.into(),
        );
        let err = Endpoint::new(ApiKind::Docker, &socket)
            .inspect(ID, &[])
            .await
            .unwrap_err();
        server.await.unwrap();
        assert!(err.is_not_found(), "{err}");
        assert!(err.to_string().contains("docker.sock"), "{err}");
    }

    #[tokio::test]
    async fn server_errors_and_bad_json_name_socket_and_path() {
        let dir = tempfile::tempdir().unwrap();
        let socket = dir.path().join("a.sock");
        let server = serve_once(&socket, "500 Internal Server Error", "boom".into());
        let err = Endpoint::new(ApiKind::Docker, &socket)
            .inspect(ID, &[])
            .await
            .unwrap_err();
        server.await.unwrap();
        let text = err.to_string();
        assert!(
            text.contains("a.sock") && text.contains("HTTP 500") && text.contains("boom"),
            "{text}"
        );

        let socket = dir.path().join("b.sock");
        let server = serve_once(&socket, "200 OK", "not json".into());
        let err = Endpoint::new(ApiKind::Docker, &socket)
            .inspect(ID, &[])
            .await
            .unwrap_err();
        server.await.unwrap();
        assert!(matches!(err, RuntimeError::Json { .. }), "{err}");
        assert!(err.to_string().contains("/containers/"), "{err}");
    }

    #[tokio::test]
    async fn a_missing_socket_is_a_connect_error_naming_it() {
        let err = Endpoint::new(ApiKind::Podman, "/nonexistent/podman.sock")
            .inspect(ID, &[])
            .await
            .unwrap_err();
        assert!(matches!(err, RuntimeError::Connect { .. }), "{err}");
        assert!(
            err.to_string().contains("/nonexistent/podman.sock"),
            "{err}"
        );
    }
}

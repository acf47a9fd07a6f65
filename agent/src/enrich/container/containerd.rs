//! containerd's gRPC API, the one call Kestrel needs: `Containers/Get` in a namespace.
//!
//! The messages are declared here with the field numbers of containerd's
//! `api/services/containers/v1/containers.proto` (only the fields read: id, labels, image;
//! prost skips the others), so no `.proto` file or code generation is needed for one call.
//! The namespace goes in the `containerd-namespace` request header, as containerd's own
//! clients send it.

use std::{collections::HashMap, path::Path};

use hyper_util::rt::TokioIo;
use tokio::net::UnixStream;
use tonic::codegen::http::uri::PathAndQuery;
use tonic::transport::{Endpoint as GrpcEndpoint, Uri};

use super::details::{ContainerDetails, RuntimeError};

/// The gRPC method called.
pub const GET_METHOD: &str = "/containerd.services.containers.v1.Containers/Get";

/// `containerd.services.containers.v1.GetContainerRequest`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct GetContainerRequest {
    /// Container id.
    #[prost(string, tag = "1")]
    pub id: String,
}

/// `containerd.services.containers.v1.GetContainerResponse`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct GetContainerResponse {
    /// The container.
    #[prost(message, optional, tag = "1")]
    pub container: Option<ContainerRecord>,
}

/// `containerd.services.containers.v1.Container`, the fields Kestrel reads.
#[derive(Clone, PartialEq, prost::Message)]
pub struct ContainerRecord {
    /// Container id.
    #[prost(string, tag = "1")]
    pub id: String,
    /// Labels; the CRI plugin copies the Kubernetes `io.kubernetes.*` labels here.
    #[prost(map = "string, string", tag = "2")]
    pub labels: HashMap<String, String>,
    /// Image reference the container was created from.
    #[prost(string, tag = "3")]
    pub image: String,
}

/// Asks containerd on `socket` for container `id`, trying each namespace in `namespaces` in
/// order until one knows it.
pub async fn inspect(
    socket: &Path,
    id: &str,
    namespaces: &[String],
) -> Result<ContainerDetails, RuntimeError> {
    let path = socket.to_owned();
    let channel = GrpcEndpoint::from_static("http://containerd.sock")
        .connect_with_connector(tower::service_fn(move |_: Uri| {
            let path = path.clone();
            async move { UnixStream::connect(path).await.map(TokioIo::new) }
        }))
        .await
        .map_err(|source| match connect_io_error(&source) {
            Some(io) => RuntimeError::Connect {
                socket: socket.to_owned(),
                source: io,
            },
            None => RuntimeError::Transport {
                socket: socket.to_owned(),
                source,
            },
        })?;
    let grpc_error = |status: tonic::Status| RuntimeError::Grpc {
        socket: socket.to_owned(),
        method: GET_METHOD,
        status: Box::new(status),
    };
    for namespace in namespaces {
        let mut grpc = tonic::client::Grpc::new(channel.clone());
        grpc.ready()
            .await
            .map_err(|e| grpc_error(tonic::Status::unavailable(e.to_string())))?;
        let mut request = tonic::Request::new(GetContainerRequest { id: id.to_owned() });
        let Ok(value) = namespace.parse() else {
            continue;
        };
        request.metadata_mut().insert("containerd-namespace", value);
        let codec = tonic_prost::ProstCodec::<GetContainerRequest, GetContainerResponse>::default();
        match grpc
            .unary(request, PathAndQuery::from_static(GET_METHOD), codec)
            .await
        {
            Ok(response) => {
                let Some(record) = response.into_inner().container else {
                    continue;
                };
                return Ok(ContainerDetails {
                    name: record.id,
                    image: record.image,
                    labels: record.labels,
                });
            }
            Err(status) if status.code() == tonic::Code::NotFound => continue,
            Err(status) => return Err(grpc_error(status)),
        }
    }
    Err(RuntimeError::NotFound {
        socket: socket.to_owned(),
        id: id.to_owned(),
    })
}

/// The I/O error under a tonic transport error, when connecting failed at the socket.
fn connect_io_error(error: &tonic::transport::Error) -> Option<std::io::Error> {
    let mut source = std::error::Error::source(error);
    while let Some(inner) = source {
        if let Some(io) = inner.downcast_ref::<std::io::Error>() {
            return Some(std::io::Error::new(io.kind(), io.to_string()));
        }
        source = inner.source();
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use prost::Message as _;

    #[test]
    fn get_response_decodes_id_labels_and_image_and_skips_other_fields() {
        // Hand-encoded GetContainerResponse{container: Container{id: "c1",
        // labels: {"k": "v"}, image: "img", runtime: {name: "rt"} (field 4, skipped)}}.
        let mut container = Vec::new();
        container.extend_from_slice(&[0x0a, 2, b'c', b'1']);
        container.extend_from_slice(&[0x12, 6, 0x0a, 1, b'k', 0x12, 1, b'v']);
        container.extend_from_slice(&[0x1a, 3, b'i', b'm', b'g']);
        container.extend_from_slice(&[0x22, 4, 0x0a, 2, b'r', b't']);
        let mut response = vec![0x0a, container.len() as u8];
        response.extend_from_slice(&container);

        let decoded = GetContainerResponse::decode(response.as_slice()).expect("decode");
        let record = decoded.container.expect("container");
        assert_eq!(record.id, "c1");
        assert_eq!(record.image, "img");
        assert_eq!(record.labels.get("k").map(String::as_str), Some("v"));
    }

    #[test]
    fn get_request_encodes_the_id_as_field_one() {
        let bytes = GetContainerRequest { id: "ab".into() }.encode_to_vec();
        assert_eq!(bytes, [0x0a, 2, b'a', b'b']);
    }

    #[tokio::test]
    async fn a_missing_containerd_socket_is_a_connect_error_naming_it() {
        let err = inspect(
            Path::new("/nonexistent/containerd.sock"),
            "x",
            &["k8s.io".into()],
        )
        .await
        .unwrap_err();
        assert!(
            matches!(err, RuntimeError::Connect { .. }),
            "{err}: {err:?}"
        );
        assert!(
            err.to_string().contains("/nonexistent/containerd.sock"),
            "{err}"
        );
    }
}

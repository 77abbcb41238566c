//! The connection to containerd: its unix socket, the namespace (and lease) request
//! headers, and one typed client per service.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use strata_content::{Error, Result};
use tonic::transport::{Channel, Endpoint};
use tonic::{Code, Request};

use crate::convert::content_error;
use crate::proto::{content, images, leases, namespaces, snapshots};

/// The request header that selects a containerd namespace.
const NAMESPACE_HEADER: &str = "containerd-namespace";
/// The request header that puts what a request creates into a lease.
const LEASE_HEADER: &str = "containerd-lease";
/// gRPC messages this client accepts (containerd's own server limit).
const MAX_MESSAGE: usize = 16 << 20;

/// A connection to containerd's gRPC socket, bound to one namespace.
///
/// Cheap to clone (clones share the connection). [`ContainerdStore`](crate::ContainerdStore)
/// and [`ContainerdSnapshotter`](crate::ContainerdSnapshotter) are built on it.
#[derive(Clone, Debug)]
pub struct ContainerdConnection {
    channel: Channel,
    socket: PathBuf,
    namespace: String,
}

impl ContainerdConnection {
    /// Connects to containerd at `socket`, in `namespace`, which must exist:
    /// `Unavailable` naming the socket when it does not exist or does not answer,
    /// `NotFound` naming the namespace when containerd has no such namespace.
    pub async fn connect(socket: impl AsRef<Path>, namespace: &str) -> Result<Self> {
        let conn = Self::open(socket.as_ref(), namespace).await?;
        // containerd's namespaces `Get` answers for any name; `List` says which exist.
        let req = conn.request(namespaces::ListNamespacesRequest {
            filter: String::new(),
        });
        let list = conn
            .namespaces()
            .list(req)
            .await
            .map_err(|s| conn.error("listing namespaces", s))?
            .into_inner();
        if list.namespaces.iter().any(|n| n.name == namespace) {
            Ok(conn)
        } else {
            Err(Error::NotFound(format!(
                "containerd namespace {namespace:?} does not exist on {} \
                 (create it with `ctr namespaces create {namespace}`)",
                conn.socket.display()
            )))
        }
    }

    /// Connects like [`ContainerdConnection::connect`], creating `namespace` if it does
    /// not exist yet (what `ctr` and containerd's Go client do implicitly).
    pub async fn connect_or_create(socket: impl AsRef<Path>, namespace: &str) -> Result<Self> {
        let conn = Self::open(socket.as_ref(), namespace).await?;
        let req = conn.request(namespaces::CreateNamespaceRequest {
            namespace: Some(namespaces::Namespace {
                name: namespace.to_string(),
                labels: HashMap::new(),
            }),
        });
        match conn.namespaces().create(req).await {
            Ok(_) => Ok(conn),
            Err(s) if s.code() == Code::AlreadyExists => Ok(conn),
            Err(s) => Err(conn.error(&format!("creating namespace {namespace:?}"), s)),
        }
    }

    async fn open(socket: &Path, namespace: &str) -> Result<Self> {
        if namespace.is_empty() {
            return Err(Error::InvalidArgument(
                "an empty containerd namespace name".into(),
            ));
        }
        match tokio::fs::metadata(socket).await {
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(Error::Unavailable(format!(
                    "containerd socket {} does not exist (is containerd running?)",
                    socket.display()
                )))
            }
            Err(e) => {
                return Err(Error::Unavailable(format!(
                    "containerd socket {}: {e}",
                    socket.display()
                )))
            }
        }
        let channel = connect_unix(socket).await.map_err(|e| {
            Error::Unavailable(format!(
                "cannot connect to containerd at {}: {}",
                socket.display(),
                error_chain(&e)
            ))
        })?;
        Ok(ContainerdConnection {
            channel,
            socket: socket.to_path_buf(),
            namespace: namespace.to_string(),
        })
    }

    /// The socket this connection talks to.
    pub fn socket(&self) -> &Path {
        &self.socket
    }

    /// The containerd namespace every request is made in.
    pub fn namespace(&self) -> &str {
        &self.namespace
    }

    /// Wraps `msg` in a request carrying this connection's namespace header.
    pub(crate) fn request<T>(&self, msg: T) -> Request<T> {
        self.request_in_lease(msg, None)
    }

    /// Wraps `msg` in a request carrying the namespace header and, when `lease` is
    /// given, the lease header (what the request creates joins that lease).
    pub(crate) fn request_in_lease<T>(&self, msg: T, lease: Option<&str>) -> Request<T> {
        let mut req = Request::new(msg);
        insert_header(&mut req, NAMESPACE_HEADER, &self.namespace);
        if let Some(lease) = lease {
            insert_header(&mut req, LEASE_HEADER, lease);
        }
        req
    }

    /// Turns a gRPC status of the request that was doing `what` into a content-store
    /// error (see [`content_error`]).
    pub(crate) fn error(&self, what: &str, status: tonic::Status) -> Error {
        content_error(&self.socket, what, status)
    }

    pub(crate) fn content(&self) -> content::content_client::ContentClient<Channel> {
        content::content_client::ContentClient::new(self.channel.clone())
            .max_decoding_message_size(MAX_MESSAGE)
            .max_encoding_message_size(MAX_MESSAGE)
    }

    pub(crate) fn leases(&self) -> leases::leases_client::LeasesClient<Channel> {
        leases::leases_client::LeasesClient::new(self.channel.clone())
            .max_decoding_message_size(MAX_MESSAGE)
    }

    pub(crate) fn images(&self) -> images::images_client::ImagesClient<Channel> {
        images::images_client::ImagesClient::new(self.channel.clone())
            .max_decoding_message_size(MAX_MESSAGE)
    }

    pub(crate) fn snapshots(&self) -> snapshots::snapshots_client::SnapshotsClient<Channel> {
        snapshots::snapshots_client::SnapshotsClient::new(self.channel.clone())
            .max_decoding_message_size(MAX_MESSAGE)
    }

    fn namespaces(&self) -> namespaces::namespaces_client::NamespacesClient<Channel> {
        namespaces::namespaces_client::NamespacesClient::new(self.channel.clone())
    }
}

/// Every message of a server stream (a `List`), in order.
pub(crate) async fn all_messages<T>(
    mut stream: tonic::Streaming<T>,
) -> std::result::Result<Vec<T>, tonic::Status> {
    let mut out = Vec::new();
    while let Some(message) = stream.message().await? {
        out.push(message);
    }
    Ok(out)
}

/// A gRPC channel over the unix socket at `path` (tonic's own example for unix
/// sockets, as containerd-client does it: the URI is a placeholder, never resolved).
async fn connect_unix(path: &Path) -> std::result::Result<Channel, tonic::transport::Error> {
    let path = path.to_path_buf();
    Endpoint::from_static("http://[::]")
        .connect_with_connector(tower::service_fn(move |_| {
            let path = path.clone();
            async move {
                let stream = tokio::net::UnixStream::connect(path).await?;
                Ok::<_, std::io::Error>(hyper_util::rt::TokioIo::new(stream))
            }
        }))
        .await
}

fn insert_header<T>(req: &mut Request<T>, key: &'static str, value: &str) {
    // Namespace and lease names are validated by containerd; a value that can't be a
    // header is sent as nothing and containerd reports the missing namespace.
    if let Ok(v) = value.parse() {
        req.metadata_mut().insert(key, v);
    }
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut cur = e.source();
    while let Some(s) = cur {
        out.push_str(": ");
        out.push_str(&s.to_string());
        cur = s.source();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_missing_socket_is_unavailable_naming_it() {
        let dir = tempfile::tempdir().expect("tempdir");
        let socket = dir.path().join("nope.sock");
        match ContainerdConnection::connect(&socket, "default").await {
            Err(Error::Unavailable(m)) => {
                assert!(m.contains(&socket.display().to_string()), "{m}")
            }
            other => panic!("connecting to a missing socket gave {other:?}"),
        }
        // A file that is not a socket: containerd cannot be reached there either.
        let file = dir.path().join("file");
        std::fs::write(&file, b"").expect("write");
        match ContainerdConnection::connect(&file, "default").await {
            Err(Error::Unavailable(m)) => assert!(m.contains(&file.display().to_string()), "{m}"),
            other => panic!("connecting to a plain file gave {other:?}"),
        }
    }
}

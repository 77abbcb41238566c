//! Walking the graph of an image from its root: every manifest and index (children
//! before their parent, the root last) and every config and layer, each once. A push
//! sends them in this order; an inspection reads the manifests. Reading is the
//! caller's (`fetch`): this crate has no store.

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;

use crate::{Descriptor, Digest, ImageNode, InvalidManifest};

/// How deep indexes may nest under the root before a walk refuses the image.
pub const MAX_INDEX_DEPTH: usize = 8;

/// What a blob (neither manifest nor index) is to its image.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BlobRole {
    /// A manifest's config.
    Config,
    /// A manifest's layer.
    Layer,
}

impl std::fmt::Display for BlobRole {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            BlobRole::Config => "config",
            BlobRole::Layer => "layer",
        })
    }
}

/// One manifest or index of a walked image.
#[derive(Clone, Debug)]
pub struct GraphNode {
    /// Its descriptor (as its parent, or the caller for the root, gave it).
    pub descriptor: Descriptor,
    /// Its bytes, as `fetch` returned them.
    pub bytes: Vec<u8>,
    /// The parsed document.
    pub node: ImageNode,
}

/// An image's graph, from [`walk_image`].
#[derive(Clone, Debug, Default)]
pub struct ImageGraph {
    /// Manifests and indexes, each once: children before their parent (an index's
    /// entries in index order), the root last.
    pub nodes: Vec<GraphNode>,
    /// Configs and layers, each once, by digest.
    pub blobs: BTreeMap<Digest, (Descriptor, BlobRole)>,
}

/// Why a walk failed: reading a document, or a document that is not what its
/// descriptor says.
#[derive(Debug, thiserror::Error)]
pub enum WalkError<E> {
    /// `fetch` failed.
    #[error(transparent)]
    Fetch(E),
    /// A document is malformed, of an unexpected media type, or nested too deep.
    #[error(transparent)]
    Invalid(#[from] InvalidManifest),
}

/// Reads the image under `root` with `fetch` (which returns a document's bytes,
/// verified against its descriptor) and collects its graph.
pub async fn walk_image<F, Fut, E>(
    root: &Descriptor,
    mut fetch: F,
) -> Result<ImageGraph, WalkError<E>>
where
    F: FnMut(Descriptor) -> Fut,
    Fut: Future<Output = Result<Vec<u8>, E>>,
{
    enum Step {
        /// Read a manifest or index and schedule its children.
        Visit(Descriptor, usize),
        /// All its children are scheduled before it: emit it.
        Emit(GraphNode),
    }
    let mut graph = ImageGraph::default();
    let mut seen = BTreeSet::new();
    let mut stack = vec![Step::Visit(root.clone(), 0)];
    while let Some(step) = stack.pop() {
        let (desc, depth) = match step {
            Step::Emit(node) => {
                graph.nodes.push(node);
                continue;
            }
            Step::Visit(desc, depth) => (desc, depth),
        };
        if !seen.insert(desc.digest.clone()) {
            continue;
        }
        if depth > MAX_INDEX_DEPTH {
            return Err(WalkError::Invalid(InvalidManifest {
                digest: desc.digest,
                reason: format!("indexes nested more than {MAX_INDEX_DEPTH} deep"),
            }));
        }
        let bytes = fetch(desc.clone()).await.map_err(WalkError::Fetch)?;
        let node = ImageNode::parse(&desc, &bytes)?;
        match &node {
            ImageNode::Index(index) => {
                let children: Vec<Descriptor> = index.manifests.clone();
                stack.push(Step::Emit(GraphNode {
                    descriptor: desc,
                    bytes,
                    node,
                }));
                for child in children.into_iter().rev() {
                    stack.push(Step::Visit(child, depth + 1));
                }
            }
            ImageNode::Manifest(m) => {
                graph
                    .blobs
                    .entry(m.config.digest.clone())
                    .or_insert((m.config.clone(), BlobRole::Config));
                for layer in &m.layers {
                    graph
                        .blobs
                        .entry(layer.digest.clone())
                        .or_insert((layer.clone(), BlobRole::Layer));
                }
                graph.nodes.push(GraphNode {
                    descriptor: desc,
                    bytes,
                    node,
                });
            }
        }
    }
    Ok(graph)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::media_types;

    fn put(
        docs: &mut BTreeMap<Digest, Vec<u8>>,
        media_type: &str,
        v: serde_json::Value,
    ) -> Descriptor {
        let bytes = serde_json::to_vec(&v).unwrap();
        let d = Descriptor::new(media_type, Digest::sha256_of(&bytes), bytes.len() as u64);
        docs.insert(d.digest.clone(), bytes);
        d
    }

    fn block_on<F: Future>(f: F) -> F::Output {
        // The fetches below complete at once: one poll suffices.
        let mut f = std::pin::pin!(f);
        let waker = std::task::Waker::noop();
        match f.as_mut().poll(&mut std::task::Context::from_waker(waker)) {
            std::task::Poll::Ready(v) => v,
            std::task::Poll::Pending => panic!("pending"),
        }
    }

    #[test]
    fn children_first_each_once() {
        let mut docs = BTreeMap::new();
        let config = Descriptor::new(media_types::OCI_CONFIG, Digest::sha256_of(b"c"), 1);
        let shared = Descriptor::new(media_types::OCI_LAYER_GZIP, Digest::sha256_of(b"l"), 1);
        let m1 = put(
            &mut docs,
            media_types::OCI_MANIFEST,
            serde_json::json!({"config": config, "layers": [shared]}),
        );
        let m2 = put(
            &mut docs,
            media_types::OCI_MANIFEST,
            serde_json::json!({"config": config, "layers": [shared, shared]}),
        );
        let root = put(
            &mut docs,
            media_types::OCI_INDEX,
            serde_json::json!({"manifests": [m1, m2, m1]}),
        );
        let graph = block_on(walk_image(&root, |d: Descriptor| {
            let bytes = docs.get(&d.digest).cloned().ok_or(d.digest);
            async move { bytes }
        }))
        .unwrap();
        let order: Vec<&Digest> = graph.nodes.iter().map(|n| &n.descriptor.digest).collect();
        assert_eq!(order, vec![&m1.digest, &m2.digest, &root.digest]);
        assert_eq!(graph.blobs.len(), 2);
        assert_eq!(graph.blobs[&shared.digest].1, BlobRole::Layer);

        let missing = Descriptor::new(media_types::OCI_MANIFEST, Digest::sha256_of(b"x"), 1);
        let err = block_on(walk_image(&missing, |d: Descriptor| async move {
            Err::<Vec<u8>, _>(d.digest)
        }))
        .unwrap_err();
        assert!(matches!(err, WalkError::Fetch(d) if d == missing.digest));
    }
}

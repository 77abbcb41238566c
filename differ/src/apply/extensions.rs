//! What PAX and GNU extension headers say about the entry after them.

use std::io::Read;

/// The largest PAX or GNU extension header read: Go `archive/tar`'s
/// `maxSpecialFileSize` (1 MiB), which containerd and Docker read layers with.
pub(super) const MAX_EXTENSION_HEADER: u64 = 1 << 20;

/// What extension headers said about the next entry.
#[derive(Default)]
pub(super) struct Extensions {
    /// PAX records, in order.
    pub(super) pax: Vec<(Vec<u8>, Vec<u8>)>,
    /// A GNU long name.
    pub(super) long_name: Option<Vec<u8>>,
    /// A GNU long link target.
    pub(super) long_link: Option<Vec<u8>>,
}

impl Extensions {
    /// The name of `entry`: PAX `path`, else a GNU long name, else the header's.
    pub(super) fn name<R: Read>(&self, entry: &tar::Entry<'_, R>) -> Vec<u8> {
        match (self.get(b"path"), &self.long_name) {
            (Some(p), _) => p.to_vec(),
            (None, Some(p)) => p.clone(),
            (None, None) => entry.path_bytes().into_owned(),
        }
    }

    /// The link target of `entry`: PAX `linkpath`, else a GNU long link, else the
    /// header's.
    pub(super) fn link<R: Read>(&self, entry: &tar::Entry<'_, R>) -> Option<Vec<u8>> {
        match (self.get(b"linkpath"), &self.long_link) {
            (Some(p), _) => Some(p.to_vec()),
            (None, Some(p)) => Some(p.clone()),
            (None, None) => entry.link_name_bytes().map(|l| l.into_owned()),
        }
    }

    /// The last PAX record named `key`.
    pub(super) fn get(&self, key: &[u8]) -> Option<&[u8]> {
        self.pax
            .iter()
            .rev()
            .find(|(k, _)| k == key)
            .map(|(_, v)| &v[..])
    }
}

/// A GNU long name without its trailing NULs.
pub(super) fn trim_nul(mut v: Vec<u8>) -> Vec<u8> {
    while v.last() == Some(&0) {
        v.pop();
    }
    v
}

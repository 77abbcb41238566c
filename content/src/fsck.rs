//! [`fsck`]: verify every committed blob of a store against its digest and size.

use crate::content::{ContentStore, Filter};
use crate::error::{Error, Result};
use strata_oci::Descriptor;
use strata_oci::{Digest, Digester};

/// What [`fsck`] found. It never repairs anything.
#[derive(Debug, Default)]
pub struct FsckReport {
    /// How many blobs were read.
    pub checked: usize,
    /// Every blob that failed, sorted by digest, with a typed error naming it
    /// (`DigestMismatch`, `SizeMismatch`, `NotFound`, `Io`, …).
    pub problems: Vec<(Digest, Error)>,
}

impl FsckReport {
    /// True when every blob verified.
    pub fn is_clean(&self) -> bool {
        self.problems.is_empty()
    }
}

/// Reads every blob `store` lists and checks its bytes hash to its digest and that
/// their count matches the recorded size. Hashing runs on blocking threads.
pub async fn fsck<S: ContentStore + ?Sized>(store: &S) -> Result<FsckReport> {
    let mut report = FsckReport::default();
    for info in store.walk(&Filter::All).await? {
        report.checked += 1;
        if let Err(e) = verify(store, &info.digest, info.size).await {
            report.problems.push((info.digest.clone(), e));
        }
    }
    Ok(report)
}

async fn verify<S: ContentStore + ?Sized>(store: &S, digest: &Digest, size: u64) -> Result<()> {
    let desc = Descriptor::new("application/octet-stream", digest.clone(), size);
    let reader = store.reader(&desc).await?;
    let mut digester = Digester::new();
    let mut offset = 0u64;
    // Read past the recorded size too, so an appended-to blob is caught.
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = reader.read_at(&mut buf, offset).await?;
        if n == 0 {
            break;
        }
        offset += n as u64;
        let chunk = buf[..n].to_vec();
        digester = tokio::task::spawn_blocking(move || {
            digester.update(&chunk);
            digester
        })
        .await
        .map_err(|e| Error::Unavailable(format!("hashing {digest}: {e}")))?;
    }
    if offset != size {
        return Err(Error::SizeMismatch {
            subject: format!("content {digest}"),
            expected: size,
            actual: offset,
        });
    }
    let actual = digester.finish();
    if actual != *digest {
        return Err(Error::DigestMismatch {
            subject: format!("content {digest}"),
            expected: digest.to_string(),
            actual: actual.to_string(),
        });
    }
    Ok(())
}

//! Content digests (`algorithm:hex`) and a streaming SHA-256 digester.

use std::fmt;
use std::str::FromStr;

use sha2::{Digest as _, Sha256};

/// A string that should be a digest (`algorithm:hex`) is not one.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("invalid digest {input:?}: {reason}")]
pub struct InvalidDigest {
    /// The text that failed to parse.
    pub input: String,
    /// Why it is not a digest.
    pub reason: String,
}

/// A validated content digest such as `sha256:e3b0c4…`.
///
/// Validation follows the OCI image spec's grammar (delegated to `oci-spec`); strata
/// computes and verifies only `sha256`, the algorithm every registry and runtime
/// accepts, so [`Digest::parse`] rejects other algorithms with a typed error.
/// Ordered and hashable so it can key sorted maps (deterministic JSON).
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Digest(String);

impl Digest {
    /// Parses and validates `algorithm:hex`; the error names the offending text.
    pub fn parse(s: &str) -> Result<Digest, InvalidDigest> {
        let invalid = |reason: String| InvalidDigest {
            input: s.to_string(),
            reason,
        };
        let parsed = oci_spec::image::Digest::from_str(s).map_err(|e| invalid(e.to_string()))?;
        if parsed.algorithm().as_ref() != "sha256" {
            return Err(invalid(format!(
                "unsupported algorithm {:?} (only sha256)",
                parsed.algorithm().as_ref()
            )));
        }
        Ok(Digest(s.to_string()))
    }

    /// The SHA-256 digest of `bytes`.
    pub fn sha256_of(bytes: &[u8]) -> Digest {
        let mut d = Digester::new();
        d.update(bytes);
        d.finish()
    }

    /// The algorithm part (`sha256`).
    pub fn algorithm(&self) -> &str {
        &self.0[..self.0.find(':').unwrap_or(0)]
    }

    /// The lowercase hex part.
    pub fn hex(&self) -> &str {
        &self.0[self.0.find(':').map(|i| i + 1).unwrap_or(0)..]
    }

    /// The whole digest as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl FromStr for Digest {
    type Err = InvalidDigest;
    fn from_str(s: &str) -> Result<Digest, InvalidDigest> {
        Digest::parse(s)
    }
}

impl serde::Serialize for Digest {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

impl<'de> serde::Deserialize<'de> for Digest {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Digest::parse(&s).map_err(serde::de::Error::custom)
    }
}

/// Streaming SHA-256: feed bytes with [`Digester::update`], get the [`Digest`] at the end.
#[derive(Clone, Default)]
pub struct Digester {
    hasher: Sha256,
    len: u64,
}

impl Digester {
    /// A digester that has seen no bytes.
    pub fn new() -> Self {
        Self::default()
    }

    /// Hashes more bytes.
    pub fn update(&mut self, bytes: &[u8]) {
        self.hasher.update(bytes);
        self.len += bytes.len() as u64;
    }

    /// How many bytes have been hashed.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// True when no bytes have been hashed.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The digest of everything hashed so far (the digester can keep going).
    pub fn digest(&self) -> Digest {
        self.clone().finish()
    }

    /// The digest of everything hashed.
    pub fn finish(self) -> Digest {
        Digest(format!("sha256:{}", hex::encode(self.hasher.finalize())))
    }
}

/// The chainID of a layer on top of the chain `parent` (containerd's
/// `identity.ChainID`): the diffID itself for a bottom layer, else
/// `sha256(parent + " " + diff_id)`.
pub fn chain_id(parent: Option<&Digest>, diff_id: &Digest) -> Digest {
    match parent {
        None => diff_id.clone(),
        Some(p) => Digest::sha256_of(format!("{p} {diff_id}").as_bytes()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_sha256() {
        assert_eq!(
            Digest::sha256_of(b"").as_str(),
            "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }

    #[test]
    fn rejects_malformed_digests_naming_them() {
        for bad in [
            "",
            "sha256",
            "sha256:xyz",
            "nocolon",
            "sha256:ABCDEF",
            "md5:abcd",
        ] {
            match Digest::parse(bad) {
                Err(InvalidDigest { input, .. }) => assert_eq!(input, bad),
                other => panic!("{bad:?} gave {other:?}"),
            }
        }
    }
}

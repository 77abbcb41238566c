use super::*;
use crate::layer_writer::tests::sample_tar;

fn encode(tar: &[u8], threads: usize, piece: usize) -> (Vec<u8>, BTreeMap<String, String>) {
    let mut enc = ZstdChunkedEncoder::new(Vec::new(), 3, threads).expect("encoder");
    for part in tar.chunks(piece) {
        enc.write_all(part).expect("write");
    }
    enc.finish().expect("finish")
}

/// A tar with a file holding data, a long run of zeros and data again, and a file of
/// few zeros.
fn holey_tar() -> Vec<u8> {
    let mut builder = tar::Builder::new(Vec::new());
    let mut body = crate::compression::tests::sample(300_000);
    body.extend(std::iter::repeat_n(0u8, 5000));
    body.extend(crate::compression::tests::sample(1000));
    for (name, data) in [("holey", body), ("small", vec![0u8; 100])] {
        let mut header = tar::Header::new_ustar();
        header.set_size(data.len() as u64);
        header.set_mode(0o644);
        builder
            .append_data(&mut header, name, &data[..])
            .expect("file");
    }
    builder.into_inner().expect("tar")
}

#[test]
fn decompresses_to_the_tar_with_any_threads_and_writes() {
    for tar in [sample_tar(30, 90_000), holey_tar(), sample_tar(0, 0)] {
        let (one, notes) = encode(&tar, 1, 1 << 20);
        assert_eq!(zstd::decode_all(&one[..]).expect("plain zstd"), tar);
        assert_eq!(notes.len(), 3, "{notes:?}");
        for (threads, piece) in [(2, 7), (4, 10_000)] {
            let (other, other_notes) = encode(&tar, threads, piece);
            assert!(one == other, "bytes differ with {threads} threads");
            assert_eq!(notes, other_notes);
        }
    }
}

#[test]
fn zero_runs_are_zeros_chunks_and_the_footer_names_the_toc() {
    let tar = holey_tar();
    let (blob, notes) = encode(&tar, 2, 4096);
    let footer = &blob[blob.len() - 64..];
    assert_eq!(&footer[56..], b"GNUlInUx");
    let field =
        |i: usize| u64::from_le_bytes(footer[i * 8..i * 8 + 8].try_into().expect("8 bytes"));
    let position = format!("{}:{}:{}:1", field(0), field(1), field(2));
    assert_eq!(notes[annotations::ZSTD_CHUNKED_MANIFEST_POSITION], position);
    let (start, len) = (field(0) as usize, field(1) as usize);
    let json = zstd::decode_all(&blob[start..start + len]).expect("toc");
    let toc: serde_json::Value = serde_json::from_slice(&json).expect("json");
    let entries = toc["entries"].as_array().expect("entries");
    let zeros: Vec<_> = entries
        .iter()
        .filter(|e| e["chunkType"] == "zeros")
        .collect();
    assert_eq!(zeros.len(), 1, "{json:?}");
    assert_eq!(zeros[0]["chunkSize"], 5000);
    assert_eq!(zeros[0]["chunkOffset"], 300_000);
    // 100 zeros are data, and a file of one chunk has no chunk fields.
    let small = entries
        .iter()
        .find(|e| e["name"] == "small")
        .expect("small");
    assert!(small.get("chunkSize").is_none());
    assert_eq!(small["size"], 100);
}

#[test]
fn a_payload_never_split_is_streamed_as_one_frame() {
    // All 0x01: the rolling checksum never splits, so the payload is one 20 MiB frame,
    // past the size frames are held whole.
    let body = vec![1u8; 20 << 20];
    let mut builder = tar::Builder::new(Vec::new());
    for name in ["a", "b"] {
        let mut header = tar::Header::new_ustar();
        header.set_size(body.len() as u64);
        header.set_mode(0o644);
        builder
            .append_data(&mut header, name, &body[..])
            .expect("file");
    }
    let tar = builder.into_inner().expect("tar");
    let (blob, _) = encode(&tar, 1, 1 << 20);
    assert_eq!(
        encode(&tar, 3, 77_777).0,
        blob,
        "bytes differ with 3 threads"
    );
    assert!(zstd::decode_all(&blob[..]).expect("plain zstd") == tar);
    let footer = &blob[blob.len() - 64..];
    let field = |i: usize| {
        u64::from_le_bytes(footer[i * 8..i * 8 + 8].try_into().expect("8 bytes")) as usize
    };
    let json = zstd::decode_all(&blob[field(0)..field(0) + field(1)]).expect("toc");
    let toc: serde_json::Value = serde_json::from_slice(&json).expect("json");
    let entries = toc["entries"].as_array().expect("entries");
    assert_eq!(entries.len(), 2, "one entry each, no chunks");
    for e in entries {
        let (start, end) = (
            e["offset"].as_u64().expect("offset"),
            e["endOffset"].as_u64().expect("end"),
        );
        let bytes = zstd::decode_all(&blob[start as usize..end as usize]).expect("range");
        assert!(bytes == body, "{e}");
        assert_eq!(e["digest"], Digest::sha256_of(&body).to_string());
    }
}

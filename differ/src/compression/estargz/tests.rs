use std::io::Read;

use super::toc::{FOOTER_SIZE, TOC_TAR_NAME};
use crate::compression::{Encoder, FinishedLayer};
use crate::layer_writer::tests::sample_tar;
use strata_oci::{Compression, Digest};

fn estargz(tar: &[u8], threads: usize, piece: usize, chunk: u64) -> FinishedLayer<Vec<u8>> {
    let mut enc = Encoder::with_chunk_size(
        Vec::new(),
        Compression::Estargz,
        None,
        Some(threads),
        Some(chunk),
    )
    .expect("encoder");
    for part in tar.chunks(piece) {
        std::io::Write::write_all(&mut enc, part).expect("write");
    }
    enc.finish_layer().expect("finish")
}

/// The one gzip member starting at `offset`, decompressed.
fn member_at(blob: &[u8], offset: u64) -> Vec<u8> {
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(&blob[offset as usize..])
        .read_to_end(&mut out)
        .expect("a gzip member starts at the offset");
    out
}

/// The TOC offset the footer names, and the TOC JSON read from there.
fn toc_of(blob: &[u8]) -> (u64, serde_json::Value, Vec<u8>) {
    let footer = &blob[blob.len() - FOOTER_SIZE..];
    let hex = std::str::from_utf8(&footer[16..32]).expect("hex");
    assert_eq!(&footer[32..38], b"STARGZ");
    let offset = u64::from_str_radix(hex, 16).expect("offset");
    let toc_tar = member_at(blob, offset);
    let mut archive = tar::Archive::new(&toc_tar[..]);
    let mut entry = archive
        .entries()
        .expect("tar")
        .next()
        .expect("entry")
        .expect("ok");
    assert_eq!(entry.path().expect("path").to_str(), Some(TOC_TAR_NAME));
    let mut json = Vec::new();
    entry.read_to_end(&mut json).expect("json");
    (
        offset,
        serde_json::from_slice(&json).expect("toc json"),
        json,
    )
}

#[test]
fn chunks_decompress_on_their_own_to_what_the_toc_says() {
    // 3 files of 70 000 bytes in chunks of 16 KiB: 5 chunks each.
    let tar = sample_tar(3, 70_000);
    let chunk = 16 * 1024;
    let layer = estargz(&tar, 2, 10_000, chunk);
    let blob = layer.out;

    // The whole blob is gzip of the tar, then the TOC entry.
    let mut all = Vec::new();
    flate2::read::MultiGzDecoder::new(&blob[..])
        .read_to_end(&mut all)
        .expect("gzip");
    assert!(
        all[..tar.len()] == tar[..],
        "the tar comes first, as it was"
    );
    assert!(all[tar.len()..] == layer.appended[..]);

    let (toc_offset, toc, json) = toc_of(&blob);
    assert!(toc_offset > 0);
    assert_eq!(
        layer.annotations["containerd.io/snapshot/stargz/toc.digest"],
        Digest::sha256_of(&json).to_string()
    );
    assert_eq!(
        layer.annotations["io.containers.estargz.uncompressed-size"],
        all.len().to_string()
    );
    assert_eq!(toc["version"], 1);
    let entries = toc["entries"].as_array().expect("entries");
    let body = crate::compression::tests::sample(70_000);
    let mut chunks = 0;
    let mut current = String::new();
    for e in entries {
        let kind = e["type"].as_str().expect("type");
        match kind {
            "dir" => assert_eq!(e["name"], "dir/"),
            "reg" | "chunk" => {
                if kind == "reg" {
                    current = e["name"].as_str().expect("name").to_string();
                    assert_eq!(e["size"], 70_000);
                    assert_eq!(e["digest"], Digest::sha256_of(&body).to_string());
                    assert_eq!(e["mode"], 0o644);
                    assert_eq!(e["modtime"], "2023-11-14T22:13:20Z");
                } else {
                    assert_eq!(e["name"], current.as_str());
                }
                let start = e["chunkOffset"].as_u64().unwrap_or(0);
                let size = e["chunkSize"].as_u64().unwrap_or(70_000 - start);
                assert!(size == chunk || start + size == 70_000, "{e}");
                let data = member_at(&blob, e["offset"].as_u64().expect("offset"));
                let want = &body[start as usize..(start + size) as usize];
                assert!(data[..size as usize] == *want, "chunk {start} of {current}");
                assert_eq!(e["chunkDigest"], Digest::sha256_of(want).to_string());
                chunks += 1;
            }
            other => panic!("unexpected entry type {other}"),
        }
    }
    assert_eq!(chunks, 15);
}

#[test]
fn bytes_depend_only_on_the_tar_and_chunk_size() {
    let tar = sample_tar(4, 3 << 20);
    let one = estargz(&tar, 1, 1 << 20, 1 << 20);
    for (threads, piece) in [(2, 4096), (4, 777)] {
        let other = estargz(&tar, threads, piece, 1 << 20);
        assert!(one.out == other.out, "{threads} threads changed the bytes");
    }
    let bigger = estargz(&tar, 2, 4096, 4 << 20);
    assert!(bigger.out != one.out);
}

#[test]
fn a_tar_cut_inside_an_entry_is_an_error() {
    let tar = sample_tar(1, 5000);
    let mut enc = Encoder::new(Vec::new(), Compression::Estargz, None, Some(1)).expect("enc");
    std::io::Write::write_all(&mut enc, &tar[..2000]).expect("write");
    assert!(enc.finish_layer().is_err());
}

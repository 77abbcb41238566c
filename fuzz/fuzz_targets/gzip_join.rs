//! The parallel gzip encoder's block joiner: independently deflated blocks joined into
//! one deflate stream must inflate back to the input, and the joiner's own inflate (it
//! walks deflate block boundaries through zlib's C API) must refuse any bytes that are
//! not one complete deflate stream with an error, never a crash.
//!
//! Input: a level byte, a cut-size byte, then data: the data is deflated in blocks of
//! the cut size and joined; the raw input is also handed to the joiner as if it were a
//! deflated block.
#![no_main]

use std::io::Read;

use libfuzzer_sys::fuzz_target;
use strata_differ::fuzzing::{join_deflate_blocks, make_deflate_non_final};

fuzz_target!(|data: &[u8]| {
    let [level, cut, rest @ ..] = data else {
        return;
    };
    let level = u32::from(*level % 10);
    let cut = usize::from(*cut).max(1) * 16;
    let blocks: Vec<&[u8]> = if rest.is_empty() {
        vec![rest]
    } else {
        rest.chunks(cut).collect()
    };
    let joined = join_deflate_blocks(&blocks, level).expect("deflating and joining blocks");
    let mut back = Vec::new();
    flate2::read::DeflateDecoder::new(&joined[..])
        .read_to_end(&mut back)
        .expect("joined blocks are one valid deflate stream");
    assert!(back == rest, "joined blocks inflate to the input");

    // Hostile bytes into the joiner: an error, or a block that, ended by an empty
    // final block, inflates to what the bytes did.
    let mut raw = rest.to_vec();
    if make_deflate_non_final(&mut raw).is_ok() {
        let mut before = Vec::new();
        flate2::read::DeflateDecoder::new(rest)
            .read_to_end(&mut before)
            .expect("the joiner accepted a complete deflate stream");
        raw.extend_from_slice(&[0x03, 0x00]);
        let mut after = Vec::new();
        flate2::read::DeflateDecoder::new(&raw[..])
            .read_to_end(&mut after)
            .expect("a joined block then an empty final block is one deflate stream");
        assert!(before == after, "joining keeps the block's data");
    }
});

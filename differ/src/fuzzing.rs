//! Entry points for the fuzz targets in the repository's `fuzz/` crate: internals that
//! no public API reaches with arbitrary input. Compiled only with the `fuzzing` cargo
//! feature, which nothing but the fuzz crate enables; not part of strata's API.

use std::io;

use crate::compression::deflate_block::{self, BlockDeflater};

/// Deflates each of `blocks` independently at `level` (0–9) the way the parallel gzip
/// encoder does, joining them into one raw deflate stream (every block but the last
/// made non-final).
pub fn join_deflate_blocks(blocks: &[&[u8]], level: u32) -> io::Result<Vec<u8>> {
    let mut deflater = BlockDeflater::new(level)?;
    let mut out = Vec::new();
    for (i, block) in blocks.iter().enumerate() {
        out.extend(deflater.deflate(block, i + 1 == blocks.len())?);
    }
    Ok(out)
}

/// Rewrites the complete raw deflate stream `deflate` so another can follow it (its
/// final block made non-final, an empty stored block appended), as the block joiner
/// does; an error when `deflate` is not one complete raw deflate stream.
pub fn make_deflate_non_final(deflate: &mut Vec<u8>) -> io::Result<()> {
    deflate_block::make_non_final(deflate)
}

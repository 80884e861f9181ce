//! One deflater and one inflater per worker thread, reset for every message: without context
//! takeover no state outlives a message, so 1000 sockets cost no more than one.

use std::cell::RefCell;

use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress, Status};

/// What ends every sync-flushed message, stripped by the sender and put back by the receiver.
const TAIL: [u8; 4] = [0x00, 0x00, 0xff, 0xff];

thread_local! {
    static DEFLATER: RefCell<Compress> = RefCell::new(Compress::new(Compression::fast(), false));
    static INFLATER: RefCell<Decompress> = RefCell::new(Decompress::new(false));
}

/// The message compressed, tail stripped; `None` when that would not be shorter.
pub fn deflate(message: &[u8]) -> Option<Vec<u8>> {
    DEFLATER.with(|cell| {
        let mut deflater = cell.borrow_mut();
        deflater.reset();
        // Room for the worst case, so that one call takes all input and completes the flush.
        let mut out = Vec::with_capacity(message.len() + message.len() / 64 + 64);
        deflater
            .compress_vec(message, &mut out, FlushCompress::Sync)
            .ok()?;
        if deflater.total_in() as usize != message.len() || !out.ends_with(&TAIL) {
            return None;
        }
        out.truncate(out.len() - TAIL.len());
        (out.len() < message.len()).then_some(out)
    })
}

/// Why a compressed message could not be inflated.
#[derive(Debug, PartialEq, Eq)]
pub enum InflateError {
    /// It would inflate past the limit.
    TooBig,
    Corrupt,
}

/// Inflates one message (tail stripped, as sent) to at most `limit` bytes.
pub fn inflate(compressed: &[u8], limit: usize) -> Result<Vec<u8>, InflateError> {
    INFLATER.with(|cell| {
        let mut inflater = cell.borrow_mut();
        inflater.reset(false);
        let mut out = Vec::with_capacity((compressed.len() * 4).min(limit) + 64);
        inflate_into(&mut inflater, compressed, &mut out, limit)?;
        inflate_into(&mut inflater, &TAIL, &mut out, limit)?;
        Ok(out)
    })
}

fn inflate_into(
    inflater: &mut Decompress,
    input: &[u8],
    out: &mut Vec<u8>,
    limit: usize,
) -> Result<(), InflateError> {
    let start = inflater.total_in();
    let consumed = |inflater: &Decompress| (inflater.total_in() - start) as usize;
    loop {
        if out.len() == out.capacity() {
            // One byte past the limit is how a message too big shows.
            let room = out.len().max(1024).min(limit + 1 - out.len().min(limit));
            out.reserve(room.max(1));
        }
        let (before_in, before_out) = (consumed(inflater), out.len());
        let status = inflater
            .decompress_vec(&input[before_in..], out, FlushDecompress::Sync)
            .map_err(|_| InflateError::Corrupt)?;
        if out.len() > limit {
            return Err(InflateError::TooBig);
        }
        let spare = out.len() < out.capacity();
        if status == Status::StreamEnd || (consumed(inflater) == input.len() && spare) {
            return Ok(());
        }
        if consumed(inflater) == before_in && out.len() == before_out && spare {
            return Err(InflateError::Corrupt);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn text_output_compresses_several_times_over() {
        let log: Vec<u8> = (0..2000)
            .flat_map(|i| {
                format!("   Compiling crate-{} v0.{}.{}\r\n", i % 97, i % 7, i % 13).into_bytes()
            })
            .collect();
        let packed = deflate(&log).unwrap();
        assert!(
            packed.len() * 4 < log.len(),
            "{} of {}",
            packed.len(),
            log.len()
        );
        assert_eq!(inflate(&packed, log.len()).unwrap(), log);
    }

    #[test]
    fn inflating_is_bounded() {
        let zeros = vec![0u8; 1 << 20];
        let packed = deflate(&zeros).unwrap();
        assert_eq!(inflate(&packed, 1000), Err(InflateError::TooBig));
        assert_eq!(inflate(&packed, 1 << 20).unwrap().len(), 1 << 20);
        assert_eq!(
            inflate(&[0xff, 0xff, 0xff], 1000),
            Err(InflateError::Corrupt)
        );
    }

    proptest! {
        #[test]
        fn any_bytes_round_trip(data in proptest::collection::vec(any::<u8>(), 0..5000), repeat in 1usize..20) {
            let data = data.repeat(repeat);
            if let Some(packed) = deflate(&data) {
                prop_assert_eq!(inflate(&packed, data.len()).unwrap(), data);
            }
        }

        #[test]
        fn any_input_inflates_or_fails_without_panic(junk in proptest::collection::vec(any::<u8>(), 0..2000)) {
            let _ = inflate(&junk, 100_000);
        }
    }
}

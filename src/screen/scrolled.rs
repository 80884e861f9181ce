//! Output that scrolls off the screen before anyone could see it need not be emulated: for a
//! flood of lines, the emulator gets the pen's colours and the last two screenfuls.

use memchr::{memchr, memrchr_iter};

const ESC: u8 = 0x1b;

/// Where the emulator can start in a chunk, and what it must be told of the part it skips.
#[derive(Debug, PartialEq)]
pub(super) struct Skip {
    /// The offset in the chunk the emulator starts at.
    pub(super) from: usize,
    /// The skipped part's colour and style sequences (SGR), in order: the pen the rest is
    /// drawn with.
    pub(super) pen: Vec<u8>,
}

/// What a chunk that starts in the parser's ground state holds, as far as skipping goes.
pub(super) struct Scan {
    /// Up to here the chunk is text, controls and SGR sequences only.
    pub(super) plain: usize,
    /// Where the SGR sequences are within `..plain`.
    sgr: Vec<(usize, usize)>,
}

impl Scan {
    pub(super) fn new(bytes: &[u8]) -> Self {
        let mut sgr = Vec::new();
        let mut at = 0;
        while let Some(n) = memchr(ESC, &bytes[at..]) {
            let start = at + n;
            let Some(len) = sgr_len(&bytes[start..]) else {
                return Self { plain: start, sgr };
            };
            sgr.push((start, start + len));
            at = start + len;
        }
        Self {
            plain: bytes.len(),
            sgr,
        }
    }

    /// Whether the whole chunk is text, controls and SGR: it cannot have changed the scroll
    /// region, the modes or the parser's state.
    pub(super) fn is_plain(&self, bytes: &[u8]) -> bool {
        self.plain == bytes.len()
    }

    /// The skip for a screen of `rows` with no scroll region, if the chunk has enough lines.
    ///
    /// Line feeds in text only move the cursor down or scroll the whole screen. From any row,
    /// `rows - 1` of them take the cursor to the bottom; a CR LF there starts a blank bottom line
    /// at column 0 whatever came before; `rows - 1` more line feeds scroll away every line the
    /// two runs (with and without the skipped part) could differ in. So everything before the
    /// `rows - 1` line feeds that precede such a CR LF can go, but for its SGR sequences.
    pub(super) fn skip(&self, bytes: &[u8], rows: u16) -> Option<Skip> {
        let rows = usize::from(rows);
        if rows < 2 {
            return None;
        }
        let plain = &bytes[..self.plain];
        let mut feeds = memrchr_iter(b'\n', plain);
        for _ in 1..rows {
            feeds.next()?;
        }
        feeds
            .by_ref()
            .find(|&at| at > 0 && plain[at - 1] == b'\r')?;
        for _ in 1..rows {
            feeds.next()?;
        }
        let from = feeds.next()? + 1;
        let skipped = &self.sgr[..self.sgr.partition_point(|&(_, end)| end <= from)];
        // `ESC [ m` and `ESC [ 0 m` reset the pen: what came before them does not count.
        let reset = skipped
            .iter()
            .rposition(|&(start, end)| matches!(&bytes[start..end], b"\x1b[m" | b"\x1b[0m"));
        let pen = skipped[reset.unwrap_or(0)..]
            .iter()
            .flat_map(|&(start, end)| &bytes[start..end])
            .copied()
            .collect();
        Some(Skip { from, pen })
    }
}

/// The length of the SGR sequence (`ESC [ digits, ':' and ';' m`) at the start of `bytes`.
fn sgr_len(bytes: &[u8]) -> Option<usize> {
    if bytes.get(1) != Some(&b'[') {
        return None;
    }
    let params = bytes[2..]
        .iter()
        .take_while(|b| matches!(b, b'0'..=b'9' | b':' | b';'))
        .count();
    (bytes.get(2 + params) == Some(&b'm')).then_some(3 + params)
}

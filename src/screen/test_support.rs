//! What the screen's tests share: vt100's screen with and without the screen's own parser in
//! front, compared in full (scroll region included).

use proptest::prelude::*;

/// `bytes` cut at each of `cuts` (positions in `bytes`, any order).
pub(super) fn cut<'a>(bytes: &'a [u8], cuts: &[prop::sample::Index]) -> Vec<&'a [u8]> {
    let mut at: Vec<usize> = cuts.iter().map(|i| i.index(bytes.len() + 1)).collect();
    at.extend([0, bytes.len()]);
    at.sort_unstable();
    at.windows(2).map(|w| &bytes[w[0]..w[1]]).collect()
}

/// What the screen shows, then after probes that show the scroll region too: of the screen in
/// use, then of the main screen.
fn state(mut vt: impl FnMut(&[u8]) -> Vec<u8>) -> Vec<u8> {
    const PROBE: &[u8] = b"\n\n\n\n\n\n\nP\x1bM\x1bM\x1bM\x1bM\x1bM\x1bM\x1bMQ";
    let mut state = vt(b"");
    state.extend(vt(PROBE));
    state.extend(vt(b"\x1b[?1049l"));
    state.extend(vt(PROBE));
    state
}

/// vt100 fed `chunks` as they are (and as slowly as they are).
pub(super) fn unfiltered_state(chunks: &[&[u8]], (rows, cols): (u16, u16)) -> Vec<u8> {
    let mut vt = vt100::Parser::new(rows, cols, 0);
    for chunk in chunks {
        vt.process(chunk);
    }
    state(|probe| {
        vt.process(probe);
        vt.screen().state_formatted()
    })
}

/// The filtered parser fed `chunks` in turn.
pub(super) fn filtered_state(chunks: &[&[u8]], (rows, cols): (u16, u16)) -> Vec<u8> {
    let mut parser = super::parser::Parser::new(rows, cols);
    for chunk in chunks {
        parser.process(chunk);
    }
    state(|probe| {
        parser.process(probe);
        parser.screen().state_formatted()
    })
}

/// Fails unless the screen's parser shows what vt100 shows, both fed `bytes` cut at `cuts`.
pub(super) fn same_screen(
    bytes: &[u8],
    cuts: &[prop::sample::Index],
    size: (u16, u16),
) -> Result<(), TestCaseError> {
    // In the same chunks: vte itself may drop a character after a split UTF-8 one.
    let chunks = cut(bytes, cuts);
    prop_assert_eq!(
        filtered_state(&chunks, size),
        unfiltered_state(&chunks, size)
    );
    Ok(())
}

//! A filter in front of vt100 that keeps its work proportional to the output: counts past the
//! screen's size are clamped and OSC strings cut at `OSC_LIMIT`. Only the emulator gets the
//! filtered bytes.

use std::borrow::Cow;

const ESC: u8 = 0x1b;
/// OSC bytes passed on: as much as vte itself keeps when built without `std`.
const OSC_LIMIT: usize = 1024;

/// Where vte is in the output, as far as the filter needs to know. vte enters every sequence
/// only from ESC, and ESC leaves any sequence, so `Text` is vte's ground state.
#[derive(Clone, Copy, Debug, Default)]
enum State {
    #[default]
    Text,
    Escape,
    /// After `ESC` and an intermediate byte (`ESC ( B`).
    EscIntermediate,
    Csi(Csi),
    /// In an OSC string, after this many bytes of it.
    Osc(usize),
    /// In a DCS, SOS, PM or APC string, which vt100 ignores. A lone 0x9c ends a DCS string in
    /// vte but not the others: the filter stays here until ESC, CAN or SUB, never calling text
    /// ground that may not be.
    String,
}

#[derive(Clone, Copy, Debug)]
enum Csi {
    /// Right after `ESC [`.
    Entry,
    /// In the first parameter, worth this much so far (saturating, as vte counts).
    First(u16),
    /// Past the first parameter, which was worth this much.
    Rest(u16),
    /// With a private marker or an intermediate byte, or ignored by vte: vt100 takes no count.
    Other,
}

enum Edit {
    Keep,
    Drop,
    /// Replace the final byte so that the sequence counts this much.
    Clamp(u16),
}

#[derive(Default)]
pub(super) struct Filter {
    state: State,
}

impl Filter {
    /// Whether vte is in its ground state after the bytes filtered so far (text is printed).
    pub(super) fn in_ground(&self) -> bool {
        matches!(self.state, State::Text)
    }

    /// `bytes` as vt100 may see them on a screen of `(rows, cols)`: borrowed unless edited.
    pub(super) fn filter<'a>(&mut self, bytes: &'a [u8], size: (u16, u16)) -> Cow<'a, [u8]> {
        let mut edited: Option<Vec<u8>> = None;
        let mut kept = 0;
        let mut i = 0;
        while i < bytes.len() {
            // Text is most of the output: skip to the next byte that can change the state.
            let next = match self.state {
                State::Text => memchr::memchr(ESC, &bytes[i..]),
                State::String => memchr::memchr3(ESC, 0x18, 0x1a, &bytes[i..]),
                _ => Some(0),
            };
            match next {
                Some(n) => i += n,
                None => break,
            }
            let replacement = match self.step(bytes[i], size) {
                Edit::Keep => None,
                Edit::Drop => Some(Vec::new()),
                Edit::Clamp(count) => Some(voided_and_clamped(bytes[i], count)),
            };
            if let Some(replacement) = replacement {
                let out = edited.get_or_insert_with(|| Vec::with_capacity(bytes.len() + 16));
                out.extend_from_slice(&bytes[kept..i]);
                out.extend_from_slice(&replacement);
                kept = i + 1;
            }
            i += 1;
        }
        match edited {
            None => Cow::Borrowed(bytes),
            Some(mut out) => {
                out.extend_from_slice(&bytes[kept..]);
                Cow::Owned(out)
            }
        }
    }

    /// Follows vte over `byte` (see vte's `advance_*`); says what to do with it.
    fn step(&mut self, byte: u8, (rows, cols): (u16, u16)) -> Edit {
        let (next, edit) = match (self.state, byte) {
            (_, ESC) => (State::Escape, Edit::Keep),
            (State::Text, _) => (State::Text, Edit::Keep),
            (State::Escape, b'[') => (State::Csi(Csi::Entry), Edit::Keep),
            (State::Escape, b']') => (State::Osc(0), Edit::Keep),
            (State::Escape, b'P' | b'X' | b'^' | b'_') => (State::String, Edit::Keep),
            // Executed or ignored, still in the escape.
            (State::Escape | State::EscIntermediate, 0x00..=0x17 | 0x19 | 0x1c..=0x1f | 0x7f..) => {
                (self.state, Edit::Keep)
            }
            (State::Escape | State::EscIntermediate, 0x20..=0x2f) => {
                (State::EscIntermediate, Edit::Keep)
            }
            (State::Escape | State::EscIntermediate, _) => (State::Text, Edit::Keep),
            (State::String, 0x18 | 0x1a) => (State::Text, Edit::Keep),
            (State::String, _) => (State::String, Edit::Keep),
            (State::Csi(csi), 0x40..=0x7e) => (State::Text, csi.clamp(byte, rows, cols)),
            (State::Csi(_), 0x18 | 0x1a) => (State::Text, Edit::Keep),
            (State::Csi(csi), _) => (State::Csi(csi.next(byte)), Edit::Keep),
            (State::Osc(_), 0x07 | 0x18 | 0x1a) => (State::Text, Edit::Keep),
            // Ignored by vte: not kept.
            (State::Osc(len), 0x00..=0x17 | 0x19 | 0x1c..=0x1f) => (State::Osc(len), Edit::Keep),
            (State::Osc(len), _) if len >= OSC_LIMIT => (State::Osc(len), Edit::Drop),
            (State::Osc(len), _) => (State::Osc(len + 1), Edit::Keep),
        };
        self.state = next;
        edit
    }
}

impl Csi {
    /// After a byte that neither ends nor cancels the sequence.
    fn next(self, byte: u8) -> Self {
        match (self, byte) {
            (Csi::Entry, b'0'..=b'9') => Csi::First(u16::from(byte - b'0')),
            (Csi::First(n), b'0'..=b'9') => {
                Csi::First(n.saturating_mul(10).saturating_add(u16::from(byte - b'0')))
            }
            (Csi::Entry, b':' | b';') => Csi::Rest(0),
            (Csi::First(n), b':' | b';') => Csi::Rest(n),
            (_, 0x20..=0x2f | 0x3c..=0x3f) => Csi::Other,
            // Digits and separators past the first parameter; C0 controls (executed), DEL and
            // bytes past ASCII (ignored) anywhere.
            _ => self,
        }
    }

    /// What to do with the final byte `byte`: vt100 counts the first parameter of these.
    fn clamp(self, byte: u8, rows: u16, cols: u16) -> Edit {
        let (Csi::First(count) | Csi::Rest(count)) = self else {
            return Edit::Keep;
        };
        let bound = match byte {
            b'@' | b'P' | b'X' => cols,
            b'L' | b'M' | b'S' | b'T' => rows,
            _ => return Edit::Keep,
        };
        // 0 would mean the default count, 1.
        let bound = bound.max(1);
        if count > bound {
            Edit::Clamp(bound)
        } else {
            Edit::Keep
        }
    }
}

/// In place of the final byte `byte` of a sequence in its parameters: a private marker, which
/// makes vte ignore the sequence, the final byte, then the sequence again counting `count`.
fn voided_and_clamped(byte: u8, count: u16) -> Vec<u8> {
    let last = char::from(byte);
    format!("<{last}\x1b[{count}{last}").into_bytes()
}

#[cfg(test)]
mod tests {
    use super::super::test_support::{cut, filtered_state, same_screen, unfiltered_state};
    use super::*;
    use proptest::prelude::*;

    /// Insert 65535 characters: about a second of vt100's time on an 80-column line.
    const HOSTILE: &[u8] = b"\x1b[65535@";

    /// Feeds `chunks` in turn through a filter on a screen of `(rows, cols)`.
    fn filtered(chunks: &[&[u8]], size: (u16, u16)) -> Vec<u8> {
        let mut filter = Filter::default();
        chunks
            .iter()
            .flat_map(|chunk| filter.filter(chunk, size).into_owned())
            .collect()
    }

    /// Some output: text, wide and combining characters, and the sequences the filter follows.
    fn output() -> impl Strategy<Value = Vec<u8>> {
        let token = prop_oneof![
            prop::sample::select(vec![
                &b"ab"[..],
                "漢".as_bytes(),
                "e\u{301}".as_bytes(),
                b"\xe6\xbc",
                b"\r\n",
                b"\n",
                b"\x08",
                b"\x1b[?1049h",
                b"\x1b[?1049l",
                b"\x1b[7m",
                b"\x1b[41m",
                b"\x1b7",
                b"\x1b8",
                b"\x1bM",
                b"\x1b]0;title\x07",
                b"\x1b]0;x",
                b"\x1bP1;2q",
                b"\x1b#",
                b"\x1b[",
                b"\x1b",
                b"\x18",
                b"\x1b[?25l",
                b"\x9b5@",
                "\u{9b}5@".as_bytes(),
            ])
            .prop_map(<[u8]>::to_vec),
            (0..=12u16, 0..=12u16).prop_map(|(r, c)| format!("\x1b[{r};{c}H").into_bytes()),
            (0..=8u16, 0..=8u16).prop_map(|(t, b)| format!("\x1b[{t};{b}r").into_bytes()),
            (
                prop::sample::select(vec!["", "?", "0", "00", ";", ":", " "]),
                0..=300u16,
                prop::sample::select(vec!["", ";5", ":2", "\n", "\x7f", "\x18", " ", "?"]),
                prop::sample::select(b"@PXLMSTmABCDJK".to_vec()),
            )
                .prop_map(|(before, count, after, last)| {
                    let mut seq = format!("\x1b[{before}{count}{after}").into_bytes();
                    seq.push(last);
                    seq
                }),
        ];
        prop::collection::vec(token, 0..40).prop_map(|tokens| tokens.concat())
    }

    proptest! {
        /// Whatever the chunks, the filter passes on the same bytes.
        #[test]
        fn a_sequence_split_anywhere_is_filtered_as_if_whole(
            bytes in output(),
            cuts in prop::collection::vec(any::<prop::sample::Index>(), 0..10),
        ) {
            let size = (5, 10);
            prop_assert_eq!(filtered(&cut(&bytes, &cuts), size), filtered(&[&bytes], size));
        }

        /// The filter changes vt100's work, never the screen.
        #[test]
        fn the_filtered_screen_is_the_screen_vt100_shows(
            bytes in output(),
            cuts in prop::collection::vec(any::<prop::sample::Index>(), 0..10),
            rows in 2..=6u16,
            cols in 3..=12u16,
        ) {
            same_screen(&bytes, &cuts, (rows, cols))?;
        }
    }

    #[test]
    fn a_count_past_the_screen_is_the_screen_s_size() {
        // A full screen, a scroll region, a wide character and the cursor on its second half.
        let mut before = Vec::new();
        for i in 0..30 {
            before.extend(format!("\x1b[3{}mline {i} 漢字 {}\r\n", i % 8, "x".repeat(i)).bytes());
        }
        before.extend(b"\x1b[3;20r\x1b[5;7H");
        for (last, bound) in [
            ('@', 80),
            ('P', 80),
            ('X', 80),
            ('L', 24),
            ('M', 24),
            ('S', 24),
            ('T', 24),
        ] {
            let hostile = [&before[..], format!("\x1b[65535{last}").as_bytes()].concat();
            let clamped = [&before[..], format!("\x1b[{bound}{last}").as_bytes()].concat();
            assert_eq!(
                filtered_state(&[&hostile], (24, 80)),
                unfiltered_state(&[&clamped], (24, 80)),
                "CSI 65535 {last}"
            );
        }
    }

    #[test]
    fn vt100_is_never_given_a_count_past_the_screen() {
        let hostile = HOSTILE.repeat(200);
        let once: &[u8] = b"\x1b[65535<@\x1b[80@";
        assert_eq!(filtered(&[&hostile], (24, 80)), once.repeat(200));
        // One byte at a time: the same.
        let bytes: Vec<&[u8]> = hostile.chunks(1).collect();
        assert_eq!(filtered(&bytes, (24, 80)), once.repeat(200));
        // Leading zeros, further parameters, controls inside: still the count vte reads.
        assert_eq!(
            filtered(&[b"\x1b[000070000\n;3:4L"], (24, 80)),
            b"\x1b[000070000\n;3:4<L\x1b[24L"
        );
    }

    #[test]
    fn what_vt100_does_something_with_is_passed_on_untouched() {
        let output: &[u8] = b"\x1b[?1049h\x1b[1;38;2;255;100;0m\x1b[65535;65535H\x1b[65535C\
            \x1b[?65535@\x1b[65535 @\x1b[10@\x1b[80P\x1b]0;title\x07plain";
        assert!(matches!(
            Filter::default().filter(output, (24, 80)),
            Cow::Borrowed(_)
        ));
    }

    #[test]
    fn a_long_osc_string_is_cut_and_ends_where_it_did() {
        let mut output = b"\x1b]0;".to_vec();
        output.extend(std::iter::repeat_n(b'a', 100_000));
        output.extend(b"\x07after");
        let bytes: Vec<&[u8]> = output.chunks(1000).collect();
        let passed = filtered(&bytes, (24, 80));
        assert_eq!(
            passed.len(),
            b"\x1b]".len() + OSC_LIMIT + b"\x07after".len()
        );
        assert_eq!(
            filtered_state(&bytes, (24, 80)),
            unfiltered_state(&[&output], (24, 80))
        );
    }
}

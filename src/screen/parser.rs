//! vt100 as the screen uses it: behind the filter, which keeps its work proportional to the
//! output, and sparing it the lines that a chunk scrolls away unseen.

use super::filter::Filter;
use super::scrolled::Scan;

pub(super) struct Parser {
    vt: vt100::Parser,
    filter: Filter,
    /// Whether a line feed on the bottom row scrolls the whole screen, as last tried; `None`
    /// once output other than text, or a resize, may have set a scroll region.
    whole_screen_scrolls: Option<bool>,
    /// Bytes given to vt100.
    #[cfg(test)]
    fed: usize,
}

impl Parser {
    pub(super) fn new(rows: u16, cols: u16) -> Self {
        Self {
            vt: vt100::Parser::new(rows, cols, 0),
            filter: Filter::default(),
            whole_screen_scrolls: None,
            #[cfg(test)]
            fed: 0,
        }
    }

    pub(super) fn process(&mut self, bytes: &[u8]) {
        let size = self.vt.screen().size();
        // A UTF-8 character split between chunks needs no care: vte prints its replacement
        // where the cursor was, and no line it prints there is left on the screen.
        let ground = self.filter.in_ground();
        let bytes = self.filter.filter(bytes, size);
        if !ground {
            self.whole_screen_scrolls = None;
            self.feed(&bytes);
            return;
        }
        let scan = Scan::new(&bytes);
        let skip = match scan.skip(&bytes, size.0) {
            Some(skip) if self.whole_screen_scrolls() => Some(skip),
            _ => None,
        };
        if !scan.is_plain(&bytes) {
            self.whole_screen_scrolls = None;
        }
        match skip {
            Some(skip) => {
                self.feed(&skip.pen);
                self.feed(&bytes[skip.from..]);
            }
            None => self.feed(&bytes),
        }
    }

    fn feed(&mut self, bytes: &[u8]) {
        #[cfg(test)]
        {
            self.fed += bytes.len();
        }
        self.vt.process(bytes);
    }

    pub(super) fn screen(&self) -> &vt100::Screen {
        self.vt.screen()
    }

    pub(super) fn set_size(&mut self, rows: u16, cols: u16) {
        self.whole_screen_scrolls = None;
        self.vt.screen_mut().set_size(rows, cols);
    }

    fn whole_screen_scrolls(&mut self) -> bool {
        *self
            .whole_screen_scrolls
            .get_or_insert_with(|| no_scroll_region(self.vt.screen()))
    }
}

/// Whether `screen` has no scroll region, tried on a copy (vt100 does not tell): a line feed on
/// the bottom row must move the second row's text to the first.
fn no_scroll_region(screen: &vt100::Screen) -> bool {
    let (rows, cols) = screen.size();
    let mut copy = vt100::Parser::new(rows, cols, 0);
    *copy.screen_mut() = screen.clone();
    // Origin mode off, so that the rows are the screen's, not the region's.
    copy.process(format!("\x1b[?6l\x1b[1H\x1b[2KA\x1b[2H\x1b[2KZ\x1b[{rows}H\n").as_bytes());
    rows >= 2
        && copy
            .screen()
            .cell(0, 0)
            .is_some_and(|c| c.contents() == "Z")
}

#[cfg(test)]
mod tests {
    use super::super::test_support::{filtered_state, same_screen, unfiltered_state};
    use super::*;
    use proptest::prelude::*;

    /// Lines of output, mostly text: what a build log or `cat` prints, with now and then a
    /// sequence that moves the cursor, sets a scroll region or switches screens.
    fn lines() -> impl Strategy<Value = Vec<u8>> {
        let token = prop_oneof![
            8 => (1..12usize, prop::sample::select(vec!["a", "b", "xy ", "漢", "e\u{301}", "\t"]))
                .prop_map(|(n, s)| s.repeat(n).into_bytes()),
            8 => prop::sample::select(vec![&b"\r\n"[..], b"\n", b"\r"]).prop_map(<[u8]>::to_vec),
            3 => prop::sample::select(vec![
                &b"\x1b[31m"[..], b"\x1b[0m", b"\x1b[m", b"\x1b[1;4;38;5;200m", b"\x1b[38:2::1:2:3m",
            ])
            .prop_map(<[u8]>::to_vec),
            1 => prop::sample::select(vec![
                &b"\x08"[..], b"\x0b", b"\x0c", b"\x07", b"\x18", b"\xe6\xbc", b"\x9b",
                b"\x1bM", b"\x1b7", b"\x1b8", b"\x1b[?1049h", b"\x1b[?1049l", b"\x1b[?47h",
                b"\x1b[?6h", b"\x1b[4h", b"\x1b[?7l", b"\x1b[r", b"\x1b[2;4r", b"\x1b[1;3r",
                b"\x1b[3;1H", b"\x1b[A", b"\x1bP1$q", b"\x1b_x", b"\x1b(0", b"\x1b]0;t\x07",
                b"\x1b[", b"\x1b", b"\x1bc",
            ])
            .prop_map(<[u8]>::to_vec),
            1 => (1..=7u16, 1..=7u16).prop_map(|(t, b)| format!("\x1b[{t};{b}r").into_bytes()),
            1 => (1..=7u16, 1..=13u16).prop_map(|(r, c)| format!("\x1b[{r};{c}H").into_bytes()),
        ];
        prop::collection::vec(token, 0..200).prop_map(|tokens| tokens.concat())
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        /// Skipping what scrolls away never changes the screen, its modes or its scroll region.
        #[test]
        fn the_skip_never_changes_what_the_screen_shows(
            bytes in lines(),
            cuts in prop::collection::vec(any::<prop::sample::Index>(), 0..12),
            rows in 2..=6u16,
            cols in 3..=12u16,
        ) {
            same_screen(&bytes, &cuts, (rows, cols))?;
        }
    }

    /// A screen full of text in a first chunk, the cursor anywhere, perhaps in the middle of a
    /// character; then lines of any length, ended by CR LF, LF, CR or nothing.
    fn screen_then_lines(rows: u16, cols: u16) -> impl Strategy<Value = (Vec<u8>, Vec<u8>)> {
        let filled = prop::collection::vec("[a-z ]{0,14}", usize::from(rows)).prop_map(|texts| {
            texts
                .iter()
                .enumerate()
                .flat_map(|(row, text)| format!("\x1b[{};1H{text}", row + 1).into_bytes())
                .collect::<Vec<u8>>()
        });
        let cursor = (1..=rows, 1..=cols, prop::bool::weighted(0.2)).prop_map(|(r, c, split)| {
            let mut at = format!("\x1b[{r};{c}H").into_bytes();
            if split {
                at.extend(b"\xe6\xbc");
            }
            at
        });
        let line = (
            prop::collection::vec(
                prop::sample::select(vec!["a", "b", "漢", "\t", "\x1b[7m"]),
                0..16,
            ),
            prop::sample::select(vec!["\r\n", "\n", "\r", ""]),
        )
            .prop_map(|(text, end)| [text.concat(), end.to_string()].concat().into_bytes());
        (
            (filled, cursor).prop_map(|(filled, cursor)| [filled, cursor].concat()),
            prop::collection::vec(line, 0..40).prop_map(|lines| lines.concat()),
        )
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2048))]

        /// The lines skipped are the ones no longer on the screen, whatever it showed before.
        #[test]
        fn only_lines_that_scrolled_away_are_skipped(
            (rows, cols, (screen, lines)) in (2..=5u16, 2..=8u16).prop_flat_map(|(rows, cols)| {
                (Just(rows), Just(cols), screen_then_lines(rows, cols))
            }),
        ) {
            let chunks = [&screen[..], &lines];
            prop_assert_eq!(
                filtered_state(&chunks, (rows, cols)),
                unfiltered_state(&chunks, (rows, cols))
            );
        }
    }

    #[test]
    fn a_flood_of_lines_costs_the_emulator_two_screens() {
        let log: Vec<u8> = (0..10_000)
            .flat_map(|i| {
                format!("\x1b[32m   Compiling\x1b[0m crate-{i} v0.1.{i}\r\n").into_bytes()
            })
            .collect();
        let mut parser = Parser::new(24, 80);
        parser.process(&log);
        assert!(
            parser.fed < 4 * 1024,
            "vt100 got {} of {} bytes",
            parser.fed,
            log.len()
        );
        let chunks = [&log[..]];
        assert_eq!(
            filtered_state(&chunks, (24, 80)),
            unfiltered_state(&chunks, (24, 80))
        );
    }

    #[test]
    fn lines_under_a_scroll_region_are_all_shown() {
        // The cursor below a region of the first two rows: every line is written over the last.
        let region = b"\x1b[1;2r\x1b[4H";
        let mut lines = b"a long first line\r\n".to_vec();
        lines.extend(b"x\r\n".repeat(20));
        let chunks = [&region[..], &lines];
        assert_eq!(
            filtered_state(&chunks, (4, 80)),
            unfiltered_state(&chunks, (4, 80))
        );
    }

    #[test]
    fn nothing_is_skipped_under_a_scroll_region() {
        let mut parser = Parser::new(24, 80);
        parser.process(b"\x1b[2;20r");
        assert!(!parser.whole_screen_scrolls());
        parser.process(b"\x1b[r");
        assert!(parser.whole_screen_scrolls());
        parser.process(b"\x1b[?1049h\x1b[1;23r");
        assert!(
            !parser.whole_screen_scrolls(),
            "the alternate screen's own region"
        );
        parser.process(b"\x1b[?1049l");
        assert!(parser.whole_screen_scrolls());
        parser.set_size(30, 80);
        parser.process(b"\x1b[?47h");
        assert!(
            !parser.whole_screen_scrolls(),
            "vt100 keeps the region of screen 47"
        );
    }
}

//! The emulated screen a session keeps for re-attach, brought up to date off the output path: a
//! worker thread applies queued output, and the emulator is made only once the output outgrows
//! `RAW_LIMIT` or the size changes.

mod filter;
mod parser;
mod scrolled;
#[cfg(test)]
mod test_support;

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc, Mutex, MutexGuard, OnceLock};

use bytes::Bytes;

use crate::protocol::TermSize;
use parser::Parser;

/// The screen is at most this large (columns, rows): 781 KiB of 32-byte cells per grid, and two
/// grids once a program has used the alternate screen. A larger terminal is restored clipped.
pub const SCREEN_LIMIT: TermSize = TermSize {
    cols: 250,
    rows: 100,
};
/// Output queued for the worker before the pump applies it itself.
const QUEUE_LIMIT: usize = 256 * 1024;
/// Output this small is applied by the pump itself, not handed to the worker.
const INLINE_LIMIT: usize = 1024;
/// How long the worker lets output gather before it applies it.
const GATHER: std::time::Duration = std::time::Duration::from_millis(2);
/// Output kept as it came, before the session gets an emulator.
const RAW_LIMIT: usize = 16 * 1024;

#[derive(Default)]
struct Queue {
    chunks: VecDeque<Bytes>,
    bytes: usize,
}

pub struct Screen {
    emulator: Mutex<Emulator>,
    queue: Mutex<Queue>,
    /// Whether the worker has this screen on its list already.
    scheduled: AtomicBool,
}

impl Screen {
    pub fn new(size: TermSize) -> Arc<Self> {
        let (rows, cols) = clipped(size);
        Arc::new(Self {
            emulator: Mutex::new(Emulator::Raw {
                output: Vec::new(),
                rows,
                cols,
            }),
            queue: Mutex::default(),
            scheduled: AtomicBool::new(false),
        })
    }

    /// Gives output to the screen: applied at once if small, else queued for the worker.
    pub fn feed(self: &Arc<Self>, chunk: Bytes) {
        if chunk.len() <= INLINE_LIMIT && self.apply_now(&chunk) {
            return;
        }
        let queued = {
            let mut queue = lock(&self.queue);
            queue.bytes += chunk.len();
            queue.chunks.push_back(chunk);
            queue.bytes
        };
        if queued > QUEUE_LIMIT {
            self.catch_up();
        } else if !self.scheduled.swap(true, Ordering::AcqRel) {
            worker()
                .send(self.clone())
                .unwrap_or_else(|back| back.0.catch_up());
        }
    }

    /// Applies `chunk` here if nothing is queued before it and the worker is not busy with this
    /// screen. A keystroke's echo costs less to apply than to hand over: waking the worker would
    /// add a futex wake-up and a context switch to every keystroke.
    fn apply_now(&self, chunk: &[u8]) -> bool {
        let Ok(mut emulator) = self.emulator.try_lock() else {
            return false;
        };
        if !lock(&self.queue).chunks.is_empty() {
            return false;
        }
        emulator.process(chunk);
        true
    }

    /// Sets the screen's size (after everything output at the old size), only when it changes:
    /// vt100 allocates the alternate screen on every `set_size`, which would double an idle
    /// session's memory.
    pub fn resize(&self, size: TermSize) {
        let mut emulator = self.current();
        let (rows, cols) = clipped(size);
        if emulator.size() != (rows, cols) {
            emulator.parser().set_size(rows, cols);
        }
    }

    /// Escape sequences that redraw the screen as it is now (see `render`).
    pub fn render(&self) -> Vec<u8> {
        match &*self.current() {
            Emulator::Parser(parser) => render(parser.screen()),
            // A throwaway emulator: the session stays small if it goes on printing little.
            Emulator::Raw { output, rows, cols } => render(parsed(*cols, *rows, output).screen()),
        }
    }

    /// The emulator with every queued chunk applied.
    fn current(&self) -> MutexGuard<'_, Emulator> {
        let mut emulator = lock(&self.emulator);
        // The queue is drained under the emulator's lock, so chunks are applied in order whoever
        // drains it.
        loop {
            let mut chunks = std::mem::take(&mut *lock(&self.queue)).chunks;
            match chunks.len() {
                0 => return emulator,
                1 => emulator.process(&chunks[0]),
                // In one piece: the lines that scroll away within it are skipped (`scrolled`).
                _ => emulator.process(&chunks.make_contiguous().concat()),
            }
        }
    }

    fn catch_up(&self) {
        drop(self.current());
    }

    #[cfg(test)]
    fn has_emulator(&self) -> bool {
        matches!(*self.current(), Emulator::Parser(_))
    }
}

/// Escape sequences that redraw `screen` on a fresh or stale terminal: leave any alternate
/// screen, enter it again if the program is in one (vim, top, less), then the contents with
/// their colours, the cursor and the input modes.
fn render(screen: &vt100::Screen) -> Vec<u8> {
    let mut out = b"\x1b[?1049l\x1b[0m\x1b[H\x1b[2J".to_vec();
    if screen.alternate_screen() {
        out.extend_from_slice(b"\x1b[?1049h");
    }
    out.extend_from_slice(&screen.state_formatted());
    out
}

enum Emulator {
    /// All the output so far, while it is short and at one size.
    Raw {
        output: Vec<u8>,
        rows: u16,
        cols: u16,
    },
    Parser(Box<Parser>),
}

impl Emulator {
    fn process(&mut self, chunk: &[u8]) {
        match self {
            Emulator::Raw { output, .. } if output.len() + chunk.len() <= RAW_LIMIT => {
                output.extend_from_slice(chunk)
            }
            _ => self.parser().process(chunk),
        }
    }

    fn size(&self) -> (u16, u16) {
        match self {
            Emulator::Raw { rows, cols, .. } => (*rows, *cols),
            Emulator::Parser(parser) => parser.screen().size(),
        }
    }

    /// The emulator, created from the output kept so far if there is none yet.
    fn parser(&mut self) -> &mut Parser {
        if let Emulator::Raw { output, rows, cols } = self {
            *self = Emulator::Parser(Box::new(parsed(*cols, *rows, output)));
        }
        match self {
            Emulator::Parser(parser) => parser,
            Emulator::Raw { .. } => unreachable!("replaced by a parser just above"),
        }
    }
}

/// A fresh emulator of `cols` x `rows` that has been fed `bytes`.
fn parsed(cols: u16, rows: u16, bytes: &[u8]) -> Parser {
    let mut parser = Parser::new(rows, cols);
    parser.process(bytes);
    parser
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

/// The emulated screen's (rows, cols) for a terminal of `size`, within `SCREEN_LIMIT`.
fn clipped(size: TermSize) -> (u16, u16) {
    (
        size.rows.min(SCREEN_LIMIT.rows),
        size.cols.min(SCREEN_LIMIT.cols),
    )
}

/// The worker thread's inbox, started on first use. One thread serves every session: it is
/// busy only while output flows, and a session whose output outruns it catches up by itself.
fn worker() -> &'static mpsc::Sender<Arc<Screen>> {
    static WORKER: OnceLock<mpsc::Sender<Arc<Screen>>> = OnceLock::new();
    WORKER.get_or_init(|| {
        let (tx, rx) = mpsc::channel::<Arc<Screen>>();
        let started = std::thread::Builder::new()
            .name("termpool-screen".into())
            .spawn(move || {
                while let Ok(first) = rx.recv() {
                    // Output gathers meanwhile, so that more of it scrolls away unseen within
                    // one batch. Nobody waits for the worker: `render` catches up by itself.
                    std::thread::sleep(GATHER);
                    for screen in std::iter::once(first).chain(rx.try_iter()) {
                        // Cleared first: a chunk queued from here on schedules it again.
                        screen.scheduled.store(false, Ordering::Release);
                        screen.catch_up();
                    }
                }
            });
        if let Err(e) = started {
            // The receiver is gone with the closure, so every `send` fails and each pump applies
            // its own output: slower, still correct.
            log::error!("cannot start the screen thread ({e}): screens are fed inline");
        }
        tx
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn size(cols: u16, rows: u16) -> TermSize {
        TermSize { cols, rows }
    }

    #[test]
    fn the_rendered_screen_restores_text_colour_cursor_and_alternate_screen() {
        let screen = Screen::new(size(20, 5));
        screen.feed(Bytes::from_static(b"hello \x1b[31mred\x1b[0m\r\n$ "));
        let mut copy = vt100::Parser::new(5, 20, 0);
        copy.process(b"stale junk\x1b[?1049h");
        copy.process(&screen.render());
        assert_eq!(copy.screen().contents(), "hello red\n$ ");
        assert_eq!(copy.screen().cursor_position(), (1, 2));
        assert_eq!(
            copy.screen().cell(0, 6).unwrap().fgcolor(),
            vt100::Color::Idx(1)
        );
        assert!(!copy.screen().alternate_screen());

        screen.feed(Bytes::from_static(b"\x1b[?1049h\x1b[H\x1b[2Jvim buffer"));
        let copy = parsed(20, 5, &screen.render());
        assert!(copy.screen().alternate_screen());
        assert_eq!(copy.screen().contents(), "vim buffer");
    }

    #[test]
    fn every_chunk_is_applied_in_order_however_fast_they_come() {
        let screen = Screen::new(size(80, 24));
        // Far more than QUEUE_LIMIT, in small chunks: the worker and the feeder both apply.
        for i in 0..200_000u32 {
            screen.feed(Bytes::from(format!("\r\x1b[2K{i}")));
        }
        let copy = parsed(80, 24, &screen.render());
        assert_eq!(copy.screen().contents(), "199999");
    }

    #[test]
    fn output_before_a_resize_is_laid_out_at_the_old_size() {
        let screen = Screen::new(size(10, 3));
        screen.feed(Bytes::from_static(b"0123456789abc"));
        screen.resize(size(20, 3));
        let copy = parsed(20, 3, &screen.render());
        // Wrapped at 10 columns when it was written.
        assert_eq!(copy.screen().contents(), "0123456789\nabc");
    }

    #[test]
    fn the_emulator_comes_only_when_the_output_outgrows_the_raw_limit() {
        let screen = Screen::new(size(80, 24));
        screen.feed(Bytes::from_static(b"user@host:~$ "));
        screen.resize(size(80, 24));
        assert_eq!(
            screen.render(),
            render(parsed(80, 24, b"user@host:~$ ").screen())
        );
        assert!(!screen.has_emulator(), "a prompt needs no emulator");

        let lines: Vec<u8> = (0..2000)
            .flat_map(|i| format!("\x1b[3{}mline {i}\r\n", i % 8).into_bytes())
            .collect();
        screen.feed(Bytes::from(lines.clone()));
        assert!(screen.has_emulator());
        let mut everything = b"user@host:~$ ".to_vec();
        everything.extend_from_slice(&lines);
        assert_eq!(
            screen.render(),
            render(parsed(80, 24, &everything).screen())
        );
    }

    #[test]
    fn a_new_size_brings_the_emulator() {
        let screen = Screen::new(size(80, 24));
        screen.feed(Bytes::from_static(b"$ "));
        screen.resize(size(100, 30));
        assert!(screen.has_emulator());
    }

    #[test]
    fn hostile_output_costs_the_screen_no_more_than_its_size() {
        let screen = Screen::new(size(80, 24));
        // More than RAW_LIMIT first, so that the session has an emulator of its own.
        let lines: Vec<u8> = (1..=5000)
            .flat_map(|i| format!("{i}\r\n").into_bytes())
            .collect();
        screen.feed(Bytes::from(lines.clone()));
        // Each `CSI 65535 @` took vt100 a second; in chunks that split the sequences.
        let hostile = b"\x1b[65535@".repeat(200);
        let started = std::time::Instant::now();
        for chunk in hostile.chunks(7) {
            screen.feed(Bytes::copy_from_slice(chunk));
        }
        let rendered = screen.render();
        // Milliseconds with the filter, minutes without.
        let took = started.elapsed();
        assert!(took < std::time::Duration::from_secs(2), "took {took:?}");

        let mut expected = vt100::Parser::new(24, 80, 0);
        expected.process(&lines);
        expected.process(&b"\x1b[80@".repeat(200));
        assert_eq!(rendered, render(expected.screen()));
    }

    #[test]
    fn the_screen_is_clipped_to_the_limit() {
        let screen = Screen::new(size(1000, 1000));
        assert_eq!(screen.current().size(), (100, 250));
    }
}

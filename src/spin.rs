//! Short, bounded busy polling of a worker thread right after a keystroke, so that its echo is
//! handled without sleeping and being woken. Opened only by client input (output only extends it),
//! and not while the thread's core is contended (polling then only makes it wait its turn).

use std::cell::{Cell, RefCell};
use std::future::poll_fn;
use std::rc::Rc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Poll, Waker};
use std::time::{Duration, Instant};

/// A round of polling that took this long means the thread waited behind another one for its
/// core: a keystroke's own work (the shell's, the kworker's) never takes that long.
const CONTENDED_ROUND: Duration = Duration::from_micros(500);
/// How long polling stays off after a contended round.
const BACK_OFF: Duration = Duration::from_secs(1);
/// Output extends a window to at most this many windows after the input that opened it.
const OUTPUT_EXTENSION: u32 = 4;
/// Input that ends a line opens this many windows: the command's output and the next prompt
/// come some hundred microseconds after it, where a keystroke's echo comes in tens.
const LINE_WINDOWS: u32 = 3;

/// Times a window ended early because the core was contended, for `/metrics`.
pub static CONTENDED: AtomicU64 = AtomicU64::new(0);

/// The spinner of one worker thread.
struct Spinner {
    until: Cell<Instant>,
    /// The last input, and the window it opened.
    input_at: Cell<Instant>,
    window: Cell<Duration>,
    /// No window opens before this (the core was contended).
    off_until: Cell<Instant>,
    /// Set while the spinner sleeps (no window open).
    parked: RefCell<Option<Waker>>,
}

thread_local! {
    static SPINNER: RefCell<Option<Rc<Spinner>>> = const { RefCell::new(None) };
}

/// Opens (or extends) this worker thread's busy-polling window after client input `keys`: to
/// `window` from now, `LINE_WINDOWS` of them if the input ends a line (Enter). Must be called on
/// a thread that runs a tokio `LocalSet` (an actix worker); a zero window does nothing.
pub fn after_input(window: Duration, keys: &[u8]) {
    let windows = if memchr::memchr(b'\r', keys).is_some() {
        LINE_WINDOWS
    } else {
        1
    };
    if window.is_zero() {
        return;
    }
    let now = Instant::now();
    let until = now + window * windows;
    SPINNER.with(|cell| {
        let mut slot = cell.borrow_mut();
        match slot.as_ref() {
            Some(spinner) if now < spinner.off_until.get() => {}
            Some(spinner) => {
                if until > spinner.until.get() {
                    spinner.until.set(until);
                }
                spinner.input_at.set(now);
                spinner.window.set(window);
                if let Some(waker) = spinner.parked.borrow_mut().take() {
                    waker.wake();
                }
            }
            None => {
                let spinner = Rc::new(Spinner {
                    until: Cell::new(until),
                    input_at: Cell::new(now),
                    window: Cell::new(window),
                    off_until: Cell::new(now),
                    parked: RefCell::new(None),
                });
                tokio::task::spawn_local(spin(spinner.clone()));
                *slot = Some(spinner);
            }
        }
    });
}

/// Extends this worker thread's window, if one is open, to its input's window from now (at most
/// `OUTPUT_EXTENSION` windows after that input): a command line's echo comes first, its output and
/// the prompt some hundred microseconds later. Output never opens a window.
pub fn after_output() {
    let now = Instant::now();
    SPINNER.with(|cell| {
        if let Some(spinner) = cell.borrow().as_ref() {
            if now < spinner.until.get() {
                let window = spinner.window.get();
                let cap = spinner.input_at.get() + window * OUTPUT_EXTENSION;
                let until = (now + window).min(cap);
                if until > spinner.until.get() {
                    spinner.until.set(until);
                }
            }
        }
    });
}

async fn spin(spinner: Rc<Spinner>) {
    loop {
        let mut round = Instant::now();
        while round < spinner.until.get() {
            // Lets any other runnable thread have this core first, then goes round the runtime:
            // a yielded task is polled again only after tokio has polled epoll without waiting.
            std::thread::yield_now();
            tokio::task::yield_now().await;
            let now = Instant::now();
            if now - round >= CONTENDED_ROUND {
                // A thread that polls stays runnable, so it gets the core only in its turn; one
                // that sleeps is woken ahead of the others (the scheduler favours sleepers).
                spinner.until.set(now);
                spinner.off_until.set(now + BACK_OFF);
                CONTENDED.fetch_add(1, Ordering::Relaxed);
            }
            round = now;
        }
        poll_fn(|cx| {
            if Instant::now() < spinner.until.get() {
                return Poll::Ready(());
            }
            *spinner.parked.borrow_mut() = Some(cx.waker().clone());
            Poll::Pending
        })
        .await;
    }
}

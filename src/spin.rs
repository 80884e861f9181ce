//! Short, bounded busy polling of a worker thread right after a keystroke.
//!
//! A keystroke's echo crosses six sleeping threads: the server wakes for the WebSocket frame,
//! a kworker moves the byte into the TTY, the shell wakes, a kworker moves the echo back, the
//! server wakes again, then the client. On small virtual machines every one of those wake-ups is
//! an inter-processor interrupt and a VM exit, and the server's two wake-ups cost more CPU than
//! everything it does with the bytes (perf: most of its time per echo is in the scheduler).
//! So after a keystroke the worker does not go to sleep for a short window: it keeps asking the
//! kernel for ready events (`epoll_wait` with a zero timeout, through tokio) and handles the echo,
//! and the next keystroke of a fast typist or a paste, without being woken.
//!
//! The window is opened only by client input, never by output, so a session that prints a lot
//! sleeps between chunks as before, and an idle server never spins. Its cost is bounded: at most
//! `window` of one core per keystroke (with the default 200 µs, which covers an echo and most
//! command lines up to their prompt: 0.2% of a core per typist at 10 keystrokes a second). While
//! spinning the thread offers its core to any other runnable thread (`sched_yield`) on every
//! round: without that the spinner kept the very shell it waited for off its core, and echoes
//! took 180 µs instead of 67.

use std::cell::{Cell, RefCell};
use std::future::poll_fn;
use std::rc::Rc;
use std::task::{Poll, Waker};
use std::time::{Duration, Instant};

/// The spinner of one worker thread.
struct Spinner {
    until: Cell<Instant>,
    /// Set while the spinner sleeps (no window open).
    parked: RefCell<Option<Waker>>,
}

thread_local! {
    static SPINNER: RefCell<Option<Rc<Spinner>>> = const { RefCell::new(None) };
}

/// Opens (or extends) this worker thread's busy-polling window to `window` from now. Must be
/// called on a thread that runs a tokio `LocalSet` (an actix worker); a zero window does nothing.
pub fn after_input(window: Duration) {
    if window.is_zero() {
        return;
    }
    let until = Instant::now() + window;
    SPINNER.with(|cell| {
        let mut slot = cell.borrow_mut();
        match slot.as_ref() {
            Some(spinner) => {
                if until > spinner.until.get() {
                    spinner.until.set(until);
                }
                if let Some(waker) = spinner.parked.borrow_mut().take() {
                    waker.wake();
                }
            }
            None => {
                let spinner = Rc::new(Spinner {
                    until: Cell::new(until),
                    parked: RefCell::new(None),
                });
                tokio::task::spawn_local(spin(spinner.clone()));
                *slot = Some(spinner);
            }
        }
    });
}

async fn spin(spinner: Rc<Spinner>) {
    loop {
        if Instant::now() < spinner.until.get() {
            // Lets any other runnable thread have this core first, then goes round the runtime:
            // a yielded task is polled again only after tokio has polled epoll without waiting.
            std::thread::yield_now();
            tokio::task::yield_now().await;
            continue;
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

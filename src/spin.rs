//! Short, bounded busy polling of a worker thread right after a keystroke, so that its echo is
//! handled without sleeping and being woken. Opened only by client input, never by output.

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

//! Running a session's future on a thread of its own, without a runtime: a session whose
//! transport was made blocking finishes each step in place, so the future is polled again
//! and again on this thread, which parks only if some step still has to wait for a wake-up.

use std::future::Future;
use std::pin::pin;
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};
use std::thread::Thread;

struct Unpark(Thread);

impl Wake for Unpark {
    fn wake(self: Arc<Self>) {
        self.0.unpark();
    }
    fn wake_by_ref(self: &Arc<Self>) {
        self.0.unpark();
    }
}

/// Runs `future` to completion on the calling thread.
///
/// ```ignore
/// assert_eq!(run(async { 1 + 1 }), 2);
/// ```
pub(crate) fn run<F: Future>(future: F) -> F::Output {
    let mut future = pin!(future);
    let waker = Waker::from(Arc::new(Unpark(std::thread::current())));
    let mut cx = Context::from_waker(&waker);
    loop {
        if let Poll::Ready(v) = future.as_mut().poll(&mut cx) {
            return v;
        }
        std::thread::park();
    }
}

#[cfg(test)]
mod tests {
    use super::run;

    #[test]
    fn a_future_woken_from_another_thread_completes() {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let sender = std::thread::spawn(move || {
            std::thread::sleep(std::time::Duration::from_millis(20));
            tx.send(7).unwrap();
        });
        assert_eq!(run(rx).unwrap(), 7);
        sender.join().unwrap();
    }
}

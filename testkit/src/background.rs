//! A server loop on a thread of its own with its own tokio runtime, so a fixture works the
//! same from a plain `#[test]` (where a blocking `git clone` runs beside it) and from a
//! `#[tokio::test]`, and dropping it never drops a runtime inside another one.

use std::future::Future;
use std::thread::JoinHandle;

use tokio::sync::oneshot;

pub(crate) struct Background {
    stop: Option<oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl Background {
    /// Runs the future `make` returns until it ends or this is dropped. Dropping stops the
    /// runtime, which cancels every task the server spawned and closes their sockets
    /// (children spawned with `kill_on_drop` are killed).
    pub(crate) fn spawn<F, Fut>(name: &str, make: F) -> Self
    where
        F: FnOnce() -> Fut + Send + 'static,
        Fut: Future<Output = ()>,
    {
        let (stop, stopped) = oneshot::channel::<()>();
        let thread = std::thread::Builder::new()
            .name(name.to_owned())
            .spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("fixture runtime");
                rt.block_on(async move {
                    tokio::select! {
                        _ = make() => {}
                        _ = stopped => {}
                    }
                });
            })
            .expect("spawn fixture thread");
        Self {
            stop: Some(stop),
            thread: Some(thread),
        }
    }
}

impl Drop for Background {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

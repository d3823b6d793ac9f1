//! Inference off the async runtime: one dedicated thread owns the models (state `S`) and runs
//! jobs from a bounded queue, one at a time, each on the compute pool
//! (`convnet::tensor::on_worker`), which already spreads one forward pass over every core.
//! A full queue is an immediate [`ServeError::Busy`] (503), so a burst of requests costs a
//! bounded amount of memory instead of an unbounded backlog. A job that panics answers 500 and
//! the thread goes on with the next one.

use crate::error::{Result, ServeError};
use std::panic::AssertUnwindSafe;
use std::sync::mpsc::{SyncSender, TrySendError, sync_channel};
use tokio::sync::oneshot;

type Job<S> = Box<dyn FnOnce(&mut S) + Send>;

/// The queue in front of the inference thread.
pub struct Worker<S> {
    queue: SyncSender<Job<S>>,
    capacity: usize,
}

impl<S: Send + 'static> Worker<S> {
    /// Starts the thread with `state` and a queue of `capacity` waiting jobs (at least 1).
    pub fn start(state: S, capacity: usize) -> std::io::Result<Self> {
        let capacity = capacity.max(1);
        let (queue, jobs) = sync_channel::<Job<S>>(capacity);
        std::thread::Builder::new().name("convnet-inference".into()).spawn(move || {
            let mut state = state;
            // ends when the server drops the last sender
            for job in jobs {
                let state = &mut state;
                // a panic is reported to its request (its answer channel drops); the state
                // stays usable: models are read-only during inference
                let _ = std::panic::catch_unwind(AssertUnwindSafe(|| convnet::tensor::on_worker(|| job(state))));
            }
        })?;
        Ok(Worker { queue, capacity })
    }

    /// Queues `f` for the inference thread; [`ServeError::Busy`] at once when the queue is
    /// full. The receiver yields `f`'s answer.
    pub fn submit<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut S) -> Result<T> + Send + 'static,
    ) -> Result<oneshot::Receiver<Result<T>>> {
        let (tx, rx) = oneshot::channel();
        let job: Job<S> = Box::new(move |state| {
            let _ = tx.send(f(state));
        });
        match self.queue.try_send(job) {
            Ok(()) => Ok(rx),
            Err(TrySendError::Full(_)) => Err(ServeError::Busy { queued: self.capacity }),
            Err(TrySendError::Disconnected(_)) => Err(ServeError::Internal("the inference thread has stopped".into())),
        }
    }

    /// [`submit`](Self::submit)s `f` and waits (asynchronously) for its answer.
    pub async fn run<T: Send + 'static>(&self, f: impl FnOnce(&mut S) -> Result<T> + Send + 'static) -> Result<T> {
        let rx = self.submit(f)?;
        rx.await
            .map_err(|_| ServeError::Internal("the request failed inside the model (a bug: please report it)".into()))?
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc;

    #[test]
    fn full_queue_is_busy_and_panics_are_contained() {
        let w = Worker::start(0u32, 1).unwrap();
        // hold the thread on a job until released
        let (release, hold) = mpsc::channel::<()>();
        let (started_tx, started) = mpsc::channel::<()>();
        let first = w
            .submit(move |n| {
                started_tx.send(()).unwrap();
                hold.recv().unwrap();
                *n += 1;
                Ok(*n)
            })
            .unwrap();
        started.recv().unwrap();
        // one waiting job fits the queue, the next one does not
        let second = w
            .submit(|n| {
                *n += 1;
                Ok(*n)
            })
            .unwrap();
        let third = w.submit(|n| Ok(*n));
        assert!(matches!(third, Err(ServeError::Busy { queued: 1 })), "{:?}", third.err());
        release.send(()).unwrap();
        assert_eq!(first.blocking_recv().unwrap().unwrap(), 1);
        assert_eq!(second.blocking_recv().unwrap().unwrap(), 2);
        let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
        let boom = rt.block_on(w.run::<u32>(|_| panic!("a bug: this panic is expected")));
        assert!(matches!(boom, Err(ServeError::Internal(_))), "{boom:?}");
        assert_eq!(rt.block_on(w.run(|n| Ok(*n))).unwrap(), 2, "the thread survives a panicking job");
    }
}

//! The store writer's queue: batches wait in one line per agent identity and the writer takes
//! one from each identity in turn (round robin), so an agent that floods waits behind its own
//! batches, not in front of everyone else's. Each identity's batches keep their order.
//!
//! Stream tasks push (waiting while the queue holds [`super::writer::QUEUE`] batches); the
//! writer thread pops, blocking while it is empty.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// A queue of `T` in lines by key, served round robin.
pub(super) struct FairQueue<T> {
    state: Mutex<State<T>>,
    ready: Condvar,
    /// Places left in the queue, all lines together.
    room: Arc<Semaphore>,
}

struct State<T> {
    lines: HashMap<String, VecDeque<(T, OwnedSemaphorePermit)>>,
    /// Keys with a non-empty line, in the order they are served next.
    turn: VecDeque<String>,
    closed: bool,
}

/// The queue is closed: the writer is gone, or the pipeline is shutting down.
#[derive(Debug)]
pub(super) struct Closed;

impl<T> FairQueue<T> {
    /// An empty queue holding at most `capacity` items.
    pub fn new(capacity: usize) -> FairQueue<T> {
        FairQueue {
            state: Mutex::new(State {
                lines: HashMap::new(),
                turn: VecDeque::new(),
                closed: false,
            }),
            ready: Condvar::new(),
            room: Arc::new(Semaphore::new(capacity)),
        }
    }

    /// Appends `item` to the line of `key`, waiting for room.
    pub async fn push(&self, key: &str, item: T) -> Result<(), Closed> {
        let place = self
            .room
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| Closed)?;
        let mut state = self.lock();
        if state.closed {
            return Err(Closed);
        }
        let line = state.lines.entry(key.to_owned()).or_default();
        line.push_back((item, place));
        if line.len() == 1 {
            state.turn.push_back(key.to_owned());
        }
        drop(state);
        self.ready.notify_one();
        Ok(())
    }

    /// The next item in turn, blocking while the queue is empty; `None` once it is closed and
    /// empty.
    pub fn pop_blocking(&self) -> Option<T> {
        let mut state = self.lock();
        loop {
            if let Some(item) = Self::take(&mut state) {
                return Some(item);
            }
            if state.closed {
                return None;
            }
            state = self.ready.wait(state).unwrap_or_else(|p| p.into_inner());
        }
    }

    /// The next item in turn, if one is waiting.
    pub fn try_pop(&self) -> Option<T> {
        Self::take(&mut self.lock())
    }

    /// Refuses further pushes; what is queued can still be popped.
    pub fn close(&self) {
        self.lock().closed = true;
        self.room.close();
        self.ready.notify_all();
    }

    fn take(state: &mut State<T>) -> Option<T> {
        let key = state.turn.pop_front()?;
        let line = state.lines.get_mut(&key)?;
        let (item, _place) = line.pop_front()?;
        if line.is_empty() {
            state.lines.remove(&key);
        } else {
            state.turn.push_back(key);
        }
        Some(item)
    }

    fn lock(&self) -> MutexGuard<'_, State<T>> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn lines_are_served_in_turn_each_in_order() {
        let q = FairQueue::new(16);
        for i in 0..4 {
            q.push("flood", format!("f{i}")).await.unwrap();
        }
        q.push("quiet", "q0".to_owned()).await.unwrap();
        q.push("quiet", "q1".to_owned()).await.unwrap();
        let order: Vec<String> = std::iter::from_fn(|| q.try_pop()).collect();
        assert_eq!(order, ["f0", "q0", "f1", "q1", "f2", "f3"]);
    }

    #[tokio::test]
    async fn a_full_queue_makes_pushes_wait_and_close_ends_the_writer() {
        let q = Arc::new(FairQueue::new(1));
        q.push("a", 1).await.unwrap();
        let waiting = tokio::spawn({
            let q = q.clone();
            async move { q.push("b", 2).await }
        });
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        assert!(!waiting.is_finished(), "no room: the push waits");
        assert_eq!(q.pop_blocking(), Some(1));
        waiting.await.unwrap().unwrap();
        q.close();
        assert_eq!(q.pop_blocking(), Some(2));
        assert_eq!(q.pop_blocking(), None);
        assert!(q.push("a", 3).await.is_err());
    }
}

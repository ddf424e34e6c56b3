//! The scheduler's clock: the system's, or a simulated one that only moves when told, so that
//! tests of deadlines and of the learned speed run in simulated time, exactly and at once.
//! A thin wrapper rather than a crate: the scheduler needs `now` and nothing else.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::jobs::lock;

#[derive(Debug, Clone, Default)]
pub(crate) struct Clock(Option<Arc<Mutex<Instant>>>);

impl Clock {
    /// A clock that stands still from now on until [`advance`](Self::advance) moves it.
    #[cfg(test)]
    pub(crate) fn simulated() -> Self {
        Self(Some(Arc::new(Mutex::new(Instant::now()))))
    }

    pub(crate) fn now(&self) -> Instant {
        match &self.0 {
            None => Instant::now(),
            Some(now) => *lock(now),
        }
    }

    pub(crate) fn is_simulated(&self) -> bool {
        self.0.is_some()
    }

    /// Moves a simulated clock on; waits that long on the system clock (a slow model's time).
    pub(crate) fn advance(&self, by: Duration) {
        match &self.0 {
            None => std::thread::sleep(by),
            Some(now) => *lock(now) += by,
        }
    }
}

//! Where the time comes from: the system clock in Lambda, a clock the test moves by hand in
//! tests, so expiry rules are proven without waiting.

use std::sync::Mutex;

use chrono::{DateTime, Duration, SubsecRound, Utc};

pub trait Clock: Send + Sync {
    /// The current time, at the precision the store keeps (microseconds).
    fn now(&self) -> DateTime<Utc>;
}

/// The system's clock.
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now().trunc_subsecs(6)
    }
}

/// A clock that stands still until it is moved.
pub struct ManualClock(Mutex<DateTime<Utc>>);

impl ManualClock {
    pub fn at(time: DateTime<Utc>) -> Self {
        Self(Mutex::new(time.trunc_subsecs(6)))
    }

    pub fn advance(&self, by: Duration) {
        let mut now = self.0.lock().expect("the clock's lock is never poisoned");
        *now += by;
    }
}

impl Clock for ManualClock {
    fn now(&self) -> DateTime<Utc> {
        *self.0.lock().expect("the clock's lock is never poisoned")
    }
}

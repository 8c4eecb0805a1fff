//! One person's bundling state machine ([`BundleState`]): the pending bundle, the
//! day's sends and tours, and the search for the instant the ranker calls it ready.
//! The clock is always an argument, so the online worker and the offline replay drive
//! the same machine (see the module above for the whole picture).

use super::clock::{day_of, next_day_start, UnixSecs, DAY};
use super::ranker::{Features, FriendSignal, Ranker};

/// The first integer instant in `(lo, hi]` where the non-decreasing `margin` is ≥ 0,
/// given `margin(lo) = m_lo < 0 ≤ m_hi = margin(hi)`. False position with the Illinois
/// correction, falling back to a bisection step whenever the bracket does not halve:
/// the score is smooth between hour boundaries, so this takes a handful of evaluations
/// where plain bisection over a day takes seventeen, and it is exact either way (the
/// bracket `(lo, hi]` always holds the crossing).
fn first_crossing(
    mut lo: UnixSecs,
    mut hi: UnixSecs,
    mut m_lo: f64,
    mut m_hi: f64,
    margin: impl Fn(UnixSecs) -> f64,
) -> UnixSecs {
    // Which end moved last (for the Illinois correction): -1 low, 1 high, 0 neither.
    let mut side = 0i8;
    while hi - lo > 1 {
        let width = hi - lo;
        let interpolate = m_lo.is_finite() && m_hi.is_finite() && m_hi > m_lo;
        let mid = if interpolate {
            let guess = lo as f64 + (-m_lo) / (m_hi - m_lo) * width as f64;
            (guess.floor() as UnixSecs).clamp(lo + 1, hi - 1)
        } else {
            lo + width / 2
        };
        let m = margin(mid);
        if m >= 0.0 {
            (hi, m_hi) = (mid, m);
            if side == 1 {
                m_lo /= 2.0;
            }
            side = 1;
            // Close to the crossing the estimate is usually off by under a second.
            if width <= 3600 && hi - lo > 1 {
                let m1 = margin(hi - 1);
                if m1 < 0.0 {
                    return hi;
                }
                (hi, m_hi) = (hi - 1, m1);
            }
        } else {
            (lo, m_lo) = (mid, m);
            if side == -1 {
                m_hi /= 2.0;
            }
            side = -1;
            if width <= 3600 && hi - lo > 1 {
                let m1 = margin(lo + 1);
                if m1 >= 0.0 {
                    return lo + 1;
                }
                (lo, m_lo) = (lo + 1, m1);
            }
        }
        // Bisect when interpolation gained little.
        if hi - lo > width / 2 && hi - lo > 1 {
            let mid = lo + (hi - lo) / 2;
            let m = margin(mid);
            if m >= 0.0 {
                (hi, m_hi) = (mid, m);
            } else {
                (lo, m_lo) = (mid, m);
            }
            side = 0;
        }
    }
    hi
}

/// The bundle's message: first friend's name, then how many *tours* (not distinct
/// friends) follow it.
pub fn message(first_friend: &str, tours: u32) -> String {
    match tours {
        0 | 1 => format!("{first_friend} went on a tour"),
        2 => format!("{first_friend} and 1 other went on a tour"),
        n => format!("{first_friend} and {} others went on a tour", n - 1),
    }
}

/// The tours waiting to be told to one person, as one bundle.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pending {
    /// Timestamp of the oldest tour in the bundle.
    pub first_at: UnixSecs,
    /// Timestamp of the newest tour in the bundle.
    pub last_at: UnixSecs,
    /// Tours in the bundle.
    pub tours: u32,
    /// Name of the first tour's friend: the message starts with it.
    pub first_friend: String,
}

/// A bundle that was sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sent {
    pub sent_at: UnixSecs,
    pub bundle: Pending,
}

impl Sent {
    pub fn message(&self) -> String {
        message(&self.bundle.first_friend, self.bundle.tours)
    }
}

/// What the caller must do after an event: nothing pending, or wake up at an instant
/// (which may be `now`: send immediately).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Schedule {
    Idle,
    At(UnixSecs),
}

/// Why a send was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TakeError {
    #[error("nothing is pending")]
    Empty,
    #[error("the daily cap of {0} bundles is reached")]
    CapReached(u32),
}

impl Features {
    /// Observes `pending` (the state's bundle) at `now`.
    pub fn observe(state: &BundleState, pending: &Pending, now: UnixSecs, max: u32) -> Self {
        let sent_today = state.sent_on(now);
        let friends = state.friends_on(now);
        let eod = next_day_start(now);
        Self {
            since_first: (now - pending.first_at).max(0) as f64,
            since_last: (now - pending.last_at).max(0) as f64,
            span: (pending.last_at - pending.first_at).max(0) as f64,
            tours: pending.tours,
            sent_today,
            sends_left: max.saturating_sub(sent_today),
            time_left: (eod - now) as f64,
            tours_today: state.tours_on(now),
            second_of_day: (now - (eod - DAY)) as f64,
            friends_today: friends.friends_today,
            weighted_tours: friends.weighted_tours,
            busiest_told: friends.busiest_told,
        }
    }
}

/// One person's bundling state. Small and plain so the online worker can persist it
/// (a row in `bundles` plus two counters) and rebuild it after a restart.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct BundleState {
    pending: Option<Pending>,
    /// The calendar day `sent_today` and `tours_today` count for.
    day: i64,
    /// Bundles sent on `day` (by send time): what the cap limits.
    sent_today: u32,
    /// Tours that arrived on `day`: the person's own history today, which drives the
    /// ranker's estimate of further tours.
    tours_today: u32,
    /// Friends' activity today (reset with the day; zero when the caller gives none).
    friends: FriendSignal,
}

impl BundleState {
    /// Rebuilds a state from persisted fields (online restart).
    pub fn from_parts(
        pending: Option<Pending>,
        day: i64,
        sent_today: u32,
        tours_today: u32,
    ) -> Self {
        Self {
            pending,
            day,
            sent_today,
            tours_today,
            friends: FriendSignal::default(),
        }
    }

    /// Sets what is known of the person's friends today (call before
    /// [`Self::on_tour`] with the signal that includes that tour's friend).
    pub fn set_friends(&mut self, now: UnixSecs, signal: FriendSignal) {
        self.roll(now);
        self.friends = signal;
    }

    /// The friend signal for the calendar day of `now`.
    pub fn friends_on(&self, now: UnixSecs) -> FriendSignal {
        if day_of(now) == self.day {
            self.friends
        } else {
            FriendSignal::default()
        }
    }

    pub fn pending(&self) -> Option<&Pending> {
        self.pending.as_ref()
    }

    /// Bundles already sent on the calendar day of `now`.
    pub fn sent_on(&self, now: UnixSecs) -> u32 {
        if day_of(now) == self.day {
            self.sent_today
        } else {
            0
        }
    }

    /// Tours seen on the calendar day of `now`.
    pub fn tours_on(&self, now: UnixSecs) -> u32 {
        if day_of(now) == self.day {
            self.tours_today
        } else {
            0
        }
    }

    /// The day counters as of `now` (the counters reset at 00:00:00 UTC).
    pub fn day_counters(&self) -> (i64, u32, u32) {
        (self.day, self.sent_today, self.tours_today)
    }

    fn roll(&mut self, now: UnixSecs) {
        let d = day_of(now);
        if d != self.day {
            self.day = d;
            self.sent_today = 0;
            self.tours_today = 0;
            self.friends = FriendSignal::default();
        }
    }

    /// A tour by `friend` at `tour_at` reached us at `now` (offline both are equal;
    /// online `now` may be later). Returns when the bundle should be sent if nothing
    /// else arrives.
    pub fn on_tour<R: Ranker + ?Sized>(
        &mut self,
        now: UnixSecs,
        tour_at: UnixSecs,
        friend: &str,
        ranker: &R,
    ) -> Schedule {
        self.roll(now);
        self.tours_today = self.tours_today.saturating_add(1);
        match &mut self.pending {
            Some(p) => {
                p.tours = p.tours.saturating_add(1);
                p.first_at = p.first_at.min(tour_at);
                p.last_at = p.last_at.max(tour_at);
            }
            None => {
                self.pending = Some(Pending {
                    first_at: tour_at,
                    last_at: tour_at,
                    tours: 1,
                    first_friend: friend.to_owned(),
                })
            }
        }
        self.schedule(now, ranker)
    }

    /// [`Self::ready_at`] as a [`Schedule`].
    pub fn schedule<R: Ranker + ?Sized>(&self, now: UnixSecs, ranker: &R) -> Schedule {
        match self.ready_at(now, ranker) {
            Some(t) => Schedule::At(t),
            None => Schedule::Idle,
        }
    }

    /// The first instant ≥ `now` at which the pending bundle is ready if no other tour
    /// arrives, or `None` when nothing is pending. Never later than the next 00:00:00:
    /// a bundle still pending then goes out with the day's first fresh send, and when
    /// today's sends are used up that is exactly when it goes.
    pub fn ready_at<R: Ranker + ?Sized>(&self, now: UnixSecs, ranker: &R) -> Option<UnixSecs> {
        let p = self.pending.as_ref()?;
        let eod = next_day_start(now);
        let max = ranker.max_per_day();
        if self.sent_on(now) >= max {
            return Some(eod);
        }
        // Everything but the clock is fixed until `eod`: observe once, then move time.
        let base = Features::observe(self, p, now, max);
        let at = |t: UnixSecs| {
            let dt = (t - now) as f64;
            Features {
                since_first: (t - p.first_at).max(0) as f64,
                since_last: (t - p.last_at).max(0) as f64,
                time_left: base.time_left - dt,
                second_of_day: base.second_of_day + dt,
                ..base
            }
        };
        let margin = |t: UnixSecs| ranker.margin(&at(t));
        // The ranker's score never falls while nothing arrives (its config is validated
        // for that), so the ready instant is the single crossing of margin 0.
        let m_lo = margin(now);
        if m_lo >= 0.0 {
            return Some(now);
        }
        let m_hi = margin(eod - 1);
        if m_hi < 0.0 {
            return Some(eod);
        }
        Some(first_crossing(now, eod - 1, m_lo, m_hi, margin))
    }

    /// Sends the pending bundle at `now`. Refuses (state unchanged) when nothing is
    /// pending or the cap for `now`'s day is reached, so the cap holds whatever the
    /// caller's scheduling does.
    pub fn take(&mut self, now: UnixSecs, max_per_day: u32) -> Result<Sent, TakeError> {
        if self.pending.is_none() {
            return Err(TakeError::Empty);
        }
        if self.sent_on(now) >= max_per_day {
            return Err(TakeError::CapReached(max_per_day));
        }
        self.roll(now);
        let bundle = self.pending.take().ok_or(TakeError::Empty)?;
        self.sent_today += 1;
        Ok(Sent {
            sent_at: now,
            bundle,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bundle::ranker::{BundlingConfig, LogisticRanker};

    const T0: i64 = 1_501_545_600; // 2017-08-01 00:00:00 UTC

    #[test]
    fn messages_count_tours_minus_one() {
        assert_eq!(message("Matthew", 1), "Matthew went on a tour");
        assert_eq!(message("Matthew", 2), "Matthew and 1 other went on a tour");
        assert_eq!(message("Matthew", 5), "Matthew and 4 others went on a tour");
        assert_eq!(
            message("Zoë, \"Z\"", 3),
            "Zoë, \"Z\" and 2 others went on a tour"
        );
    }

    #[test]
    fn day_arithmetic_is_utc_calendar_days() {
        assert_eq!(day_of(T0), day_of(T0 + DAY - 1));
        assert_eq!(next_day_start(T0 + 5), T0 + DAY);
        assert_eq!(next_day_start(T0 - 1), T0);
        assert_eq!(day_of(-1), -1);
    }

    #[test]
    fn cap_is_never_exceeded_by_take() {
        let cfg = BundlingConfig::default();
        let r = LogisticRanker::new(&cfg);
        let mut st = BundleState::default();
        let mut sent = 0;
        for i in 0..20 {
            let t = T0 + 3600 + i * 60;
            st.on_tour(t, t, "A", &r);
            if st.take(t, 4).is_ok() {
                sent += 1;
            }
        }
        assert_eq!(sent, 4);
        assert_eq!(st.take(T0 + 7200, 4), Err(TakeError::CapReached(4)));
        // Past the cap the bundle is due at the next day start, and may go then.
        assert_eq!(st.ready_at(T0 + 7200, &r), Some(T0 + DAY));
        let s = st.take(T0 + DAY, 4).expect("new day");
        assert_eq!(s.bundle.tours, 16);
        assert_eq!(s.bundle.first_at, T0 + 3600 + 4 * 60);
        assert_eq!(st.take(T0 + DAY, 4), Err(TakeError::Empty));
    }

    #[test]
    fn the_friend_signal_holds_for_its_day_only() {
        let r = LogisticRanker::new(&BundlingConfig::default());
        let mut st = BundleState::default();
        let sig = FriendSignal {
            friends_today: 2,
            weighted_tours: 2.5,
            busiest_told: 1,
        };
        st.set_friends(T0 + 3600, sig);
        st.on_tour(T0 + 3600, T0 + 3600, "A", &r);
        assert_eq!(st.friends_on(T0 + 7200), sig);
        assert_eq!(st.friends_on(T0 + DAY), FriendSignal::default());
        st.on_tour(T0 + DAY + 60, T0 + DAY + 60, "B", &r);
        assert_eq!(st.friends_on(T0 + DAY + 60), FriendSignal::default());
        let p = st.pending().expect("pending").clone();
        let f = Features::observe(&st, &p, T0 + DAY + 60, 4);
        assert_eq!((f.friends_today, f.weighted_tours), (0, 0.0));
    }

    #[test]
    fn first_crossing_matches_a_linear_scan() {
        use rand::{Rng, SeedableRng};
        let mut rng = rand::rngs::StdRng::seed_from_u64(11);
        for case in 0..400 {
            // Non-decreasing step-and-slope functions with kinks, plateaus and jumps.
            let knots: Vec<(i64, f64)> = (0..rng.random_range(1..6))
                .map(|_| (rng.random_range(0..DAY), rng.random_range(0.0..3.0)))
                .collect();
            let slope = rng.random_range(0.0..1e-3);
            let offset = rng.random_range(-20.0..0.0);
            let f = |t: i64| -> f64 {
                offset
                    + slope * t as f64
                    + knots.iter().filter(|k| t >= k.0).map(|k| k.1).sum::<f64>()
            };
            let (lo, hi) = (0i64, DAY - 1);
            if f(lo) >= 0.0 || f(hi) < 0.0 {
                continue;
            }
            let got = first_crossing(lo, hi, f(lo), f(hi), f);
            assert!(f(got) >= 0.0 && f(got - 1) < 0.0, "case {case}: {got}");
        }
        // Saturated margins (a readiness stuck at 0 or 1) still converge.
        let step = |t: i64| if t >= 40_000 { 1.0 } else { -1.0 };
        assert_eq!(first_crossing(0, DAY - 1, -1.0, 1.0, step), 40_000);
    }

    #[test]
    fn ready_at_matches_a_scan_of_every_second() {
        use rand::{Rng, SeedableRng};
        let mut rng = rand::rngs::StdRng::seed_from_u64(21);
        let mut cfg = BundlingConfig::default();
        cfg.weights.since_last = 0.4;
        cfg.weights.since_first = 0.05;
        cfg.friends.count_power = 0.3;
        cfg.friends.per_friend = 0.5;
        let r = LogisticRanker::new(&cfg);
        for case in 0..24 {
            let mut st = BundleState::default();
            let mut t = T0 + rng.random_range(0..20 * 3600);
            let mut told = [0u32; 3];
            for _ in 0..rng.random_range(1..8) {
                let k = rng.random_range(0..3);
                told[k] += 1;
                let sig = r.friend_signal(&mut told.iter().copied().filter(|&n| n > 0));
                st.set_friends(t, sig);
                st.on_tour(t, t, "A", &r);
                if rng.random_range(0..4) == 0 {
                    let _ = st.take(t, 4);
                }
                t += rng.random_range(0..1800);
            }
            if st.pending().is_none() {
                st.on_tour(t, t, "A", &r);
            }
            let p = st.pending().expect("pending").clone();
            let eod = next_day_start(t);
            let scan = (t..eod)
                .find(|&s| st.sent_on(s) >= 4 || r.is_ready(&Features::observe(&st, &p, s, 4)))
                .unwrap_or(eod);
            assert_eq!(st.ready_at(t, &r), Some(scan), "case {case}");
        }
    }

    #[test]
    fn ready_instant_is_the_first_ready_second() {
        let cfg = BundlingConfig::default();
        let r = LogisticRanker::new(&cfg);
        let mut st = BundleState::default();
        // Use up sends so the ranker has a reason to wait, then check the instant.
        for i in 0..3 {
            let t = T0 + 8 * 3600 + i * 10;
            st.on_tour(t, t, "A", &r);
            st.take(t, 4).expect("under cap");
        }
        let now = T0 + 9 * 3600;
        let Schedule::At(at) = st.on_tour(now, now, "B", &r) else {
            panic!("pending")
        };
        assert!(at >= now && at <= T0 + DAY);
        let p = st.pending().expect("pending").clone();
        let ready = |t| r.is_ready(&Features::observe(&st, &p, t, 4));
        if at < T0 + DAY {
            assert!(ready(at));
        }
        if at > now {
            assert!(!ready(at - 1), "one second earlier must not be ready");
        }
        assert_eq!(BundleState::default().ready_at(now, &r), None);
    }
}

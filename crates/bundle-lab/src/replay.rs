//! The offline driver: feeds a file's tours to one [`BundleState`] per person on a
//! simulated clock and sends each bundle at its ready instant, taken from a binary heap
//! (the online worker uses a Redis sorted set the same way). Nothing polls: a person is
//! looked at only when a tour of theirs arrives or their scheduled instant comes.

use crate::komoot::TourRef;
use herald_core::bundle::{
    day_of, next_day_start, BundleState, FriendSignal, Ranker, Schedule, TakeError, UnixSecs,
};
use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::hash::{BuildHasherDefault, Hasher};

/// A small multiplicative hash (the Fx hash of rustc) for interning receiver ids: the
/// default SipHash is built to resist hash flooding, which costs a tenth of the replay
/// here and buys nothing for a file the operator feeds in.
#[derive(Default, Clone, Copy)]
pub struct FxHasher(u64);

impl Hasher for FxHasher {
    fn write(&mut self, bytes: &[u8]) {
        const K: u64 = 0x517c_c1b7_2722_0a95;
        let mut chunks = bytes.chunks_exact(8);
        for c in &mut chunks {
            let w = u64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]);
            self.0 = (self.0.rotate_left(5) ^ w).wrapping_mul(K);
        }
        for &b in chunks.remainder() {
            self.0 = (self.0.rotate_left(5) ^ u64::from(b)).wrapping_mul(K);
        }
    }
    fn write_u8(&mut self, b: u8) {
        self.0 = (self.0.rotate_left(5) ^ u64::from(b)).wrapping_mul(0x517c_c1b7_2722_0a95);
    }
    fn finish(&self) -> u64 {
        self.0
    }
}

type FxBuild = BuildHasherDefault<FxHasher>;

/// A file's tours in a compact form: person ids interned, names in one arena.
#[derive(Debug, Default, Clone)]
pub struct Dataset {
    pub at: Vec<UnixSecs>,
    pub person: Vec<u32>,
    /// Per row, a 64-bit hash of the friend id: the replay only asks whether two of a
    /// person's tours came from the same friend, and hashing is cheaper than interning
    /// (a map insert and an allocation per new friend; measured: a third of the read).
    pub friend: Vec<u64>,
    /// Byte range of the friend's id in `names`.
    friend_span: Vec<(u32, u32)>,
    /// Byte range of the friend's name in `names`.
    name_span: Vec<(u32, u32)>,
    names: String,
    /// Receiver ids by person index, in order of first appearance.
    pub people: Vec<Box<str>>,
    index: HashMap<Box<str>, u32, FxBuild>,
    sorted: bool,
}

impl Dataset {
    pub fn new() -> Self {
        Self {
            sorted: true,
            ..Self::default()
        }
    }

    /// An empty dataset with room for about `rows` rows.
    pub fn with_capacity(rows: usize) -> Self {
        let mut d = Self::new();
        d.at.reserve(rows);
        // Receivers are far fewer than rows; growing the map was 2% of a replay.
        d.index.reserve(rows / 16);
        d.person.reserve(rows);
        d.friend.reserve(rows);
        d.friend_span.reserve(rows);
        d.name_span.reserve(rows);
        d.names.reserve(rows * 16);
        d
    }

    pub fn len(&self) -> usize {
        self.at.len()
    }

    pub fn is_empty(&self) -> bool {
        self.at.is_empty()
    }

    pub fn push(&mut self, row: TourRef<'_>) {
        let person = match self.index.get(row.user_id) {
            Some(&p) => p,
            None => {
                let p = self.people.len() as u32;
                self.people.push(row.user_id.into());
                self.index.insert(row.user_id.into(), p);
                p
            }
        };
        let mut h = FxHasher::default();
        h.write(row.friend_id.as_bytes());
        self.friend.push(h.finish());
        let start = self.names.len() as u32;
        self.names.push_str(row.friend_id);
        self.friend_span.push((start, self.names.len() as u32));
        if self.at.last().is_some_and(|&last| last > row.at) {
            self.sorted = false;
        }
        let start = self.names.len() as u32;
        self.names.push_str(row.friend_name);
        self.name_span.push((start, self.names.len() as u32));
        self.at.push(row.at);
        self.person.push(person);
    }

    /// Puts the rows in time order (stable: equal times keep file order), as tours are
    /// replayed in the order they happened whatever order the file lists them in.
    pub fn sort(&mut self) {
        if self.sorted {
            return;
        }
        let mut order: Vec<u32> = (0..self.at.len() as u32).collect();
        order.sort_by_key(|&i| self.at[i as usize]);
        self.at = order.iter().map(|&i| self.at[i as usize]).collect();
        self.person = order.iter().map(|&i| self.person[i as usize]).collect();
        self.friend = order.iter().map(|&i| self.friend[i as usize]).collect();
        self.friend_span = order
            .iter()
            .map(|&i| self.friend_span[i as usize])
            .collect();
        self.name_span = order.iter().map(|&i| self.name_span[i as usize]).collect();
        self.sorted = true;
    }

    pub fn name(&self, row: usize) -> &str {
        let (a, b) = self.name_span[row];
        self.names.get(a as usize..b as usize).unwrap_or_default()
    }

    /// The friend id of a row.
    pub fn friend_id(&self, row: usize) -> &str {
        let (a, b) = self.friend_span[row];
        self.names.get(a as usize..b as usize).unwrap_or_default()
    }

    /// Each person's tour timestamps, in time order (call after [`Self::sort`]).
    pub fn per_person(&self) -> Vec<Vec<UnixSecs>> {
        let mut out = vec![Vec::new(); self.people.len()];
        for (&t, &p) in self.at.iter().zip(&self.person) {
            out[p as usize].push(t);
        }
        out
    }

    /// Each person's tours as (timestamp, friend hash), in time order (call after
    /// [`Self::sort`]): what a forecast from the friends seen so far needs.
    pub fn tours_by_person(&self) -> Vec<Vec<(UnixSecs, u64)>> {
        let mut out = vec![Vec::new(); self.people.len()];
        for ((&t, &f), &p) in self.at.iter().zip(&self.friend).zip(&self.person) {
            out[p as usize].push((t, f));
        }
        out
    }

    /// The rows of the people `keep` selects (for hold-out evaluation).
    pub fn subset(&self, keep: impl Fn(&str) -> bool) -> Dataset {
        let mut out = Dataset::new();
        for i in 0..self.len() {
            let id = &self.people[self.person[i] as usize];
            if keep(id) {
                out.push(TourRef {
                    at: self.at[i],
                    user_id: id,
                    friend_id: self.friend_id(i),
                    friend_name: self.name(i),
                });
            }
        }
        out.sort();
        out
    }
}

/// One sent bundle of a replay.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BundleOut {
    pub sent_at: UnixSecs,
    pub first_at: UnixSecs,
    pub tours: u32,
    pub person: u32,
    /// The row (in [`Dataset`] order) of the bundle's first tour: its friend's name,
    /// [`Dataset::name`], starts the message.
    pub first_row: u32,
}

/// A bundle as the replay sends it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SentRef {
    pub sent_at: UnixSecs,
    pub first_at: UnixSecs,
    pub tours: u32,
    pub person: u32,
    /// The row of the bundle's first tour.
    pub first_row: u32,
}

const NONE: u32 = u32::MAX;

/// Replays `data` (sorted) through `ranker`, calling `on_send` for every bundle with
/// the rows of its tours (in time order). Returns the number of sends the state
/// machine refused (always 0 unless a ranker schedules past the cap, which the state
/// catches).
///
/// The per-person tours waiting in a bundle are a linked list through the rows, so
/// the replay allocates nothing per tour or per bundle.
pub fn replay_with<R: Ranker + ?Sized>(
    data: &Dataset,
    ranker: &R,
    mut on_send: impl FnMut(&SentRef, &mut dyn Iterator<Item = usize>),
) -> u64 {
    let n = data.people.len();
    let max = ranker.max_per_day();
    let mut states = vec![BundleState::default(); n];
    // Pending rows per person: head and tail of a list linked by `next`.
    let mut head = vec![NONE; n];
    let mut tail = vec![NONE; n];
    let mut next = vec![NONE; data.len()];
    let mut version = vec![0u32; n];
    let mut heap: BinaryHeap<Reverse<(UnixSecs, u32, u32)>> =
        BinaryHeap::with_capacity(n.min(1 << 20));
    let mut refused = 0u64;
    // Per person, the friends seen today and how many tours each told them.
    let mut p_day = vec![i64::MIN; n];
    let mut p_friends: Vec<Vec<(u64, u32)>> = vec![Vec::new(); n];
    // Each person's signal, kept up to date by the change of one friend's weight
    // rather than summed over all their friends at every tour.
    let mut p_signal = vec![FriendSignal::default(); n];
    let weight = |k: u32| ranker.friend_signal(&mut std::iter::once(k));

    let mut fire = |t: UnixSecs,
                    p: usize,
                    states: &mut [BundleState],
                    version: &mut [u32],
                    heap: &mut BinaryHeap<Reverse<(UnixSecs, u32, u32)>>,
                    head: &mut [u32],
                    tail: &mut [u32],
                    next: &[u32]| {
        match states[p].take(t, max) {
            Ok(sent) => {
                let first_row = head[p];
                let s = SentRef {
                    sent_at: sent.sent_at,
                    first_at: sent.bundle.first_at,
                    tours: sent.bundle.tours,
                    person: p as u32,
                    first_row,
                };
                let mut cur = first_row;
                let mut rows = std::iter::from_fn(|| {
                    (cur != NONE).then(|| {
                        let r = cur as usize;
                        cur = next[r];
                        r
                    })
                });
                on_send(&s, &mut rows);
                head[p] = NONE;
                tail[p] = NONE;
            }
            Err(TakeError::Empty) => {}
            Err(TakeError::CapReached(_)) => {
                // The ranker asked too early; the state refused. Try again when the
                // day turns, which is always allowed.
                refused += 1;
                version[p] = version[p].wrapping_add(1);
                heap.push(Reverse((next_day_start(t), p as u32, version[p])));
            }
        }
    };

    for i in 0..data.len() {
        let now = data.at[i];
        while let Some(&Reverse((t, p, v))) = heap.peek() {
            // A tour at the very instant a bundle is due still joins it.
            if t >= now {
                break;
            }
            heap.pop();
            if v == version[p as usize] {
                fire(
                    t,
                    p as usize,
                    &mut states,
                    &mut version,
                    &mut heap,
                    &mut head,
                    &mut tail,
                    &next,
                );
            }
        }
        let p = data.person[i] as usize;
        if tail[p] == NONE {
            head[p] = i as u32;
        } else {
            next[tail[p] as usize] = i as u32;
        }
        tail[p] = i as u32;
        let day = day_of(now);
        if let Some(&f) = data.friend.get(i) {
            if p_day[p] != day {
                p_day[p] = day;
                p_friends[p].clear();
                p_signal[p] = FriendSignal::default();
            }
            let signal = &mut p_signal[p];
            match p_friends[p].iter_mut().find(|(g, _)| *g == f) {
                Some((_, told)) => {
                    let (before, after) = (weight(*told), weight(told.saturating_add(1)));
                    signal.weighted_tours += after.weighted_tours - before.weighted_tours;
                    *told = told.saturating_add(1);
                    signal.busiest_told = signal.busiest_told.max(*told);
                }
                None => {
                    let first = weight(1);
                    signal.friends_today += first.friends_today;
                    signal.weighted_tours += first.weighted_tours;
                    signal.busiest_told = signal.busiest_told.max(1);
                    p_friends[p].push((f, 1));
                }
            }
            states[p].set_friends(now, *signal);
        }
        // The replay keeps the first friend's row itself, so the state needs no name.
        if let Schedule::At(t) = states[p].on_tour(now, now, "", ranker) {
            version[p] = version[p].wrapping_add(1);
            heap.push(Reverse((t, p as u32, version[p])));
        }
    }
    while let Some(Reverse((t, p, v))) = heap.pop() {
        if v == version[p as usize] {
            fire(
                t,
                p as usize,
                &mut states,
                &mut version,
                &mut heap,
                &mut head,
                &mut tail,
                &next,
            );
        }
    }
    refused
}

/// Replays `data` and collects the bundles (in send order) and every tour's delay.
pub fn replay<R: Ranker + ?Sized>(data: &Dataset, ranker: &R) -> (Vec<BundleOut>, Vec<i64>) {
    let mut bundles = Vec::with_capacity(data.len() / 2);
    let mut delays = Vec::with_capacity(data.len());
    replay_with(data, ranker, |s, rows| {
        delays.extend(rows.map(|r| s.sent_at - data.at[r]));
        bundles.push(BundleOut {
            sent_at: s.sent_at,
            first_at: s.first_at,
            tours: s.tours,
            person: s.person,
            first_row: s.first_row,
        });
    });
    (bundles, delays)
}

/// Total delay only: what the fitter minimises, without building the output.
pub fn total_delay<R: Ranker + ?Sized>(data: &Dataset, ranker: &R) -> i64 {
    let mut total = 0i64;
    replay_with(data, ranker, |s, rows| {
        total += rows.map(|r| s.sent_at - data.at[r]).sum::<i64>();
    });
    total
}

#[cfg(test)]
mod tests {
    use super::*;
    use herald_core::bundle::ranker::{BundlingConfig, LogisticRanker};
    use herald_core::bundle::DAY;
    use rand::{Rng, SeedableRng};

    const T0: i64 = 1_501_545_600;

    fn data(rows: &[(i64, &str, &str)]) -> Dataset {
        let mut d = Dataset::new();
        for &(at, u, name) in rows {
            d.push(TourRef {
                at,
                user_id: u,
                friend_id: "f",
                friend_name: name,
            });
        }
        d.sort();
        d
    }

    #[test]
    fn every_tour_is_sent_once_and_the_cap_holds_on_random_days() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(3);
        let ids: Vec<String> = (0..30).map(|i| format!("U{i}")).collect();
        let rows: Vec<(i64, &str, &str)> = (0..3000)
            .map(|_| {
                // Heavy-tailed: a few people get most tours, some at the day's edges.
                let u = (rng.random_range(0.0f64..1.0).powi(3) * 30.0) as usize;
                (T0 + rng.random_range(0..3 * DAY), ids[u].as_str(), "N")
            })
            .collect();
        let d = data(&rows);
        for cap in [1, 2, 4] {
            let cfg = BundlingConfig {
                max_per_day: cap,
                ..BundlingConfig::default()
            };
            let r = LogisticRanker::new(&cfg);
            let (bundles, delays) = replay(&d, &r);
            assert_eq!(delays.len(), rows.len());
            assert!(delays.iter().all(|&x| x >= 0));
            assert_eq!(
                bundles.iter().map(|b| b.tours as usize).sum::<usize>(),
                rows.len()
            );
            let mut per = HashMap::new();
            for b in &bundles {
                *per.entry((b.person, day_of(b.sent_at))).or_insert(0u32) += 1;
            }
            assert!(per.values().all(|&c| c <= cap), "cap {cap} exceeded");
        }
    }

    #[test]
    fn friends_are_interned_and_kept_by_subsets() {
        let mut d = Dataset::new();
        for (t, u, f) in [(5, "u1", "f1"), (1, "u2", "f2"), (3, "u1", "f2")] {
            d.push(TourRef {
                at: t,
                user_id: u,
                friend_id: f,
                friend_name: "N",
            });
        }
        d.sort();
        let ids: Vec<&str> = (0..d.len()).map(|i| d.friend_id(i)).collect();
        assert_eq!(ids, ["f2", "f2", "f1"]);
        let s = d.subset(|id| id == "u1");
        let ids: Vec<&str> = (0..s.len()).map(|i| s.friend_id(i)).collect();
        assert_eq!(ids, ["f2", "f1"]);
    }

    #[test]
    fn a_burst_from_one_friend_is_sent_sooner_than_one_from_many() {
        // Same instants; only who the tours come from differs. With repeats counting
        // less, the one-friend burst forecasts fewer further tours, so its bundles go
        // no later (and its total delay is no larger).
        let mut cfg = BundlingConfig::default();
        cfg.friends.count_power = 0.0;
        cfg.weights.since_last = 0.3;
        let r = LogisticRanker::new(&cfg);
        let rows = |many: bool| {
            let mut d = Dataset::new();
            for i in 0..8i64 {
                let f = if many { format!("f{i}") } else { "f".into() };
                d.push(TourRef {
                    at: 1_501_578_000 + i * 900,
                    user_id: "u",
                    friend_id: &f,
                    friend_name: "N",
                });
            }
            d
        };
        let one = total_delay(&rows(false), &r);
        let many = total_delay(&rows(true), &r);
        assert!(one <= many, "{one} vs {many}");
    }

    #[test]
    fn a_friends_session_holds_their_burst_longer() {
        // One friend tours every 15 minutes: with a session forecast the replay (which
        // tracks the busiest friend's count) expects more from them and waits longer.
        let mut cfg = BundlingConfig::default();
        cfg.friends.count_power = 0.0;
        cfg.weights.since_last = 0.3;
        let plain = LogisticRanker::new(&cfg);
        cfg.friends.session = 2.0;
        let session = LogisticRanker::new(&cfg);
        let mut d = Dataset::new();
        for i in 0..8i64 {
            d.push(TourRef {
                at: 1_501_578_000 + i * 900,
                user_id: "u",
                friend_id: "f",
                friend_name: "N",
            });
        }
        let (with, without) = (total_delay(&d, &session), total_delay(&d, &plain));
        assert!(with > without, "{with} vs {without}");
    }

    #[test]
    fn first_friend_and_count_make_the_message() {
        let d = data(&[(T0 + 100, "U", "Matthew"), (T0 + 100, "U", "Ann")]);
        let (b, _) = replay(&d, &LogisticRanker::new(&BundlingConfig::default()));
        let total: u32 = b.iter().map(|x| x.tours).sum();
        assert_eq!(total, 2);
        assert_eq!(d.name(b[0].first_row as usize), "Matthew");
    }

    #[test]
    fn unsorted_input_is_replayed_in_time_order() {
        let a = data(&[(T0 + 500, "U", "B"), (T0 + 100, "U", "A")]);
        assert_eq!(a.at, vec![T0 + 100, T0 + 500]);
        assert_eq!(a.name(0), "A");
    }
}

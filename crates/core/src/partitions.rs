//! Which partition work belongs to. Work is split into `HERALD_PARTITIONS` partitions
//! (default 16) so that it spreads over the nodes of a Redis Cluster: each partition's
//! streams and delayed set share one hash tag, so they live in one slot.
//!
//! A job's partition is a stable hash of **the person** it is for, or of **the topic**
//! for an event addressed to a topic (its fan-out pages): every job of one person goes
//! through the same partition's streams, in the order it was enqueued. This is the one
//! place that decides it; the api, the worker's routing and delivery, the recovery
//! sweep and a manual retry all ask [`Partitions`].
//!
//! The hash is FNV-1a (64 bit), fixed here rather than taken from the standard
//! library, whose hasher may change between Rust releases: api and worker processes of
//! different builds must agree on every person's partition.

use std::fmt;
use uuid::Uuid;

/// The most partitions Herald accepts: far more than any cluster has nodes, and few
/// enough that a worker's per-partition readers stay cheap.
pub const MAX_PARTITIONS: u16 = 256;

/// The default number of partitions.
pub const DEFAULT_PARTITIONS: u16 = 16;

/// One partition, `0 .. count`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Partition(u16);

impl Partition {
    pub fn index(self) -> u16 {
        self.0
    }
}

impl fmt::Display for Partition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// How many partitions there are, and which one each piece of work belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Partitions {
    count: u16,
}

impl Default for Partitions {
    fn default() -> Self {
        Partitions {
            count: DEFAULT_PARTITIONS,
        }
    }
}

impl Partitions {
    /// `count` partitions, 1 to [`MAX_PARTITIONS`].
    pub fn new(count: u16) -> Result<Partitions, String> {
        if count == 0 || count > MAX_PARTITIONS {
            return Err(format!(
                "the number of partitions must be 1 to {MAX_PARTITIONS}, not {count}"
            ));
        }
        Ok(Partitions { count })
    }

    /// Parses `HERALD_PARTITIONS`.
    pub fn parse(s: &str) -> Result<Partitions, String> {
        let count: u16 = s
            .trim()
            .parse()
            .map_err(|_| format!("the number of partitions must be a whole number, not {s:?}"))?;
        Partitions::new(count)
    }

    pub fn count(self) -> u16 {
        self.count
    }

    /// Every partition, in order.
    pub fn all(self) -> Vec<Partition> {
        (0..self.count).map(Partition).collect()
    }

    /// The partition of a person's work: their notifications, deliveries and bundles.
    pub fn of_person(self, user_id: &str) -> Partition {
        self.of_key(b"person:", user_id)
    }

    /// The partition of a topic's fan-out.
    pub fn of_topic(self, topic: &str) -> Partition {
        self.of_key(b"topic:", topic)
    }

    /// The partition of an event's routing: its person's, else its topic's, else (an
    /// event addressed to neither, which the rules address) the event's own.
    pub fn of_event(self, user_id: Option<&str>, topic: Option<&str>, event_id: Uuid) -> Partition {
        match (user_id, topic) {
            (None, Some(topic)) => self.of_topic(topic),
            _ => self.of_recipient(user_id, event_id),
        }
    }

    /// The partition of a notification's or bundle's delivery: its person's, else (a
    /// notification to no person, such as an operator's webhook) its own id's. The id
    /// is hashed as its 16 bytes: nothing is formatted on the hot path.
    pub fn of_recipient(self, user_id: Option<&str>, id: Uuid) -> Partition {
        match user_id {
            Some(user) => self.of_person(user),
            None => self.of_bytes(b"id:", id.as_bytes()),
        }
    }

    fn of_key(self, kind: &[u8], key: &str) -> Partition {
        self.of_bytes(kind, key.as_bytes())
    }

    fn of_bytes(self, kind: &[u8], key: &[u8]) -> Partition {
        let hash = fnv1a(kind.iter().chain(key));
        // The remainder is below `count`, a u16.
        Partition((hash % u64::from(self.count)) as u16)
    }

    /// Parses a worker's `--partitions`: comma-separated indexes and inclusive ranges
    /// (`0-7`, `0,2,4`, `8-11,15`), or `all`. Each must be below the count; the answer is
    /// sorted without repeats.
    pub fn parse_subset(self, spec: &str) -> Result<Vec<Partition>, String> {
        let spec = spec.trim();
        if spec.eq_ignore_ascii_case("all") {
            return Ok(self.all());
        }
        let mut out = Vec::new();
        for part in spec.split(',').map(str::trim) {
            let (from, to) = match part.split_once('-') {
                Some((a, b)) => (self.index(a)?, self.index(b)?),
                None => {
                    let i = self.index(part)?;
                    (i, i)
                }
            };
            if from > to {
                return Err(format!("partition range {part:?} runs backwards"));
            }
            out.extend((from..=to).map(Partition));
        }
        out.sort_unstable();
        out.dedup();
        Ok(out)
    }

    fn index(self, s: &str) -> Result<u16, String> {
        let i: u16 = s.trim().parse().map_err(|_| {
            format!("partitions are given as numbers and ranges like 0-7,9; {s:?} is neither")
        })?;
        if i >= self.count {
            return Err(format!(
                "partition {i} does not exist: there are {} (0 to {})",
                self.count,
                self.count - 1
            ));
        }
        Ok(i)
    }
}

fn fnv1a<'a>(bytes: impl Iterator<Item = &'a u8>) -> u64 {
    bytes.fold(0xcbf2_9ce4_8422_2325, |hash, b| {
        (hash ^ u64::from(*b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn counts_outside_one_to_the_maximum_are_refused() {
        for (input, ok) in [
            ("16", true),
            ("1", true),
            ("256", true),
            ("0", false),
            ("257", false),
            ("-1", false),
            ("sixteen", false),
            ("", false),
        ] {
            assert_eq!(Partitions::parse(input).is_ok(), ok, "{input:?}");
        }
    }

    /// Processes of different builds must agree: these values are part of the contract
    /// between an api and the workers sharing its Redis.
    #[test]
    fn a_persons_partition_is_stable() {
        let p = Partitions::default();
        let got: Vec<u16> = ["u_1", "u_2", "alice", ""]
            .iter()
            .map(|u| p.of_person(u).index())
            .collect();
        assert_eq!(got, vec![1, 8, 6, 14]);
        assert_eq!(p.of_topic("shop").index(), 6);
    }

    #[test]
    fn an_event_goes_with_its_person_then_its_topic() {
        let e = Uuid::from_u128(7);
        let p = Partitions::default();
        assert_eq!(p.of_event(Some("u_1"), Some("shop"), e), p.of_person("u_1"));
        assert_eq!(p.of_event(None, Some("shop"), e), p.of_topic("shop"));
        assert_eq!(p.of_event(None, None, e), p.of_recipient(None, e));
    }

    #[test]
    fn people_spread_over_every_partition() {
        let p = Partitions::default();
        let mut seen = vec![0u32; 16];
        for i in 0..1600 {
            seen[usize::from(p.of_person(&format!("user_{i}")).index())] += 1;
        }
        assert!(seen.iter().all(|n| (50..=150).contains(n)), "{seen:?}");
    }

    #[test]
    fn subsets_parse_as_operators_write_them() {
        let p = Partitions::new(16).unwrap();
        let idx = |v: Vec<Partition>| v.into_iter().map(Partition::index).collect::<Vec<_>>();
        let cases: [(&str, Result<Vec<u16>, &str>); 8] = [
            ("0-3", Ok(vec![0, 1, 2, 3])),
            ("8-9, 2,2", Ok(vec![2, 8, 9])),
            ("15", Ok(vec![15])),
            ("all", Ok((0..16).collect())),
            ("16", Err("partition 16 does not exist")),
            ("3-1", Err("runs backwards")),
            ("a-b", Err("neither")),
            ("", Err("neither")),
        ];
        for (input, want) in cases {
            match (p.parse_subset(input), want) {
                (Ok(got), Ok(want)) => assert_eq!(idx(got), want, "{input:?}"),
                (Err(e), Err(want)) => assert!(e.contains(want), "{input:?}: {e}"),
                (got, want) => panic!("{input:?}: got {got:?}, want {want:?}"),
            }
        }
    }

    proptest! {
        #[test]
        fn any_subset_spec_parses_or_is_refused_without_panicking(spec in ".{0,40}") {
            let p = Partitions::default();
            if let Ok(parts) = p.parse_subset(&spec) {
                prop_assert!(parts.iter().all(|x| x.index() < 16));
                prop_assert!(parts.windows(2).all(|w| w[0] < w[1]));
            }
        }

        #[test]
        fn every_range_parses_to_its_members(a in 0u16..16, b in 0u16..16) {
            let (lo, hi) = (a.min(b), a.max(b));
            let got = Partitions::default().parse_subset(&format!("{lo}-{hi}")).unwrap();
            prop_assert_eq!(got.len(), usize::from(hi - lo + 1));
        }

        #[test]
        fn every_key_lands_in_a_partition(key in ".{0,64}", count in 1u16..=256) {
            let p = Partitions::new(count).unwrap();
            prop_assert!(p.of_person(&key).index() < count);
            prop_assert!(p.of_topic(&key).index() < count);
        }
    }
}

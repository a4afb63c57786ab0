//! A bounded LRU cache of upstream answers. Time is an argument: nothing here reads a clock.
//!
//! - Keyed by (lower-case qname, qtype, qclass). The client's EDNS options and DO/CD bits are not
//!   part of the key: containers use stub resolvers that do not validate DNSSEC, and the upstream
//!   is the host's own resolver.
//! - Positive answers live for the smallest TTL of their answer and authority records.
//! - Negative answers (NXDOMAIN, and NODATA: NOERROR without answers) live for
//!   min(SOA TTL, SOA MINIMUM) of the SOA in the authority section, as RFC 2308 section 5 says;
//!   without an SOA they are not cached (RFC 2308 section 5: "SHOULD NOT be cached").
//! - Both are capped (`max_ttl`, `max_negative_ttl`), like unbound's `cache-max-ttl` and
//!   `cache-max-negative-ttl`.
//! - Never cached: truncated answers, any other RCODE (SERVFAIL, REFUSED, ...), TTL 0.
//! - A hit returns the stored message with every TTL lowered by the time spent in the cache
//!   (and never above the entry's remaining lifetime), per RFC 1035 section 7.4.

use std::num::NonZeroUsize;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use hickory_proto::op::{Message, Query, ResponseCode};
use hickory_proto::rr::{DNSClass, Name, RData, Record, RecordType};
use lru::LruCache;

/// Cache key: lower-case qname, qtype, qclass.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct Key {
    name: Name,
    qtype: RecordType,
    qclass: DNSClass,
}

impl Key {
    pub(crate) fn of(query: &Query) -> Key {
        Key {
            name: query.name().to_lowercase(),
            qtype: query.query_type(),
            qclass: query.query_class(),
        }
    }
}

#[derive(Debug)]
struct Entry {
    /// The upstream answer without question and EDNS (those are the client's, per response).
    message: Message,
    stored_at: Instant,
    expires_at: Instant,
}

/// See the module docs.
#[derive(Debug)]
pub(crate) struct Cache {
    entries: Option<Mutex<LruCache<Key, Entry>>>,
    max_ttl: u32,
    max_negative_ttl: u32,
}

impl Cache {
    /// A cache of at most `capacity` answers (0 disables caching).
    pub(crate) fn new(capacity: usize, max_ttl: u32, max_negative_ttl: u32) -> Cache {
        Cache {
            entries: NonZeroUsize::new(capacity).map(|c| Mutex::new(LruCache::new(c))),
            max_ttl,
            max_negative_ttl,
        }
    }

    /// How long `message` may be cached, in seconds; None if it must not be.
    pub(crate) fn lifetime(&self, message: &Message) -> Option<u32> {
        if message.truncated() {
            return None;
        }
        let ttl = match message.response_code() {
            ResponseCode::NoError if !message.answers().is_empty() => message
                .answers()
                .iter()
                .chain(message.name_servers())
                .map(Record::ttl)
                .min()
                .map(|ttl| ttl.min(self.max_ttl)),
            ResponseCode::NoError | ResponseCode::NXDomain => message
                .name_servers()
                .iter()
                .filter_map(|r| match r.data() {
                    RData::SOA(soa) => Some(r.ttl().min(soa.minimum())),
                    _ => None,
                })
                .min()
                .map(|ttl| ttl.min(self.max_negative_ttl)),
            _ => None,
        }?;
        (ttl > 0).then_some(ttl)
    }

    /// Remember `message` (an upstream answer to `key`) if it may be cached.
    pub(crate) fn insert(&self, key: Key, message: &Message, now: Instant) {
        let Some(entries) = &self.entries else { return };
        let Some(ttl) = self.lifetime(message) else {
            return;
        };
        let mut stored = message.clone();
        stored.take_queries();
        *stored.extensions_mut() = None;
        let entry = Entry {
            message: stored,
            stored_at: now,
            expires_at: now + Duration::from_secs(u64::from(ttl)),
        };
        if let Ok(mut entries) = entries.lock() {
            entries.put(key, entry);
        }
    }

    /// The cached answer to `key` at `now`, TTLs lowered; None on a miss or an expired entry.
    /// The message has no question and no EDNS.
    pub(crate) fn get(&self, key: &Key, now: Instant) -> Option<Message> {
        let mut entries = self.entries.as_ref()?.lock().ok()?;
        let entry = entries.get(key)?;
        let remaining = entry.expires_at.saturating_duration_since(now).as_secs();
        if remaining == 0 {
            entries.pop(key);
            return None;
        }
        let remaining = u32::try_from(remaining).unwrap_or(u32::MAX);
        let elapsed = now.saturating_duration_since(entry.stored_at).as_secs();
        let elapsed = u32::try_from(elapsed).unwrap_or(u32::MAX);
        let mut message = entry.message.clone();
        drop(entries);
        let age = |records: &mut Vec<Record>| {
            for record in records.iter_mut() {
                let ttl = record.ttl().saturating_sub(elapsed).min(remaining);
                record.set_ttl(ttl);
            }
        };
        age(message.answers_mut());
        age(message.name_servers_mut());
        age(message.additionals_mut());
        Some(message)
    }

    /// Number of entries (expired ones included until they are looked up or evicted).
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.entries
            .as_ref()
            .and_then(|e| e.lock().ok().map(|e| e.len()))
            .unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hickory_proto::op::MessageType;
    use hickory_proto::rr::rdata::{A, SOA};

    fn name(s: &str) -> Name {
        Name::from_ascii(s).expect("name")
    }

    fn query(s: &str) -> Query {
        Query::query(name(s), RecordType::A)
    }

    fn answer(q: &str, ttls: &[u32]) -> Message {
        let mut m = Message::new();
        m.set_message_type(MessageType::Response);
        m.add_query(query(q));
        for (i, ttl) in ttls.iter().enumerate() {
            let last = u8::try_from(i + 1).expect("small");
            m.add_answer(Record::from_rdata(
                name(q),
                *ttl,
                RData::A(A::new(192, 0, 2, last)),
            ));
        }
        m
    }

    fn negative(q: &str, rcode: ResponseCode, soa_ttl: u32, minimum: u32) -> Message {
        let mut m = Message::new();
        m.set_message_type(MessageType::Response)
            .set_response_code(rcode);
        m.add_query(query(q));
        let soa = SOA::new(
            name("test."),
            name("admin.test."),
            1,
            3600,
            600,
            86400,
            minimum,
        );
        m.add_name_server(Record::from_rdata(name("test."), soa_ttl, RData::SOA(soa)));
        m
    }

    #[test]
    fn positive_lives_for_min_ttl_and_ages() {
        let cache = Cache::new(10, 86400, 3600);
        let t0 = Instant::now();
        let msg = answer("a.test.", &[300, 100]);
        assert_eq!(cache.lifetime(&msg), Some(100));
        let key = Key::of(&query("A.TEST."));
        cache.insert(key.clone(), &msg, t0);
        let hit = cache
            .get(&Key::of(&query("a.test.")), t0 + Duration::from_secs(30))
            .expect("hit");
        let ttls: Vec<u32> = hit.answers().iter().map(Record::ttl).collect();
        assert_eq!(ttls, [70, 70]);
        assert!(hit.queries().is_empty());
        assert!(cache.get(&key, t0 + Duration::from_secs(100)).is_none());
        assert_eq!(cache.len(), 0, "expired entry removed on lookup");
    }

    #[test]
    fn negative_uses_soa_minimum_or_ttl() {
        let cache = Cache::new(10, 86400, 3600);
        assert_eq!(
            cache.lifetime(&negative("x.test.", ResponseCode::NXDomain, 900, 60)),
            Some(60)
        );
        assert_eq!(
            cache.lifetime(&negative("x.test.", ResponseCode::NXDomain, 30, 60)),
            Some(30)
        );
        assert_eq!(
            cache.lifetime(&negative("x.test.", ResponseCode::NoError, 900, 120)),
            Some(120)
        );
        assert_eq!(
            cache.lifetime(&negative("x.test.", ResponseCode::NXDomain, 86400, 86400)),
            Some(3600),
            "capped"
        );
        // NXDOMAIN / NODATA without SOA: not cached.
        let mut bare = answer("x.test.", &[]);
        assert_eq!(cache.lifetime(&bare), None);
        bare.set_response_code(ResponseCode::NXDomain);
        assert_eq!(cache.lifetime(&bare), None);

        let t0 = Instant::now();
        let msg = negative("x.test.", ResponseCode::NXDomain, 900, 60);
        cache.insert(Key::of(&query("x.test.")), &msg, t0);
        let hit = cache
            .get(&Key::of(&query("x.test.")), t0 + Duration::from_secs(10))
            .expect("hit");
        assert_eq!(hit.response_code(), ResponseCode::NXDomain);
        assert_eq!(
            hit.name_servers()[0].ttl(),
            50,
            "SOA TTL clamped to the remaining life"
        );
    }

    #[test]
    fn never_cached() {
        let cache = Cache::new(10, 86400, 3600);
        let mut tc = answer("a.test.", &[300]);
        tc.set_truncated(true);
        assert_eq!(cache.lifetime(&tc), None);
        let mut fail = answer("a.test.", &[300]);
        fail.set_response_code(ResponseCode::ServFail);
        assert_eq!(cache.lifetime(&fail), None);
        fail.set_response_code(ResponseCode::Refused);
        assert_eq!(cache.lifetime(&fail), None);
        assert_eq!(cache.lifetime(&answer("a.test.", &[300, 0])), None, "TTL 0");
        let t0 = Instant::now();
        cache.insert(Key::of(&query("a.test.")), &tc, t0);
        assert_eq!(cache.len(), 0);
        let disabled = Cache::new(0, 86400, 3600);
        disabled.insert(Key::of(&query("a.test.")), &answer("a.test.", &[300]), t0);
        assert!(disabled.get(&Key::of(&query("a.test.")), t0).is_none());
    }

    #[test]
    fn bounded_lru() {
        let cache = Cache::new(3, 86400, 3600);
        let t0 = Instant::now();
        for n in ["a", "b", "c"] {
            let q = format!("{n}.test.");
            cache.insert(Key::of(&query(&q)), &answer(&q, &[300]), t0);
        }
        // Touch "a" so "b" is the least recently used.
        assert!(cache.get(&Key::of(&query("a.test.")), t0).is_some());
        cache.insert(Key::of(&query("d.test.")), &answer("d.test.", &[300]), t0);
        assert_eq!(cache.len(), 3);
        assert!(cache.get(&Key::of(&query("b.test.")), t0).is_none());
        for n in ["a", "c", "d"] {
            assert!(
                cache
                    .get(&Key::of(&query(&format!("{n}.test."))), t0)
                    .is_some(),
                "{n}"
            );
        }
    }

    #[test]
    fn max_ttl_caps_positive() {
        let cache = Cache::new(3, 600, 60);
        assert_eq!(cache.lifetime(&answer("a.test.", &[86400])), Some(600));
        let t0 = Instant::now();
        cache.insert(Key::of(&query("a.test.")), &answer("a.test.", &[86400]), t0);
        let hit = cache
            .get(&Key::of(&query("a.test.")), t0 + Duration::from_secs(1))
            .expect("hit");
        assert_eq!(hit.answers()[0].ttl(), 599);
    }
}

//! Local answers reused as bytes: each UDP listener keeps the encoded answers it sent for local
//! names and answers the same question again by copying them and patching three header
//! fields, without decoding the query or encoding an answer.
//!
//! Why: a local answer is a lookup of microseconds, and most of the resolver's own CPU per
//! query went to hickory-proto decoding the query into a `Message` and encoding the answer
//! (a dozen allocations, name lower-casing, label compression). Profiled under dnsperf, that
//! was about a third of the serving thread; the rest is the kernel's send and receive.
//!
//! When the bytes are the same: an answer made by [`crate::Resolver`] for a query depends on
//! the query only through its id, its RD and CD bits, its question (name as written, type,
//! class), whether it carries an EDNS OPT record (our answer then carries ours) and the size
//! the client accepts; and on the resolver only through the record snapshot and the asker's
//! networks. So:
//! - the key is the question's exact bytes and the EDNS flag; the id, RD and CD are patched;
//! - only queries of one strict shape are looked up ([`QueryView::parse`]: QR 0, opcode QUERY,
//!   one question, no answer or authority records, at most one additional record which must be
//!   a well-formed OPT of version 0 without a client-subnet option, nothing after it); any
//!   other query takes the full path, which judges it as before;
//! - only answers that come out the same every time are stored: local answers of at most one
//!   record (several addresses are shuffled per query) and NODATA, never truncated, never an
//!   upstream's (their TTLs count down);
//! - the cache belongs to one record snapshot and one asker ([`AnswerCache::sync`] empties it
//!   when either is replaced; holding both `Arc`s keeps an address from being reused for a
//!   new snapshot while the cache still names it);
//! - a stored answer longer than the querying client accepts takes the full path (which
//!   truncates it).
//!
//! The differential check lives in the fuzz target ([`crate::fuzzing::query`]): whatever the
//! cache answers must be byte for byte what the full path answers.
//!
//! This is the one place the crate reads DNS wire format itself (the header's counts and
//! flags, the question's extent, the OPT record's fixed fields): hickory-proto has no view
//! that reads a message in place.

use std::collections::HashMap;
use std::sync::Arc;

use crate::records::Records;
use crate::resolver::AskerContext;

/// Answers kept per listener; a full cache is emptied and fills again. A client asks for a
/// handful of names; the bound only matters against one asking in random letter case.
const MAX_ENTRIES: usize = 256;

/// Byte offsets of the DNS header (RFC 1035 4.1.1).
mod field {
    use std::ops::Range;
    pub const ID: Range<usize> = 0..2;
    /// QR, opcode, AA, TC, RD.
    pub const FLAGS_HI: usize = 2;
    /// RA, Z, AD, CD, rcode.
    pub const FLAGS_LO: usize = 3;
    pub const QDCOUNT: Range<usize> = 4..6;
    pub const ANCOUNT: Range<usize> = 6..8;
    pub const NSCOUNT: Range<usize> = 8..10;
    pub const ARCOUNT: Range<usize> = 10..12;
    pub const QUESTION: usize = 12;
    /// In FLAGS_HI: QR and the opcode.
    pub const QR_OPCODE: u8 = 0xf8;
    /// In FLAGS_HI: TC.
    pub const TC: u8 = 0x02;
    /// In FLAGS_HI: RD.
    pub const RD: u8 = 0x01;
    /// In FLAGS_LO: CD.
    pub const CD: u8 = 0x10;
}

/// The OPT record's type (RFC 6891).
const TYPE_OPT: u16 = 41;
/// EDNS client subnet: hickory-proto parses its content (and may refuse it); never reused.
const OPTION_SUBNET: u16 = 8;

fn be16(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_be_bytes([*b.get(at)?, *b.get(at + 1)?]))
}

/// A query of the one shape whose answer may be reused (see the module docs).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct QueryView<'a> {
    bytes: &'a [u8],
    /// The question: name as written, type, class.
    question: &'a [u8],
    /// Some(UDP payload size) when the query has an OPT record.
    edns: Option<u16>,
}

impl<'a> QueryView<'a> {
    /// The view of `bytes`, or None when the query is of any other shape.
    pub(crate) fn parse(bytes: &'a [u8]) -> Option<QueryView<'a>> {
        let count = |r: std::ops::Range<usize>| be16(bytes, r.start);
        if bytes.get(field::FLAGS_HI)? & field::QR_OPCODE != 0
            || count(field::QDCOUNT)? != 1
            || count(field::ANCOUNT)? != 0
            || count(field::NSCOUNT)? != 0
        {
            return None;
        }
        let additional = count(field::ARCOUNT)?;
        // The name: plain labels (no compression pointer: a query has nothing to point at),
        // at most 255 bytes on the wire.
        let mut at = field::QUESTION;
        loop {
            let len = usize::from(*bytes.get(at)?);
            if len & 0xc0 != 0 || at + 1 + len - field::QUESTION > 255 {
                return None;
            }
            at += 1 + len;
            if len == 0 {
                break;
            }
        }
        let question_end = at + 4; // type and class
        let question = bytes.get(field::QUESTION..question_end)?;
        let edns = match additional {
            0 => None,
            1 => Some(opt_payload(bytes, question_end)?),
            _ => return None,
        };
        if edns.is_none() && bytes.len() != question_end {
            return None;
        }
        Some(QueryView {
            bytes,
            question,
            edns,
        })
    }

    /// The largest answer the client accepts over UDP: 512, or its EDNS size when larger.
    fn limit(&self) -> usize {
        usize::from(self.edns.unwrap_or(512).max(512))
    }
}

/// The payload size of the OPT record at `at`, which must end the message; None unless it is
/// a root-named OPT of version 0 whose options fill its data exactly, none a client subnet.
fn opt_payload(bytes: &[u8], at: usize) -> Option<u16> {
    // name (root), type, class (payload), TTL (extended rcode, version, flags), rdlength.
    if *bytes.get(at)? != 0 || be16(bytes, at + 1)? != TYPE_OPT || *bytes.get(at + 6)? != 0 {
        return None;
    }
    let payload = be16(bytes, at + 3)?;
    let rdlen = usize::from(be16(bytes, at + 9)?);
    let data_start = at + 11;
    if bytes.len() != data_start + rdlen {
        return None;
    }
    let mut o = data_start;
    while o < bytes.len() {
        let code = be16(bytes, o)?;
        let len = usize::from(be16(bytes, o + 2)?);
        if code == OPTION_SUBNET || o + 4 + len > bytes.len() {
            return None;
        }
        o += 4 + len;
    }
    Some(payload)
}

/// What a reused answer counts as (the outcome counter the full path incremented).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum LocalKind {
    /// `local_answers`.
    Answer,
    /// `nodata`.
    NoData,
}

#[derive(Debug)]
struct Entry {
    bytes: Box<[u8]>,
    kind: LocalKind,
}

/// One listener's reusable answers (see the module docs).
#[derive(Debug, Default)]
pub(crate) struct AnswerCache {
    records: Option<Arc<Records>>,
    asker: Option<Arc<AskerContext>>,
    /// Queries without EDNS, keyed by their question bytes.
    plain: HashMap<Box<[u8]>, Entry>,
    /// Queries with an OPT record.
    edns: HashMap<Box<[u8]>, Entry>,
}

impl AnswerCache {
    /// Ties the cache to the records and asker the next queries are answered for; entries made
    /// for others are dropped.
    pub(crate) fn sync(&mut self, records: &Arc<Records>, asker: &Arc<AskerContext>) {
        fn same<T>(held: &Option<Arc<T>>, now: &Arc<T>) -> bool {
            held.as_ref().is_some_and(|h| Arc::ptr_eq(h, now))
        }
        if !same(&self.records, records) || !same(&self.asker, asker) {
            self.plain.clear();
            self.edns.clear();
            self.records = Some(Arc::clone(records));
            self.asker = Some(Arc::clone(asker));
        }
    }

    /// Writes the answer to `query` into `out` when one is stored; None (and `out` untouched)
    /// when the query must take the full path.
    pub(crate) fn answer(&self, query: &[u8], out: &mut Vec<u8>) -> Option<LocalKind> {
        let q = QueryView::parse(query)?;
        let map = if q.edns.is_some() {
            &self.edns
        } else {
            &self.plain
        };
        let entry = map.get(q.question)?;
        if entry.bytes.len() > q.limit() {
            return None;
        }
        out.clear();
        out.extend_from_slice(&entry.bytes);
        out[field::ID].copy_from_slice(&q.bytes[field::ID]);
        let rd = q.bytes[field::FLAGS_HI] & field::RD;
        out[field::FLAGS_HI] = (out[field::FLAGS_HI] & !field::RD) | rd;
        let cd = q.bytes[field::FLAGS_LO] & field::CD;
        out[field::FLAGS_LO] = (out[field::FLAGS_LO] & !field::CD) | cd;
        Some(entry.kind)
    }

    /// Stores `answer`, the full path's reusable local answer to `query` (see
    /// [`crate::resolver::Step::Local`]), when the query has the reusable shape and the answer
    /// was not truncated.
    pub(crate) fn insert(&mut self, query: &[u8], answer: &[u8], kind: LocalKind) {
        let Some(q) = QueryView::parse(query) else {
            return;
        };
        let whole = answer
            .get(field::FLAGS_HI)
            .is_some_and(|f| f & field::TC == 0);
        if !whole
            || answer.get(field::QUESTION..field::QUESTION + q.question.len()) != Some(q.question)
        {
            return;
        }
        let map = if q.edns.is_some() {
            &mut self.edns
        } else {
            &mut self.plain
        };
        if map.len() >= MAX_ENTRIES {
            map.clear();
        }
        map.insert(
            q.question.into(),
            Entry {
                bytes: answer.into(),
                kind,
            },
        );
    }

    /// Answers stored (both maps).
    #[cfg(test)]
    fn len(&self) -> usize {
        self.plain.len() + self.edns.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::records::Entry as RecordEntry;
    use crate::resolver::{Resolver, ResolverConfig, Step, Transport};
    use crate::RecordStore;
    use hickory_proto::op::{Edns, Message, MessageType, OpCode, Query};
    use hickory_proto::rr::{Name, RecordType};

    fn records() -> Records {
        Records::new(
            vec![
                RecordEntry {
                    network: "lab".into(),
                    name: "web".into(),
                    aliases: vec!["www".into(), "api".into()],
                    ipv4: Some("10.89.0.2".parse().unwrap()),
                    ipv6: None,
                },
                RecordEntry {
                    network: "lab".into(),
                    name: "web2".into(),
                    aliases: vec!["api".into()],
                    ipv4: Some("10.89.0.3".parse().unwrap()),
                    ipv6: None,
                },
            ],
            60,
        )
    }

    fn query(id: u16, name: &str, qtype: RecordType, edns: Option<u16>) -> Vec<u8> {
        let mut m = Message::new();
        m.set_id(id)
            .set_message_type(MessageType::Query)
            .set_op_code(OpCode::Query)
            .set_recursion_desired(true);
        m.add_query(Query::query(Name::from_ascii(name).unwrap(), qtype));
        if let Some(size) = edns {
            let mut e = Edns::new();
            e.set_max_payload(size);
            m.set_edns(e);
        }
        m.to_vec().unwrap()
    }

    struct Lab {
        resolver: Resolver,
        asker: Arc<AskerContext>,
        cache: AnswerCache,
    }

    impl Lab {
        fn new() -> Lab {
            let resolver = Resolver::new(
                ResolverConfig::default(),
                Arc::new(RecordStore::new(records())),
            );
            let asker = Arc::new(AskerContext {
                networks: vec!["lab".into()],
                internal: false,
            });
            let mut cache = AnswerCache::default();
            cache.sync(&resolver.records().load(), &asker);
            Lab {
                resolver,
                asker,
                cache,
            }
        }

        /// The full path's answer, stored when reusable; (bytes, reusable).
        fn full(&mut self, q: &[u8]) -> (Vec<u8>, bool) {
            match self.resolver.prepare(q, &self.asker, Transport::Udp) {
                Step::Local {
                    bytes,
                    kind,
                    reusable,
                } => {
                    if reusable {
                        self.cache.insert(q, &bytes, kind);
                    }
                    (bytes, reusable)
                }
                Step::Reply(bytes) => (bytes, false),
                _ => panic!("no answer"),
            }
        }

        fn fast(&self, q: &[u8]) -> Option<Vec<u8>> {
            let mut out = vec![0xa5; 3];
            self.cache.answer(q, &mut out).map(|_| out)
        }
    }

    #[test]
    fn a_reused_answer_is_the_full_paths_answer_byte_for_byte() {
        let mut lab = Lab::new();
        for edns in [None, Some(1232), Some(4096), Some(100)] {
            for (name, qtype) in [
                ("web", RecordType::A),
                ("WWW.lab.", RecordType::A),
                ("web", RecordType::AAAA), // NODATA
                ("2.0.89.10.in-addr.arpa.", RecordType::PTR),
            ] {
                let first = query(1, name, qtype, edns);
                // An EDNS size other than the first's finds the answer stored for it.
                let stored = lab.fast(&first);
                let (full, reusable) = lab.full(&first);
                assert!(reusable, "{name} {qtype} is reusable");
                assert_eq!(stored.is_some(), matches!(edns, Some(s) if s != 1232));
                assert!(stored.is_none_or(|s| s == full));
                for (id, rd, cd) in [(2, true, false), (0xfffe, false, true), (7, false, false)] {
                    let mut q = query(id, name, qtype, edns);
                    let mut m = Message::from_vec(&q).unwrap();
                    m.set_recursion_desired(rd).set_checking_disabled(cd);
                    q = m.to_vec().unwrap();
                    let reused = lab.fast(&q).expect("stored");
                    let mut fresh = Lab::new();
                    assert_eq!(
                        reused,
                        fresh.full(&q).0,
                        "{name} {qtype} id {id} rd {rd} cd {cd}"
                    );
                }
            }
        }
        assert_eq!(lab.cache.len(), 8);
    }

    #[test]
    fn shuffled_truncated_and_forwarded_answers_are_never_stored() {
        let mut lab = Lab::new();
        // Two addresses: shuffled per query.
        let q = query(1, "api", RecordType::A, None);
        assert!(!lab.full(&q).1);
        assert_eq!(lab.fast(&q), None);
        // Not local: no upstream, SERVFAIL through Step::Reply.
        let q = query(1, "example.com", RecordType::A, None);
        assert!(!lab.full(&q).1);
        assert_eq!(lab.fast(&q), None);
        // A truncated answer is refused by insert even when offered.
        let mut truncated = lab.full(&query(1, "web", RecordType::A, None)).0;
        truncated[2] |= field::TC;
        let mut cache = AnswerCache::default();
        cache.insert(
            &query(1, "web", RecordType::A, None),
            &truncated,
            LocalKind::Answer,
        );
        assert_eq!(cache.len(), 0);
    }

    #[test]
    fn a_new_record_snapshot_or_asker_empties_the_cache() {
        let mut lab = Lab::new();
        let q = query(1, "web", RecordType::A, None);
        lab.full(&q);
        assert!(lab.fast(&q).is_some());
        // The same snapshot and asker: kept.
        let records = lab.resolver.records().load();
        lab.cache.sync(&records, &lab.asker);
        assert!(lab.fast(&q).is_some());
        // Another snapshot (even with the same content): emptied.
        lab.resolver.records().replace(self::records());
        lab.cache.sync(&lab.resolver.records().load(), &lab.asker);
        assert_eq!(lab.fast(&q), None);
        lab.full(&q);
        assert!(lab.fast(&q).is_some());
        let other = Arc::new(AskerContext {
            networks: vec!["other".into()],
            internal: false,
        });
        lab.cache.sync(&lab.resolver.records().load(), &other);
        assert_eq!(lab.fast(&q), None);
    }

    #[test]
    fn only_the_strict_query_shape_is_looked_up() {
        let good = query(1, "web", RecordType::A, None);
        assert!(QueryView::parse(&good).is_some());
        let with_edns = query(1, "web", RecordType::A, Some(1232));
        assert_eq!(QueryView::parse(&with_edns).unwrap().edns, Some(1232));
        let mut bad = Vec::new();
        // A response, another opcode, two questions, an answer record, trailing bytes.
        let mut b = good.clone();
        b[2] |= 0x80;
        bad.push(b);
        let mut b = good.clone();
        b[2] |= 0x10;
        bad.push(b);
        let mut b = good.clone();
        b[5] = 2;
        bad.push(b);
        let mut b = good.clone();
        b[7] = 1;
        bad.push(b);
        let mut b = good.clone();
        b.push(0);
        bad.push(b);
        // Cut short, a compression pointer in the name.
        bad.push(good[..good.len() - 1].to_vec());
        let mut b = good.clone();
        b[12] = 0xc0;
        bad.push(b);
        // EDNS version 1, a client subnet option, an option running past the end.
        let mut b = with_edns.clone();
        let opt = b.len() - 11;
        b[opt + 6] = 1;
        bad.push(b);
        let mut b = with_edns.clone();
        b[opt + 10] = 8;
        b.extend_from_slice(&[0, 8, 0, 0]);
        bad.push(b);
        let mut b = with_edns.clone();
        b[opt + 10] = 8;
        b.extend_from_slice(&[0, 3, 0, 9, 1, 2, 3, 4]);
        bad.push(b);
        for b in &bad {
            assert_eq!(QueryView::parse(b), None, "{b:?}");
        }
        // A well-formed option (a cookie) is fine.
        let mut b = with_edns.clone();
        b[opt + 10] = 12;
        b.extend_from_slice(&[0, 10, 0, 8, 1, 2, 3, 4, 5, 6, 7, 8]);
        assert!(QueryView::parse(&b).is_some());
    }

    #[test]
    fn a_stored_answer_too_long_for_the_client_takes_the_full_path() {
        let mut cache = AnswerCache::default();
        let q = query(1, "web", RecordType::A, None);
        let mut long = q.clone();
        long[2] |= 0x80;
        long.resize(600, 0);
        cache.insert(&q, &long, LocalKind::Answer);
        assert_eq!(cache.len(), 1);
        assert_eq!(cache.answer(&q, &mut Vec::new()), None);
        let q = query(1, "web", RecordType::A, Some(1232));
        cache.insert(&q, &long, LocalKind::Answer);
        assert!(cache.answer(&q, &mut Vec::new()).is_some());
    }
}

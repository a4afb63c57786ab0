//! Entry point of the DNS fuzz target (`fuzz/fuzz_targets/dns_query.rs`): a query through the
//! resolver's decision path and, when it is forwarded, an upstream answer through the checks,
//! the cache and the relaying. No I/O: [`Resolver::prepare`] is the part of
//! [`Resolver::handle`] before the upstream exchange, and the exchange's judging of a reply is
//! pure too. It lives in the library so that `tests/fuzz_regressions.rs` replays stored inputs
//! on stable through the very code the target runs.

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;

use hickory_proto::op::Message;

use crate::answer_cache::AnswerCache;
use crate::records::{Entry, RecordStore, Records};
use crate::resolver::{
    encode, relayed_response, response_limit, upstream_query, AskerContext, Resolver,
    ResolverConfig, Step, Transport,
};
use crate::upstream::{Expect, Verdict};

/// `data[0]`: bit 0 the asker is internal, bit 1 TCP, bit 2 no upstream; `data[1..3]`: the
/// query's length; then the query, then what the upstream answers (its id set to ours, so
/// the judging goes past the id check).
pub fn query(data: &[u8]) {
    let Some((&ctl, rest)) = data.split_first() else {
        return;
    };
    let Some((len, rest)) = rest.split_at_checked(2) else {
        return;
    };
    let len = usize::from(u16::from_be_bytes([len[0], len[1]])).min(rest.len());
    let (q, upstream) = rest.split_at(len);
    let records = Records::new(
        vec![Entry {
            network: "lab".into(),
            name: "web".into(),
            aliases: vec!["www".into()],
            ipv4: Some(Ipv4Addr::new(10, 89, 0, 2)),
            ipv6: "fd00::2".parse().ok(),
        }],
        600,
    );
    let config = ResolverConfig {
        upstreams: if ctl & 4 == 0 {
            vec![SocketAddr::from((Ipv4Addr::LOCALHOST, 9))]
        } else {
            Vec::new()
        },
        cache_capacity: 16,
        ..ResolverConfig::default()
    };
    let resolver = Resolver::new(config, Arc::new(RecordStore::new(records)));
    let asker = AskerContext {
        networks: vec!["lab".into()],
        internal: ctl & 1 != 0,
    };
    let transport = if ctl & 2 != 0 {
        Transport::Tcp
    } else {
        Transport::Udp
    };
    let limit = Message::from_vec(q).map_or(512, |m| response_limit(&m, transport));
    let step = resolver.prepare(q, &asker, transport);
    if let (
        Step::Local {
            bytes,
            kind,
            reusable: true,
        },
        Transport::Udp,
    ) = (&step, transport)
    {
        // The UDP loop's reuse: whatever the answer cache answers is the full path's answer,
        // to this query and to the same query with another id, RD and CD.
        let mut cache = AnswerCache::default();
        cache.sync(&resolver.records().load(), &Arc::new(asker.clone()));
        cache.insert(q, bytes, *kind);
        let mut variant = q.to_vec();
        if variant.len() >= 4 {
            variant[0] ^= 0x5a;
            variant[2] ^= 0x01;
            variant[3] ^= 0x10;
        }
        for query in [q, &variant[..]] {
            let mut out = Vec::new();
            if let Some(kind) = cache.answer(query, &mut out) {
                match resolver.prepare(query, &asker, transport) {
                    Step::Local { bytes, kind: k, .. } => {
                        assert_eq!(out, bytes, "a reused answer differs from the full path's");
                        assert_eq!(kind, k, "a reused answer counted as another outcome");
                    }
                    _ => panic!("a reused answer where the full path answers otherwise"),
                }
            }
        }
    }
    match step {
        Step::Drop => {}
        Step::Reply(bytes) | Step::Local { bytes, .. } => {
            assert!(
                bytes.len() <= limit.max(512),
                "an answer over the client's limit"
            );
            let m = Message::from_vec(&bytes).unwrap_or_else(|e| panic!("our answer: {e}"));
            assert_eq!(
                q.get(..2),
                Some(&m.id().to_be_bytes()[..]),
                "an answer with another id"
            );
        }
        Step::Forward(job) => {
            let [question] = job.request.queries() else {
                panic!("a forwarded query without exactly one question");
            };
            let id = 0x5a5a;
            let _ = upstream_query(&job.request, id).to_vec();
            let expect = Expect {
                id,
                query: question,
            };
            let mut answer = upstream.to_vec();
            if let Some(h) = answer.get_mut(..2) {
                h.copy_from_slice(&id.to_be_bytes());
            }
            if let Verdict::Accept(reply) = expect.judge(&answer) {
                resolver
                    .cache
                    .insert(job.key.clone(), &reply, std::time::Instant::now());
                if let Some(bytes) = encode(&relayed_response(&job.request, reply), job.limit) {
                    assert!(
                        bytes.len() <= job.limit.max(512),
                        "a relayed answer over the limit"
                    );
                }
                // The same question again is answered from the cache (or forwarded again).
                let _ = resolver.prepare(q, &asker, transport);
            }
        }
    }
}

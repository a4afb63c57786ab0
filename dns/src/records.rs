//! The record store: which names exist on which network. Plain data, no I/O.
//!
//! [`Records`] is built from the daemon's endpoint list ([`Entry`]) and answers one question,
//! [`Records::lookup`]: given the networks the asking endpoint is attached to, a name and a type,
//! is this a local answer ([`Answer::Local`]), a local name without that type ([`Answer::NoData`]),
//! or somebody else's problem ([`Answer::NotLocal`], forwarded upstream)?
//!
//! Contract (Docker's embedded DNS, see the module docs of the crate):
//! - A name matches an endpoint's `name`, each of its `aliases`, and `name.NETWORK` /
//!   `alias.NETWORK` for the endpoint's own network; with or without a trailing dot; ASCII
//!   case-insensitive.
//! - Only endpoints on networks the asker is attached to are visible: a name that exists only on
//!   another network is [`Answer::NotLocal`], exactly as if it did not exist locally.
//! - Several visible endpoints answering to one name (a shared alias, or one container on two of
//!   the asker's networks): all their addresses, deduplicated, shuffled per query.
//! - PTR: the reverse name (`in-addr.arpa` / `ip6.arpa`) of every visible endpoint address answers
//!   `name.NETWORK.`.
//! - A local name asked for a type it has no record of (AAAA on a v4-only endpoint, MX, TXT, ...):
//!   [`Answer::NoData`], an empty NOERROR, not NXDOMAIN (Docker answers MX this way too).
//!
//! [`RecordStore`] holds the current [`Records`] behind an [`ArcSwap`]: on attach/detach/rename
//! the daemon makes the next `Records` from the current one and its new endpoint list
//! ([`Records::updated`]: only what changed is parsed and indexed, the rest is shared) and
//! [`RecordStore::replace`]s it; queries in flight keep the snapshot they loaded, and no query
//! ever waits for a reload.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::Arc;

use arc_swap::{ArcSwap, Guard};
use hickory_proto::rr::rdata::{A, AAAA, PTR};
use hickory_proto::rr::{Name, RData, Record, RecordType};
use rand::seq::SliceRandom;
use rand::Rng;

/// TTL of local answers unless configured otherwise (`--dns-ttl`), in seconds.
///
/// One minute, where Docker uses 600 s and aardvark-dns 0 s:
/// - glibc's stub resolver does not cache, so most clients see attach/detach/rename at once
///   whatever the TTL. The TTL only matters to clients that cache (nginx's `resolver`, a JVM, a
///   dnsmasq or systemd-resolved inside the container), and for them it bounds how long a
///   recreated container's old address keeps being used: a minute instead of Docker's ten (the
///   classic "nginx keeps proxying to the dead container" report).
/// - Local answers come from memory in microseconds, so the extra queries a short TTL causes
///   cost nothing worth saving.
/// - Not 0: some caches treat 0 as "never cache" and then query once per connection, and
///   aardvark-dns users asked for a non-zero, configurable TTL (aardvark-dns #429).
pub const DEFAULT_LOCAL_TTL: u32 = 60;

/// One endpoint on one network, as the daemon knows it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Entry {
    /// The network the endpoint is attached to.
    pub network: String,
    /// The endpoint's (container's) name.
    pub name: String,
    /// Extra names on this network (`attach --alias`).
    pub aliases: Vec<String>,
    /// The endpoint's IPv4 address on this network, if any.
    pub ipv4: Option<Ipv4Addr>,
    /// The endpoint's IPv6 address on this network, if any.
    pub ipv6: Option<Ipv6Addr>,
}

/// The result of [`Records::lookup`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    /// Answer with these records (A/AAAA or PTR), owner name as asked, TTL set.
    Local {
        /// The answer section.
        records: Vec<Record>,
    },
    /// The name exists on one of the asker's networks, but has no record of the asked type:
    /// NOERROR with an empty answer.
    NoData,
    /// Not a local name (for this asker): forward it upstream.
    NotLocal,
}

/// An endpoint after normalisation, with the index keys it holds (to take them out again).
#[derive(Debug)]
struct Endpoint {
    network: String,
    ipv4: Option<Ipv4Addr>,
    ipv6: Option<Ipv6Addr>,
    /// `name.network.`, the PTR target; None if that is not a valid DNS name.
    ptr_target: Option<Name>,
    /// Its keys in `by_name` and `by_reverse`.
    names: Vec<Arc<str>>,
    reverse: Vec<Arc<str>>,
}

/// Endpoint ids under one key. Shared between snapshots: a change copies only the lists it
/// touches.
type Ids = Arc<[u64]>;

/// The names of every endpoint, indexed for [`Records::lookup`]. Immutable once built; a
/// change ([`Records::updated`]) makes a new `Records` that shares every unchanged part with
/// this one.
#[derive(Debug, Clone)]
pub struct Records {
    ttl: u32,
    next_id: u64,
    endpoints: HashMap<u64, Arc<Endpoint>>,
    /// The entries indexed, each with the endpoints made from it (the same entry twice makes
    /// two: the daemon's list is a multiset).
    by_entry: HashMap<Arc<Entry>, Ids>,
    /// Lower-case name without the trailing dot -> endpoints answering to it.
    by_name: HashMap<Arc<str>, Ids>,
    /// Lower-case reverse name (`4.3.2.1.in-addr.arpa`) -> endpoints having that address.
    by_reverse: HashMap<Arc<str>, Ids>,
}

impl Default for Records {
    fn default() -> Self {
        Records::new(Vec::new(), DEFAULT_LOCAL_TTL)
    }
}

/// The lookup key of a name given as text: lower-case, no trailing dot. Empty names and names
/// that are not valid DNS names give None (they can never be asked for).
fn key_of_str(name: &str) -> Option<String> {
    let parsed = Name::from_utf8(name).ok()?;
    let key = key_of_name(&parsed);
    (!key.is_empty()).then_some(key)
}

/// The lookup key of a name from a query: lower-case ASCII (punycode for IDNs), no trailing dot.
fn key_of_name(name: &Name) -> String {
    let mut key = name.to_lowercase().to_ascii();
    if key.ends_with('.') {
        key.pop();
    }
    key
}

/// `ids` with `id` added.
fn with_id(ids: Option<&Ids>, id: u64) -> Ids {
    ids.map(|v| v.iter().copied())
        .into_iter()
        .flatten()
        .chain([id])
        .collect()
}

/// Takes `id` out of the list under `key` in `map`, dropping the key when nothing is left.
fn without_id<K: std::hash::Hash + Eq>(map: &mut HashMap<K, Ids>, key: &K, id: u64) {
    let Some(ids) = map.get_mut(key) else {
        return;
    };
    if ids.len() <= 1 {
        map.remove(key);
    } else {
        *ids = ids.iter().copied().filter(|i| *i != id).collect();
    }
}

impl Records {
    /// Index `entries`; every local answer carries `ttl` (seconds).
    ///
    /// Names that are not valid DNS names (a label over 63 bytes, say) are skipped with a
    /// warning: nobody could ask for them.
    pub fn new(entries: Vec<Entry>, ttl: u32) -> Records {
        let mut records = Records {
            ttl,
            next_id: 0,
            endpoints: HashMap::new(),
            by_entry: HashMap::new(),
            by_name: HashMap::new(),
            by_reverse: HashMap::new(),
        };
        for entry in entries {
            records.insert(Arc::new(entry));
        }
        records
    }

    /// The records for `entries` (the daemon's whole list, as [`Records::new`] takes it),
    /// made from these by the difference: only the entries that came or went are parsed and
    /// (un)indexed; everything else, the endpoints and the lists of names no change touched,
    /// is shared with `self`. What attach and detach cost no longer grows with the number of
    /// names parsed (hickory's name parsing was a tenth of an attach's time at 1,000
    /// endpoints); the copy of the index tables is of pointers.
    pub fn updated(&self, entries: Vec<Entry>) -> Records {
        let mut wanted: HashMap<Entry, usize> = HashMap::with_capacity(entries.len());
        for e in entries {
            *wanted.entry(e).or_insert(0) += 1;
        }
        let mut next = self.clone();
        for (entry, ids) in &self.by_entry {
            let keep = wanted.get(entry.as_ref()).copied().unwrap_or(0);
            for id in ids.iter().skip(keep) {
                next.remove(entry, *id);
            }
        }
        for (entry, want) in wanted {
            let have = self.by_entry.get(&entry).map_or(0, |ids| ids.len());
            if want > have {
                let entry = Arc::new(entry);
                for _ in have..want {
                    next.insert(entry.clone());
                }
            }
        }
        next
    }

    /// Indexes one entry.
    fn insert(&mut self, entry: Arc<Entry>) {
        let id = self.next_id;
        self.next_id += 1;
        let ptr_target = Name::from_utf8(format!("{}.{}.", entry.name, entry.network)).ok();
        if ptr_target.is_none() {
            tracing::warn!(name = %entry.name, network = %entry.network,
                "endpoint name is not a valid DNS name; no PTR record");
        }
        let mut names: Vec<Arc<str>> = Vec::with_capacity(2 + 2 * entry.aliases.len());
        for base in std::iter::once(&entry.name).chain(entry.aliases.iter()) {
            for name in [base.clone(), format!("{base}.{}", entry.network)] {
                match key_of_str(&name) {
                    Some(key) => {
                        let key: Arc<str> = key.into();
                        if !names.contains(&key) {
                            names.push(key);
                        }
                    }
                    None => tracing::warn!(%name, network = %entry.network,
                        "not a valid DNS name; it will not resolve"),
                }
            }
        }
        let addrs = [entry.ipv4.map(IpAddr::V4), entry.ipv6.map(IpAddr::V6)];
        let reverse: Vec<Arc<str>> = addrs
            .into_iter()
            .flatten()
            .map(|a| Arc::from(key_of_name(&Name::from(a))))
            .collect();
        for key in &names {
            let ids = with_id(self.by_name.get(key), id);
            self.by_name.insert(key.clone(), ids);
        }
        for key in &reverse {
            let ids = with_id(self.by_reverse.get(key), id);
            self.by_reverse.insert(key.clone(), ids);
        }
        let ids = with_id(self.by_entry.get(&entry), id);
        self.endpoints.insert(
            id,
            Arc::new(Endpoint {
                network: entry.network.clone(),
                ipv4: entry.ipv4,
                ipv6: entry.ipv6,
                ptr_target,
                names,
                reverse,
            }),
        );
        self.by_entry.insert(entry, ids);
    }

    /// Takes endpoint `id`, made from `entry`, out of every index.
    fn remove(&mut self, entry: &Arc<Entry>, id: u64) {
        let Some(ep) = self.endpoints.remove(&id) else {
            return;
        };
        for key in &ep.names {
            without_id(&mut self.by_name, key, id);
        }
        for key in &ep.reverse {
            without_id(&mut self.by_reverse, key, id);
        }
        without_id(&mut self.by_entry, entry, id);
    }

    /// The TTL of local answers, in seconds.
    pub fn ttl(&self) -> u32 {
        self.ttl
    }

    /// Number of endpoints indexed.
    pub fn len(&self) -> usize {
        self.endpoints.len()
    }

    /// True when no endpoint is indexed.
    pub fn is_empty(&self) -> bool {
        self.endpoints.is_empty()
    }

    /// Answer `qname`/`qtype` for an endpoint attached to `networks_of_asker`.
    ///
    /// `rng` shuffles the addresses of a name with several endpoints (round robin); pass a seeded
    /// one in tests. Only class IN makes sense here; the caller checks the class.
    pub fn lookup<R: Rng + ?Sized>(
        &self,
        networks_of_asker: &[String],
        qname: &Name,
        qtype: RecordType,
        rng: &mut R,
    ) -> Answer {
        let key = key_of_name(qname);
        let visible = |indexes: &Ids| -> Vec<&Endpoint> {
            indexes
                .iter()
                .filter_map(|i| self.endpoints.get(i))
                .map(Arc::as_ref)
                .filter(|ep| networks_of_asker.contains(&ep.network))
                .collect()
        };

        if let Some(indexes) = self.by_name.get(key.as_str()) {
            let endpoints = visible(indexes);
            if endpoints.is_empty() {
                return Answer::NotLocal;
            }
            let mut rdatas: Vec<RData> = Vec::new();
            if matches!(qtype, RecordType::A | RecordType::ANY) {
                let mut v4: Vec<Ipv4Addr> = endpoints.iter().filter_map(|ep| ep.ipv4).collect();
                v4.sort_unstable();
                v4.dedup();
                v4.shuffle(rng);
                rdatas.extend(v4.into_iter().map(|ip| RData::A(A(ip))));
            }
            if matches!(qtype, RecordType::AAAA | RecordType::ANY) {
                let mut v6: Vec<Ipv6Addr> = endpoints.iter().filter_map(|ep| ep.ipv6).collect();
                v6.sort_unstable();
                v6.dedup();
                v6.shuffle(rng);
                rdatas.extend(v6.into_iter().map(|ip| RData::AAAA(AAAA(ip))));
            }
            return self.answer(qname, rdatas);
        }

        if let Some(indexes) = self.by_reverse.get(key.as_str()) {
            let endpoints = visible(indexes);
            if endpoints.is_empty() {
                return Answer::NotLocal;
            }
            let mut rdatas: Vec<RData> = Vec::new();
            if matches!(qtype, RecordType::PTR | RecordType::ANY) {
                let mut targets: Vec<&Name> = endpoints
                    .iter()
                    .filter_map(|ep| ep.ptr_target.as_ref())
                    .collect();
                targets.sort_by(|a, b| a.cmp_case(b));
                targets.dedup_by(|a, b| a.eq_case(b));
                rdatas.extend(targets.into_iter().map(|t| RData::PTR(PTR(t.clone()))));
            }
            return self.answer(qname, rdatas);
        }

        Answer::NotLocal
    }

    fn answer(&self, qname: &Name, rdatas: Vec<RData>) -> Answer {
        if rdatas.is_empty() {
            return Answer::NoData;
        }
        let records = rdatas
            .into_iter()
            .map(|rdata| Record::from_rdata(qname.clone(), self.ttl, rdata))
            .collect();
        Answer::Local { records }
    }
}

/// The current [`Records`], swapped atomically: a reload never blocks a query.
#[derive(Debug, Default)]
pub struct RecordStore {
    current: ArcSwap<Records>,
}

impl RecordStore {
    /// A store holding `records`.
    pub fn new(records: Records) -> RecordStore {
        RecordStore {
            current: ArcSwap::from_pointee(records),
        }
    }

    /// The current records. Cheap (no lock, no allocation); hold it for one query, not longer.
    pub fn load(&self) -> Guard<Arc<Records>> {
        self.current.load()
    }

    /// Make `records` current. Queries already running finish with the snapshot they loaded.
    pub fn replace(&self, records: Records) {
        self.current.store(Arc::new(records));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::StdRng;
    use rand::SeedableRng;

    fn entry(
        network: &str,
        name: &str,
        aliases: &[&str],
        v4: Option<&str>,
        v6: Option<&str>,
    ) -> Entry {
        Entry {
            network: network.to_string(),
            name: name.to_string(),
            aliases: aliases.iter().map(|a| a.to_string()).collect(),
            ipv4: v4.map(|a| a.parse().expect("fixture v4")),
            ipv6: v6.map(|a| a.parse().expect("fixture v6")),
        }
    }

    /// Two networks, aardvark-dns style fixture:
    /// - net1: web (alias www, 10.1.0.2 + fd01::2), db (v4 only, 10.1.0.3),
    ///   api1/api2/api3 sharing alias "api".
    /// - net2: cache (10.2.0.2, alias "kv"), web2 also named "shared" on net2.
    /// - both: multi (on net1 and net2 with two addresses).
    fn fixture() -> Records {
        Records::new(
            vec![
                entry("net1", "web", &["www"], Some("10.1.0.2"), Some("fd01::2")),
                entry("net1", "db", &[], Some("10.1.0.3"), None),
                entry("net1", "api1", &["api"], Some("10.1.0.11"), None),
                entry("net1", "api2", &["api"], Some("10.1.0.12"), None),
                entry("net1", "api3", &["api"], Some("10.1.0.13"), None),
                entry("net1", "v6only", &[], None, Some("fd01::99")),
                entry("net2", "cache", &["kv"], Some("10.2.0.2"), None),
                entry("net1", "multi", &[], Some("10.1.0.50"), None),
                entry("net2", "multi", &[], Some("10.2.0.50"), None),
            ],
            DEFAULT_LOCAL_TTL,
        )
    }

    fn nets(names: &[&str]) -> Vec<String> {
        names.iter().map(|s| s.to_string()).collect()
    }

    fn name(s: &str) -> Name {
        Name::from_ascii(s).expect("test name")
    }

    fn rng() -> StdRng {
        StdRng::seed_from_u64(7)
    }

    fn lookup(records: &Records, asker: &[&str], qname: &str, qtype: RecordType) -> Answer {
        records.lookup(&nets(asker), &name(qname), qtype, &mut rng())
    }

    /// The addresses / targets of a Local answer, as strings, in answer order.
    fn data(answer: &Answer) -> Vec<String> {
        match answer {
            Answer::Local { records } => records
                .iter()
                .map(|r| match r.data() {
                    RData::A(a) => a.0.to_string(),
                    RData::AAAA(a) => a.0.to_string(),
                    RData::PTR(p) => p.0.to_string(),
                    other => panic!("unexpected rdata {other:?}"),
                })
                .collect(),
            other => panic!("expected a local answer, got {other:?}"),
        }
    }

    fn sorted(mut v: Vec<String>) -> Vec<String> {
        v.sort();
        v
    }

    #[test]
    fn name_answers_a_and_aaaa() {
        let r = fixture();
        assert_eq!(
            data(&lookup(&r, &["net1"], "web", RecordType::A)),
            ["10.1.0.2"]
        );
        assert_eq!(
            data(&lookup(&r, &["net1"], "web.", RecordType::A)),
            ["10.1.0.2"]
        );
        assert_eq!(
            data(&lookup(&r, &["net1"], "web", RecordType::AAAA)),
            ["fd01::2"]
        );
        assert_eq!(
            sorted(data(&lookup(&r, &["net1"], "web", RecordType::ANY))),
            ["10.1.0.2", "fd01::2"]
        );
    }

    #[test]
    fn answer_records_carry_owner_as_asked_and_ttl() {
        let r = Records::new(vec![entry("n", "Web", &[], Some("10.0.0.1"), None)], 42);
        let Answer::Local { records } = lookup(&r, &["n"], "wEB.n.", RecordType::A) else {
            panic!("expected local")
        };
        assert_eq!(records.len(), 1);
        assert_eq!(records[0].ttl(), 42);
        assert!(records[0].name().eq_case(&name("wEB.n.")));
        assert_eq!(records[0].record_type(), RecordType::A);
        assert_eq!(r.ttl(), 42);
    }

    #[test]
    fn aliases_and_name_dot_network() {
        let r = fixture();
        for q in ["www", "web.net1", "web.net1.", "www.net1", "www.net1."] {
            assert_eq!(
                data(&lookup(&r, &["net1"], q, RecordType::A)),
                ["10.1.0.2"],
                "{q}"
            );
        }
        // name.OTHERNETWORK does not exist even though the asker is on both.
        assert_eq!(
            lookup(&r, &["net1", "net2"], "web.net2", RecordType::A),
            Answer::NotLocal
        );
        assert_eq!(
            data(&lookup(&r, &["net2"], "kv.net2", RecordType::A)),
            ["10.2.0.2"]
        );
    }

    #[test]
    fn names_are_case_insensitive() {
        let r = fixture();
        for q in ["WEB", "Web.Net1", "WWW.", "wEb.NET1."] {
            assert_eq!(
                data(&lookup(&r, &["net1"], q, RecordType::A)),
                ["10.1.0.2"],
                "{q}"
            );
        }
    }

    #[test]
    fn isolation_between_networks() {
        let r = fixture();
        assert_eq!(
            lookup(&r, &["net2"], "web", RecordType::A),
            Answer::NotLocal
        );
        assert_eq!(
            lookup(&r, &["net2"], "web", RecordType::MX),
            Answer::NotLocal
        );
        assert_eq!(
            lookup(&r, &["net1"], "cache", RecordType::A),
            Answer::NotLocal
        );
        assert_eq!(lookup(&r, &["net1"], "kv", RecordType::A), Answer::NotLocal);
        assert_eq!(lookup(&r, &[], "web", RecordType::A), Answer::NotLocal);
        // Reverse names are isolated too.
        assert_eq!(
            lookup(&r, &["net2"], "2.0.1.10.in-addr.arpa.", RecordType::PTR),
            Answer::NotLocal
        );
        // Asker on both networks sees both; "multi" has one address on each.
        assert_eq!(
            data(&lookup(&r, &["net2", "net1"], "cache", RecordType::A)),
            ["10.2.0.2"]
        );
        assert_eq!(
            sorted(data(&lookup(&r, &["net2", "net1"], "multi", RecordType::A))),
            ["10.1.0.50", "10.2.0.50"]
        );
        assert_eq!(
            data(&lookup(&r, &["net2"], "multi", RecordType::A)),
            ["10.2.0.50"]
        );
    }

    #[test]
    fn nodata_for_missing_family_and_other_types() {
        let r = fixture();
        assert_eq!(
            lookup(&r, &["net1"], "db", RecordType::AAAA),
            Answer::NoData
        );
        assert_eq!(
            lookup(&r, &["net1"], "v6only", RecordType::A),
            Answer::NoData
        );
        assert_eq!(
            data(&lookup(&r, &["net1"], "v6only", RecordType::AAAA)),
            ["fd01::99"]
        );
        for qtype in [
            RecordType::MX,
            RecordType::TXT,
            RecordType::SRV,
            RecordType::PTR,
        ] {
            assert_eq!(
                lookup(&r, &["net1"], "web", qtype),
                Answer::NoData,
                "{qtype}"
            );
        }
        // Unknown names are not ours.
        assert_eq!(
            lookup(&r, &["net1"], "nothere", RecordType::A),
            Answer::NotLocal
        );
        assert_eq!(
            lookup(&r, &["net1"], "example.com", RecordType::MX),
            Answer::NotLocal
        );
    }

    #[test]
    fn ptr_for_every_address() {
        let r = fixture();
        assert_eq!(
            data(&lookup(
                &r,
                &["net1"],
                "2.0.1.10.in-addr.arpa.",
                RecordType::PTR
            )),
            ["web.net1."]
        );
        assert_eq!(
            data(&lookup(
                &r,
                &["net1"],
                "2.0.1.10.IN-ADDR.ARPA",
                RecordType::PTR
            )),
            ["web.net1."]
        );
        let v6 = Name::from("fd01::2".parse::<IpAddr>().expect("v6"));
        assert_eq!(
            data(&r.lookup(&nets(&["net1"]), &v6, RecordType::PTR, &mut rng())),
            ["web.net1."]
        );
        let alias_ep = Name::from("10.1.0.12".parse::<IpAddr>().expect("v4"));
        assert_eq!(
            data(&r.lookup(&nets(&["net1"]), &alias_ep, RecordType::PTR, &mut rng())),
            ["api2.net1."]
        );
        // A reverse name asked with another type: the name exists, NODATA.
        assert_eq!(
            lookup(&r, &["net1"], "2.0.1.10.in-addr.arpa.", RecordType::A),
            Answer::NoData
        );
        // An address nobody has: upstream's business.
        assert_eq!(
            lookup(&r, &["net1"], "99.0.1.10.in-addr.arpa.", RecordType::PTR),
            Answer::NotLocal
        );
    }

    #[test]
    fn round_robin_returns_all_addresses_shuffled() {
        let r = fixture();
        let all = ["10.1.0.11", "10.1.0.12", "10.1.0.13"];
        let mut rng = StdRng::seed_from_u64(1);
        let mut orders = std::collections::HashSet::new();
        for _ in 0..64 {
            let answer = r.lookup(&nets(&["net1"]), &name("api"), RecordType::A, &mut rng);
            let got = data(&answer);
            assert_eq!(sorted(got.clone()), all);
            orders.insert(got);
        }
        // 3! = 6 orders; 64 seeded draws see more than one of them.
        assert!(orders.len() > 1, "no shuffling: {orders:?}");
        // Same seed, same order: deterministic.
        let a = data(&r.lookup(
            &nets(&["net1"]),
            &name("api"),
            RecordType::A,
            &mut StdRng::seed_from_u64(9),
        ));
        let b = data(&r.lookup(
            &nets(&["net1"]),
            &name("api"),
            RecordType::A,
            &mut StdRng::seed_from_u64(9),
        ));
        assert_eq!(a, b);
    }

    #[test]
    fn invalid_names_are_skipped_not_fatal() {
        let long = "x".repeat(70);
        let r = Records::new(
            vec![
                entry("n", &long, &["ok"], Some("10.0.0.1"), None),
                entry("n", "", &[], Some("10.0.0.2"), None),
            ],
            5,
        );
        assert_eq!(data(&lookup(&r, &["n"], "ok", RecordType::A)), ["10.0.0.1"]);
        // The PTR of an endpoint whose name is not a DNS name has no target: NODATA.
        assert_eq!(
            lookup(&r, &["n"], "1.0.0.10.in-addr.arpa.", RecordType::PTR),
            Answer::NoData
        );
        assert_eq!(r.len(), 2);
    }

    #[test]
    fn store_swaps_atomically() {
        let store = RecordStore::new(fixture());
        let before = store.load_full_for_test();
        store.replace(Records::new(
            vec![entry("net1", "web", &[], Some("10.9.9.9"), None)],
            1,
        ));
        // The old snapshot still answers the old way; new loads see the new records.
        assert_eq!(
            data(&lookup(&before, &["net1"], "web", RecordType::A)),
            ["10.1.0.2"]
        );
        assert_eq!(
            data(&lookup(&store.load(), &["net1"], "web", RecordType::A)),
            ["10.9.9.9"]
        );
        assert_eq!(
            lookup(&store.load(), &["net1"], "db", RecordType::A),
            Answer::NotLocal
        );
        assert!(RecordStore::default().load().is_empty());
    }

    /// Every answer `r` gives for the names and addresses of `entries`, from every network.
    fn answers(r: &Records, entries: &[Entry]) -> Vec<String> {
        let nets = ["net1".to_string(), "net2".to_string(), "net3".to_string()];
        let mut out = Vec::new();
        let mut rng = StdRng::seed_from_u64(7);
        for e in entries {
            let mut names = vec![e.name.clone(), format!("{}.{}", e.name, e.network)];
            names.extend(e.aliases.iter().cloned());
            let addrs = [e.ipv4.map(IpAddr::V4), e.ipv6.map(IpAddr::V6)];
            let mut qs: Vec<(Name, RecordType)> = names
                .iter()
                .filter_map(|n| Name::from_utf8(n).ok())
                .flat_map(|n| [(n.clone(), RecordType::A), (n, RecordType::AAAA)])
                .collect();
            qs.extend(
                addrs
                    .into_iter()
                    .flatten()
                    .map(|a| (Name::from(a), RecordType::PTR)),
            );
            for (q, t) in qs {
                for asker in [&nets[..1], &nets[1..2], &nets[..]] {
                    let mut a = format!("{q} {t} {asker:?}: ");
                    match r.lookup(asker, &q, t, &mut rng) {
                        Answer::Local { records } => {
                            let mut d: Vec<String> =
                                records.iter().map(|x| x.data().to_string()).collect();
                            d.sort();
                            a.push_str(&d.join(","));
                        }
                        other => a.push_str(&format!("{other:?}")),
                    }
                    out.push(a);
                }
            }
        }
        out
    }

    #[test]
    fn an_update_answers_as_a_rebuild_and_shares_what_did_not_change() {
        let mut list = vec![
            entry("net1", "web", &["www"], Some("10.1.0.2"), Some("fd01::2")),
            entry("net1", "db", &["data"], Some("10.1.0.3"), None),
            entry("net1", "api1", &["api"], Some("10.1.0.11"), None),
            entry("net1", "api2", &["api"], Some("10.1.0.12"), None),
            entry("net2", "db", &[], Some("10.2.0.3"), None),
        ];
        let all: Vec<Entry> = list
            .iter()
            .cloned()
            .chain([
                entry("net2", "new", &["api"], Some("10.2.0.9"), Some("fd02::9")),
                entry("net3", "x", &[], Some("10.3.0.2"), None),
            ])
            .collect();
        let first = Records::new(list.clone(), 60);
        // Attach: one more endpoint, sharing an alias with two others.
        list.push(entry(
            "net2",
            "new",
            &["api"],
            Some("10.2.0.9"),
            Some("fd02::9"),
        ));
        let second = first.updated(list.clone());
        assert_eq!(
            answers(&second, &all),
            answers(&Records::new(list.clone(), 60), &all)
        );
        let web = second
            .by_name
            .get("web")
            .cloned()
            .unwrap_or_else(|| Arc::from([]));
        assert!(
            Arc::ptr_eq(&web, &first.by_name["web"]),
            "an untouched name's list is shared"
        );
        // Detach and rename: db on net1 goes, api1 becomes api9.
        list.remove(1);
        list[1] = entry("net1", "api9", &["api"], Some("10.1.0.11"), None);
        let third = second.updated(list.clone());
        assert_eq!(
            answers(&third, &all),
            answers(&Records::new(list.clone(), 60), &all)
        );
        assert_eq!(third.len(), list.len());
        assert!(
            !third.by_name.contains_key("data"),
            "the removed alias is gone"
        );
        assert!(!third.by_name.contains_key("api1"));
        // The same entry twice is two endpoints; once again, one.
        list.push(list[0].clone());
        let fourth = third.updated(list.clone());
        assert_eq!(fourth.len(), list.len());
        list.pop();
        let fifth = fourth.updated(list.clone());
        assert_eq!(fifth.len(), list.len());
        assert_eq!(
            answers(&fifth, &all),
            answers(&Records::new(list.clone(), 60), &all)
        );
        // Everything goes: nothing is left in any index.
        let empty = fifth.updated(Vec::new());
        assert!(empty.is_empty());
        assert!(empty.by_name.is_empty() && empty.by_reverse.is_empty());
        assert!(empty.by_entry.is_empty());
    }

    impl RecordStore {
        fn load_full_for_test(&self) -> Arc<Records> {
            self.current.load_full()
        }
    }
}

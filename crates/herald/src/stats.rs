//! The hub's live operating numbers, for operators: the console's overview
//! and `herald status`.
//!
//! Prometheus (`/metrics`) is the place for long-term monitoring; this is
//! the last few minutes, per second and per tenant, kept by the hub itself
//! so an operator can see what is happening now without running anything
//! else, and so a tenant admin can be shown its own tenant's numbers only
//! (a process-wide metrics recorder knows no tenants).
//!
//! Counts arrive from three places: the publish path (events stored, and
//! how long until answered), the dispatch sink (deliveries, and how long a
//! fan-out took), and the audit log (refusals, overflows, revocations: the
//! audit log already names every security decision once, so the numbers
//! and the log cannot disagree). The heartbeat closes one sample a second.

use crate::audit::AuditRecord;
use parking_lot::Mutex;
use serde_json::{json, Map, Value};
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::time::Duration;

/// Samples kept: five minutes at one a second.
pub const SAMPLES_KEPT: usize = 300;

/// Tenants followed one by one. Beyond this many, further tenants are
/// counted in the hub-wide numbers only, so a publisher naming endless
/// tenants cannot grow the hub's memory.
const TENANTS_FOLLOWED: usize = 4096;

/// Tenants a hub admin's sample lists by open streams (the largest ones).
const TENANTS_PER_SAMPLE: usize = 64;

/// Per-tenant entries kept over all samples. A hub with thousands of active
/// tenants would otherwise keep thousands of entries for each of the 300
/// seconds; past this budget the oldest samples keep their hub-wide
/// numbers only.
const TENANT_ENTRIES_KEPT: usize = 65_536;

/// What happened, counted for the hub or for one tenant.
#[derive(Debug, Clone, Default)]
struct Counts {
    /// Open streams when the sample closed (samples only).
    streams: usize,
    published: u64,
    delivered: u64,
    overflowed: u64,
    revoked: u64,
    refused: BTreeMap<String, u64>,
}

impl Counts {
    fn refused_total(&self) -> u64 {
        self.refused.values().sum()
    }

    fn add(&mut self, other: &Counts) {
        self.published += other.published;
        self.delivered += other.delivered;
        self.overflowed += other.overflowed;
        self.revoked += other.revoked;
        for (k, v) in &other.refused {
            *self.refused.entry(k.clone()).or_default() += v;
        }
    }

    fn to_json(&self) -> Map<String, Value> {
        let mut m = Map::new();
        m.insert("published".into(), self.published.into());
        m.insert("delivered".into(), self.delivered.into());
        m.insert("overflowed".into(), self.overflowed.into());
        m.insert("revoked".into(), self.revoked.into());
        m.insert("refused".into(), self.refused_total().into());
        m.insert("refused_by".into(), json!(self.refused));
        m
    }
}

/// Durations on a log₂ scale of microseconds (1 µs … 8 s and beyond), so a
/// second's percentiles cost 24 counters, whatever the publish rate.
#[derive(Debug, Clone, Default)]
struct Latency {
    buckets: [u32; 24],
    count: u32,
    max_us: u64,
}

impl Latency {
    fn record(&mut self, d: Duration) {
        let us = u64::try_from(d.as_micros()).unwrap_or(u64::MAX).max(1);
        let i = (63 - us.leading_zeros() as usize).min(self.buckets.len() - 1);
        self.buckets[i] = self.buckets[i].saturating_add(1);
        self.count = self.count.saturating_add(1);
        self.max_us = self.max_us.max(us);
    }

    /// The upper bound of the bucket holding quantile `q`, never above
    /// the largest value seen.
    fn quantile_us(&self, q: f64) -> u64 {
        let rank = ((f64::from(self.count) * q).ceil() as u32).max(1);
        let mut seen = 0u32;
        for (i, n) in self.buckets.iter().enumerate() {
            seen += n;
            if seen >= rank {
                return (1u64 << (i + 1)).min(self.max_us);
            }
        }
        self.max_us
    }

    fn to_json(&self) -> Value {
        if self.count == 0 {
            return Value::Null;
        }
        let ms = |us: u64| us as f64 / 1000.0;
        json!({
            "p50": ms(self.quantile_us(0.5)),
            "p99": ms(self.quantile_us(0.99)),
            "max": ms(self.max_us),
        })
    }
}

/// One closed second.
#[derive(Debug, Clone)]
struct Sample {
    t_ms: u64,
    streams: usize,
    hub: Counts,
    /// Per tenant ("" is hub-wide), open streams included; emptied when
    /// the per-tenant budget ran out ([`TENANT_ENTRIES_KEPT`]).
    tenants: HashMap<String, Counts>,
    trimmed: bool,
    publish: Latency,
    fanout: Latency,
}

/// The second being counted.
#[derive(Debug, Default)]
struct Current {
    hub: Counts,
    tenants: HashMap<String, Counts>,
    publish: Latency,
    fanout: Latency,
}

impl Current {
    /// The counts of `tenant` ("" for hub-wide), if it is followed.
    fn tenant(&mut self, tenant: Option<&str>) -> Option<&mut Counts> {
        let key = tenant.unwrap_or("");
        // Looked up before inserting, so the publish path allocates a key
        // only for a tenant's first event of the second.
        if !self.tenants.contains_key(key) {
            if self.tenants.len() >= TENANTS_FOLLOWED {
                return None;
            }
            self.tenants.insert(key.to_string(), Counts::default());
        }
        self.tenants.get_mut(key)
    }
}

#[derive(Debug, Default)]
struct State {
    current: Current,
    samples: VecDeque<Sample>,
    totals: Counts,
    tenant_totals: HashMap<String, Counts>,
    /// Entries in every kept sample's `tenants`.
    tenant_entries: usize,
}

/// The live numbers of one hub (one node of a cluster).
#[derive(Debug, Default)]
pub struct HubStats {
    state: Mutex<State>,
}

/// Whose numbers to show: everything, or one tenant's.
#[derive(Debug, Clone, Copy)]
pub enum Scope<'a> {
    /// A hub admin: every tenant, latencies, per-tenant streams.
    Hub,
    /// A tenant admin: that tenant's counts only.
    Tenant(&'a str),
}

impl HubStats {
    /// No numbers yet.
    pub fn new() -> HubStats {
        HubStats::default()
    }

    /// Events stored by one publish, answered after `took`.
    pub fn published<'a>(&self, tenants: impl Iterator<Item = Option<&'a str>>, took: Duration) {
        let mut s = self.state.lock();
        s.current.publish.record(took);
        for t in tenants {
            s.current.hub.published += 1;
            if let Some(c) = s.current.tenant(t) {
                c.published += 1;
            }
        }
    }

    /// One event of `tenant` handed to `delivered` streams in `took`.
    pub fn dispatched(&self, tenant: Option<&str>, delivered: usize, took: Duration) {
        let mut s = self.state.lock();
        s.current.fanout.record(took);
        s.current.hub.delivered += delivered as u64;
        if let Some(c) = s.current.tenant(tenant) {
            c.delivered += delivered as u64;
        }
    }

    /// Counts what an audit record says was refused or closed.
    pub fn observe(&self, r: &AuditRecord) {
        let detail = |key: &str| -> Option<String> {
            let v: Value = serde_json::from_str(r.detail.get()).ok()?;
            v.get(key).and_then(Value::as_str).map(str::to_string)
        };
        let what = match r.kind.as_str() {
            "auth_failed" => Refusal::Refused(format!("auth:{}", detail("code").unwrap_or_default())),
            "cap_rejected" => Refusal::Refused(format!("cap:{}", detail("cap").unwrap_or_default())),
            "origin_forbidden" => Refusal::Refused("origin_forbidden".into()),
            "stream_closed" => match detail("reason").as_deref() {
                Some("overflow") => Refusal::Overflowed,
                Some("revoked") => Refusal::Revoked,
                _ => return,
            },
            _ => return,
        };
        let mut s = self.state.lock();
        let apply = |c: &mut Counts| match &what {
            Refusal::Refused(k) => *c.refused.entry(k.clone()).or_default() += 1,
            Refusal::Overflowed => c.overflowed += 1,
            Refusal::Revoked => c.revoked += 1,
        };
        apply(&mut s.current.hub);
        // An auth failure has no verified tenant: it is the hub's alone.
        if r.kind != "auth_failed" {
            if let Some(c) = s.current.tenant(r.tenant.as_deref()) {
                apply(c);
            }
        }
    }

    /// Closes the current second as a sample, with the streams open now
    /// (in all, and per tenant: "" for hub-wide).
    pub fn roll(&self, now_ms: u64, streams: usize, by_tenant: Vec<(String, usize)>) {
        let mut s = self.state.lock();
        let mut current = std::mem::take(&mut s.current);
        for (t, n) in by_tenant {
            if let Some(c) = current.tenant(Some(t.as_str())) {
                c.streams = n;
            }
        }
        s.totals.add(&current.hub);
        for (t, c) in &current.tenants {
            if s.tenant_totals.contains_key(t) || s.tenant_totals.len() < TENANTS_FOLLOWED {
                s.tenant_totals.entry(t.clone()).or_default().add(c);
            }
        }
        if s.samples.len() == SAMPLES_KEPT {
            if let Some(old) = s.samples.pop_front() {
                s.tenant_entries -= old.tenants.len();
            }
        }
        s.tenant_entries += current.tenants.len();
        s.samples.push_back(Sample {
            t_ms: now_ms,
            streams,
            hub: current.hub,
            tenants: current.tenants,
            trimmed: false,
            publish: current.publish,
            fanout: current.fanout,
        });
        // Over budget: the oldest samples give up their per-tenant detail.
        let mut i = 0;
        while s.tenant_entries > TENANT_ENTRIES_KEPT && i < s.samples.len() {
            let freed = std::mem::take(&mut s.samples[i].tenants).len();
            s.samples[i].trimmed |= freed > 0;
            s.tenant_entries -= freed;
            i += 1;
        }
    }

    /// The totals since start and the kept samples (oldest first), as
    /// `scope` may see them.
    pub fn snapshot(&self, scope: Scope<'_>) -> (Value, Vec<Value>) {
        let s = self.state.lock();
        let none = Counts::default();
        let totals = match scope {
            Scope::Hub => s.totals.to_json(),
            Scope::Tenant(t) => {
                let mut m = s.tenant_totals.get(t).unwrap_or(&none).to_json();
                if !s.tenant_totals.contains_key(t) && s.tenant_totals.len() >= TENANTS_FOLLOWED {
                    // Seen after the followed tenants were full: its totals
                    // are not kept (say so rather than show zeros as true).
                    m.insert("tracked".into(), false.into());
                }
                m
            }
        };
        let samples = s
            .samples
            .iter()
            .map(|x| {
                let (mut m, by_tenant, streams) = match scope {
                    Scope::Hub => {
                        let mut by: Vec<(&String, usize)> = x
                            .tenants
                            .iter()
                            .filter(|(_, c)| c.streams > 0)
                            .map(|(k, c)| (k, c.streams))
                            .collect();
                        by.sort_unstable_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(b.0)));
                        by.truncate(TENANTS_PER_SAMPLE);
                        (x.hub.to_json(), by, x.streams)
                    }
                    Scope::Tenant(t) => {
                        let c = x.tenants.get(t).unwrap_or(&none);
                        let by = x.tenants.get_key_value(t).filter(|(_, c)| c.streams > 0);
                        (
                            c.to_json(),
                            by.map(|(k, c)| (k, c.streams)).into_iter().collect(),
                            c.streams,
                        )
                    }
                };
                let by_tenant: Map<String, Value> = by_tenant.into_iter().map(|(k, v)| (k.clone(), v.into())).collect();
                m.insert("t".into(), x.t_ms.into());
                m.insert("streams".into(), streams.into());
                m.insert("by_tenant".into(), Value::Object(by_tenant));
                if x.trimmed {
                    m.insert("tenants_trimmed".into(), true.into());
                }
                // Latencies mix every tenant's traffic: a hub admin's only.
                let (publish, fanout) = match scope {
                    Scope::Hub => (x.publish.to_json(), x.fanout.to_json()),
                    Scope::Tenant(_) => (Value::Null, Value::Null),
                };
                m.insert("publish_ms".into(), publish);
                m.insert("fanout_ms".into(), fanout);
                Value::Object(m)
            })
            .collect();
        (Value::Object(totals), samples)
    }
}

enum Refusal {
    Refused(String),
    Overflowed,
    Revoked,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(kind: &str, tenant: Option<&str>, detail: &str) -> AuditRecord {
        AuditRecord {
            id: 1,
            time_ms: 0,
            kind: kind.into(),
            tenant: tenant.map(str::to_string),
            account: None,
            session: None,
            ip: None,
            stream: None,
            detail: serde_json::value::RawValue::from_string(detail.into()).expect("json"),
        }
    }

    #[test]
    fn a_tenant_sees_only_its_counts_and_no_latency() {
        let stats = HubStats::new();
        stats.published([Some("acme"), Some("globex")].into_iter(), Duration::from_micros(300));
        stats.dispatched(Some("acme"), 3, Duration::from_micros(50));
        stats.observe(&record(
            "cap_rejected",
            Some("globex"),
            r#"{"cap":"session_stream_cap"}"#,
        ));
        stats.observe(&record("auth_failed", None, r#"{"code":"token_expired"}"#));
        stats.observe(&record("stream_closed", Some("acme"), r#"{"reason":"revoked"}"#));
        stats.roll(
            1000,
            5,
            vec![("acme".into(), 3), ("globex".into(), 1), (String::new(), 1)],
        );

        let (totals, samples) = stats.snapshot(Scope::Hub);
        assert_eq!(totals["published"], 2);
        assert_eq!(totals["refused"], 2);
        assert_eq!(totals["refused_by"]["auth:token_expired"], 1);
        assert_eq!(samples[0]["streams"], 5);
        assert!(samples[0]["publish_ms"]["p99"].as_f64().is_some_and(|v| v > 0.0));

        let (totals, samples) = stats.snapshot(Scope::Tenant("acme"));
        assert_eq!(totals["published"], 1);
        assert_eq!(totals["delivered"], 3);
        assert_eq!(totals["revoked"], 1);
        assert_eq!(
            totals["refused"], 0,
            "globex's refusal and the hub's auth failure are not acme's"
        );
        assert_eq!(samples[0]["streams"], 3);
        assert_eq!(samples[0]["by_tenant"].as_object().map(|m| m.len()), Some(1));
        assert!(samples[0]["publish_ms"].is_null());
    }

    #[test]
    fn samples_are_bounded_and_percentiles_bounded_by_the_maximum() {
        let stats = HubStats::new();
        for i in 0..(SAMPLES_KEPT as u64 + 10) {
            stats.dispatched(None, 1, Duration::from_micros(100 + i));
            stats.roll(i, 0, Vec::new());
        }
        let (totals, samples) = stats.snapshot(Scope::Hub);
        assert_eq!(samples.len(), SAMPLES_KEPT);
        assert_eq!(totals["delivered"], SAMPLES_KEPT as u64 + 10);
        let last = &samples[SAMPLES_KEPT - 1]["fanout_ms"];
        assert!(last["p99"].as_f64() <= last["max"].as_f64());
    }

    #[test]
    fn a_small_tenant_sees_its_streams_among_many_larger_ones() {
        let stats = HubStats::new();
        let mut by: Vec<(String, usize)> = (0..100).map(|i| (format!("big{i}"), 5)).collect();
        by.push(("small".into(), 1));
        stats.roll(0, 501, by);
        let (_, samples) = stats.snapshot(Scope::Tenant("small"));
        assert_eq!(samples[0]["streams"], 1);
        let (_, samples) = stats.snapshot(Scope::Hub);
        assert_eq!(
            samples[0]["by_tenant"].as_object().map(|m| m.len()),
            Some(TENANTS_PER_SAMPLE)
        );
    }

    #[test]
    fn per_tenant_detail_is_bounded_over_all_samples() {
        let stats = HubStats::new();
        for sec in 0..SAMPLES_KEPT as u64 {
            let tenants: Vec<String> = (0..1000).map(|i| format!("t{sec}-{i}")).collect();
            stats.published(tenants.iter().map(|t| Some(t.as_str())), Duration::from_micros(1));
            stats.roll(sec, 0, Vec::new());
        }
        let s = stats.state.lock();
        let kept: usize = s.samples.iter().map(|x| x.tenants.len()).sum();
        assert_eq!(kept, s.tenant_entries);
        assert!(kept <= TENANT_ENTRIES_KEPT, "{kept}");
        assert!(s.samples.front().is_some_and(|x| x.trimmed && x.hub.published == 1000));
        assert!(s.samples.back().is_some_and(|x| !x.trimmed && x.tenants.len() == 1000));
    }

    #[test]
    fn followed_tenants_are_bounded() {
        let stats = HubStats::new();
        let many: Vec<String> = (0..TENANTS_FOLLOWED + 100).map(|i| format!("t{i}")).collect();
        stats.published(many.iter().map(|t| Some(t.as_str())), Duration::from_micros(1));
        stats.roll(0, 0, Vec::new());
        let s = stats.state.lock();
        assert_eq!(s.tenant_totals.len(), TENANTS_FOLLOWED);
        assert_eq!(s.totals.published, TENANTS_FOLLOWED as u64 + 100);
    }
}

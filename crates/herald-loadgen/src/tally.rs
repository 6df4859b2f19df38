//! What a delivery means. Every published event carries, in its data, its
//! number, its send time and its addressee; every stream knows its own
//! account and tenant. A delivery counts as delivered only when it is
//! addressed to the stream that received it and is the first arrival of
//! that event there: a second arrival is `extra`, a delivery to anyone else
//! `misdelivered`. Neither counts as throughput, so a leak or a replay
//! cannot pass for deliveries.
//!
//! The data of event `seq` sent at `sent_ns` to `to` is
//! `"<seq> <sent_ns> <to> <padding>"`, `to` being `*` (everyone), `u<i>`
//! (account `i`) or `t<k>` (tenant `k`). The padding is shortened by the
//! addressee's length, so an event has the size it had before it named its
//! addressee whenever `--payload` is at least that length plus one.

/// Who an event is addressed to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Address {
    /// Everyone on the topic.
    Public,
    /// One account, `u<i>`.
    User(usize),
    /// One tenant, `t<k>`.
    Tenant(usize),
}

impl Address {
    /// How the address is written in a payload (and in account, tenant and
    /// channel names): `*`, `u<i>`, `t<k>`.
    pub fn token(&self) -> String {
        match self {
            Address::Public => "*".to_string(),
            Address::User(i) => format!("u{i}"),
            Address::Tenant(k) => format!("t{k}"),
        }
    }

    /// Reads a token written by [`Address::token`].
    pub fn parse(token: &[u8]) -> Option<Address> {
        let number = |digits: &[u8]| {
            // `u007` is not `u7`: only the canonical spelling is an address.
            let canonical = !digits.is_empty() && (digits == b"0" || digits[0] != b'0');
            canonical
                .then(|| std::str::from_utf8(digits).ok()?.parse::<usize>().ok())
                .flatten()
        };
        match token {
            b"*" => Some(Address::Public),
            [b'u', rest @ ..] => number(rest).map(Address::User),
            [b't', rest @ ..] => number(rest).map(Address::Tenant),
            _ => None,
        }
    }
}

/// The data of event `seq`, sent at `sent_ns`, addressed to `to`, padded
/// with `payload` bytes less the addressee's length and its separator.
pub fn payload(seq: usize, sent_ns: u64, to: Address, payload: usize) -> String {
    let to = to.token();
    let pad = "x".repeat(payload.saturating_sub(to.len() + 1));
    format!("{seq} {sent_ns} {to} {pad}")
}

/// The account and tenant a stream was opened as.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Identity {
    /// Its account, `u<account>`.
    pub account: usize,
    /// Its tenant, `t<tenant>`, in tenant scenarios.
    pub tenant: Option<usize>,
}

impl Identity {
    /// Whether an event addressed to `to` may reach this stream.
    pub fn accepts(&self, to: Address) -> bool {
        match to {
            Address::Public => true,
            Address::User(i) => i == self.account,
            Address::Tenant(k) => self.tenant == Some(k),
        }
    }
}

/// The events one stream has received, one bit per event of the run,
/// across its reconnections.
pub struct Owed {
    bits: Vec<u64>,
    events: u64,
    /// Distinct events received.
    pub count: u64,
}

impl Owed {
    /// Nothing received yet of a run of `events` events.
    pub fn new(events: usize) -> Owed {
        Owed {
            bits: vec![0; events.div_ceil(64)],
            events: events as u64,
            count: 0,
        }
    }

    /// Checks `seq` off; false when it already was.
    fn check_off(&mut self, seq: u64) -> bool {
        let (word, bit) = ((seq / 64) as usize, 1u64 << (seq % 64));
        match self.bits.get_mut(word) {
            Some(w) if *w & bit == 0 => {
                *w |= bit;
                self.count += 1;
                true
            }
            _ => false,
        }
    }
}

/// What one delivery is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// The first arrival of an event addressed to this stream.
    Delivered,
    /// An event addressed to this stream that had already arrived.
    Extra,
    /// An event not addressed to this stream, one whose addressee cannot be
    /// read, or one this run never published.
    Misdelivered,
}

/// Judges event `seq`, addressed to `to` (`None`: unreadable), arriving on
/// the stream `me` that has received `owed` so far.
pub fn judge(me: &Identity, owed: &mut Owed, seq: u64, to: Option<Address>) -> Verdict {
    // The address is checked first: a misaddressed event must not check
    // off the number of an event that is owed to this stream.
    if !to.is_some_and(|to| me.accepts(to)) || seq >= owed.events {
        return Verdict::Misdelivered;
    }
    if owed.check_off(seq) {
        Verdict::Delivered
    } else {
        Verdict::Extra
    }
}

/// One event's data line, `<seq> <sent_ns> <to> …`. `None` for a line that
/// is not an event of the load generator (a control event's data).
pub fn parse(data: &[u8]) -> Option<(u64, u64, Option<Address>)> {
    let number = |s: Option<&[u8]>| {
        s.and_then(|s| std::str::from_utf8(s).ok())
            .and_then(|s| s.parse::<u64>().ok())
    };
    let mut parts = data.split(|b| *b == b' ');
    let seq = number(parts.next())?;
    let sent = number(parts.next())?;
    Some((seq, sent, parts.next().and_then(Address::parse)))
}

/// The counts of one scan.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counts {
    /// First arrivals of events addressed to the stream.
    pub delivered: u64,
    /// Second and later arrivals.
    pub extra: u64,
    /// Events that were not for this stream.
    pub misdelivered: u64,
}

impl Counts {
    /// Every event line seen.
    pub fn events(&self) -> u64 {
        self.delivered + self.extra + self.misdelivered
    }
}

/// What a scan of whole SSE lines found.
#[derive(Debug, Default)]
pub struct Scan<'a> {
    /// The deliveries, judged.
    pub counts: Counts,
    /// The last `id:` line's value.
    pub last_id: Option<&'a [u8]>,
    /// Whether `event: revoked` arrived.
    pub revoked: bool,
}

/// Scans whole SSE lines received by stream `me`, calling `delivered`
/// with the send time of each event it counts as delivered.
pub fn scan_lines<'a>(me: &Identity, owed: &mut Owed, lines: &'a [u8], mut delivered: impl FnMut(u64)) -> Scan<'a> {
    let mut scan = Scan::default();
    for line in lines.split(|b| *b == b'\n') {
        if let Some(rest) = line.strip_prefix(b"data: ") {
            let Some((seq, sent, to)) = parse(rest) else {
                continue;
            };
            match judge(me, owed, seq, to) {
                Verdict::Delivered => {
                    scan.counts.delivered += 1;
                    delivered(sent);
                }
                Verdict::Extra => scan.counts.extra += 1,
                Verdict::Misdelivered => scan.counts.misdelivered += 1,
            }
        } else if let Some(id) = line.strip_prefix(b"id: ") {
            scan.last_id = Some(id);
        } else if line == b"event: revoked" {
            scan.revoked = true;
        }
    }
    scan
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(seq: usize, to: Address) -> Vec<u8> {
        format!("id: {seq}\ndata: {}\n\n", payload(seq, 1_000, to, 64)).into_bytes()
    }

    #[test]
    fn a_delivery_to_another_account_is_misdelivered() {
        let me = Identity {
            account: 7,
            tenant: None,
        };
        let mut owed = Owed::new(10);
        let mut times = Vec::new();
        let wrong = frame(3, Address::User(8));
        let scan = scan_lines(&me, &mut owed, &wrong, |t| times.push(t));
        assert_eq!(scan.counts.misdelivered, 1);
        assert_eq!(scan.counts.delivered, 0);
        assert!(times.is_empty(), "a misdelivery is no delivery");
        // The event owed to this stream is still owed.
        let right = frame(3, Address::User(7));
        let scan = scan_lines(&me, &mut owed, &right, |t| times.push(t));
        assert_eq!(scan.counts.delivered, 1);
        assert_eq!(times, vec![1_000]);
    }

    #[test]
    fn a_delivery_to_another_tenant_is_misdelivered() {
        let me = Identity {
            account: 12,
            tenant: Some(2),
        };
        let mut owed = Owed::new(10);
        let mut lines = frame(0, Address::Tenant(2));
        lines.extend(frame(1, Address::Tenant(3)));
        lines.extend(frame(2, Address::User(12)));
        lines.extend(frame(4, Address::Public));
        let scan = scan_lines(&me, &mut owed, &lines, |_| {});
        assert_eq!(
            scan.counts,
            Counts {
                delivered: 3,
                extra: 0,
                misdelivered: 1
            }
        );
        assert_eq!(scan.last_id, Some(&b"4"[..]));
    }

    #[test]
    fn a_second_arrival_is_extra_not_a_delivery() {
        let me = Identity {
            account: 1,
            tenant: None,
        };
        let mut owed = Owed::new(3);
        let mut lines = frame(2, Address::Public);
        lines.extend(frame(2, Address::Public));
        let scan = scan_lines(&me, &mut owed, &lines, |_| {});
        assert_eq!(scan.counts.delivered, 1);
        assert_eq!(scan.counts.extra, 1);
        assert_eq!(owed.count, 1);
    }

    #[test]
    fn unreadable_addressees_and_foreign_numbers_are_misdelivered() {
        let me = Identity {
            account: 1,
            tenant: Some(0),
        };
        let mut owed = Owed::new(3);
        let lines = b"data: 0 5 u01 xx\ndata: 1 5\ndata: 3 5 u1 x\ndata: 64 5 * x\n\n";
        let scan = scan_lines(&me, &mut owed, lines, |_| {});
        assert_eq!(scan.counts.misdelivered, 4);
        assert_eq!(owed.count, 0);
    }

    #[test]
    fn control_events_are_not_deliveries() {
        let me = Identity {
            account: 1,
            tenant: None,
        };
        let mut owed = Owed::new(3);
        let scan = scan_lines(
            &me,
            &mut owed,
            b"event: revoked\ndata: {\"type\":\"logout\"}\n\n",
            |_| {},
        );
        assert!(scan.revoked);
        assert_eq!(scan.counts.events(), 0);
    }

    #[test]
    fn the_payload_keeps_its_size() {
        // Before events named their addressee the data was
        // "<seq> <sent_ns> <payload bytes>".
        let before = format!("{} {} {}", 7, 1_000, "x".repeat(64)).len();
        for to in [Address::Public, Address::User(9_999), Address::Tenant(42)] {
            let p = payload(7, 1_000, to, 64);
            assert_eq!(p.len(), before, "{p}");
            assert_eq!(parse(p.as_bytes()), Some((7, 1_000, Some(to))));
        }
        // Smaller than the addressee: the addressee is still written.
        assert_eq!(payload(7, 1_000, Address::User(123), 0), "7 1000 u123 ");
    }
}

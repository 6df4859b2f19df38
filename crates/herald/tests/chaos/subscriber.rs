//! Subscribers: each keeps one stream open through the proxy, with its JWT
//! in `Authorization` or with a fresh SSE token minted through the proxy
//! before every (re)connect, and whenever the stream ends, errs or goes
//! silent it reconnects with `Last-Event-ID` set to the last event it
//! received. Every event is recorded; control events are handled as
//! docs/api.md says (`revoked` ends a victim for good; `reset` is a lost
//! resume point, so a violation; `overflow` resumes from its id).

use super::model::{Delivery, Principal};
use super::sse::{open_labelled, query, Frame, Next, Open};
use super::world::{bump, mint_token, Refusal, World, ANSWER, SILENCE};
use parking_lot::Mutex;
use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

/// One subscriber and what happened to it.
pub struct Subscriber {
    /// `sub@tenant/header` or `sub@tenant/token`, for reports.
    pub name: String,
    /// Who it is and what it selects.
    pub principal: Principal,
    /// Its JWT.
    pub jwt: String,
    /// Opens with an SSE token (`?token=`) instead of the JWT header.
    pub via_token: bool,
    /// A victim: its account is revoked during the run.
    pub victim: bool,
    /// What happened so far.
    pub state: Mutex<SubState>,
}

/// A subscriber's record.
#[derive(Default)]
pub struct SubState {
    /// A stream is open right now.
    pub connected: bool,
    /// Streams opened so far.
    pub connections: u32,
    /// Every event received, in order.
    pub deliveries: Vec<Delivery>,
    /// The ids received (for the catch-up wait).
    pub received: HashSet<String>,
    /// The scheduler is revoking this account (refusals are expected).
    pub revocation_sent: bool,
    /// When the revocation was answered.
    pub revoked_at: Option<Instant>,
    /// How it ended for good (victims only): `revoked` or a refusal.
    pub closed: Option<String>,
    /// Resumes that lost their resume point: the `Last-Event-ID` and what
    /// happened (reported at the end, when every event's `seq` is known).
    pub lost_resumes: Vec<(String, String)>,
}

impl Subscriber {
    /// A subscriber of `principal` with its own JWT.
    pub fn new(principal: Principal, via_token: bool, victim: bool) -> Arc<Subscriber> {
        let name = format!(
            "{}@{}/{}",
            principal.sub,
            principal.tenant,
            if via_token { "token" } else { "header" }
        );
        Arc::new(Subscriber {
            name,
            jwt: super::world::user_jwt(&principal),
            principal,
            via_token,
            victim,
            state: Mutex::new(SubState::default()),
        })
    }

    /// A `401`/`403`: the end for a revoked victim (returns `true`), a
    /// broken promise for anyone else.
    fn refused(&self, world: &World, status: u16, code: &str, what: &str) -> bool {
        let mut st = self.state.lock();
        if self.victim && st.revocation_sent {
            st.closed = Some(format!("refused {status} {code} when {what}"));
            return true;
        }
        drop(st);
        world.violation(format!("{}: {what} refused: {status} {code}", self.name));
        false
    }
}

/// Runs `sub` until `cancel` (or, for a victim, until it is revoked).
pub async fn run(world: Arc<World>, sub: Arc<Subscriber>, cancel: CancellationToken) {
    // Every subscriber starts before the first publish and from seq 0, so
    // every event it may see is owed to it.
    let mut last = "0".to_string();
    let mut delay = Duration::ZERO;
    let mut attempt = 0u32;
    while !cancel.is_cancelled() {
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tokio::time::sleep(delay) => {}
        }
        delay = Duration::from_millis(200);
        let token = if sub.via_token {
            match mint_token(&world.http, &world.proxy, &sub.jwt, &sub.principal.may_subscribe).await {
                Ok(t) => Some(t),
                Err(Refusal::Status(s @ (401 | 403), code, _)) => {
                    if sub.refused(&world, s, &code, "minting an SSE token") {
                        return;
                    }
                    delay = Duration::from_secs(1);
                    continue;
                }
                Err(_) => continue,
            }
        } else {
            None
        };
        let url = format!(
            "{}/v1/events?{}",
            world.proxy,
            query(&sub.principal.selectors, token.as_deref())
        );
        let bearer = if token.is_some() { None } else { Some(sub.jwt.as_str()) };
        attempt += 1;
        let label = format!("{}#{attempt}", sub.name);
        let opened = tokio::select! {
            _ = cancel.cancelled() => return,
            o = open_labelled(&world.http, &url, bearer, Some(&last), ANSWER, Some(&label)) => o,
        };
        let node = world.node_of(&label);
        let mut conn = match opened {
            Open::Stream(c) => c,
            Open::Refused(s @ (401 | 403), code, _) => {
                let what = if sub.via_token {
                    "opening a stream with a fresh SSE token"
                } else {
                    "opening a stream with its JWT"
                };
                if sub.refused(&world, s, &code, what) {
                    return;
                }
                delay = Duration::from_secs(1);
                continue;
            }
            // A cap (a dead node's places are given back within two
            // leases): wait and retry.
            Open::Refused(429, ..) => {
                delay = Duration::from_millis(700);
                continue;
            }
            Open::Refused(400, code, _) if code == "invalid_last_event_id" => {
                let at = world.head_of(&label).await;
                let what = format!("refused by {at} with 400 invalid_last_event_id (an id the hub issued)");
                world.log(format!("{}: resuming after {last} {what}", sub.name));
                sub.state.lock().lost_resumes.push((last.clone(), what));
                delay = Duration::from_secs(1);
                continue;
            }
            Open::Refused(s, ..) if s >= 500 => continue,
            Open::Refused(s, code, message) => {
                world.violation(format!(
                    "{}: opening a stream on {node} answered {s} {code}: {message}",
                    sub.name
                ));
                delay = Duration::from_secs(1);
                continue;
            }
            Open::BadStart(why) => {
                world.violation(format!("{}: {node}: {why}", sub.name));
                continue;
            }
            Open::Failed(_) => continue,
        };
        let conn_no = {
            let mut st = sub.state.lock();
            st.connections += 1;
            st.connected = true;
            if let Some(at) = st.revoked_at {
                bump(&world.stats.late_admissions);
                world.note(format!(
                    "{}: admitted by {node} {:?} after its revocation was answered",
                    sub.name,
                    at.elapsed()
                ));
            }
            st.connections
        };
        if conn_no > 1 {
            bump(&world.stats.resumes);
        }
        loop {
            let next = tokio::select! {
                _ = cancel.cancelled() => return,
                n = conn.next(SILENCE) => n,
            };
            let (id, event, data) = match next {
                Next::Frame(Frame::Comment(_)) => continue,
                Next::Frame(Frame::Event { id, event, data }) => (id, event, data),
                Next::Ended => break,
                Next::Silent => {
                    // A paused node: give up on it, resume elsewhere.
                    bump(&world.stats.abandoned);
                    break;
                }
            };
            match (event.as_str(), id) {
                ("overflow", id) => {
                    world.note(format!("{}: overflow on {node} after {last}: {data}", sub.name));
                    if let Some(id) = id {
                        last = id;
                    }
                    break;
                }
                ("revoked", None) => {
                    let mut st = sub.state.lock();
                    if sub.victim && st.revocation_sent {
                        st.closed = Some(format!("event: revoked {data}"));
                        st.connected = false;
                        return;
                    }
                    drop(st);
                    world.violation(format!(
                        "{}: event: revoked {data} on {node}, but its account was never revoked",
                        sub.name
                    ));
                    break;
                }
                ("reset", None) => {
                    // The stream goes on (snapshot, then live), but the
                    // events since `last` are lost to this client.
                    let at = world.head_of(&label).await;
                    let what = format!("answered with event: reset {data} on connection {conn_no} to {at}");
                    world.log(format!("{}: resuming after {last} {what}", sub.name));
                    sub.state.lock().lost_resumes.push((last.clone(), what));
                }
                ("shutdown" | "expired", None) => break,
                (other, None) => {
                    world.violation(format!(
                        "{}: unexpected control event `{other}` {data} on {node}",
                        sub.name
                    ));
                    break;
                }
                (_, Some(id)) => {
                    last.clone_from(&id);
                    let mut st = sub.state.lock();
                    st.received.insert(id.clone());
                    st.deliveries.push(Delivery {
                        id,
                        event,
                        data,
                        conn: conn_no,
                        node: node.clone(),
                    });
                    drop(st);
                    bump(&world.stats.deliveries);
                    *world.last_delivery.lock() = Instant::now();
                }
            }
        }
        sub.state.lock().connected = false;
    }
}

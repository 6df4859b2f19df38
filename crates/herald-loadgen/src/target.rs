//! What the load generator talks to. Each target says how a subscriber's
//! request and a publish look; everything else (streams, timing, stats) is
//! shared, so every system is measured by the same client in the same way.

use crate::tally::{Address, Identity};
use serde_json::json;

/// Who is measured.
#[derive(Clone, Debug)]
pub enum Target {
    /// Herald's native API: JWT per stream, audience-scoped publishes.
    Herald {
        /// e.g. `http://127.0.0.1:8080`
        base: String,
        /// HS256 secret to mint tokens with.
        secret: String,
    },
    /// Herald through the Mercure protocol.
    Mercure {
        /// Hub base URL.
        base: String,
        /// Mercure HS256 key.
        key: String,
    },
    /// Nchan (nginx push module), `/sub?id=` and `/pub?id=`.
    Nchan {
        /// Base URL.
        base: String,
    },
    /// Pushpin: streams through the proxy, publishes to its control port.
    Pushpin {
        /// Proxy base URL (subscribers).
        base: String,
        /// Publish endpoint, e.g. `http://127.0.0.1:5561/publish/`.
        publish: String,
    },
    /// The floor: one plain write per subscriber per event.
    Floor {
        /// Base URL of `herald-loadgen floor`.
        base: String,
    },
}

/// A request to make: method, URL, headers, body.
#[derive(Clone)]
pub struct Req {
    /// `GET`/`POST`.
    pub method: &'static str,
    /// Absolute URL.
    pub url: String,
    /// Extra headers.
    pub headers: Vec<(&'static str, String)>,
    /// Body.
    pub body: String,
}

fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn hs256(claims: serde_json::Value, secret: &str) -> String {
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(secret.as_bytes()),
    )
    .unwrap_or_default()
}

/// The publisher's token, signed once per run (signing per publish would
/// spend the load generator's CPU, which the server under test shares).
fn publisher_token(secret: &str, mint: impl FnOnce() -> String) -> String {
    static TOKEN: std::sync::OnceLock<(String, String)> = std::sync::OnceLock::new();
    let (for_secret, token) = TOKEN.get_or_init(|| (secret.to_string(), mint()));
    if for_secret == secret {
        token.clone()
    } else {
        String::new()
    }
}

/// The topic (Herald, whose audiences address events) or channel (peers,
/// which have no audiences: a stream subscribes to the channel of its
/// account or tenant, and an event is published to its addressee's) that
/// reaches `to`.
pub fn channel(topic: &str, to: Address) -> String {
    match to {
        Address::Public => topic.to_string(),
        _ => format!("{topic}-{}", to.token()),
    }
}

impl Target {
    /// The subscribe request of the stream `me` on `topic`; `by` is the
    /// address its events carry (for the peers' channels).
    pub fn subscribe(&self, topic: &str, me: &Identity, by: Address) -> Req {
        let i = me.account;
        let account = Address::User(i).token();
        let topic = &match self {
            Target::Herald { .. } => topic.to_string(),
            _ => channel(topic, by),
        };
        match self {
            Target::Herald { base, secret } => {
                let mut claims = json!({
                    "sub": account, "sid": format!("s{i}"), "exp": now_secs() + 7200, "iat": now_secs(),
                    "jti": format!("j{i}"), "herald": {"subscribe": ["*"]},
                });
                if let Some(k) = me.tenant {
                    claims["tenant"] = json!(Address::Tenant(k).token());
                }
                Req {
                    method: "GET",
                    url: format!("{base}/v1/events?topic={topic}"),
                    headers: vec![("authorization", format!("Bearer {}", hs256(claims, secret)))],
                    body: String::new(),
                }
            }
            Target::Mercure { base, key } => Req {
                method: "GET",
                url: format!("{base}/.well-known/mercure?topic={topic}"),
                headers: vec![(
                    "authorization",
                    format!(
                        "Bearer {}",
                        hs256(
                            json!({"sub": account, "exp": now_secs() + 7200, "iat": now_secs(), "mercure": {"subscribe": ["*"]}}),
                            key
                        )
                    ),
                )],
                body: String::new(),
            },
            Target::Nchan { base } => Req {
                method: "GET",
                url: format!("{base}/sub?id={topic}"),
                headers: vec![("accept", "text/event-stream".into())],
                body: String::new(),
            },
            Target::Pushpin { base, .. } => Req {
                method: "GET",
                url: format!("{base}/?id={topic}"),
                headers: vec![],
                body: String::new(),
            },
            Target::Floor { base } => Req {
                method: "GET",
                url: format!("{base}/sub?ch={topic}"),
                headers: vec![],
                body: String::new(),
            },
        }
    }

    /// The publish request of one event to `to` whose data is `payload`.
    pub fn publish(&self, topic: &str, payload: &str, to: Address) -> Req {
        let topic = &match self {
            Target::Herald { .. } => topic.to_string(),
            _ => channel(topic, to),
        };
        match self {
            Target::Herald { base, secret } => {
                let audience = match to {
                    Address::Public => json!("public"),
                    Address::User(_) => json!({"users": [to.token()]}),
                    Address::Tenant(_) => json!({"tenant": to.token()}),
                };
                let token = publisher_token(secret, || {
                    hs256(
                        json!({"sub": "loadgen", "exp": now_secs() + 7200, "iat": now_secs(), "herald": {"publish": ["*"]}}),
                        secret,
                    )
                });
                Req {
                    method: "POST",
                    url: format!("{base}/v1/publish"),
                    headers: vec![
                        ("authorization", format!("Bearer {token}")),
                        ("content-type", "application/json".into()),
                    ],
                    body: json!({"topics": [topic], "data": payload, "audience": audience}).to_string(),
                }
            }
            Target::Mercure { base, key } => Req {
                method: "POST",
                url: format!("{base}/.well-known/mercure"),
                headers: vec![
                    (
                        "authorization",
                        format!("Bearer {}", publisher_token(key, || hs256(json!({"exp": now_secs() + 7200, "iat": now_secs(), "mercure": {"publish": ["*"]}}), key))),
                    ),
                    ("content-type", "application/x-www-form-urlencoded".into()),
                ],
                body: format!("topic={topic}&data={}", payload.replace(' ', "+")),
            },
            Target::Nchan { base } => Req {
                method: "POST",
                url: format!("{base}/pub?id={topic}"),
                headers: vec![],
                body: payload.to_string(),
            },
            Target::Pushpin { publish, .. } => Req {
                method: "POST",
                url: publish.clone(),
                headers: vec![("content-type", "application/json".into())],
                body: json!({"items": [{"channel": topic, "formats": {"http-stream": {"content": format!("data: {payload}\n\n")}}}]})
                    .to_string(),
            },
            Target::Floor { base } => Req {
                method: "POST",
                url: format!("{base}/pub?ch={topic}"),
                headers: vec![],
                body: payload.to_string(),
            },
        }
    }

    /// The revocation request for account `i` (Herald only), to `node`
    /// when given (another cluster node), else to the target itself.
    pub fn revoke(&self, i: usize, node: Option<&str>) -> Option<Req> {
        let Target::Herald { base, secret } = self else {
            return None;
        };
        let base = node.unwrap_or(base);
        let token = hs256(
            json!({"sub": "loadgen-admin", "exp": now_secs() + 7200, "iat": now_secs(), "herald": {"admin": true}}),
            secret,
        );
        Some(Req {
            method: "POST",
            url: format!("{base}/v1/revocations"),
            headers: vec![
                ("authorization", format!("Bearer {token}")),
                ("content-type", "application/json".into()),
            ],
            body: json!({"type": "logout", "account": Address::User(i).token()}).to_string(),
        })
    }
}

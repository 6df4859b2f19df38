//! What the load generator talks to. Each target says how a subscriber's
//! request and a publish look; everything else (streams, timing, stats) is
//! shared, so every system is measured by the same client in the same way.

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

/// How an event is addressed (Herald only; peers broadcast).
#[derive(Clone, Debug)]
pub enum Address {
    /// Everyone on the topic.
    Public,
    /// One account.
    User(usize),
    /// One tenant.
    Tenant(usize),
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

/// The stream's account and tenant in the Herald scenarios.
pub fn account(i: usize) -> String {
    format!("u{i}")
}

impl Target {
    /// The subscribe request of stream `i` on `topic`.
    pub fn subscribe(&self, i: usize, topic: &str, tenants: usize) -> Req {
        match self {
            Target::Herald { base, secret } => {
                let mut claims = json!({
                    "sub": account(i), "sid": format!("s{i}"), "exp": now_secs() + 7200, "iat": now_secs(),
                    "jti": format!("j{i}"), "herald": {"subscribe": ["*"]},
                });
                if tenants > 0 {
                    claims["tenant"] = json!(format!("t{}", i % tenants));
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
                            json!({"sub": account(i), "exp": now_secs() + 7200, "iat": now_secs(), "mercure": {"subscribe": ["*"]}}),
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
                url: format!("{base}/sub"),
                headers: vec![],
                body: String::new(),
            },
        }
    }

    /// The publish request of one event whose data is `payload`.
    pub fn publish(&self, topic: &str, payload: &str, to: &Address) -> Req {
        match self {
            Target::Herald { base, secret } => {
                let audience = match to {
                    Address::Public => json!("public"),
                    Address::User(i) => json!({"users": [account(*i)]}),
                    Address::Tenant(t) => json!({"tenant": format!("t{t}")}),
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
                url: format!("{base}/pub"),
                headers: vec![],
                body: payload.to_string(),
            },
        }
    }

    /// The revocation request for account `i` (Herald only).
    pub fn revoke(&self, i: usize) -> Option<Req> {
        let Target::Herald { base, secret } = self else {
            return None;
        };
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
            body: json!({"type": "logout", "account": account(i)}).to_string(),
        })
    }
}

//! Bearer JWTs: the native verifier (`herald::auth::jwt`) and the Mercure
//! one (`herald::mercure::auth`), both built on the one JWT core.
//!
//! Input: a mode byte, then
//! * mode 0: a raw token, as a client would send it;
//! * mode 1: claims (any bytes), signed here with the hub's HS256 secret
//!   under a plain `{"alg":"HS256","typ":"JWT"}` header;
//! * mode 2: a header and claims separated by a newline, signed here.
//!
//! Signing what the fuzzer writes is what gets past the signature check to
//! the claim rules (time claims, issuer, audience, the `herald` and
//! `mercure` claims, selectors). Checks on every accepted token: it has a
//! subject and an expiry inside the hub's limits, its selectors re-parse,
//! a stricter verifier never accepts what a laxer one refuses, and the
//! same token with one signature character changed is refused.
#![no_main]

use aws_lc_rs::hmac;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use herald::auth::jwt::JwtVerifier;
use herald::mercure::auth::MercureAuth;
use herald::Config;
use herald_core::{CredentialKind, Principal, Selector, SelectorSet, SessionKey};
use libfuzzer_sys::fuzz_target;
use std::sync::OnceLock;

const SECRET: &str = "herald-fuzz-hs256-secret-of-at-least-32-bytes";
/// A fixed clock, so a crash reproduces; the seeds' time claims are near it.
const NOW_MS: u64 = 1_700_000_000_000;

struct Verifiers {
    config: Config,
    native: JwtVerifier,
    /// Also requires `iss` and `aud`.
    strict: JwtVerifier,
    mercure: MercureAuth,
    session_key: SessionKey,
}

fn verifiers() -> &'static Verifiers {
    static V: OnceLock<Verifiers> = OnceLock::new();
    V.get_or_init(|| {
        let config = Config {
            jwt_secret: Some(SECRET.into()),
            ..Config::default()
        };
        let strict_config = Config {
            jwt_issuer: Some("https://issuer.example".into()),
            jwt_audience: Some("herald".into()),
            ..config.clone()
        };
        Verifiers {
            native: JwtVerifier::from_config(&config, Some(SECRET)).expect("native verifier"),
            strict: JwtVerifier::from_config(&strict_config, Some(SECRET)).expect("strict verifier"),
            mercure: MercureAuth::from_config(&config, Some(SECRET)).expect("Mercure verifier"),
            session_key: SessionKey::new([7; 32]),
            config,
        }
    })
}

fn sign(header: &[u8], claims: &[u8]) -> String {
    let mut token = URL_SAFE_NO_PAD.encode(header);
    token.push('.');
    token.push_str(&URL_SAFE_NO_PAD.encode(claims));
    let key = hmac::Key::new(hmac::HMAC_SHA256, SECRET.as_bytes());
    let tag = hmac::sign(&key, token.as_bytes());
    token.push('.');
    token.push_str(&URL_SAFE_NO_PAD.encode(tag.as_ref()));
    token
}

/// The token with the first character of its signature changed.
fn tampered(token: &str) -> Option<String> {
    let dot = token.rfind('.')?;
    let c = token[dot + 1..].chars().next()?;
    let mut out = token.to_string();
    out.replace_range(dot + 1..dot + 1 + c.len_utf8(), if c == 'A' { "B" } else { "A" });
    Some(out)
}

fn check_selectors(set: &SelectorSet) {
    for s in &set.0 {
        assert_eq!(Selector::parse(s.as_str()).as_ref(), Ok(s));
    }
}

/// What every accepted credential must satisfy, whatever its protocol.
fn check_principal(p: &Principal, v: &Verifiers) {
    assert!(!p.sub.is_empty());
    assert_eq!(p.kind, CredentialKind::Jwt);
    let leeway = v.config.jwt_leeway_secs;
    let max = v.config.max_token_lifetime_secs;
    let now = NOW_MS / 1000;
    let exp = p.expires_at_ms.expect("an accepted token expires") / 1000;
    assert!(
        exp.saturating_add(leeway) >= now,
        "accepted an expired token: exp {exp}"
    );
    assert!(
        exp.saturating_sub(now) <= max.saturating_add(leeway),
        "exp {exp} is too far ahead"
    );
    if let Some(iat) = p.issued_at_ms.map(|ms| ms / 1000) {
        assert!(iat <= now.saturating_add(leeway), "accepted iat {iat} in the future");
        assert!(exp.saturating_sub(iat) <= max, "lifetime over the maximum");
    }
    check_selectors(&p.subscribe);
    check_selectors(&p.publish);
    if let Some(private) = &p.private_updates {
        check_selectors(private);
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let token = match mode % 3 {
        0 => String::from_utf8_lossy(rest).into_owned(),
        1 => sign(br#"{"alg":"HS256","typ":"JWT"}"#, rest),
        _ => {
            let cut = rest.iter().position(|&b| b == b'\n').unwrap_or(rest.len());
            sign(&rest[..cut], rest.get(cut + 1..).unwrap_or_default())
        }
    };
    let v = verifiers();

    let native = v.native.verify(&token, &v.session_key, NOW_MS);
    let strict = v.strict.verify(&token, &v.session_key, NOW_MS);
    if let Ok(p) = &native {
        check_principal(p, v);
        assert_eq!(v.native.verify(&token, &v.session_key, NOW_MS).as_ref(), Ok(p));
    }
    if let Ok(p) = &strict {
        assert_eq!(
            native.as_ref(),
            Ok(p),
            "the strict verifier accepted what the lax one refused"
        );
    }

    let subscriber = v.mercure.subscriber(&token, NOW_MS);
    let publisher = v.mercure.publisher(&token, NOW_MS);
    // One key and one policy for both roles here, so one verdict.
    assert_eq!(subscriber.is_ok(), publisher.is_ok());
    if let Ok(t) = &subscriber {
        check_principal(&t.principal, v);
        assert!(t.principal.private_updates.is_some());
        assert_eq!(t.principal.subscribe, SelectorSet::all());
    }

    if native.is_ok() || subscriber.is_ok() {
        let forged = tampered(&token).expect("an accepted token has a signature");
        assert!(
            v.native.verify(&forged, &v.session_key, NOW_MS).is_err(),
            "accepted {forged:?}"
        );
        assert!(v.mercure.subscriber(&forged, NOW_MS).is_err(), "accepted {forged:?}");
    }
});

//! Tag invalidation: cache keys (TanStack Query style segment arrays) that a
//! backend declares stale, delivered as `invalidate` events on the reserved
//! topic `$tags` and scoped by audience like any event.
//!
//! Admins can pause delivery (invalidations are held and coalesced per
//! audience, then delivered on resume) and disable tags (dropped; a disabled
//! tag covers every tag it is a prefix of).

use herald_core::{Audience, Invalid};
use parking_lot::Mutex;
use serde_json::Value;

/// The reserved topic invalidations are published on.
pub const TOPIC: &str = "$tags";
/// Most tags in one invalidation.
pub const MAX_TAGS: usize = 100;
/// Most segments in one tag.
pub const MAX_SEGMENTS: usize = 16;

/// One tag: a non-empty array of string or number segments.
pub type Tag = Vec<Value>;

/// Validates the `tags` field.
pub fn parse_tags(v: Option<&Value>) -> Result<Vec<Tag>, Invalid> {
    let bad = |m: &str| Invalid::new("invalid_tags", m.to_string());
    let Some(Value::Array(tags)) = v else {
        return Err(bad("`tags` must be an array of tags, each an array of segments"));
    };
    if tags.is_empty() || tags.len() > MAX_TAGS {
        return Err(bad(&format!("`tags` must hold 1 to {MAX_TAGS} tags")));
    }
    tags.iter()
        .map(|t| match t {
            Value::Array(segs) if !segs.is_empty() && segs.len() <= MAX_SEGMENTS => {
                for s in segs {
                    match s {
                        Value::String(s) if s.len() <= 256 => {}
                        Value::Number(_) => {}
                        _ => return Err(bad("tag segments are strings (up to 256 bytes) or numbers")),
                    }
                }
                Ok(segs.clone())
            }
            _ => Err(bad(&format!("each tag is an array of 1 to {MAX_SEGMENTS} segments"))),
        })
        .collect()
}

/// Whether `prefix` covers `tag` (TanStack Query's partial key matching).
pub fn covers(prefix: &[Value], tag: &[Value]) -> bool {
    prefix.len() <= tag.len() && prefix.iter().zip(tag).all(|(a, b)| a == b)
}

struct State {
    paused: bool,
    held: Vec<(Audience, Vec<Tag>)>,
    disabled: Vec<Tag>,
}

/// What to do with an invalidation.
pub enum Decision {
    /// Publish these tags now.
    Publish(Vec<Tag>),
    /// Held while paused.
    Held,
    /// Every tag was disabled.
    Dropped,
    /// Paused, and the held set cannot take this audience without growing
    /// past its bound: the caller is told to retry later (nothing is lost
    /// silently).
    Full,
}

/// The hub's invalidation controls.
pub struct Invalidation {
    state: Mutex<State>,
    max_audiences: usize,
}

impl Default for Invalidation {
    fn default() -> Self {
        Invalidation::new(10_000)
    }
}

fn add_unique(into: &mut Vec<Tag>, tags: Vec<Tag>) {
    for t in tags {
        if !into.contains(&t) {
            into.push(t);
        }
    }
}

/// Adds `tags` to a held set, keeping it minimal: a tag already covered by
/// a held one adds nothing, and a tag that covers held ones replaces them.
fn add_covering(into: &mut Vec<Tag>, tags: Vec<Tag>) {
    for t in tags {
        if into.iter().any(|held| covers(held, &t)) {
            continue;
        }
        into.retain(|held| !covers(&t, held));
        into.push(t);
    }
}

/// Coalesces a held set that grew past [`MAX_TAGS`] (one event's worth):
/// every tag is widened to its first segment, which covers it. Widening only
/// invalidates more, never less, so no stale cache survives it. `None` if
/// even that leaves too many tags.
fn coalesce(held: &[Tag], tags: Vec<Tag>) -> Option<Vec<Tag>> {
    let mut next = held.to_vec();
    add_covering(&mut next, tags);
    if next.len() <= MAX_TAGS {
        return Some(next);
    }
    let mut wide = Vec::new();
    add_covering(&mut wide, next.into_iter().map(|t| t[..1].to_vec()).collect());
    (wide.len() <= MAX_TAGS).then_some(wide)
}

impl Invalidation {
    /// Controls holding at most `max_audiences` audiences while paused.
    pub fn new(max_audiences: usize) -> Invalidation {
        Invalidation {
            state: Mutex::new(State {
                paused: false,
                held: Vec::new(),
                disabled: Vec::new(),
            }),
            max_audiences: max_audiences.max(1),
        }
    }

    /// Filters disabled tags, then holds (if paused) or releases the rest.
    /// The held set stays bounded: at most `max_audiences` audiences, each
    /// with at most [`MAX_TAGS`] tags (coalesced into covering prefixes when
    /// more arrive).
    pub fn submit(&self, audience: &Audience, tags: Vec<Tag>) -> Decision {
        let mut s = self.state.lock();
        let tags: Vec<Tag> = tags
            .into_iter()
            .filter(|t| !s.disabled.iter().any(|d| covers(d, t)))
            .collect();
        if tags.is_empty() {
            return Decision::Dropped;
        }
        if !s.paused {
            return Decision::Publish(tags);
        }
        // Counted per tenant, so one tenant filling the held set never
        // refuses another's invalidations.
        let full = s.held.iter().filter(|(a, _)| a.tenant == audience.tenant).count() >= self.max_audiences;
        match s.held.iter_mut().find(|(a, _)| a == audience) {
            Some((_, held)) => match coalesce(held, tags) {
                Some(next) => *held = next,
                None => return Decision::Full,
            },
            None if full => return Decision::Full,
            None => match coalesce(&[], tags) {
                Some(next) => s.held.push((audience.clone(), next)),
                None => return Decision::Full,
            },
        }
        Decision::Held
    }

    /// Pauses delivery.
    pub fn pause(&self) {
        self.state.lock().paused = true;
    }

    /// Resumes delivery, returning the coalesced held invalidations
    /// (disabled tags filtered out once more).
    pub fn resume(&self) -> Vec<(Audience, Vec<Tag>)> {
        let mut s = self.state.lock();
        s.paused = false;
        let disabled = s.disabled.clone();
        std::mem::take(&mut s.held)
            .into_iter()
            .map(|(a, tags)| {
                (
                    a,
                    tags.into_iter()
                        .filter(|t| !disabled.iter().any(|d| covers(d, t)))
                        .collect::<Vec<_>>(),
                )
            })
            .filter(|(_, tags)| !tags.is_empty())
            .collect()
    }

    /// Disables tags.
    pub fn disable(&self, tags: Vec<Tag>) {
        add_unique(&mut self.state.lock().disabled, tags);
    }

    /// Re-enables tags.
    pub fn enable(&self, tags: &[Tag]) {
        self.state.lock().disabled.retain(|d| !tags.contains(d));
    }

    /// The state for `GET /v1/invalidation`.
    pub fn snapshot(&self) -> Value {
        let s = self.state.lock();
        serde_json::json!({
            "paused": s.paused,
            "held": s.held.iter().map(|(_, t)| t.len()).sum::<usize>(),
            "disabled_tags": s.disabled,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn prefix_matching_and_coalescing() {
        assert!(covers(&[json!("todos")], &[json!("todos"), json!(7)]));
        assert!(!covers(&[json!("todos"), json!(7)], &[json!("todos")]));
        let inv = Invalidation::default();
        inv.disable(vec![vec![json!("secret")]]);
        assert!(matches!(
            inv.submit(&Audience::public(), vec![vec![json!("secret"), json!(1)]]),
            Decision::Dropped
        ));
        inv.pause();
        let a = Audience::public();
        assert!(matches!(inv.submit(&a, vec![vec![json!("todos")]]), Decision::Held));
        assert!(matches!(
            inv.submit(&a, vec![vec![json!("todos")], vec![json!("users")]]),
            Decision::Held
        ));
        let out = inv.resume();
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].1.len(), 2);
    }

    #[test]
    fn the_held_set_stays_bounded_and_covers_everything() {
        let inv = Invalidation::new(2);
        inv.pause();
        let a = Audience::public();
        let submitted: Vec<Tag> = (0..500)
            .map(|i| vec![json!(format!("k{}", i % 50)), json!(i)])
            .collect();
        for chunk in submitted.chunks(10) {
            assert!(matches!(inv.submit(&a, chunk.to_vec()), Decision::Held));
        }
        assert!(inv.snapshot()["held"].as_u64().unwrap() <= MAX_TAGS as u64);
        let b = Audience {
            users: Some(vec!["u".into()]),
            ..Audience::public()
        };
        assert!(matches!(inv.submit(&b, vec![vec![json!("x")]]), Decision::Held));
        let c = Audience {
            users: Some(vec!["v".into()]),
            ..Audience::public()
        };
        assert!(matches!(inv.submit(&c, vec![vec![json!("x")]]), Decision::Full));
        // Too many distinct first segments cannot be coalesced: refused.
        let many: Vec<Tag> = (0..101).map(|i| vec![json!(i)]).collect();
        assert!(matches!(inv.submit(&b, many), Decision::Full));
        let out = inv.resume();
        let delivered = &out.iter().find(|(aud, _)| *aud == a).unwrap().1;
        for t in &submitted {
            assert!(delivered.iter().any(|d| covers(d, t)), "{t:?} is covered");
        }
    }
}

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

#[derive(Default)]
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
}

/// The hub's invalidation controls.
#[derive(Default)]
pub struct Invalidation {
    state: Mutex<State>,
}

fn add_unique(into: &mut Vec<Tag>, tags: Vec<Tag>) {
    for t in tags {
        if !into.contains(&t) {
            into.push(t);
        }
    }
}

impl Invalidation {
    /// Filters disabled tags, then holds (if paused) or releases the rest.
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
        match s.held.iter_mut().find(|(a, _)| a == audience) {
            Some((_, held)) => add_unique(held, tags),
            None => s.held.push((audience.clone(), tags)),
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
}

//! # herald-core
//!
//! The pure domain of Herald: what an [`Event`] is, who a [`Principal`] is,
//! how a [`Selector`] matches a topic, how an [`Audience`] restricts an event,
//! and the one function that decides whether a principal may see an event
//! ([`visibility::is_visible`]).
//!
//! Nothing in this crate performs I/O, reads a clock or touches the network:
//! every rule is a plain function of its inputs so that it can be tested
//! exhaustively (see the property tests next to each module). The `herald`
//! crate wires these rules to HTTP, storage and the network.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod audience;
pub mod event;
pub mod frame;
pub mod invalid;
pub mod principal;
pub mod resume;
pub mod revocation;
pub mod selector;
pub mod session;
pub mod template;
pub mod visibility;

pub use audience::Audience;
pub use event::{Event, EventDraft, EventInput, Limits};
pub use invalid::Invalid;
pub use principal::{Account, CredentialKind, Principal, Scopes};
pub use resume::LastEventId;
pub use revocation::{DenyRule, Revocation};
pub use selector::{Selector, SelectorSet};
pub use session::{SessionHash, SessionKey};
pub use visibility::is_visible;

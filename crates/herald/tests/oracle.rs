//! Placeholder while the oracle is written.
#[test]
fn builds() {}

//! TEMPORARY STUB (being replaced by the real RFC 6570 matcher).
#![allow(missing_docs)]
#[derive(Debug, Clone)]
pub struct UriTemplate(String);
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
#[error("bad template")]
pub struct TemplateError;
impl UriTemplate {
    pub fn parse(t: &str) -> Result<UriTemplate, TemplateError> {
        Ok(UriTemplate(t.to_string()))
    }
    pub fn matches(&self, topic: &str) -> bool {
        self.0 == topic
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

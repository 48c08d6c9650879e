//! `key=value` tags with BfM's parsing rules: entries are trimmed, the first `=` splits key and
//! value, keys are lower-cased, values keep their case, an empty key or a missing `=` is an error,
//! and a later duplicate key wins. A filter matches a migration when every requested key is
//! present with exactly the same value (AND); a migration without tags never matches.

use std::collections::BTreeMap;
use std::fmt;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TagError {
    Empty,
    MissingEquals,
    EmptyKey,
}

impl fmt::Display for TagError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            TagError::Empty => "empty tag",
            TagError::MissingEquals => "tag must be key=value",
            TagError::EmptyKey => "empty key",
        })
    }
}

impl std::error::Error for TagError {}

/// A tag filter error that names the position of the bad entry, as `tags[i]: reason`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TagFilterError {
    pub index: usize,
    pub error: TagError,
}

impl fmt::Display for TagFilterError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "tags[{}]: {}", self.index, self.error)
    }
}

impl std::error::Error for TagFilterError {}

/// Parse one `key=value` entry.
pub fn parse_tag(entry: &str) -> Result<(String, String), TagError> {
    let entry = entry.trim();
    if entry.is_empty() {
        return Err(TagError::Empty);
    }
    let (k, v) = entry.split_once('=').ok_or(TagError::MissingEquals)?;
    let k = k.trim().to_lowercase();
    if k.is_empty() {
        return Err(TagError::EmptyKey);
    }
    Ok((k, v.trim().to_string()))
}

/// Parse a list of tags into a map (later duplicates win).
pub fn parse_tags<S: AsRef<str>>(entries: &[S]) -> Result<BTreeMap<String, String>, TagFilterError> {
    let mut map = BTreeMap::new();
    for (index, e) in entries.iter().enumerate() {
        let (k, v) = parse_tag(e.as_ref()).map_err(|error| TagFilterError { index, error })?;
        map.insert(k, v);
    }
    Ok(map)
}

/// Split a `-- bfm-tags:` header value (`k=v, k2=v2`) into entries; empty entries are skipped.
pub fn split_header(value: &str) -> Vec<String> {
    value.split(',').map(str::trim).filter(|s| !s.is_empty()).map(str::to_string).collect()
}

/// A parsed tag filter.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TagFilter(BTreeMap<String, String>);

impl TagFilter {
    pub fn parse<S: AsRef<str>>(entries: &[S]) -> Result<Self, TagFilterError> {
        parse_tags(entries).map(TagFilter)
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Whether normalised `key=value` tags (as in [`crate::Migration::tags`]) have every
    /// filter pair. Keys never contain `=`, so the first `=` splits key from value.
    pub fn matches<S: AsRef<str>>(&self, tags: &[S]) -> bool {
        self.0.iter().all(|(k, v)| tags.iter().any(|t| t.as_ref().split_once('=') == Some((k.as_str(), v.as_str()))))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parsing_rules() {
        assert_eq!(parse_tag(" Env = Prod "), Ok(("env".into(), "Prod".into())));
        assert_eq!(parse_tag("k=v=2"), Ok(("k".into(), "v=2".into())));
        assert_eq!(parse_tag("k="), Ok(("k".into(), "".into())));
        assert_eq!(parse_tag("  "), Err(TagError::Empty));
        assert_eq!(parse_tag("novalue"), Err(TagError::MissingEquals));
        assert_eq!(parse_tag(" =v"), Err(TagError::EmptyKey));
        let e = TagFilter::parse(&["a=b", "bad"]).unwrap_err();
        assert_eq!(e.to_string(), "tags[1]: tag must be key=value");
    }

    #[test]
    fn and_semantics_and_untagged() {
        let tags = ["env=prod", "tier=core", "expr=a=b"];
        assert!(TagFilter::parse(&["env=prod"]).unwrap().matches(&tags));
        assert!(TagFilter::parse(&["expr=a=b"]).unwrap().matches(&tags));
        assert!(!TagFilter::parse(&["expr=a"]).unwrap().matches(&tags));
        assert!(TagFilter::parse(&["ENV=prod", "tier=core"]).unwrap().matches(&tags));
        assert!(!TagFilter::parse(&["env=Prod"]).unwrap().matches(&tags));
        assert!(!TagFilter::parse(&["env=prod", "x=y"]).unwrap().matches(&tags));
        assert!(!TagFilter::parse(&["env=prod"]).unwrap().matches::<&str>(&[]));
        assert!(TagFilter::default().matches::<&str>(&[]));
        // later duplicates win
        assert!(TagFilter::parse(&["env=dev", "env=prod"]).unwrap().matches(&tags));
    }
}

//! etcd scripts: a JSON array of operations.
//!
//! ```json
//! [
//!   {"operation": "put", "key": "flags/zero_downtime", "value": {"enabled": true}},
//!   {"operation": "put", "key": "flags/beta", "value": "off", "if_absent": true},
//!   {"operation": "put", "key": "version", "value": "2", "if_value": "1"},
//!   {"operation": "delete", "key": "flags/old"},
//!   {"operation": "delete_prefix", "key": "cache/"}
//! ]
//! ```
//!
//! `operation` defaults to `put` (as in BfM). `value` is a string, or an object stored as its
//! compact JSON. `if_absent` makes a put apply only when the key does not exist (idempotent
//! seeding); `if_value` makes the whole migration fail, changing nothing, unless the key holds
//! exactly that value. Unknown operations and fields are rejected. BfM's single `key=value` text
//! form is accepted too.

use serde_json::Value;
use std::fmt;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EtcdOp {
    Put { key: String, value: String, if_absent: bool, if_value: Option<String> },
    Delete { key: String, if_value: Option<String> },
    DeletePrefix { key: String },
}

impl EtcdOp {
    pub fn key(&self) -> &str {
        match self {
            EtcdOp::Put { key, .. } | EtcdOp::Delete { key, .. } | EtcdOp::DeletePrefix { key } => key,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EtcdScriptError {
    /// Index of the offending operation, if the error is about one.
    pub index: Option<usize>,
    pub message: String,
}

impl fmt::Display for EtcdScriptError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.index {
            Some(i) => write!(f, "operation [{i}]: {}", self.message),
            None => f.write_str(&self.message),
        }
    }
}

impl std::error::Error for EtcdScriptError {}

/// Validate a key: relative, no `..` segment, no empty segment, no NUL.
pub fn check_key(key: &str) -> Result<(), String> {
    if key.trim().is_empty() {
        return Err("key must not be empty".into());
    }
    if key.starts_with('/') {
        return Err(format!("key `{key}` must be relative to the connection prefix (no leading `/`)"));
    }
    if key.contains('\0') {
        return Err("key must not contain NUL".into());
    }
    if key.split('/').any(|seg| seg == ".." || seg == ".") {
        return Err(format!("key `{key}` must not contain `.` or `..` segments"));
    }
    Ok(())
}

/// The first path segment reserved for bfm's own keys under a connection prefix (ledger, locks).
pub const RESERVED_SEGMENT: &str = "__bfm";

/// Validate an etcd schema: a key-prefix path relative to the connection prefix, such as
/// `tenant_a` or `metadata/operations`. Segments are letters, digits, `_`, `-` and `.`; no empty,
/// `.` or `..` segment, no leading or trailing `/`, and the first segment must not start with
/// `__bfm` (bfm's ledger and locks live there). The empty schema is the connection prefix itself.
pub fn check_schema(schema: &str) -> Result<(), String> {
    if schema.is_empty() {
        return Ok(());
    }
    if schema.starts_with('/') {
        return Err(format!("schema `{schema}` must be relative to the connection prefix (no leading `/`)"));
    }
    if schema.len() > 255 {
        return Err(format!("schema `{schema}` is longer than 255 bytes"));
    }
    for seg in schema.split('/') {
        if seg.is_empty() || seg == "." || seg == ".." {
            return Err(format!("schema `{schema}` must not contain empty, `.` or `..` segments"));
        }
        if !seg.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.')) {
            return Err(format!("schema `{schema}` may only contain letters, digits, `_`, `-`, `.` and `/` between segments"));
        }
    }
    if schema.starts_with(RESERVED_SEGMENT) {
        return Err(format!("schema `{schema}` is reserved: names starting with `{RESERVED_SEGMENT}` hold bfm's ledger and locks"));
    }
    Ok(())
}

/// Normalise a schema declared by a migration (`.go` file, `-- bfm-schema:` or the connection's
/// configured schema). BfM treated a leading `/` as an absolute key prefix that ignored the
/// connection prefix; bfm keeps every key under the connection prefix, so `/metadata/operations`
/// means `<prefix>metadata/operations/`. A trailing `/` is dropped as well.
pub fn normalise_declared_schema(schema: &str) -> Result<String, String> {
    let s = schema.trim();
    let s = s.strip_prefix('/').unwrap_or(s);
    let s = s.strip_suffix('/').unwrap_or(s);
    check_schema(s)?;
    Ok(s.to_string())
}

pub fn parse(text: &str) -> Result<Vec<EtcdOp>, EtcdScriptError> {
    let doc: Value = match serde_json::from_str(text) {
        Ok(v) => v,
        Err(e) => {
            // BfM's fallback: a single `key=value` line.
            let t = text.trim();
            if !t.starts_with('[')
                && !t.starts_with('{')
                && let Some((k, v)) = t.split_once('=')
            {
                let key = k.trim().to_string();
                check_key(&key).map_err(|message| EtcdScriptError { index: None, message })?;
                return Ok(vec![EtcdOp::Put { key, value: v.trim().to_string(), if_absent: false, if_value: None }]);
            }
            return Err(EtcdScriptError { index: None, message: format!("invalid JSON: {e}") });
        }
    };
    let Value::Array(items) = doc else {
        return Err(EtcdScriptError { index: None, message: "an etcd script must be a JSON array of operations".into() });
    };
    let mut ops = Vec::with_capacity(items.len());
    for (i, item) in items.into_iter().enumerate() {
        let fail = |message: String| EtcdScriptError { index: Some(i), message };
        let Value::Object(mut obj) = item else {
            return Err(fail("must be an object".into()));
        };
        let operation = match obj.remove("operation") {
            None => "put".to_string(),
            Some(Value::String(s)) => s.to_ascii_lowercase(),
            Some(other) => return Err(fail(format!("`operation` must be a string, not {other}"))),
        };
        let key = match obj.remove("key") {
            Some(Value::String(k)) => k,
            _ => return Err(fail("`key` (a string) is required".into())),
        };
        check_key(&key).map_err(fail)?;
        let if_value = match obj.remove("if_value") {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) => Some(s),
            Some(Value::Object(o)) => Some(Value::Object(o).to_string()),
            Some(other) => {
                return Err(fail(format!("`if_value` must be a string or an object, not {other}")));
            }
        };
        let op = match operation.as_str() {
            "put" => {
                let value = match obj.remove("value") {
                    Some(Value::String(s)) => s,
                    Some(Value::Object(o)) => Value::Object(o).to_string(),
                    Some(other) => {
                        return Err(fail(format!("`value` must be a string or an object, not {other}")));
                    }
                    None => return Err(fail("`value` is required for put".into())),
                };
                let if_absent = match obj.remove("if_absent") {
                    None => false,
                    Some(Value::Bool(b)) => b,
                    Some(other) => {
                        return Err(fail(format!("`if_absent` must be true or false, not {other}")));
                    }
                };
                if if_absent && if_value.is_some() {
                    return Err(fail("`if_absent` and `if_value` exclude each other".into()));
                }
                EtcdOp::Put { key, value, if_absent, if_value }
            }
            "delete" => EtcdOp::Delete { key, if_value },
            "delete_prefix" => {
                if if_value.is_some() {
                    return Err(fail("`if_value` is not allowed on delete_prefix".into()));
                }
                EtcdOp::DeletePrefix { key }
            }
            other => {
                return Err(fail(format!("unsupported operation `{other}` (put, delete, delete_prefix)")));
            }
        };
        if let Some(field) = obj.keys().next() {
            return Err(fail(format!("unknown field `{field}`")));
        }
        ops.push(op);
    }
    Ok(ops)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_operations() {
        let ops = parse(
            r#"[{"key":"a","value":"1"},{"operation":"put","key":"b","value":{"x":1},"if_absent":true},
               {"operation":"delete","key":"c","if_value":"9"},{"operation":"delete_prefix","key":"d/"}]"#,
        )
        .unwrap();
        assert_eq!(ops.len(), 4);
        assert_eq!(ops[1], EtcdOp::Put { key: "b".into(), value: r#"{"x":1}"#.into(), if_absent: true, if_value: None });
        assert_eq!(parse("a/b = c").unwrap()[0].key(), "a/b");
    }

    #[test]
    fn rejects_bad_scripts_with_the_index() {
        let e = parse(r#"[{"key":"a","value":"1"},{"operation":"merge","key":"b"}]"#).unwrap_err();
        assert_eq!(e.index, Some(1));
        assert!(parse(r#"[{"key":"a","value":"1","ttl":5}]"#).unwrap_err().message.contains("ttl"));
        assert!(parse(r#"[{"key":"../x","value":"1"}]"#).is_err());
        assert!(parse(r#"[{"key":"/abs","value":"1"}]"#).is_err());
        assert!(parse(r#"[{"key":"a","value":3}]"#).is_err());
        assert!(parse(r#"{"key":"a"}"#).is_err());
        assert!(parse("not json").is_err());
    }

    #[test]
    fn schemas_stay_under_the_prefix() {
        assert_eq!(normalise_declared_schema("/metadata/operations").unwrap(), "metadata/operations");
        assert_eq!(normalise_declared_schema("tenant_a/").unwrap(), "tenant_a");
        assert_eq!(normalise_declared_schema("/").unwrap(), "");
        for bad in ["../x", "a/../b", "a//b", "./a", "//a", "__bfm", "__bfm/ledger", "a b", "a\0"] {
            assert!(normalise_declared_schema(bad).is_err(), "{bad}");
        }
        assert!(check_schema("/abs").is_err());
        assert!(check_schema("a/b.c-d").is_ok());
    }
}

//! Template variables in scripts: `{{.Schema}}`, `{{.Connection}}`, `{{.Backend}}`,
//! `{{.Version}}`, `{{.Environment}}` (names case-insensitive, as in BfM).
//!
//! Values are never pasted raw. Where a variable stands decides how it is quoted: inside a string
//! literal it is escaped as literal content, inside a quoted identifier as identifier content; in
//! plain SQL, `Schema`, `Connection` and `Backend` become quoted identifiers and `Version` and
//! `Environment` string literals. In JSON scripts values are JSON-escaped.

use crate::sql::{self, Dialect, TokenKind};
use std::fmt;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Var {
    Schema,
    Connection,
    Backend,
    Version,
    Environment,
}

impl Var {
    fn parse(name: &str) -> Option<Var> {
        match name.to_ascii_lowercase().as_str() {
            "schema" => Some(Var::Schema),
            "connection" => Some(Var::Connection),
            "backend" => Some(Var::Backend),
            "version" => Some(Var::Version),
            "environment" => Some(Var::Environment),
            _ => None,
        }
    }

    fn is_identifier(self) -> bool {
        matches!(self, Var::Schema | Var::Connection | Var::Backend)
    }
}

/// The values available to a script at execution time.
#[derive(Debug, Clone, Default)]
pub struct Vars<'a> {
    pub schema: &'a str,
    pub connection: &'a str,
    pub backend: &'a str,
    pub version: &'a str,
    pub environment: &'a str,
}

impl Vars<'_> {
    fn get(&self, v: Var) -> &str {
        match v {
            Var::Schema => self.schema,
            Var::Connection => self.connection,
            Var::Backend => self.backend,
            Var::Version => self.version,
            Var::Environment => self.environment,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TemplateError {
    pub line: usize,
    pub message: String,
}

impl fmt::Display for TemplateError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "line {}: {}", self.line, self.message)
    }
}

impl std::error::Error for TemplateError {}

/// One `{{ … }}` occurrence.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Placeholder {
    pub start: usize,
    pub end: usize,
    pub var: Var,
}

fn line_at(src: &str, at: usize) -> usize {
    src[..at].matches('\n').count() + 1
}

/// Find every template placeholder; anything between `{{` and `}}` that is not one of the known
/// variables is an error (BfM would have rendered `<no value>` into the SQL).
pub fn placeholders(src: &str) -> Result<Vec<Placeholder>, TemplateError> {
    let mut out = Vec::new();
    let mut from = 0;
    while let Some(p) = src[from..].find("{{") {
        let start = from + p;
        let Some(close) = src[start + 2..].find("}}") else {
            return Err(TemplateError { line: line_at(src, start), message: "`{{` without a closing `}}`".into() });
        };
        let end = start + 2 + close + 2;
        let inner = src[start + 2..end - 2].trim();
        let var = inner
            .strip_prefix('.')
            .filter(|n| !n.is_empty() && n.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'))
            .and_then(Var::parse)
            .ok_or_else(|| TemplateError {
                line: line_at(src, start),
                message: format!(
                    "unknown template expression `{{{{{inner}}}}}`; use one of {{{{.Schema}}}}, {{{{.Connection}}}}, {{{{.Backend}}}}, {{{{.Version}}}}, {{{{.Environment}}}}"
                ),
            })?;
        out.push(Placeholder { start, end, var });
        from = end;
    }
    Ok(out)
}

/// Render a SQL script for `dialect`, quoting each value for where it stands.
pub fn render_sql(src: &str, dialect: Dialect, vars: &Vars<'_>) -> Result<String, TemplateError> {
    let found = placeholders(src)?;
    if found.is_empty() {
        return Ok(src.to_string());
    }
    let tokens = sql::tokenize(src, dialect).map_err(|e| TemplateError { line: e.line, message: e.message })?;
    let mut out = String::with_capacity(src.len() + 32);
    let mut last = 0;
    let mut ti = 0;
    for p in &found {
        while ti < tokens.len() && tokens[ti].end <= p.start {
            ti += 1;
        }
        let token = tokens.get(ti).copied();
        out.push_str(&src[last..p.start]);
        let value = vars.get(p.var);
        let rendered = match token {
            Some(t) if t.kind == TokenKind::Literal => {
                let quote_at = if matches!(src.as_bytes()[t.start], b'E' | b'e') { t.start + 1 } else { t.start };
                let quote = src[quote_at..].chars().next().unwrap_or('\'');
                let backslash = matches!(dialect, Dialect::MySql | Dialect::Greptime) || quote_at != t.start;
                let mut v = value.to_string();
                if backslash {
                    v = v.replace('\\', "\\\\");
                }
                v.replace(quote, &format!("{quote}{quote}"))
            }
            Some(t) if t.kind == TokenKind::QuotedIdent => {
                let quote = src[t.start..].chars().next().unwrap_or('"');
                let close = if quote == '[' { ']' } else { quote };
                value.replace(close, &format!("{close}{close}"))
            }
            _ if p.var.is_identifier() => dialect.quote_ident(value),
            _ => dialect.quote_literal(value),
        };
        out.push_str(&rendered);
        last = p.end;
    }
    out.push_str(&src[last..]);
    Ok(out)
}

/// Render a JSON script: inside JSON strings values are escaped, elsewhere they become strings.
pub fn render_json(src: &str, vars: &Vars<'_>) -> Result<String, TemplateError> {
    let found = placeholders(src)?;
    if found.is_empty() {
        return Ok(src.to_string());
    }
    // Which byte offsets are inside a JSON string literal.
    let bytes = src.as_bytes();
    let mut in_string = vec![false; bytes.len()];
    let mut i = 0;
    let mut inside = false;
    while i < bytes.len() {
        in_string[i] = inside;
        match bytes[i] {
            b'\\' if inside => {
                if i + 1 < bytes.len() {
                    in_string[i + 1] = true;
                }
                i += 2;
                continue;
            }
            b'"' => inside = !inside,
            _ => {}
        }
        i += 1;
    }
    let mut out = String::with_capacity(src.len() + 32);
    let mut last = 0;
    for p in &found {
        out.push_str(&src[last..p.start]);
        let encoded = serde_json::to_string(vars.get(p.var)).unwrap_or_else(|_| "\"\"".into());
        if in_string[p.start] {
            out.push_str(&encoded[1..encoded.len() - 1]);
        } else {
            out.push_str(&encoded);
        }
        last = p.end;
    }
    out.push_str(&src[last..]);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars() -> Vars<'static> {
        Vars { schema: "tenant_1\"x", connection: "org", backend: "postgresql", version: "20250101000000", environment: "it's" }
    }

    #[test]
    fn identifiers_and_literals_are_quoted_by_context() {
        let src = "CREATE TABLE {{.Schema}}.t (v text DEFAULT '{{ .schema }}'); INSERT INTO log VALUES ({{.Version}}, {{.ENVIRONMENT}}, \"{{.Schema}}\");";
        let out = render_sql(src, Dialect::Postgres, &vars()).unwrap();
        assert_eq!(
            out,
            "CREATE TABLE \"tenant_1\"\"x\".t (v text DEFAULT 'tenant_1\"x'); INSERT INTO log VALUES ('20250101000000', 'it''s', \"tenant_1\"\"x\");"
        );
    }

    #[test]
    fn mysql_quoting() {
        let out = render_sql(
            "CREATE DATABASE {{.Schema}}; SELECT '{{.Environment}}'",
            Dialect::MySql,
            &Vars { schema: "a`b", environment: "x\\'", ..vars() },
        )
        .unwrap();
        assert_eq!(out, "CREATE DATABASE `a``b`; SELECT 'x\\\\'''");
    }

    #[test]
    fn an_injection_attempt_stays_inside_its_quotes() {
        let evil = Vars { schema: "x\"; DROP TABLE users; --", ..vars() };
        let out = render_sql("SET search_path TO {{.Schema}};", Dialect::Postgres, &evil).unwrap();
        let statements = crate::sql::split(&out, Dialect::Postgres).unwrap();
        assert_eq!(statements.len(), 1, "{out}");
    }

    #[test]
    fn unknown_variables_are_errors() {
        let e = placeholders("SELECT 1;\nSELECT {{.Tenant}}").unwrap_err();
        assert_eq!(e.line, 2);
        assert!(placeholders("SELECT {{ .Schema ").is_err());
        assert!(placeholders("SELECT {{ .Schema | upper }}").is_err());
    }

    #[test]
    fn json_rendering() {
        let out = render_json(r#"[{"key": "{{.Schema}}/x", "value": {{.Version}}}]"#, &Vars { schema: "a\"b", ..vars() }).unwrap();
        let v: serde_json::Value = serde_json::from_str(&out).unwrap();
        assert_eq!(v[0]["key"], "a\"b/x");
        assert_eq!(v[0]["value"], "20250101000000");
    }
}

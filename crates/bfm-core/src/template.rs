//! Template variables in scripts: `{{.Schema}}`, `{{.Connection}}`, `{{.Backend}}`,
//! `{{.Version}}`, `{{.Environment}}` (names case-insensitive, as in BfM).
//!
//! Values are never pasted raw. Where a variable stands decides how it is quoted: inside a string
//! literal it is escaped as literal content, inside a quoted identifier as identifier content; in
//! plain SQL, `Schema`, `Connection` and `Backend` become quoted identifiers and `Version` and
//! `Environment` string literals. In JSON scripts values are JSON-escaped.

use crate::sql::{self, Dialect, Token, TokenKind};
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
///
/// | where the placeholder stands | what is pasted | refused (a render error) |
/// |---|---|---|
/// | plain SQL | `Schema`, `Connection`, `Backend` as a quoted identifier, `Version`, `Environment` as a string literal | — |
/// | `'…'` | content, `'` doubled; `\` doubled on MySQL/GreptimeDB | — |
/// | `E'…'` (PostgreSQL) | content, `'` and `\` doubled | — |
/// | `U&'…'`, `U&"…"` (PostgreSQL) | content, quote doubled | values with `\` |
/// | `"…"` on MySQL (a string) | content, `"` and `\` doubled | — |
/// | `"…"`, `` `…` `` | content, the quote doubled | — |
/// | `[…]` (SQLite) | content | values with `]` |
/// | `$tag$ … $tag$` (PostgreSQL) | the body is SQL (a function body): each placeholder in it is rendered for where it stands in the body | values that would put `$tag$` in the body, bodies that do not lex |
/// | `-- …`, `# …` (MySQL) | the value | values with control characters |
/// | `/* … */` | the value | values with control characters, `/*` or `*/` |
/// | MySQL `/*! … */`, `/*+ … */`, a `DELIMITER` line | — | every placeholder |
///
/// No value may contain NUL. After rendering, the script must lex into exactly the tokens of
/// the template, the values inside the tokens they were placed in; anything else is an error,
/// never SQL.
pub fn render_sql(src: &str, dialect: Dialect, vars: &Vars<'_>) -> Result<String, TemplateError> {
    let found = placeholders(src)?;
    if found.is_empty() {
        return Ok(src.to_string());
    }
    render_tokens(src, dialect, vars, &found, 0)
}

/// Check at load time that every placeholder of a SQL script stands where a value can be placed,
/// by rendering it with harmless values.
pub fn check_sql(src: &str, dialect: Dialect) -> Result<(), TemplateError> {
    let vars = Vars { schema: "schema", connection: "connection", backend: "backend", version: "0", environment: "environment" };
    render_sql(src, dialect, &vars).map(|_| ())
}

/// The lexical context of a placeholder, derived from the token it stands in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Context {
    /// Outside any quoting: the value becomes a whole literal or quoted identifier.
    Plain,
    /// Inside a string literal closed by `quote`; `backslash`: backslashes escape; `unicode`:
    /// a PostgreSQL `U&` string, where backslashes start escapes and are refused.
    Literal { quote: char, backslash: bool, unicode: bool },
    /// Inside a quoted identifier closed by `close`, which doubles unless `brackets`.
    Ident { close: char, brackets: bool, unicode: bool },
    /// Inside a line comment.
    LineComment,
    /// Inside a block comment.
    BlockComment,
    /// Inside a PostgreSQL dollar-quoted body.
    Dollar,
    /// Somewhere no value may go.
    Refused(&'static str),
}

fn context_of(src: &str, dialect: Dialect, t: &Token) -> Context {
    let text = &src[t.start..t.end];
    let before = &src.as_bytes()[..t.start];
    let unicode_prefix = dialect == Dialect::Postgres && before.len() >= 2 && before[before.len() - 2..].eq_ignore_ascii_case(b"U&");
    match t.kind {
        TokenKind::Space | TokenKind::Word | TokenKind::Terminator => Context::Plain,
        TokenKind::Other if text.starts_with("/*") => Context::Refused("a MySQL executable comment or optimizer hint"),
        TokenKind::Other => Context::Plain,
        TokenKind::Literal => {
            let escape = text.starts_with(['E', 'e']);
            let quote = if escape { '\'' } else { text.chars().next().unwrap_or('\'') };
            let backslash = escape || matches!(dialect, Dialect::MySql | Dialect::Greptime);
            Context::Literal { quote, backslash, unicode: unicode_prefix }
        }
        TokenKind::QuotedIdent => match text.chars().next() {
            Some('[') => Context::Ident { close: ']', brackets: true, unicode: false },
            Some(q) => Context::Ident { close: q, brackets: false, unicode: unicode_prefix },
            None => Context::Refused("an empty token"),
        },
        TokenKind::Comment if text.starts_with("/*") => Context::BlockComment,
        TokenKind::Comment => Context::LineComment,
        TokenKind::DollarQuoted => Context::Dollar,
        TokenKind::DelimiterCommand => Context::Refused("a DELIMITER line"),
    }
}

fn plain_kind(kind: TokenKind) -> bool {
    matches!(kind, TokenKind::Space | TokenKind::Word | TokenKind::Other)
}

/// Render `src` (whose placeholders are `found`); `line0` is the line of `src`'s first byte in
/// the whole script, for error messages.
fn render_tokens(src: &str, dialect: Dialect, vars: &Vars<'_>, found: &[Placeholder], line0: usize) -> Result<String, TemplateError> {
    let lex_error = |e: sql::LexError| TemplateError { line: line0 + e.line, message: e.message };
    let tokens = sql::tokenize(src, dialect).map_err(lex_error)?;
    let fail = |at: usize, message: String| TemplateError { line: line0 + line_at(src, at), message };
    let mut out = String::with_capacity(src.len() + 32);
    // The tokens the output must lex into.
    let mut expected: Vec<Expected> = Vec::with_capacity(tokens.len());
    let mut ti = 0;
    let mut pi = 0;
    while ti < tokens.len() {
        let t = tokens[ti];
        let inside: Vec<&Placeholder> =
            found[pi..].iter().take_while(|p| p.start < t.end).filter(|p| p.end <= t.end && p.start >= t.start).collect();
        let context = context_of(src, dialect, &t);
        if context == Context::Plain && found.get(pi).is_some_and(|p| p.start >= t.start && p.start < t.end) {
            // A placeholder in plain SQL spans several plain tokens (`{`, `.`, a word, …) and
            // becomes one quoted token.
            let p = &found[pi];
            if t.start != p.start {
                // The token before the placeholder (e.g. a word glued to it) stays as it is.
                let before = &src[t.start..p.start];
                expected.push(Expected { kind: t.kind, start: out.len(), end: out.len() + before.len(), src_at: t.start });
                out.push_str(before);
            }
            let mut last = ti;
            while last < tokens.len() && tokens[last].end < p.end {
                last += 1;
            }
            if tokens[ti..=last.min(tokens.len() - 1)].iter().any(|x| !plain_kind(x.kind)) || last >= tokens.len() {
                return Err(fail(
                    p.start,
                    "a template placeholder must stand wholly inside one literal, identifier or comment, or wholly outside them".into(),
                ));
            }
            let value = checked_value(vars.get(p.var), p, &fail)?;
            let rendered = if p.var.is_identifier() { dialect.quote_ident(value) } else { dialect.quote_literal(value) };
            let kind = if p.var.is_identifier() { TokenKind::QuotedIdent } else { TokenKind::Literal };
            expected.push(Expected { kind, start: out.len(), end: out.len() + rendered.len(), src_at: p.start });
            out.push_str(&rendered);
            pi += 1;
            let end_tok = tokens[last];
            if end_tok.end > p.end {
                let after = &src[p.end..end_tok.end];
                // What follows the placeholder in the same token is lexed again with the rest.
                expected.push(Expected { kind: end_tok.kind, start: out.len(), end: out.len() + after.len(), src_at: p.end });
                out.push_str(after);
            }
            ti = last + 1;
            continue;
        }
        if inside.len() != found[pi..].iter().take_while(|p| p.start < t.end).count() {
            let p = found[pi..].iter().find(|p| p.start < t.end && p.end > t.end).unwrap_or(&found[pi]);
            return Err(fail(
                p.start,
                "a template placeholder must stand wholly inside one literal, identifier or comment, or wholly outside them".into(),
            ));
        }
        let start = out.len();
        if inside.is_empty() {
            out.push_str(&src[t.start..t.end]);
        } else {
            let text = &src[t.start..t.end];
            let rendered = match context {
                Context::Dollar => render_dollar(src, &t, dialect, vars, &inside, line0)?,
                _ => {
                    let mut r = String::with_capacity(text.len() + 16);
                    let mut last = t.start;
                    for p in &inside {
                        r.push_str(&src[last..p.start]);
                        let value = checked_value(vars.get(p.var), p, &fail)?;
                        r.push_str(&escape_for(context, value).map_err(|m| fail(p.start, m))?);
                        last = p.end;
                    }
                    r.push_str(&src[last..t.end]);
                    r
                }
            };
            out.push_str(&rendered);
            pi += inside.len();
        }
        expected.push(Expected { kind: t.kind, start, end: out.len(), src_at: t.start });
        ti += 1;
    }
    verify(&out, dialect, &expected)
        .map_err(|at| fail(at, "a template value changes the structure of the script here; it cannot be placed safely".into()))?;
    Ok(out)
}

/// A token the rendered script must contain: its kind and span in the output, and where it
/// came from in the template (for the error's line).
#[derive(Debug, Clone, Copy)]
struct Expected {
    kind: TokenKind,
    start: usize,
    end: usize,
    src_at: usize,
}

/// The output must lex into exactly the expected tokens; `Err(offset)` is the template offset
/// of the first that does not. Adjacent blanks lex as one.
fn verify(out: &str, dialect: Dialect, expected: &[Expected]) -> Result<(), usize> {
    let got = sql::tokenize(out, dialect).map_err(|_| expected.first().map_or(0, |e| e.src_at))?;
    let mut want: Vec<Expected> = Vec::with_capacity(expected.len());
    for e in expected.iter().filter(|e| e.start < e.end) {
        match want.last_mut() {
            Some(last) if e.kind == TokenKind::Space && last.kind == TokenKind::Space && last.end == e.start => last.end = e.end,
            _ => want.push(*e),
        }
    }
    for (w, g) in want.iter().zip(got.iter()) {
        if w.kind != g.kind || w.start != g.start || w.end != g.end {
            return Err(w.src_at);
        }
    }
    match want.len().cmp(&got.len()) {
        std::cmp::Ordering::Equal => Ok(()),
        _ => Err(want.get(got.len()).or(want.last()).map_or(0, |e| e.src_at)),
    }
}

fn checked_value<'v>(value: &'v str, p: &Placeholder, fail: &dyn Fn(usize, String) -> TemplateError) -> Result<&'v str, TemplateError> {
    if value.contains('\0') {
        return Err(fail(p.start, format!("the value of {{{{.{:?}}}}} contains NUL", p.var)));
    }
    Ok(value)
}

/// A value escaped for the inside of a literal, identifier or comment.
fn escape_for(context: Context, value: &str) -> Result<String, String> {
    let control = |v: &str| v.chars().any(|c| c.is_control());
    match context {
        Context::Literal { unicode: true, .. } | Context::Ident { unicode: true, .. } if value.contains('\\') => {
            Err("a value with `\\` cannot be placed in a U&'…' string or U&\"…\" identifier".into())
        }
        Context::Literal { quote, backslash, .. } => {
            let v = if backslash { value.replace('\\', "\\\\") } else { value.to_string() };
            Ok(v.replace(quote, &format!("{quote}{quote}")))
        }
        Context::Ident { brackets: true, .. } if value.contains(']') => Err("a value with `]` cannot be placed in a […] identifier".into()),
        Context::Ident { brackets: true, .. } => Ok(value.to_string()),
        Context::Ident { close, .. } => Ok(value.replace(close, &format!("{close}{close}"))),
        Context::LineComment if control(value) => {
            Err("a value with a line break or control character cannot be placed in a comment".into())
        }
        Context::LineComment => Ok(value.to_string()),
        Context::BlockComment if control(value) || value.contains("*/") || value.contains("/*") => {
            Err("a value with `/*`, `*/` or a control character cannot be placed in a block comment".into())
        }
        Context::BlockComment => Ok(value.to_string()),
        Context::Refused(what) => Err(format!("a template placeholder cannot stand in {what}")),
        Context::Plain | Context::Dollar => Err("internal: no escaping for this context".into()),
    }
}

/// A dollar-quoted body is SQL (a function body, a `DO` block): render it as such, then make
/// sure the closing tag still closes it — no value may put the tag inside.
fn render_dollar(
    src: &str,
    t: &Token,
    dialect: Dialect,
    vars: &Vars<'_>,
    inside: &[&Placeholder],
    line0: usize,
) -> Result<String, TemplateError> {
    let text = &src[t.start..t.end];
    let tag_len = text[1..].find('$').map_or(1, |p| p + 2);
    let tag = &text[..tag_len];
    let body_start = t.start + tag_len;
    let body = &src[body_start..t.end - tag_len];
    let shifted: Vec<Placeholder> =
        inside.iter().map(|p| Placeholder { start: p.start - body_start, end: p.end - body_start, var: p.var }).collect();
    let body_line0 = line0 + line_at(src, body_start) - 1;
    let rendered = render_tokens(body, dialect, vars, &shifted, body_line0)
        .map_err(|e| TemplateError { line: e.line, message: format!("in the {tag} body: {}", e.message) })?;
    let closed = format!("{rendered}{tag}");
    if closed.find(tag) != Some(rendered.len()) {
        return Err(TemplateError {
            line: line0 + line_at(src, t.start),
            message: format!("a template value would end the {tag}-quoted body early; it cannot be placed there"),
        });
    }
    Ok(format!("{tag}{rendered}{tag}"))
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

    fn env(value: &str) -> Vars<'_> {
        Vars { environment: value, ..vars() }
    }

    #[test]
    fn values_in_comments_cannot_end_them() {
        let src = "-- deployed to {{.Environment}}\nSELECT 1;";
        assert_eq!(render_sql(src, Dialect::Postgres, &env("prod")).unwrap(), "-- deployed to prod\nSELECT 1;");
        for d in [Dialect::Postgres, Dialect::MySql, Dialect::Sqlite, Dialect::Greptime] {
            assert!(render_sql(src, d, &env("x\nDROP TABLE users; --")).is_err(), "{d:?}");
            assert!(render_sql(src, d, &env("x\rDROP TABLE users")).is_err(), "{d:?}");
            let block = "/* {{.Environment}} */ SELECT 1;";
            assert!(render_sql(block, d, &env("*/ DROP TABLE users; /*")).is_err(), "{d:?}");
            assert_eq!(render_sql(block, d, &env("prod")).unwrap(), "/* prod */ SELECT 1;");
        }
        // Nested block comments on PostgreSQL: an opening `/*` would swallow the rest.
        assert!(render_sql("/* {{.Environment}} */ SELECT 1;", Dialect::Postgres, &env("/*")).is_err());
        assert!(render_sql("# {{.Environment}}\nSELECT 1;", Dialect::MySql, &env("a\nDROP TABLE t")).is_err());
    }

    #[test]
    fn escape_strings_double_backslashes() {
        let out = render_sql("SELECT E'{{.Environment}}';", Dialect::Postgres, &env("x\\")).unwrap();
        assert_eq!(out, "SELECT E'x\\\\';");
        let out = render_sql("SELECT E'{{.Environment}}'; SELECT 2;", Dialect::Postgres, &env("\\'; DROP TABLE t; --")).unwrap();
        assert_eq!(crate::sql::split(&out, Dialect::Postgres).unwrap().len(), 2, "{out}");
        // Without the E, backslashes are plain characters (standard_conforming_strings).
        assert_eq!(render_sql("SELECT '{{.Environment}}';", Dialect::Postgres, &env("a\\b")).unwrap(), "SELECT 'a\\b';");
        assert!(render_sql("SELECT U&'{{.Environment}}';", Dialect::Postgres, &env("\\0041")).is_err());
    }

    #[test]
    fn dollar_quoted_bodies_are_sql_and_keep_their_tag() {
        let src = "CREATE FUNCTION f() RETURNS text LANGUAGE plpgsql AS $fn$\nBEGIN\n  RETURN '{{.Environment}}';\nEND\n$fn$;";
        let out = render_sql(src, Dialect::Postgres, &env("it's")).unwrap();
        assert!(out.contains("RETURN 'it''s';"), "{out}");
        assert!(render_sql(src, Dialect::Postgres, &env("$fn$; DROP TABLE users; --")).is_err());
        let e = render_sql("DO $$ BEGIN PERFORM '{{.Environment}}'; END $$;", Dialect::Postgres, &env("$$")).unwrap_err();
        assert!(e.message.contains("end the $$-quoted body"), "{e}");
        // A tag formed with the closing `$`.
        assert!(render_sql("SELECT $$ -- {{.Environment}}$$;", Dialect::Postgres, &env("$")).is_err());
        // Bare in a body, a value is quoted as in plain SQL.
        let out = render_sql("DO $$ BEGIN RAISE NOTICE '%', {{.Environment}}; END $$;", Dialect::Postgres, &env("a'b")).unwrap();
        assert_eq!(out, "DO $$ BEGIN RAISE NOTICE '%', 'a''b'; END $$;");
        // The line of an error inside a body counts from the script's start.
        let e = render_sql("SELECT 1;\nDO $$\nBEGIN\n-- {{.Environment}}\nEND $$;", Dialect::Postgres, &env("a\nb")).unwrap_err();
        assert_eq!(e.line, 4, "{e}");
    }

    #[test]
    fn identifiers_that_cannot_escape_their_quote_refuse_it() {
        assert!(render_sql("SELECT * FROM [{{.Schema}}];", Dialect::Sqlite, &Vars { schema: "a]; DROP TABLE t; --", ..vars() }).is_err());
        assert_eq!(
            render_sql("SELECT * FROM [{{.Schema}}];", Dialect::Sqlite, &Vars { schema: "a\"b", ..vars() }).unwrap(),
            "SELECT * FROM [a\"b];"
        );
        assert_eq!(
            render_sql("SELECT * FROM `{{.Schema}}`;", Dialect::MySql, &Vars { schema: "a`b", ..vars() }).unwrap(),
            "SELECT * FROM `a``b`;"
        );
    }

    #[test]
    fn mysql_double_quoted_strings_escape_backslashes() {
        let out = render_sql("SELECT \"{{.Environment}}\"; SELECT 2;", Dialect::MySql, &env("\\\"; DROP TABLE t; #")).unwrap();
        assert_eq!(crate::sql::split(&out, Dialect::MySql).unwrap().len(), 2, "{out}");
    }

    #[test]
    fn placeholders_where_no_value_may_go_are_refused() {
        assert!(render_sql("SELECT /*! {{.Environment}} */ 1;", Dialect::MySql, &env("prod")).is_err());
        assert!(render_sql("SELECT /*+ {{.Environment}} */ 1;", Dialect::MySql, &env("prod")).is_err());
        assert!(render_sql("SELECT 1;", Dialect::MySql, &env("\0")).is_ok());
        assert!(render_sql("SELECT '{{.Environment}}';", Dialect::MySql, &env("a\0b")).is_err());
        // Glued to a prefix that would change the literal's kind: the structure check refuses it.
        assert!(render_sql("SELECT E{{.Environment}};", Dialect::Postgres, &env("prod")).is_err());
    }

    #[test]
    fn load_time_check_names_the_line() {
        let e = check_sql("SELECT 1;\nSELECT /*! {{.Environment}} */ 2;", Dialect::MySql).unwrap_err();
        assert_eq!(e.line, 2);
        assert!(check_sql("SELECT '{{.Environment}}', {{.Schema}};", Dialect::Postgres).is_ok());
    }
}

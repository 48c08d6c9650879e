//! Identifier and literal quoting. Every identifier that goes into generated SQL passes through
//! [`quote_ident`]; every string value through [`quote_literal`].

/// Quote an identifier for PostgreSQL, always (`users` → `"users"`, `a"b` → `"a""b"`).
pub fn quote_ident(ident: &str) -> String {
    let mut out = String::with_capacity(ident.len() + 2);
    out.push('"');
    for c in ident.chars() {
        if c == '"' {
            out.push('"');
        }
        out.push(c);
    }
    out.push('"');
    out
}

/// A schema-qualified name, both parts quoted: `"public"."users"`.
pub fn qualified(schema: &str, name: &str) -> String {
    format!("{}.{}", quote_ident(schema), quote_ident(name))
}

/// Quote a string literal. Backslashes switch to an `E''` literal so the result does not depend
/// on `standard_conforming_strings`.
pub fn quote_literal(value: &str) -> String {
    bfm_core::sql::Dialect::Postgres.quote_literal(value)
}

/// The display form of a name part: bare when it is a plain lower-case identifier, otherwise
/// double-quoted. Used for object names in plans, approvals and reports, never for SQL.
pub fn display_part(part: &str) -> String {
    let plain = !part.is_empty()
        && part.chars().next().is_some_and(|c| c.is_ascii_lowercase() || c == '_')
        && part.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '$');
    if plain { part.to_string() } else { quote_ident(part) }
}

/// Display name of a schema-qualified object: `public.users`, `"My Schema".t`.
pub fn display_name(schema: &str, name: &str) -> String {
    format!("{}.{}", display_part(schema), display_part(name))
}

/// Storage parameters (`key=value` as stored in `reloptions`) as SQL: keys are kept (the server
/// wrote them), values are kept when they are plain words or numbers and quoted otherwise.
pub fn reloptions_sql(options: &[String]) -> String {
    options
        .iter()
        .map(|o| match o.split_once('=') {
            Some((k, v)) if !v.is_empty() && v.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.' || c == '-') => {
                format!("{k}={v}")
            }
            Some((k, v)) => format!("{k}={}", quote_literal(v)),
            None => o.clone(),
        })
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoting() {
        assert_eq!(quote_ident("users"), "\"users\"");
        assert_eq!(quote_ident("a\"b"), "\"a\"\"b\"");
        assert_eq!(qualified("public", "t"), "\"public\".\"t\"");
        assert_eq!(quote_literal("it's"), "'it''s'");
        assert_eq!(quote_literal("a\\b"), "E'a\\\\b'");
        assert_eq!(display_name("public", "users"), "public.users");
        assert_eq!(display_name("My", "t.x"), "\"My\".\"t.x\"");
        assert_eq!(reloptions_sql(&["fillfactor=70".into(), "x=a b'c".into()]), "fillfactor=70, x='a b''c'");
    }
}

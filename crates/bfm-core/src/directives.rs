//! Header directives: `-- bfm-<name>: value` comment lines in the first 80 lines of an up script.
//!
//! | directive | meaning |
//! |---|---|
//! | `-- bfm-tags: k=v, k2=v2` | tags (BfM's header) |
//! | `-- bfm-schema: core` | the fixed schema this migration runs in |
//! | `-- bfm-depends-on: name, name2` | dependencies by name |
//! | `-- bfm-dependency: connection=core target=bootstrap type=name requires-table=users requires-schema=core schema=core` | one structured dependency (repeatable) |
//! | `-- bfm-requires-table: core.users` | a table that must exist before this runs (repeatable, comma list) |
//! | `-- bfm-requires-schema: core` | a schema that must exist before this runs |
//! | `-- bfm-no-transaction` | run without bfm's per-migration transaction (e.g. `CREATE INDEX CONCURRENTLY`) |
//! | `-- bfm-resumable` | on targets without transactions, `retry` resumes at the failed statement |

use crate::deps::{Dependency, TargetType};

/// How many lines at the top of an up script are searched (as BfM does for `bfm-tags`).
pub const HEADER_LINES: usize = 80;

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Directives {
    pub tags: Option<(usize, String)>,
    pub schema: Option<String>,
    pub depends_on: Vec<String>,
    pub dependencies: Vec<Dependency>,
    pub requires_tables: Vec<String>,
    pub requires_schemas: Vec<String>,
    pub no_transaction: bool,
    pub resumable: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirectiveError {
    pub line: usize,
    pub message: String,
}

fn list(value: &str) -> Vec<String> {
    value.split(',').map(str::trim).filter(|s| !s.is_empty()).map(str::to_string).collect()
}

/// Parse the directives of a script. Comment lines are `-- …` (SQL) or `# …`/`// …`.
pub fn parse(text: &str) -> Result<Directives, DirectiveError> {
    let mut d = Directives::default();
    for (i, raw) in text.lines().take(HEADER_LINES).enumerate() {
        let line = i + 1;
        let t = raw.trim();
        let Some(body) = t.strip_prefix("--").or_else(|| t.strip_prefix('#')).or_else(|| t.strip_prefix("//")) else {
            continue;
        };
        let body = body.trim();
        if body.len() < 4 || !body[..4].eq_ignore_ascii_case("bfm-") {
            continue;
        }
        let (name, value) = match body.split_once(':') {
            Some((n, v)) => (n.trim().to_ascii_lowercase(), v.trim()),
            None => (body.trim().to_ascii_lowercase(), ""),
        };
        let fail = |message: String| Err(DirectiveError { line, message });
        let need_value = |v: &str| -> Result<(), DirectiveError> {
            if v.is_empty() { Err(DirectiveError { line, message: format!("`{name}` needs a value") }) } else { Ok(()) }
        };
        match name.as_str() {
            "bfm-tags" => {
                // BfM uses the first tags line only.
                if d.tags.is_none() {
                    d.tags = Some((line, value.to_string()));
                }
            }
            "bfm-schema" => {
                need_value(value)?;
                d.schema = Some(value.to_string());
            }
            "bfm-depends-on" => {
                need_value(value)?;
                d.depends_on.extend(list(value));
            }
            "bfm-dependency" => {
                need_value(value)?;
                d.dependencies.push(parse_dependency(value).map_err(|message| DirectiveError { line, message })?);
            }
            "bfm-requires-table" => {
                need_value(value)?;
                d.requires_tables.extend(list(value));
            }
            "bfm-requires-schema" => {
                need_value(value)?;
                d.requires_schemas.extend(list(value));
            }
            "bfm-no-transaction" => d.no_transaction = true,
            "bfm-resumable" => d.resumable = true,
            other => {
                return fail(format!(
                    "unknown directive `{other}` (known: bfm-tags, bfm-schema, bfm-depends-on, bfm-dependency, bfm-requires-table, bfm-requires-schema, bfm-no-transaction, bfm-resumable)"
                ));
            }
        }
    }
    Ok(d)
}

/// `connection=core target=bootstrap type=name requires-table=users` (spaces or commas).
fn parse_dependency(value: &str) -> Result<Dependency, String> {
    let mut dep = Dependency::default();
    for part in value.split([',', ' ', '\t']).filter(|p| !p.is_empty()) {
        let (k, v) = part.split_once('=').ok_or_else(|| format!("`{part}` must be key=value"))?;
        let v = v.trim().to_string();
        match k.trim().to_ascii_lowercase().replace('_', "-").as_str() {
            "connection" => dep.connection = Some(v),
            "schema" => dep.schema = Some(v),
            "target" => dep.target = v,
            "type" | "target-type" => {
                dep.target_type = TargetType::parse(&v).ok_or_else(|| format!("type must be name or version, not `{v}`"))?
            }
            "requires-table" => dep.requires_table = Some(v),
            "requires-schema" => dep.requires_schema = Some(v),
            other => return Err(format!("unknown dependency field `{other}`")),
        }
    }
    if dep.target.is_empty() {
        return Err("a dependency needs target=…".into());
    }
    Ok(dep)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_all_directives() {
        let d = parse(
            "-- bfm-tags: env=prod, tier=core\n--BFM-Schema: core\n-- bfm-depends-on: a, b\n-- bfm-dependency: connection=core target=20250101000000 type=version requires-table=users\n-- bfm-requires-schema: core\n-- bfm-no-transaction\nCREATE INDEX CONCURRENTLY x ON t (a);",
        )
        .unwrap();
        assert_eq!(d.tags, Some((1, "env=prod, tier=core".into())));
        assert_eq!(d.schema.as_deref(), Some("core"));
        assert_eq!(d.depends_on, vec!["a", "b"]);
        assert_eq!(d.dependencies[0].target_type, TargetType::Version);
        assert_eq!(d.dependencies[0].requires_table.as_deref(), Some("users"));
        assert_eq!(d.requires_schemas, vec!["core"]);
        assert!(d.no_transaction);
    }

    #[test]
    fn unknown_directives_and_bad_values_are_errors() {
        assert_eq!(parse("SELECT 1;\n-- bfm-no-transactions").unwrap_err().line, 2);
        assert!(parse("-- bfm-schema:").is_err());
        assert!(parse("-- bfm-dependency: connection=core").is_err());
        // Ordinary comments are not directives.
        assert_eq!(parse("-- bfm is great\n-- bfmx: y").unwrap(), Directives::default());
    }
}

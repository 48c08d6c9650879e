//! Fuzz-style properties (proptest; cargo-fuzz needs a nightly toolchain) for everything in the
//! core that reads untrusted text: the SQL lexer and splitter of every dialect, the template
//! renderer, the `.go` metadata reader, the etcd script parser and id resolution.
//!
//! Each property runs a bounded number of cases so the suite takes seconds; set
//! `PROPTEST_CASES` (e.g. `PROPTEST_CASES=20000`) for a longer run.

use bfm_core::sql::{self, Dialect, TokenKind};
use bfm_core::template::{self, Vars};
use bfm_core::{Catalog, LoadOptions, Lookup, etcd_script, gometa};
use proptest::prelude::*;
use std::time::{Duration, Instant};

const DIALECTS: [Dialect; 4] = [Dialect::Postgres, Dialect::MySql, Dialect::Sqlite, Dialect::Greptime];

/// `cases` from a fixed seed, so that the suite is repeatable; `PROPTEST_CASES` (and
/// `PROPTEST_RNG_SEED`) ask for a longer, random exploration instead.
fn config(cases: u32) -> ProptestConfig {
    let mut c = ProptestConfig::default();
    if std::env::var_os("PROPTEST_CASES").is_none() {
        c.cases = cases;
        if std::env::var_os("PROPTEST_RNG_SEED").is_none() {
            c.rng_seed = proptest::test_runner::RngSeed::Fixed(0x6266_6d5f_7365_6564);
        }
    }
    c
}

/// Text made of the pieces that change how SQL lexes, mixed with arbitrary characters.
fn sqlish() -> impl Strategy<Value = String> {
    let piece = prop_oneof![
        3 => prop::sample::select(vec![
            "'", "\"", "`", "[", "]", "$$", "$a$", "$1", "--", "-- ", "#", "/*", "*/", "/*!", ";", "\\", "E'", "e'", "U&'", "\n", "\r\n",
            " ", "\t", "BEGIN", "ATOMIC", "END", "CASE", "CREATE", "TRIGGER", "DELIMITER $$\n", "DELIMITER ;\n", "SELECT", "5--1", "{{",
            "}}", "{{.Schema}}", "{{.Environment}}", "é", "\u{0}",
        ])
        .prop_map(str::to_string),
        1 => any::<char>().prop_map(String::from),
        1 => "[a-z0-9 ]{1,6}",
    ];
    prop::collection::vec(piece, 0..40).prop_map(|v| v.concat())
}

proptest! {
    #![proptest_config(config(400))]

    #[test]
    fn the_lexer_never_panics_and_its_tokens_cover_the_input(src in sqlish()) {
        for d in DIALECTS {
            let _ = sql::normalise(&src, d);
            let Ok(tokens) = sql::tokenize(&src, d) else { continue };
            let mut at = 0;
            for t in &tokens {
                prop_assert_eq!(t.start, at, "{:?}: gap or overlap at {} in {:?}", d, at, src);
                prop_assert!(t.end > t.start, "{:?}: empty token at {}", d, t.start);
                prop_assert!(src.is_char_boundary(t.start) && src.is_char_boundary(t.end));
                at = t.end;
            }
            prop_assert_eq!(at, src.len());
        }
    }

    #[test]
    fn split_statements_rejoined_split_the_same(src in sqlish()) {
        for d in DIALECTS {
            // A DELIMITER section's statements hold `;` of their own: re-joining them with `;`
            // is a different script (and a statement starting with the word is a command).
            if d == Dialect::MySql && src.to_ascii_uppercase().contains("DELIMITER") {
                continue;
            }
            let Ok(statements) = sql::split(&src, d) else { continue };
            let texts: Vec<String> = statements.into_iter().map(|s| s.text).collect();
            // An unterminated `BEGIN ATOMIC` / trigger body runs to the end of the script and
            // takes in a `;` put after it: a different script. Bodies have unit tests of their own.
            if matches!(d, Dialect::Postgres | Dialect::Sqlite) && src.to_ascii_uppercase().contains("BEGIN") {
                continue;
            }
            // Each statement with its terminator: bfm sends a statement's text alone, so what
            // follows it in the script must not change how it lexes.
            let joined: String = texts.iter().map(|t| format!("{t};\n")).collect();
            let again: Vec<String> = sql::split(&joined, d).map(|s| s.into_iter().map(|s| s.text).collect()).unwrap_or_default();
            prop_assert_eq!(&again, &texts, "{:?}: {:?} re-joined as {:?}", d, src, joined);
            let kinds = |s: &str| sql::tokenize(s, d).map(|t| t.into_iter().map(|t| t.kind).filter(|k| *k != TokenKind::Space).collect::<Vec<_>>());
            for t in &texts {
                prop_assert!(kinds(t).is_ok(), "{:?}: statement {:?} does not lex alone", d, t);
            }
        }
    }
}

/// Template scripts covering every lexical context of each dialect; each has at least one
/// placeholder.
fn templates(d: Dialect) -> Vec<&'static str> {
    let mut common = vec![
        "SET x = {{.Environment}}; SELECT 1;",
        "CREATE TABLE {{.Schema}}.t (a int); SELECT 2;",
        "SELECT '{{.Environment}}', 'a{{.Schema}}b'; SELECT 3;",
        "-- env {{.Environment}}\nSELECT 4;",
        "/* env {{.Environment}} */ SELECT 5;",
        "SELECT 6; -- {{.Environment}}",
    ];
    match d {
        Dialect::Postgres => common.extend([
            "SELECT E'{{.Environment}}\\n'; SELECT 7;",
            "SELECT \"{{.Schema}}\".x FROM y; SELECT 8;",
            "SELECT U&'{{.Environment}}'; SELECT U&\"{{.Schema}}\";",
            "/* outer /* nested {{.Environment}} */ */ SELECT 9;",
            "CREATE FUNCTION f() RETURNS text LANGUAGE plpgsql AS $fn$\nBEGIN\n  -- {{.Environment}}\n  RETURN '{{.Environment}}' || E'{{.Schema}}' || \"{{.Schema}}\";\nEND\n$fn$; SELECT 10;",
            "DO $$ BEGIN PERFORM {{.Environment}}; END $$; SELECT 11;",
            "SELECT $$ {{.Environment}} $$, $a$ $b$ '{{.Environment}}' $b$ $a$; SELECT 12;",
        ]),
        Dialect::MySql => common.extend([
            "SELECT \"{{.Environment}}\"; SELECT 7;",
            "SELECT * FROM `{{.Schema}}`.t; SELECT 8;",
            "# {{.Environment}}\nSELECT 9;",
            "SELECT 5--{{.Environment}}; SELECT 10;",
        ]),
        Dialect::Sqlite => common.extend([
            "SELECT * FROM \"{{.Schema}}\"; SELECT 7;",
            "SELECT * FROM [{{.Schema}}]; SELECT 8;",
            "SELECT * FROM `{{.Schema}}`; SELECT 9;",
        ]),
        Dialect::Greptime => common.extend(["SELECT * FROM `{{.Schema}}`; SELECT 7;", "SELECT * FROM \"{{.Schema}}\"; SELECT 8;"]),
    }
    common
}

/// Values that try to break out of every kind of quoting.
fn evil() -> impl Strategy<Value = String> {
    let piece = prop_oneof![
        3 => prop::sample::select(vec![
            "'", "''", "\"", "`", "]", "\\", "\\'", "$$", "$fn$", "$a$", "$b$", "$", "\n", "\r", "*/", "/*", "--", "#", ";", "{{", "}}",
            "DROP TABLE users", " ", "\u{0}", "\u{85}", "é", "E'",
        ])
        .prop_map(str::to_string),
        1 => any::<char>().prop_map(String::from),
        1 => "[a-zA-Z0-9_]{1,8}",
    ];
    prop::collection::vec(piece, 0..12).prop_map(|v| v.concat())
}

fn vars(value: &str) -> Vars<'_> {
    Vars { schema: value, connection: value, backend: value, version: value, environment: value }
}

fn tokens_of(src: &str, d: Dialect) -> Vec<(TokenKind, String)> {
    sql::tokenize(src, d).unwrap().into_iter().map(|t| (t.kind, src[t.start..t.end].to_string())).collect()
}

proptest! {
    #![proptest_config(config(300))]

    /// Rendering either fails or yields the statements and tokens the harmless value gives,
    /// the value only inside the literal, identifier, comment or body it was placed in.
    #[test]
    fn a_template_value_never_changes_the_script_structure(value in evil()) {
        for d in DIALECTS {
            for src in templates(d) {
                let harmless = template::render_sql(src, d, &vars("prod")).unwrap();
                let Ok(rendered) = template::render_sql(src, d, &vars(&value)) else { continue };
                let split = |s: &str| sql::split(s, d).map(|v| v.len());
                prop_assert_eq!(split(&rendered).ok(), split(&harmless).ok(), "{:?} {:?} with {:?}: {}", d, src, value, rendered);
                let (a, b) = (tokens_of(&harmless, d), tokens_of(&rendered, d));
                prop_assert_eq!(a.len(), b.len(), "{:?} {:?} with {:?}: {}", d, src, value, rendered);
                for ((ka, ta), (kb, tb)) in a.iter().zip(b.iter()) {
                    prop_assert_eq!(ka, kb, "{:?} {:?} with {:?}: {}", d, src, value, rendered);
                    if ta != tb {
                        prop_assert!(
                            matches!(ka, TokenKind::Literal | TokenKind::QuotedIdent | TokenKind::Comment | TokenKind::DollarQuoted),
                            "{:?} {:?} with {:?}: the value reached a {:?} token: {}", d, src, value, ka, rendered
                        );
                    }
                }
            }
        }
    }

    /// Values without control characters or closing sequences always render: the renderer
    /// does not get its safety by refusing everything.
    #[test]
    fn ordinary_values_render_everywhere(value in "[a-zA-Z0-9_ .'\"`;#-]{0,16}") {
        for d in DIALECTS {
            for src in templates(d) {
                let r = template::render_sql(src, d, &vars(&value));
                prop_assert!(r.is_ok(), "{:?} {:?} with {:?}: {:?}", d, src, value, r);
            }
        }
    }

    #[test]
    fn the_go_metadata_reader_never_panics(src in prop_oneof![
        any::<String>(),
        prop::collection::vec(prop::sample::select(vec![
            "m := &migrations.MigrationScript{", "}", "Schema: ", "Tags: []string{", "\"", "`", "\\", "core", ",", "\n", "//", "/*", "*/",
            "Dependencies: []migrations.Dependency{", "{Connection: \"a\", Target: \"b\"}", "Table: ", "é",
        ]).prop_map(str::to_string), 0..30).prop_map(|v| v.concat()),
    ]) {
        let _ = gometa::parse(&src);
    }

    #[test]
    fn the_etcd_script_parser_never_panics(src in any::<String>()) {
        let _ = etcd_script::parse(&src);
    }

    #[test]
    fn etcd_script_errors_name_the_operation(good in 0usize..6, bad in prop::sample::select(vec![
        r#"{"operation": "merge", "key": "x"}"#,
        r#"{"key": "../x", "value": "1"}"#,
        r#"{"key": "/abs", "value": "1"}"#,
        r#"{"key": "a", "value": 3}"#,
        r#"{"key": "a", "value": "1", "ttl": 5}"#,
        r#"{"operation": "delete"}"#,
        r#""text""#,
    ])) {
        let ops: Vec<String> = (0..good).map(|i| format!(r#"{{"key": "k{i}", "value": "v"}}"#)).chain([bad.to_string()]).collect();
        let e = etcd_script::parse(&format!("[{}]", ops.join(","))).unwrap_err();
        prop_assert_eq!(e.index, Some(good), "{}", e);
        prop_assert!(e.to_string().starts_with(&format!("operation [{good}]")), "{}", e);
    }
}

/// One small catalogue for every case (the directory lives as long as the process).
fn catalog() -> &'static Catalog {
    static CATALOG: std::sync::OnceLock<(tempfile::TempDir, Catalog)> = std::sync::OnceLock::new();
    &CATALOG.get_or_init(load_catalog).1
}

fn load_catalog() -> (tempfile::TempDir, Catalog) {
    let d = tempfile::tempdir().unwrap();
    for (rel, text) in [
        ("postgresql/core/20250101000000_boot.up.sql", "-- bfm-schema: core\nSELECT 1;"),
        ("postgresql/org/20250102000000_tenant_init.up.sql", "SELECT 1;"),
        ("postgresql/other/20250102000000_tenant_init_b.up.sql", "SELECT 1;"),
        ("mysql/org/20250103000000_a_b.up.sql", "SELECT 1;"),
    ] {
        let p = d.path().join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
    }
    let (cat, diags) = bfm_core::catalog::load(&LoadOptions { sfm_root: Some(d.path().to_path_buf()), ..Default::default() });
    assert!(diags.iter().all(|d| d.severity == bfm_core::Severity::Warning), "{diags:?}");
    (d, cat)
}

proptest! {
    #![proptest_config(config(500))]

    #[test]
    fn id_resolution_never_panics(id in prop_oneof![
        any::<String>(),
        prop::collection::vec(prop::sample::select(vec![
            "_", "20250101000000", "20250102000000", "boot", "tenant", "init", "b", "postgresql", "mysql", "core", "org", "rollback", "0",
            "é", " ",
        ]).prop_map(str::to_string), 0..12).prop_map(|v| v.concat()),
    ]) {
        let cat = catalog();
        if let Lookup::Found { migration, .. } = cat.lookup(&id) {
            prop_assert!(cat.get(&migration.id).is_some());
        }
    }
}

/// A megabyte id resolves or fails fast, whatever its shape: no work per suffix that grows with
/// the input. (The bound is generous for a debug build on a busy machine; it takes microseconds.)
#[test]
fn a_megabyte_id_resolves_or_fails_in_linear_time() {
    let cat = catalog();
    const MB: usize = 1 << 20;
    let fill = |unit: &str| unit.repeat(MB / unit.len());
    let shapes = [
        fill("_"),
        fill("1_"),
        fill("a_"),
        fill("20250102000000_"),
        fill("20250102000000_tenant_init_"),
        format!("{}20250102000000_tenant_init_postgresql_org", fill("t_")),
        format!("{}_org_20250102000000_tenant_init", fill("x")),
        fill("0"),
        fill("é"),
    ];
    for id in &shapes {
        let clock = Instant::now();
        let found = cat.lookup(id);
        let took = clock.elapsed();
        assert!(took < Duration::from_millis(500), "{} bytes of {:?}…: {took:?}", id.len(), &id[..20.min(id.len())]);
        if id.ends_with("tenant_init_postgresql_org") {
            assert!(matches!(found, Lookup::Found { .. }), "{found:?}");
        }
    }
}

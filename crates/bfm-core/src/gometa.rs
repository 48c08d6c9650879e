//! Reads the metadata of BfM's `.go` registration files without executing them.
//!
//! A small Go tokenizer finds the `MigrationScript{ … }` composite literal and reads its
//! top-level fields: `Schema`, `Table`, `Dependencies`, `StructuredDependencies` and `Tags`.
//! Other fields (`Version`, `Name`, `Connection`, `Backend`, `UpSQL`, …) come from the file's
//! path, as in BfM. Unlike BfM, a `Schema:` inside a dependency never becomes the migration's
//! schema.

use crate::deps::{Dependency, TargetType};
use std::fmt;

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GoMetadata {
    pub schema: Option<String>,
    pub table: Option<String>,
    pub dependencies: Vec<String>,
    pub structured_dependencies: Vec<Dependency>,
    pub tags: Vec<String>,
    /// 1-based line of the `Tags` field, for error messages.
    pub tags_line: usize,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GoError {
    pub line: usize,
    pub message: String,
}

impl fmt::Display for GoError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "line {}: {}", self.line, self.message)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Tok {
    Ident(String),
    Str(String),
    Punct(char),
    Other,
}

#[derive(Debug, Clone)]
struct Token {
    tok: Tok,
    line: usize,
}

fn err<T>(line: usize, message: impl Into<String>) -> Result<T, GoError> {
    Err(GoError { line, message: message.into() })
}

fn tokenize(src: &str) -> Result<Vec<Token>, GoError> {
    let chars: Vec<char> = src.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    let mut line = 1;
    while i < chars.len() {
        let c = chars[i];
        let start_line = line;
        match c {
            '\n' => {
                line += 1;
                i += 1;
            }
            c if c.is_whitespace() => i += 1,
            '/' if chars.get(i + 1) == Some(&'/') => {
                while i < chars.len() && chars[i] != '\n' {
                    i += 1;
                }
            }
            '/' if chars.get(i + 1) == Some(&'*') => {
                i += 2;
                loop {
                    if i + 1 >= chars.len() {
                        return err(start_line, "unterminated comment");
                    }
                    if chars[i] == '*' && chars[i + 1] == '/' {
                        i += 2;
                        break;
                    }
                    if chars[i] == '\n' {
                        line += 1;
                    }
                    i += 1;
                }
            }
            '`' => {
                let mut s = String::new();
                i += 1;
                loop {
                    match chars.get(i) {
                        None => return err(start_line, "unterminated raw string"),
                        Some('`') => break,
                        Some(ch) => {
                            if *ch == '\n' {
                                line += 1;
                            }
                            if *ch != '\r' {
                                s.push(*ch);
                            }
                        }
                    }
                    i += 1;
                }
                i += 1;
                out.push(Token { tok: Tok::Str(s), line: start_line });
            }
            '"' | '\'' => {
                let quote = c;
                let mut s = String::new();
                i += 1;
                loop {
                    match chars.get(i) {
                        None | Some('\n') => return err(start_line, "unterminated string"),
                        Some(ch) if *ch == quote => break,
                        Some('\\') => {
                            let (decoded, used) =
                                unescape(&chars[i + 1..]).ok_or(GoError { line, message: "invalid escape in string".into() })?;
                            s.push_str(&decoded);
                            i += 1 + used;
                            continue;
                        }
                        Some(ch) => s.push(*ch),
                    }
                    i += 1;
                }
                i += 1;
                out.push(Token { tok: if quote == '"' { Tok::Str(s) } else { Tok::Other }, line: start_line });
            }
            c if c.is_alphabetic() || c == '_' => {
                let mut s = String::new();
                while i < chars.len() && (chars[i].is_alphanumeric() || chars[i] == '_') {
                    s.push(chars[i]);
                    i += 1;
                }
                out.push(Token { tok: Tok::Ident(s), line: start_line });
            }
            c if c.is_ascii_digit() => {
                while i < chars.len() && (chars[i].is_alphanumeric() || chars[i] == '.' || chars[i] == '_') {
                    i += 1;
                }
                out.push(Token { tok: Tok::Other, line: start_line });
            }
            '{' | '}' | '[' | ']' | '(' | ')' | ',' | ':' | '.' | '&' | '+' => {
                out.push(Token { tok: Tok::Punct(c), line: start_line });
                i += 1;
            }
            _ => {
                out.push(Token { tok: Tok::Other, line: start_line });
                i += 1;
            }
        }
    }
    Ok(out)
}

/// Decode one Go escape sequence (after the backslash); returns the text and chars consumed.
fn unescape(rest: &[char]) -> Option<(String, usize)> {
    let c = *rest.first()?;
    let simple = match c {
        'n' => Some('\n'),
        't' => Some('\t'),
        'r' => Some('\r'),
        'a' => Some('\x07'),
        'b' => Some('\x08'),
        'f' => Some('\x0c'),
        'v' => Some('\x0b'),
        '\\' => Some('\\'),
        '"' => Some('"'),
        '\'' => Some('\''),
        _ => None,
    };
    if let Some(s) = simple {
        return Some((s.to_string(), 1));
    }
    let hex = |n: usize| -> Option<(String, usize)> {
        let digits: String = rest.get(1..=n)?.iter().collect();
        let v = u32::from_str_radix(&digits, 16).ok()?;
        Some((char::from_u32(v)?.to_string(), n + 1))
    };
    match c {
        'x' => hex(2),
        'u' => hex(4),
        'U' => hex(8),
        '0'..='7' => {
            let digits: String = rest.get(0..3)?.iter().collect();
            let v = u32::from_str_radix(&digits, 8).ok()?;
            Some((char::from_u32(v)?.to_string(), 3))
        }
        _ => None,
    }
}

struct Parser {
    toks: Vec<Token>,
    pos: usize,
}

impl Parser {
    fn peek(&self) -> Option<&Tok> {
        self.toks.get(self.pos).map(|t| &t.tok)
    }
    fn line(&self) -> usize {
        self.toks.get(self.pos).or(self.toks.last()).map_or(1, |t| t.line)
    }
    fn next(&mut self) -> Option<Tok> {
        let t = self.toks.get(self.pos).map(|t| t.tok.clone());
        self.pos += 1;
        t
    }
    fn expect(&mut self, c: char) -> Result<(), GoError> {
        let line = self.line();
        match self.next() {
            Some(Tok::Punct(p)) if p == c => Ok(()),
            _ => err(line, format!("expected `{c}`")),
        }
    }
    fn eat(&mut self, c: char) -> bool {
        if self.peek() == Some(&Tok::Punct(c)) {
            self.pos += 1;
            true
        } else {
            false
        }
    }

    /// Skip one value (anything up to the next `,` or `}` at this nesting level).
    fn skip_value(&mut self) -> Result<(), GoError> {
        let mut depth = 0usize;
        let line = self.line();
        loop {
            match self.peek() {
                None => return err(line, "unexpected end of file"),
                Some(Tok::Punct('{' | '(' | '[')) => depth += 1,
                Some(Tok::Punct('}' | ')' | ']')) => {
                    if depth == 0 {
                        return Ok(());
                    }
                    depth -= 1;
                }
                Some(Tok::Punct(',')) if depth == 0 => return Ok(()),
                _ => {}
            }
            self.pos += 1;
        }
    }

    /// A string value, possibly `"a" + "b"`.
    fn string(&mut self, field: &str) -> Result<String, GoError> {
        let line = self.line();
        let mut s = match self.next() {
            Some(Tok::Str(s)) => s,
            _ => return err(line, format!("{field} must be a string literal")),
        };
        while self.eat('+') {
            let line = self.line();
            match self.next() {
                Some(Tok::Str(more)) => s.push_str(&more),
                _ => return err(line, format!("{field} must be a string literal")),
            }
        }
        Ok(s)
    }

    /// Skip a type such as `[]string`, `[]migrations.Dependency`, `&migrations.Dependency`.
    fn skip_type(&mut self) {
        loop {
            match self.peek() {
                Some(Tok::Punct('[' | ']' | '.' | '&')) | Some(Tok::Ident(_)) => self.pos += 1,
                _ => return,
            }
        }
    }

    /// `[]string{"a", "b"}` (or `nil`).
    fn string_list(&mut self, field: &str) -> Result<Vec<String>, GoError> {
        if matches!(self.peek(), Some(Tok::Ident(i)) if i == "nil") {
            self.pos += 1;
            return Ok(Vec::new());
        }
        self.skip_type();
        self.expect('{')?;
        let mut out = Vec::new();
        loop {
            if self.eat('}') {
                return Ok(out);
            }
            out.push(self.string(field)?);
            if !self.eat(',') {
                self.expect('}')?;
                return Ok(out);
            }
        }
    }

    /// `[]migrations.Dependency{ {Connection: "x", …}, … }`.
    fn dependency_list(&mut self) -> Result<Vec<Dependency>, GoError> {
        if matches!(self.peek(), Some(Tok::Ident(i)) if i == "nil") {
            self.pos += 1;
            return Ok(Vec::new());
        }
        self.skip_type();
        self.expect('{')?;
        let mut out = Vec::new();
        loop {
            if self.eat('}') {
                return Ok(out);
            }
            self.skip_type();
            let line = self.line();
            self.expect('{')?;
            let mut dep = Dependency::default();
            let mut target_type = None;
            loop {
                if self.eat('}') {
                    break;
                }
                let key_line = self.line();
                let key = match self.next() {
                    Some(Tok::Ident(k)) => k,
                    _ => return err(key_line, "expected a field name in a dependency"),
                };
                self.expect(':')?;
                match key.as_str() {
                    "Connection" => dep.connection = non_empty(self.string("Connection")?),
                    "Schema" => dep.schema = non_empty(self.string("Schema")?),
                    "Target" => dep.target = self.string("Target")?,
                    "TargetType" => target_type = Some(self.string("TargetType")?),
                    "RequiresTable" => dep.requires_table = non_empty(self.string("RequiresTable")?),
                    "RequiresSchema" => dep.requires_schema = non_empty(self.string("RequiresSchema")?),
                    _ => self.skip_value()?,
                }
                if !self.eat(',') {
                    self.expect('}')?;
                    break;
                }
            }
            dep.target_type = match target_type.as_deref().map(str::trim) {
                None | Some("") => TargetType::Name,
                Some(t) => TargetType::parse(t)
                    .ok_or(GoError { line, message: format!("TargetType must be \"name\" or \"version\", not {t:?}") })?,
            };
            if dep.target.trim().is_empty() {
                return err(line, "a structured dependency needs a Target");
            }
            out.push(dep);
            if !self.eat(',') {
                self.expect('}')?;
                return Ok(out);
            }
        }
    }
}

fn non_empty(s: String) -> Option<String> {
    let t = s.trim();
    (!t.is_empty()).then(|| t.to_string())
}

/// Parse a BfM registration file.
pub fn parse(src: &str) -> Result<GoMetadata, GoError> {
    let toks = tokenize(src)?;
    let start = toks
        .windows(2)
        .position(|w| matches!(&w[0].tok, Tok::Ident(i) if i == "MigrationScript") && w[1].tok == Tok::Punct('{'))
        .ok_or(GoError { line: 1, message: "no `MigrationScript{…}` literal found".into() })?;
    let mut p = Parser { toks, pos: start + 2 };
    let mut meta = GoMetadata::default();
    loop {
        if p.eat('}') {
            return Ok(meta);
        }
        let line = p.line();
        let key = match p.next() {
            Some(Tok::Ident(k)) => k,
            None => return err(line, "unterminated MigrationScript literal"),
            _ => return err(line, "expected a field name in MigrationScript"),
        };
        p.expect(':')?;
        match key.as_str() {
            "Schema" => meta.schema = non_empty(p.string("Schema")?),
            "Table" => meta.table = non_empty(p.string("Table")?),
            "Dependencies" => meta.dependencies = p.string_list("Dependencies")?.into_iter().filter_map(non_empty).collect(),
            "StructuredDependencies" => meta.structured_dependencies = p.dependency_list()?,
            "Tags" => {
                meta.tags_line = line;
                meta.tags = p.string_list("Tags")?;
            }
            _ => p.skip_value()?,
        }
        if !p.eat(',') {
            p.expect('}')?;
            return Ok(meta);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BFM_EXAMPLE: &str = r#"//go:build ignore
package metadata

import (
	"bfm/api/migrations"
	_ "embed"
)

//go:embed 20250115000000_seed_feature_flags.up.json
var upSQL string

func init() {
	migration := &migrations.MigrationScript{
		Schema:       "", // Dynamic - provided in request
		Version:      "20250115000000",
		Name:         "seed_feature_flags",
		Connection:   "metadata",
		Backend:      "etcd",
		UpSQL:        upSQL,
		DownSQL:      downSQL,
		Dependencies: []string{"bootstrap_solution"}, // simple
		StructuredDependencies: []migrations.Dependency{
			{
				Connection: "core",
				Schema:     "core",
				Target:     "bootstrap_solution",
				TargetType: "name",
			},
			{Target: `20250101000000`, TargetType: "version", RequiresTable: "users"},
		},
		Tags: []string{"env=prod", "team=" + "core"},
	}
	migrations.GlobalRegistry.Register(migration)
}
"#;

    #[test]
    fn reads_bfm_registration_files() {
        let m = parse(BFM_EXAMPLE).unwrap();
        // The dependency's `Schema: "core"` must not leak into the migration (BfM bug B18).
        assert_eq!(m.schema, None);
        assert_eq!(m.dependencies, vec!["bootstrap_solution"]);
        assert_eq!(m.structured_dependencies.len(), 2);
        assert_eq!(m.structured_dependencies[0].connection.as_deref(), Some("core"));
        assert_eq!(m.structured_dependencies[0].schema.as_deref(), Some("core"));
        assert_eq!(m.structured_dependencies[1].target_type, TargetType::Version);
        assert_eq!(m.structured_dependencies[1].requires_table.as_deref(), Some("users"));
        assert_eq!(m.tags, vec!["env=prod", "team=core"]);
    }

    #[test]
    fn fixed_schema_and_escapes() {
        let m = parse("x := MigrationScript{Schema: \"co\\x72e\", Tags: nil, Dependencies: []string{}}").unwrap();
        assert_eq!(m.schema.as_deref(), Some("core"));
        assert!(m.tags.is_empty());
    }

    #[test]
    fn errors_name_the_line() {
        let e = parse("package x\n\nvar m = &migrations.MigrationScript{\n  Schema: someVar,\n}").unwrap_err();
        assert_eq!(e.line, 4);
        assert!(parse("package x").is_err());
        let e = parse("m := MigrationScript{\n StructuredDependencies: []Dependency{{Connection: \"a\"}},\n}").unwrap_err();
        assert!(e.message.contains("Target"), "{e}");
    }
}

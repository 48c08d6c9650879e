//! A small SQL lexer: enough to split scripts into statements, strip comments for checksums and
//! find template variables with their quoting context — for PostgreSQL, MySQL/MariaDB, SQLite
//! and GreptimeDB.
//!
//! It is not a parser. It knows what changes the meaning of a `;`: string literals (with each
//! dialect's escapes), quoted identifiers, PostgreSQL dollar quotes and nested block comments,
//! SQL-standard function bodies (`BEGIN ATOMIC … END`), SQLite trigger bodies and the MySQL
//! client's `DELIMITER` command.

use std::fmt;

/// The SQL dialect of a script, derived from the backend it runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Dialect {
    Postgres,
    MySql,
    Sqlite,
    Greptime,
}

impl Dialect {
    /// Quote an identifier for this dialect.
    pub fn quote_ident(self, ident: &str) -> String {
        match self {
            Dialect::Postgres | Dialect::Sqlite => format!("\"{}\"", ident.replace('"', "\"\"")),
            Dialect::MySql | Dialect::Greptime => format!("`{}`", ident.replace('`', "``")),
        }
    }

    /// Quote a string literal for this dialect (the content is never interpreted).
    pub fn quote_literal(self, value: &str) -> String {
        match self {
            // standard_conforming_strings is on by default since PostgreSQL 9.1; an E'' literal
            // makes the escaping independent of that setting.
            Dialect::Postgres if value.contains('\\') => {
                format!("E'{}'", value.replace('\\', "\\\\").replace('\'', "''"))
            }
            Dialect::Postgres | Dialect::Sqlite => format!("'{}'", value.replace('\'', "''")),
            Dialect::MySql | Dialect::Greptime => {
                format!("'{}'", value.replace('\\', "\\\\").replace('\'', "''"))
            }
        }
    }

    fn backslash_in_single_quotes(self) -> bool {
        matches!(self, Dialect::MySql | Dialect::Greptime)
    }
}

/// What kind of text a token holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenKind {
    /// Spaces, tabs and newlines.
    Space,
    /// `-- …`, `# …` (MySQL) or `/* … */`.
    Comment,
    /// A string literal: `'…'`, `E'…'`, MySQL `"…"`.
    Literal,
    /// A dollar-quoted PostgreSQL string (usually a function body).
    DollarQuoted,
    /// A quoted identifier: `"…"`, `` `…` ``, `[…]`.
    QuotedIdent,
    /// A word: keyword or bare identifier (letters, digits, `_`, `$`).
    Word,
    /// The statement terminator (`;` or the current MySQL `DELIMITER`).
    Terminator,
    /// A MySQL client `DELIMITER x` line; it is not sent to the server.
    DelimiterCommand,
    /// Any other character (operators, punctuation, numbers' dots, template braces…).
    Other,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Token {
    pub kind: TokenKind,
    pub start: usize,
    pub end: usize,
}

/// A lexing problem, with the 1-based line where the offending construct starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LexError {
    pub line: usize,
    pub message: String,
}

impl fmt::Display for LexError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "line {}: {}", self.line, self.message)
    }
}

impl std::error::Error for LexError {}

/// One statement of a script.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Statement {
    /// The statement as written, without its terminator, trimmed of surrounding blanks and of
    /// leading comments.
    pub text: String,
    /// 1-based line on which the statement starts.
    pub line: usize,
}

fn line_of(src: &str, offset: usize) -> usize {
    src.as_bytes()[..offset.min(src.len())].iter().filter(|b| **b == b'\n').count() + 1
}

fn is_word_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_' || b == b'$' || b >= 0x80
}

/// Tokenise `src`. Every byte of `src` belongs to exactly one token, in order.
pub fn tokenize(src: &str, dialect: Dialect) -> Result<Vec<Token>, LexError> {
    let bytes = src.as_bytes();
    let mut tokens = Vec::new();
    let mut i = 0;
    let mut delimiter: Vec<u8> = b";".to_vec();
    let at_line_start = |i: usize| i == 0 || bytes[..i].iter().rev().take_while(|b| **b != b'\n').all(|b| *b == b' ' || *b == b'\t');
    let err = |at: usize, message: &str| LexError { line: line_of(src, at), message: message.to_string() };
    while i < bytes.len() {
        let b = bytes[i];
        let start = i;
        // MySQL client DELIMITER command, only at the start of a line.
        if dialect == Dialect::MySql
            && (b == b'D' || b == b'd')
            && at_line_start(i)
            && bytes.len() >= i + 10
            && bytes[i..i + 9].eq_ignore_ascii_case(b"DELIMITER")
            && (bytes[i + 9] == b' ' || bytes[i + 9] == b'\t')
        {
            let line_end = bytes[i..].iter().position(|b| *b == b'\n').map_or(bytes.len(), |p| i + p);
            let new = src[i + 9..line_end].trim();
            if new.is_empty() {
                return Err(err(i, "DELIMITER needs a delimiter"));
            }
            delimiter = new.as_bytes().to_vec();
            tokens.push(Token { kind: TokenKind::DelimiterCommand, start, end: line_end });
            i = line_end;
            continue;
        }
        if bytes[i..].starts_with(&delimiter) {
            i += delimiter.len();
            tokens.push(Token { kind: TokenKind::Terminator, start, end: i });
            continue;
        }
        let kind = match b {
            b' ' | b'\t' | b'\r' | b'\n' | b'\x0c' => {
                while i < bytes.len() && matches!(bytes[i], b' ' | b'\t' | b'\r' | b'\n' | b'\x0c') {
                    i += 1;
                }
                TokenKind::Space
            }
            // On MySQL/MariaDB `--` starts a comment only before a blank or a control character
            // (or at the end): `SELECT 5--1` is `5 - (-1)`.
            b'-' if bytes.get(i + 1) == Some(&b'-')
                && (dialect != Dialect::MySql || bytes.get(i + 2).is_none_or(|c| *c <= b' ' || *c == 0x7f)) =>
            {
                while i < bytes.len() && bytes[i] != b'\n' {
                    i += 1;
                }
                TokenKind::Comment
            }
            b'#' if matches!(dialect, Dialect::MySql) => {
                while i < bytes.len() && bytes[i] != b'\n' {
                    i += 1;
                }
                TokenKind::Comment
            }
            b'/' if bytes.get(i + 1) == Some(&b'*') => {
                // MySQL executable comments and optimizer hints are code, not comments.
                let executable =
                    matches!(dialect, Dialect::MySql | Dialect::Greptime) && matches!(bytes.get(i + 2), Some(b'!') | Some(b'+'));
                let nests = dialect == Dialect::Postgres;
                let mut depth = 0usize;
                loop {
                    if i + 1 >= bytes.len() {
                        return Err(err(start, "unterminated block comment"));
                    }
                    if bytes[i] == b'/' && bytes[i + 1] == b'*' {
                        depth = if nests || depth == 0 { depth + 1 } else { depth };
                        i += 2;
                    } else if bytes[i] == b'*' && bytes[i + 1] == b'/' {
                        depth -= 1;
                        i += 2;
                        if depth == 0 {
                            break;
                        }
                    } else {
                        i += 1;
                    }
                }
                if executable { TokenKind::Other } else { TokenKind::Comment }
            }
            b'\'' => {
                i = scan_quoted(bytes, i, b'\'', dialect.backslash_in_single_quotes())
                    .ok_or_else(|| err(start, "unterminated string literal"))?;
                TokenKind::Literal
            }
            // A PostgreSQL escape string `E'…'` is one literal token, prefix included: its
            // backslashes escape, and a value quoted as `E'…'` stays a single token.
            b'E' | b'e' if dialect == Dialect::Postgres && bytes.get(i + 1) == Some(&b'\'') => {
                i = scan_quoted(bytes, i + 1, b'\'', true).ok_or_else(|| err(start, "unterminated string literal"))?;
                TokenKind::Literal
            }
            b'"' => {
                let mysql = matches!(dialect, Dialect::MySql);
                i = scan_quoted(bytes, i, b'"', mysql).ok_or_else(|| err(start, "unterminated quoted identifier"))?;
                if mysql { TokenKind::Literal } else { TokenKind::QuotedIdent }
            }
            b'`' if dialect != Dialect::Postgres => {
                i = scan_quoted(bytes, i, b'`', false).ok_or_else(|| err(start, "unterminated quoted identifier"))?;
                TokenKind::QuotedIdent
            }
            b'[' if dialect == Dialect::Sqlite => {
                let close = bytes[i..].iter().position(|b| *b == b']').ok_or_else(|| err(start, "unterminated [identifier]"))?;
                i += close + 1;
                TokenKind::QuotedIdent
            }
            b'$' if dialect == Dialect::Postgres && (start == 0 || !is_word_byte(bytes[start - 1])) => {
                match dollar_tag(bytes, i) {
                    Some(tag_end) => {
                        let tag = &bytes[i..tag_end];
                        let body_start = tag_end;
                        let close = find(&bytes[body_start..], tag).ok_or_else(|| err(start, "unterminated dollar-quoted string"))?;
                        i = body_start + close + tag.len();
                        TokenKind::DollarQuoted
                    }
                    None => {
                        // `$1` parameters and lone dollars.
                        i += 1;
                        while i < bytes.len() && bytes[i].is_ascii_digit() {
                            i += 1;
                        }
                        TokenKind::Other
                    }
                }
            }
            b if is_word_byte(b) => {
                while i < bytes.len() && is_word_byte(bytes[i]) && (delimiter == b";" || !bytes[i..].starts_with(&delimiter)) {
                    i += 1;
                }
                TokenKind::Word
            }
            _ => {
                // Advance one UTF-8 character (non-ASCII bytes are word bytes, so this is ASCII).
                i += 1;
                TokenKind::Other
            }
        };
        tokens.push(Token { kind, start, end: i });
    }
    Ok(tokens)
}

/// Scan a quoted token starting at `i` (the opening quote). Doubled quotes escape themselves;
/// with `backslash`, a backslash escapes the next byte. Returns the offset after the closing quote.
fn scan_quoted(bytes: &[u8], mut i: usize, quote: u8, backslash: bool) -> Option<usize> {
    i += 1;
    while i < bytes.len() {
        let b = bytes[i];
        if backslash && b == b'\\' {
            i += 2;
            continue;
        }
        if b == quote {
            if bytes.get(i + 1) == Some(&quote) {
                i += 2;
                continue;
            }
            return Some(i + 1);
        }
        i += 1;
    }
    None
}

/// If a dollar-quote tag (`$$` or `$tag$`) starts at `i`, return the offset after it.
fn dollar_tag(bytes: &[u8], i: usize) -> Option<usize> {
    let mut j = i + 1;
    if j < bytes.len() && bytes[j].is_ascii_digit() {
        return None;
    }
    while j < bytes.len() && (bytes[j].is_ascii_alphanumeric() || bytes[j] == b'_' || bytes[j] >= 0x80) {
        j += 1;
    }
    (j < bytes.len() && bytes[j] == b'$').then_some(j + 1)
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// Tracks `BEGIN … END` blocks in which `;` does not end the statement: PostgreSQL SQL-standard
/// bodies (`BEGIN ATOMIC`) and SQLite/MySQL trigger bodies (`CREATE TRIGGER … BEGIN`).
#[derive(Default)]
struct BlockDepth {
    depth: usize,
    words: Vec<String>,
    prev: Option<String>,
}

impl BlockDepth {
    fn word(&mut self, word: &str, dialect: Dialect) {
        let upper = word.to_ascii_uppercase();
        if self.words.len() < 4 {
            self.words.push(upper.clone());
        }
        let is_trigger = self.words.first().is_some_and(|w| w == "CREATE") && self.words.iter().any(|w| w == "TRIGGER");
        match upper.as_str() {
            "ATOMIC" if dialect == Dialect::Postgres && self.prev.as_deref() == Some("BEGIN") => self.depth += 1,
            "BEGIN" if dialect == Dialect::Sqlite && is_trigger && self.depth == 0 => self.depth += 1,
            "CASE" if self.depth > 0 => self.depth += 1,
            "END" if self.depth > 0 => self.depth -= 1,
            _ => {}
        }
        self.prev = Some(upper);
    }
}

/// Split a script into statements. Empty statements (and comment-only ones) are dropped.
pub fn split(src: &str, dialect: Dialect) -> Result<Vec<Statement>, LexError> {
    let tokens = tokenize(src, dialect)?;
    let mut out = Vec::new();
    let mut first: Option<usize> = None; // first meaningful token of the current statement
    let mut last: usize = 0; // end of the last meaningful token
    let mut block = BlockDepth::default();
    for t in &tokens {
        match t.kind {
            TokenKind::Space | TokenKind::Comment | TokenKind::DelimiterCommand => {}
            TokenKind::Terminator if block.depth == 0 => {
                if let Some(s) = first.take() {
                    out.push(Statement { text: src[s..last].to_string(), line: line_of(src, s) });
                }
                block = BlockDepth::default();
            }
            _ => {
                if t.kind == TokenKind::Word {
                    block.word(&src[t.start..t.end], dialect);
                } else {
                    // `BEGIN ATOMIC` is two adjacent words; `BEGIN:ATOMIC` is not a body.
                    block.prev = None;
                }
                first.get_or_insert(t.start);
                last = t.end;
            }
        }
    }
    if let Some(s) = first {
        out.push(Statement { text: src[s..last].to_string(), line: line_of(src, s) });
    }
    Ok(out)
}

/// The statement stream in normal form: comments dropped, every run of blanks outside literals
/// turned into one space — or none next to `(`, `)`, `,`, `[`, `]`, where blanks never matter —,
/// line endings as `\n` and trailing blanks removed inside literals. Two scripts with the same
/// normal form run the same SQL.
pub fn normalise(src: &str, dialect: Dialect) -> Result<Vec<String>, LexError> {
    let cleaned: String =
        src.replace("\r\n", "\n").split('\n').map(|l| l.trim_end_matches([' ', '\t', '\r'])).collect::<Vec<_>>().join("\n");
    let tokens = tokenize(&cleaned, dialect)?;
    let mut statements = Vec::new();
    let mut current = String::new();
    let mut pending_space = false;
    let mut prev_loose = false;
    let mut block = BlockDepth::default();
    for t in &tokens {
        let text = &cleaned[t.start..t.end];
        match t.kind {
            TokenKind::Space | TokenKind::Comment => pending_space = !current.is_empty(),
            TokenKind::DelimiterCommand => {}
            TokenKind::Terminator if block.depth == 0 => {
                if !current.is_empty() {
                    statements.push(std::mem::take(&mut current));
                }
                pending_space = false;
                block = BlockDepth::default();
            }
            _ => {
                if t.kind == TokenKind::Word {
                    block.word(text, dialect);
                }
                let loose = t.kind == TokenKind::Other && matches!(text, "(" | ")" | "," | "[" | "]");
                if pending_space && !loose && !prev_loose {
                    current.push(' ');
                }
                pending_space = false;
                prev_loose = loose;
                current.push_str(text);
            }
        }
    }
    if !current.is_empty() {
        statements.push(current);
    }
    Ok(statements)
}

/// What a transaction-control statement does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TxControl {
    /// `BEGIN`, `START TRANSACTION` (also `XA START`).
    Begin,
    /// `COMMIT`, `END`.
    Commit,
    /// `ROLLBACK`, `ABORT`.
    Rollback,
    /// `PREPARE TRANSACTION`, `COMMIT PREPARED`, `ROLLBACK PREPARED`, MySQL `XA …`.
    TwoPhase,
    /// `SAVEPOINT`, `RELEASE [SAVEPOINT]`, `ROLLBACK [WORK|TRANSACTION] TO [SAVEPOINT]`.
    Savepoint,
}

impl TxControl {
    /// Whether the statement ends or replaces the surrounding transaction. Inside bfm's step
    /// transaction that would let the rest of the step, and its ledger row, run outside it.
    /// Savepoints stay inside the transaction.
    pub fn escapes_transaction(self) -> bool {
        !matches!(self, TxControl::Savepoint)
    }
}

/// The first `n` words of a statement, upper-cased, skipping blanks and comments.
fn leading_words(statement: &str, dialect: Dialect, n: usize) -> Vec<String> {
    let mut words = Vec::with_capacity(n);
    // A statement that does not lex is not transaction control as far as we can tell; the
    // script's own lexing error is reported elsewhere.
    for t in tokenize(statement, dialect).unwrap_or_default() {
        match t.kind {
            TokenKind::Space | TokenKind::Comment => {}
            TokenKind::Word if words.len() < n => words.push(statement[t.start..t.end].to_ascii_uppercase()),
            _ => break,
        }
        if words.len() == n {
            break;
        }
    }
    words
}

/// Classify one statement (as [`split`] returns it) as transaction control, if it is one. Only
/// statement boundaries count: the `BEGIN`/`END` of a `BEGIN ATOMIC` body, a `CASE … END` or an
/// `END IF` inside a function body are parts of a larger statement and never reach this.
pub fn transaction_control(statement: &str, dialect: Dialect) -> Option<TxControl> {
    let w = leading_words(statement, dialect, 4);
    let at = |i: usize| w.get(i).map(String::as_str);
    match at(0)? {
        "BEGIN" => Some(TxControl::Begin),
        "START" if at(1) == Some("TRANSACTION") => Some(TxControl::Begin),
        "COMMIT" if at(1) == Some("PREPARED") => Some(TxControl::TwoPhase),
        "COMMIT" | "END" => Some(TxControl::Commit),
        "ABORT" => Some(TxControl::Rollback),
        "ROLLBACK" => {
            let rest = if matches!(at(1), Some("WORK" | "TRANSACTION")) { at(2) } else { at(1) };
            match rest {
                Some("TO") => Some(TxControl::Savepoint),
                Some("PREPARED") => Some(TxControl::TwoPhase),
                _ => Some(TxControl::Rollback),
            }
        }
        "PREPARE" if at(1) == Some("TRANSACTION") => Some(TxControl::TwoPhase),
        "XA" if dialect == Dialect::MySql => Some(TxControl::TwoPhase),
        "SAVEPOINT" | "RELEASE" => Some(TxControl::Savepoint),
        _ => None,
    }
}

/// Whether a (PostgreSQL) statement is transaction control of any kind, savepoints included.
pub fn is_transaction_control(statement: &str) -> bool {
    transaction_control(statement, Dialect::Postgres).is_some()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn texts(src: &str, d: Dialect) -> Vec<String> {
        split(src, d).unwrap().into_iter().map(|s| s.text).collect()
    }

    #[test]
    fn splits_on_semicolons_outside_literals() {
        let src = "CREATE TABLE a (x text default 'a;b'); -- c;\nINSERT INTO \"we;ird\" VALUES ($$x;y$$);\n/* ; */ SELECT 1";
        assert_eq!(
            texts(src, Dialect::Postgres),
            vec!["CREATE TABLE a (x text default 'a;b')", "INSERT INTO \"we;ird\" VALUES ($$x;y$$)", "SELECT 1"]
        );
    }

    #[test]
    fn statement_lines_are_reported() {
        let s = split("\n\nSELECT 1;\n-- x\nSELECT\n 2;", Dialect::Postgres).unwrap();
        assert_eq!(s.iter().map(|s| s.line).collect::<Vec<_>>(), vec![3, 5]);
    }

    #[test]
    fn dollar_quotes_with_tags_and_parameters() {
        let src = "CREATE FUNCTION f() RETURNS int AS $body$ SELECT 1; $$ not end $$; $body$ LANGUAGE sql; SELECT $1;";
        assert_eq!(texts(src, Dialect::Postgres).len(), 2);
        // `a$b$` is an identifier, not a dollar quote.
        assert_eq!(texts("SELECT a$b$ FROM t; SELECT 2", Dialect::Postgres).len(), 2);
    }

    #[test]
    fn postgres_escape_strings_and_nested_comments() {
        assert_eq!(
            texts(r"SELECT E'it\'s;'; SELECT 'a\'; SELECT 2", Dialect::Postgres),
            vec![r"SELECT E'it\'s;'", r"SELECT 'a\'", "SELECT 2"]
        );
        assert_eq!(texts("/* a /* b; */ c; */ SELECT 1; SELECT 2", Dialect::Postgres), vec!["SELECT 1", "SELECT 2"]);
    }

    #[test]
    fn begin_and_atomic_apart_are_no_body() {
        assert_eq!(texts("SELECT BEGIN:ATOMIC; SELECT 2;", Dialect::Postgres), vec!["SELECT BEGIN:ATOMIC", "SELECT 2"]);
    }

    #[test]
    fn begin_atomic_bodies_keep_their_semicolons() {
        let src = "CREATE FUNCTION f() RETURNS int LANGUAGE sql BEGIN ATOMIC SELECT 1; SELECT CASE WHEN true THEN 2 END; END; SELECT 3;";
        assert_eq!(texts(src, Dialect::Postgres).len(), 2);
    }

    #[test]
    fn sqlite_trigger_bodies() {
        let src = "CREATE TRIGGER t AFTER INSERT ON a BEGIN UPDATE a SET x = 1; DELETE FROM b; END; INSERT INTO a VALUES (1);";
        assert_eq!(texts(src, Dialect::Sqlite).len(), 2);
    }

    #[test]
    fn mysql_delimiter_backslashes_hash_comments_and_backticks() {
        let src = "DELIMITER $$\nCREATE PROCEDURE p() BEGIN SELECT 1; SELECT 2; END$$\nDELIMITER ;\nINSERT INTO `a;b` VALUES ('it\\'s;'); # c;\nSELECT \"x;y\";";
        assert_eq!(
            texts(src, Dialect::MySql),
            vec!["CREATE PROCEDURE p() BEGIN SELECT 1; SELECT 2; END", "INSERT INTO `a;b` VALUES ('it\\'s;')", "SELECT \"x;y\""]
        );
    }

    #[test]
    fn unterminated_constructs_are_errors_with_lines() {
        let e = split("SELECT 1;\nSELECT 'abc", Dialect::Postgres).unwrap_err();
        assert_eq!(e.line, 2);
        assert!(split("SELECT $$abc", Dialect::Postgres).is_err());
        assert!(split("/* open", Dialect::Sqlite).is_err());
    }

    #[test]
    fn normal_form_ignores_comments_blanks_and_line_endings() {
        let a = "CREATE TABLE t (\n  id int -- key\n);\r\n\r\nINSERT INTO t VALUES (1);   \n";
        let b = "/* header */\nCREATE TABLE t (id int);\nINSERT INTO t VALUES (1)";
        assert_eq!(normalise(a, Dialect::Postgres).unwrap(), normalise(b, Dialect::Postgres).unwrap());
        let c = "CREATE TABLE t (id bigint);\nINSERT INTO t VALUES (1)";
        assert_ne!(normalise(b, Dialect::Postgres).unwrap(), normalise(c, Dialect::Postgres).unwrap());
        // Inside literals, blanks count.
        assert_ne!(normalise("SELECT 'a  b'", Dialect::Postgres).unwrap(), normalise("SELECT 'a b'", Dialect::Postgres).unwrap());
        // A comment between two words still separates them.
        assert_eq!(normalise("SELECT a/*x*/b", Dialect::Postgres).unwrap(), vec!["SELECT a b"]);
    }

    #[test]
    fn transaction_control_is_recognised() {
        assert!(is_transaction_control("COMMIT"));
        assert!(is_transaction_control("begin"));
        assert!(is_transaction_control("START TRANSACTION"));
        assert!(!is_transaction_control("CREATE TABLE begin_x (a int)"));
        let kind = |s: &str| transaction_control(s, Dialect::Postgres);
        assert_eq!(kind("ABORT"), Some(TxControl::Rollback));
        assert_eq!(kind("end transaction"), Some(TxControl::Commit));
        assert_eq!(kind("/* x */ COMMIT -- y"), Some(TxControl::Commit));
        assert_eq!(kind("PREPARE TRANSACTION 'x'"), Some(TxControl::TwoPhase));
        assert_eq!(kind("COMMIT PREPARED 'x'"), Some(TxControl::TwoPhase));
        assert_eq!(kind("ROLLBACK PREPARED 'x'"), Some(TxControl::TwoPhase));
        assert_eq!(kind("ROLLBACK TO SAVEPOINT a"), Some(TxControl::Savepoint));
        assert_eq!(kind("ROLLBACK WORK TO a"), Some(TxControl::Savepoint));
        assert_eq!(kind("RELEASE SAVEPOINT a"), Some(TxControl::Savepoint));
        assert_eq!(kind("PREPARE q AS SELECT 1"), None);
        assert_eq!(transaction_control("XA START 'x'", Dialect::MySql), Some(TxControl::TwoPhase));
        assert!(!TxControl::Savepoint.escapes_transaction() && TxControl::Commit.escapes_transaction());
        // BEGIN … END of a SQL-standard body, with a CASE … END inside, is one CREATE statement.
        let src = "CREATE FUNCTION f() RETURNS int LANGUAGE sql BEGIN ATOMIC SELECT CASE WHEN true THEN 1 END; END; SELECT 1;";
        let flagged: Vec<_> = split(src, Dialect::Postgres).unwrap().into_iter().filter_map(|s| kind(&s.text)).collect();
        assert!(flagged.is_empty(), "{flagged:?}");
    }

    #[test]
    fn mysql_double_dash_needs_a_blank_to_start_a_comment() {
        assert_eq!(texts("SELECT 5--1;", Dialect::MySql), vec!["SELECT 5--1"]);
        assert_eq!(
            texts(
                "SELECT 5 -- 1
;",
                Dialect::MySql
            ),
            vec!["SELECT 5"]
        );
        assert_eq!(texts("SELECT 5 --\tx\n;", Dialect::MySql), vec!["SELECT 5"]);
        assert_eq!(texts("SELECT 5;--", Dialect::MySql), vec!["SELECT 5"]);
        assert_eq!(normalise("SELECT 5--1", Dialect::MySql).unwrap(), vec!["SELECT 5--1"]);
        // Elsewhere `--` always starts a comment.
        assert_eq!(texts("SELECT 5--1\n;", Dialect::Postgres), vec!["SELECT 5"]);
    }

    #[test]
    fn escape_strings_are_one_token() {
        let t = tokenize("SELECT E'a\\'b' x", Dialect::Postgres).unwrap();
        assert_eq!(t[2].kind, TokenKind::Literal);
        assert_eq!((t[2].start, t[2].end), (7, 14));
        assert_eq!(normalise("SELECT e'x'", Dialect::Postgres).unwrap(), vec!["SELECT e'x'"]);
    }

    #[test]
    fn quoting() {
        assert_eq!(Dialect::Postgres.quote_ident("a\"b"), "\"a\"\"b\"");
        assert_eq!(Dialect::MySql.quote_ident("a`b"), "`a``b`");
        assert_eq!(Dialect::Postgres.quote_literal("it's"), "'it''s'");
        assert_eq!(Dialect::Postgres.quote_literal("a\\b"), "E'a\\\\b'");
        assert_eq!(Dialect::MySql.quote_literal("a\\'"), "'a\\\\'''");
    }
}

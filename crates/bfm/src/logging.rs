//! Logging: which stream, which form, and colours only on a terminal.
//!
//! A service (`bfm serve`) logs to stdout, as JSON lines unless stdout is a terminal (BfM's
//! default, for log collectors). Every other command logs human text to stderr (its stdout is
//! its output). `BFM_LOG_FORMAT` overrides the form; ANSI colours are used only for text on a
//! terminal (and never with `NO_COLOR`), so a file or a pipe gets none.

use std::io::IsTerminal;
use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::writer::BoxMakeWriter;

/// The variable that chooses the form of log lines.
pub const FORMAT_VAR: &str = "BFM_LOG_FORMAT";

/// The form of log lines.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Json,
    Text,
}

impl LogFormat {
    /// `json`, or `text` (also BfM's `plain`/`plaintext`), in any case.
    fn parse(value: &str) -> Result<LogFormat, String> {
        match value.trim().to_ascii_lowercase().as_str() {
            "json" => Ok(LogFormat::Json),
            "text" | "plain" | "plaintext" => Ok(LogFormat::Text),
            _ => Err(format!("{FORMAT_VAR}={value:?}: unknown log format (json or text)")),
        }
    }
}

/// Who logs, which decides the stream and the default form.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// A long-running service (`bfm serve`, later `bfm worker`).
    Service,
    /// A command run from a shell or a script.
    Command,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stream {
    Stdout,
    Stderr,
}

/// How logs are written, decided from the role, `BFM_LOG_FORMAT` and the terminals.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Plan {
    stream: Stream,
    format: LogFormat,
    ansi: bool,
}

/// What the environment says; the terminals are those of the stream the role logs to.
struct Facts<'a> {
    format_var: Option<&'a str>,
    stdout_terminal: bool,
    stderr_terminal: bool,
    no_color: bool,
}

fn plan(role: Role, facts: &Facts<'_>) -> Result<Plan, String> {
    let (stream, terminal) = match role {
        Role::Service => (Stream::Stdout, facts.stdout_terminal),
        Role::Command => (Stream::Stderr, facts.stderr_terminal),
    };
    let format = match facts.format_var.filter(|v| !v.trim().is_empty()) {
        Some(v) => LogFormat::parse(v)?,
        None if role == Role::Service && !terminal => LogFormat::Json,
        None => LogFormat::Text,
    };
    Ok(Plan { stream, format, ansi: format == LogFormat::Text && terminal && !facts.no_color })
}

/// Install the global subscriber. `level` (from `--log-level`) wins over `BFM_LOG_LEVEL`, which
/// wins over `default_level`. An unusable `BFM_LOG_FORMAT` is an error: the caller stops.
pub fn init(role: Role, level: Option<&str>, default_level: &str) -> Result<(), String> {
    let format_var = match std::env::var(FORMAT_VAR) {
        Ok(v) => Some(v),
        Err(std::env::VarError::NotPresent) => None,
        Err(std::env::VarError::NotUnicode(v)) => return Err(format!("{FORMAT_VAR}={v:?}: not valid UTF-8 (json or text)")),
    };
    let facts = Facts {
        format_var: format_var.as_deref(),
        stdout_terminal: std::io::stdout().is_terminal(),
        stderr_terminal: std::io::stderr().is_terminal(),
        no_color: std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty()),
    };
    let plan = plan(role, &facts)?;

    let level = level.map(str::to_string).or_else(|| std::env::var("BFM_LOG_LEVEL").ok()).unwrap_or_else(|| default_level.into());
    let level = match level.to_ascii_lowercase().as_str() {
        "warning" => "warn".to_string(),
        "fatal" => "error".to_string(),
        other => other.to_string(),
    };
    let filter = EnvFilter::try_new(format!("{level},sqlx=warn")).unwrap_or_else(|_| EnvFilter::new("warn"));
    let writer = match plan.stream {
        Stream::Stdout => BoxMakeWriter::new(std::io::stdout),
        Stream::Stderr => BoxMakeWriter::new(std::io::stderr),
    };
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(writer).with_ansi(plan.ansi);
    // A subscriber already installed (only in tests) keeps logging where it does.
    let _ = match plan.format {
        LogFormat::Json => builder.json().try_init(),
        LogFormat::Text => builder.with_target(false).try_init(),
    };
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn facts(format_var: Option<&str>, stdout_terminal: bool, stderr_terminal: bool) -> Facts<'_> {
        Facts { format_var, stdout_terminal, stderr_terminal, no_color: false }
    }

    #[test]
    fn a_service_logs_json_to_stdout_unless_on_a_terminal() {
        let p = plan(Role::Service, &facts(None, false, true)).unwrap();
        assert_eq!(p, Plan { stream: Stream::Stdout, format: LogFormat::Json, ansi: false });
        let p = plan(Role::Service, &facts(None, true, false)).unwrap();
        assert_eq!(p, Plan { stream: Stream::Stdout, format: LogFormat::Text, ansi: true });
        // Overrides, whatever the terminal.
        assert_eq!(plan(Role::Service, &facts(Some("JSON"), true, true)).unwrap().format, LogFormat::Json);
        assert!(!plan(Role::Service, &facts(Some("json"), true, true)).unwrap().ansi);
        let p = plan(Role::Service, &facts(Some("text"), false, true)).unwrap();
        assert_eq!(p, Plan { stream: Stream::Stdout, format: LogFormat::Text, ansi: false });
        assert_eq!(plan(Role::Service, &facts(Some("plaintext"), false, false)).unwrap().format, LogFormat::Text);
        assert_eq!(plan(Role::Service, &facts(Some(""), false, false)).unwrap().format, LogFormat::Json);
    }

    #[test]
    fn a_command_logs_text_to_stderr_with_colour_only_on_a_terminal() {
        let p = plan(Role::Command, &facts(None, true, false)).unwrap();
        assert_eq!(p, Plan { stream: Stream::Stderr, format: LogFormat::Text, ansi: false });
        assert!(plan(Role::Command, &facts(None, false, true)).unwrap().ansi);
        let no_color = Facts { no_color: true, ..facts(None, true, true) };
        assert!(!plan(Role::Command, &no_color).unwrap().ansi);
        assert_eq!(plan(Role::Command, &facts(Some("json"), false, false)).unwrap().format, LogFormat::Json);
    }

    #[test]
    fn an_unknown_format_names_the_variable() {
        for role in [Role::Service, Role::Command] {
            let e = plan(role, &facts(Some("bogus"), false, false)).unwrap_err();
            assert!(e.contains("BFM_LOG_FORMAT") && e.contains("bogus"), "{e}");
        }
    }
}

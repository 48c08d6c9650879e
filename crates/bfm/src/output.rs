//! Terminal output: progress while a run goes on, tables at the end.

use bfm_engine::{ProgressEvent, ProgressSink, RunReport, StepOutcomeKind};
use console::{Style, Term, style};
use indicatif::{ProgressBar, ProgressStyle};
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Progress for a run: a bar on a terminal when more than a handful of steps run, a line per
/// finished step otherwise.
pub struct Progress {
    bar: Option<ProgressBar>,
}

/// Steps above which a bar is drawn.
const BAR_THRESHOLD: usize = 5;

/// Without a terminal, runs up to this many steps get a line per step.
const PLAIN_LINES_MAX: usize = 50;

impl Progress {
    pub fn new(total: usize, quiet: bool) -> Progress {
        let tty = Term::stderr().is_term();
        let bar = (!quiet && tty && total > BAR_THRESHOLD).then(|| {
            let bar = ProgressBar::new(total as u64);
            if let Ok(s) =
                ProgressStyle::with_template("{spinner} [{elapsed_precise}] {bar:32.cyan/blue} {pos}/{len} {per_sec} eta {eta} {msg}")
            {
                bar.set_style(s.progress_chars("=> "));
            }
            bar.enable_steady_tick(Duration::from_millis(120));
            bar
        });
        Progress { bar }
    }

    pub fn sink(&self, quiet: bool) -> ProgressSink {
        let bar = self.bar.clone();
        // Per schema: (steps, finished, failed) — for "schemas done / failed / remaining".
        let schemas: Arc<Mutex<HashMap<ChainKey, ChainProgress>>> = Arc::default();
        Arc::new(move |e: &ProgressEvent| {
            let summary = schemas.lock().ok().map(|mut m| {
                let entry = m.entry((e.connection.clone(), e.schema.clone())).or_default();
                match e.status {
                    "pending" => entry.0 += 1,
                    "success" | "skipped" => entry.1 += 1,
                    "failed" => {
                        entry.1 += 1;
                        entry.2 += 1;
                    }
                    _ => {}
                }
                let done = m.values().filter(|(t, f, x)| f == t && *x == 0).count();
                let failed = m.values().filter(|(_, _, x)| *x > 0).count();
                let remaining = m.values().filter(|(t, f, x)| f < t && *x == 0).count();
                (done, failed, remaining)
            });
            // Long runs without a terminal: failures, and a line every 10 %.
            let lines = e.total <= PLAIN_LINES_MAX;
            if !matches!(e.status, "success" | "failed" | "skipped") {
                return;
            }
            match &bar {
                Some(bar) => {
                    bar.inc(1);
                    if e.status == "failed" {
                        bar.println(format!("{} {}: {}", style("failed").for_stderr().red().bold(), e.id, e.message));
                    }
                    if let Some((done, failed, remaining)) = summary {
                        bar.set_message(format!("schemas: {done} done · {failed} failed · {remaining} remaining"));
                    }
                }
                None if !quiet && !lines => {
                    let finished = e.done + e.failed + e.skipped;
                    if e.status == "failed" {
                        eprintln!("{:>7} {}: {}", style("failed").for_stderr().red().bold(), e.id, e.message);
                    }
                    let step = (e.total / 10).max(1);
                    if finished.is_multiple_of(step) || finished == e.total {
                        eprintln!(
                            "{finished}/{} steps ({}%): {} done, {} failed, {} not run",
                            e.total, e.progress, e.done, e.failed, e.skipped
                        );
                    }
                }
                None if !quiet => {
                    let (word, st) = match e.status {
                        "success" => ("ok", Style::new().green()),
                        "failed" => ("failed", Style::new().red().bold()),
                        _ => ("skipped", Style::new().yellow()),
                    };
                    let ms = e.duration_ms.map(|d| format!(" ({d} ms)")).unwrap_or_default();
                    let detail = if e.status == "success" { String::new() } else { format!(": {}", e.message) };
                    eprintln!("{:>7} {}{ms}{detail}", st.apply_to(word), e.id);
                }
                None => {}
            }
        })
    }

    pub fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}

fn pad(s: &str, w: usize) -> String {
    let n = console::measure_text_width(s);
    if n >= w { s.to_string() } else { format!("{s}{}", " ".repeat(w - n)) }
}

/// A plain text table with a header row.
pub fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for r in rows {
        for (i, c) in r.iter().enumerate() {
            if i < widths.len() {
                widths[i] = widths[i].max(console::measure_text_width(c));
            }
        }
    }
    let mut out = String::new();
    let line = |cells: Vec<String>| -> String {
        cells
            .iter()
            .enumerate()
            .map(|(i, c)| if i + 1 == cells.len() { c.clone() } else { pad(c, widths[i]) })
            .collect::<Vec<_>>()
            .join("  ")
    };
    out.push_str(&style(line(header.iter().map(|h| h.to_string()).collect())).bold().to_string());
    out.push('\n');
    for r in rows {
        out.push_str(line(r.clone()).trim_end());
        out.push('\n');
    }
    out
}

pub fn status_style(status: &str) -> String {
    match status {
        "applied" | "rolled_back" => style(status).green().to_string(),
        "failed" | "modified" | "missing" => style(status).red().bold().to_string(),
        "running" => style(status).cyan().to_string(),
        _ => style(status).yellow().to_string(),
    }
}

/// (connection, schema).
type ChainKey = (String, String);
/// Steps of a chain: (planned, finished, failed).
type ChainProgress = (usize, usize, usize);
/// Steps of a chain: (done, failed, not run, first error).
type ChainSummary = (usize, usize, usize, Option<String>);

/// Above this many steps the summary is per schema, not per step.
const STEP_TABLE_MAX: usize = 50;

/// One line per schema that did not fully succeed (all of them if there are few).
fn print_schema_table(report: &RunReport) {
    let mut per: BTreeMap<ChainKey, ChainSummary> = BTreeMap::new();
    for s in &report.steps {
        let e = per.entry((s.connection.clone(), s.schema.clone())).or_default();
        match s.outcome {
            StepOutcomeKind::Applied | StepOutcomeKind::RolledBack => e.0 += 1,
            StepOutcomeKind::Failed => {
                e.1 += 1;
                if e.3.is_none() {
                    e.3 = Some(format!("{}: {}", s.id, s.error.clone().unwrap_or_default()));
                }
            }
            StepOutcomeKind::Skipped => e.2 += 1,
        }
    }
    let few = per.len() <= STEP_TABLE_MAX;
    let rows: Vec<Vec<String>> = per
        .iter()
        .filter(|(_, (_, f, n, _))| few || *f > 0 || *n > 0)
        .take(200)
        .map(|((c, schema), (ok, f, n, err))| {
            let detail: String = err.clone().unwrap_or_default().chars().take(100).collect();
            vec![
                c.clone(),
                if schema.is_empty() { "-".into() } else { schema.clone() },
                ok.to_string(),
                f.to_string(),
                n.to_string(),
                detail,
            ]
        })
        .collect();
    if !rows.is_empty() {
        println!("{}", table(&["CONNECTION", "SCHEMA", "DONE", "FAILED", "NOT RUN", "FIRST ERROR"], &rows));
    }
    let failed = per.values().filter(|(_, f, _, _)| *f > 0).count();
    let blocked = per.values().filter(|(_, f, n, _)| *f == 0 && *n > 0).count();
    println!("{} schema(s): {} complete, {} failed, {} not complete", per.len(), per.len() - failed - blocked, failed, blocked);
}

/// The summary printed after a run.
pub fn print_report(report: &RunReport) {
    if report.steps.len() > STEP_TABLE_MAX {
        print_schema_table(report);
    } else if !report.steps.is_empty() {
        let rows: Vec<Vec<String>> = report
            .steps
            .iter()
            .map(|s| {
                let outcome = match s.outcome {
                    StepOutcomeKind::Applied => status_style("applied"),
                    StepOutcomeKind::RolledBack => status_style("rolled_back"),
                    StepOutcomeKind::Failed => status_style("failed"),
                    StepOutcomeKind::Skipped => status_style("skipped"),
                };
                let detail = match (&s.error, s.statement_index) {
                    (Some(e), Some(i)) => format!("statement {}: {e}", i + 1),
                    (Some(e), None) => e.clone(),
                    (None, _) => s.reason.clone(),
                };
                vec![
                    s.id.clone(),
                    s.connection.clone(),
                    if s.schema.is_empty() { "-".into() } else { s.schema.clone() },
                    outcome,
                    format!("{} ms", s.duration_ms),
                    detail,
                ]
            })
            .collect();
        println!("{}", table(&["MIGRATION", "CONNECTION", "SCHEMA", "RESULT", "TIME", "DETAIL"], &rows));
    }
    let applied = report.steps.iter().filter(|s| matches!(s.outcome, StepOutcomeKind::Applied | StepOutcomeKind::RolledBack)).count();
    let failed = report.steps.iter().filter(|s| s.outcome == StepOutcomeKind::Failed).count();
    let blocked = report.steps.iter().filter(|s| s.outcome == StepOutcomeKind::Skipped).count();
    println!(
        "{} done, {} failed, {} not run, {} already applied or skipped by the plan — {} ms",
        applied,
        failed,
        blocked,
        report.skipped.len().saturating_sub(blocked),
        report.duration_ms
    );
    for e in &report.errors {
        eprintln!("{} {e}", style("error:").for_stderr().red().bold());
    }
    if let Some(w) = &report.state_warning {
        eprintln!(
            "{} the state store could not be updated: {w}; the targets' ledgers are authoritative — run `bfm migrate reconcile`",
            style("warning:").for_stderr().yellow().bold()
        );
    }
}

//! Human-readable plan output.

use std::fmt::Write;

use crate::types::{ObjectKind, SchemaPlan, StepOp};

struct Palette {
    bold: &'static str,
    red: &'static str,
    yellow: &'static str,
    green: &'static str,
    cyan: &'static str,
    dim: &'static str,
    reset: &'static str,
}

const COLOR: Palette =
    Palette { bold: "\x1b[1m", red: "\x1b[31m", yellow: "\x1b[33m", green: "\x1b[32m", cyan: "\x1b[36m", dim: "\x1b[2m", reset: "\x1b[0m" };
const PLAIN: Palette = Palette { bold: "", red: "", yellow: "", green: "", cyan: "", dim: "", reset: "" };

fn short(fp: &str) -> &str {
    let end = fp.char_indices().nth(19).map(|(i, _)| i).unwrap_or(fp.len());
    &fp[..end]
}

/// Render a plan for people: a summary, then the steps grouped by object kind (each with its
/// execution number, hazards, lock and SQL). Destructive steps are marked and list the
/// approval they need.
pub fn render_plan_text(plan: &SchemaPlan, color: bool) -> String {
    let p = if color { &COLOR } else { &PLAIN };
    let mut out = String::new();
    if plan.steps.is_empty() {
        let _ = writeln!(
            out,
            "{}No changes.{} The live schema matches the desired state ({}).",
            p.green,
            p.reset,
            short(&plan.source_fingerprint)
        );
        let _ = writeln!(out, "  scope: {}", plan.scope);
        for w in &plan.warnings {
            let _ = writeln!(out, "{}warning:{} not managed: {w}", p.yellow, p.reset);
        }
        return out;
    }
    let destructive = plan.destructive_steps();
    let _ = writeln!(
        out,
        "{}Plan:{} {} step(s), {}{} destructive{}, PostgreSQL {}",
        p.bold,
        p.reset,
        plan.steps.len(),
        if destructive > 0 { p.red } else { "" },
        destructive,
        if destructive > 0 { p.reset } else { "" },
        plan.pg_major
    );
    let _ = writeln!(out, "  from {}  to {}", short(&plan.source_fingerprint), short(&plan.desired_fingerprint));
    let _ = writeln!(out, "  scope: {}", plan.scope);
    let non_tx = plan.steps.iter().filter(|s| !s.transactional).count();
    if non_tx > 0 {
        let _ = writeln!(out, "  {non_tx} step(s) run outside a transaction (CONCURRENTLY)");
    }
    if !plan.approvals_required.is_empty() {
        let _ = writeln!(out, "{}Approvals required:{}", p.red, p.reset);
        for a in &plan.approvals_required {
            let _ = writeln!(out, "  {a}");
        }
    }
    for w in &plan.warnings {
        let _ = writeln!(out, "{}warning:{} not managed: {w}", p.yellow, p.reset);
    }
    for kind in ObjectKind::ALL {
        let steps: Vec<_> = plan.steps.iter().filter(|s| s.kind == kind).collect();
        if steps.is_empty() {
            continue;
        }
        let _ = writeln!(out, "\n{}{}{}", p.bold, kind.plural(), p.reset);
        for s in steps {
            let (mark, c) = match s.op {
                StepOp::Create => ("+", p.green),
                StepOp::Drop => ("-", p.red),
                StepOp::Alter => ("~", p.yellow),
                StepOp::Replace => ("±", p.yellow),
                StepOp::Comment => ("#", p.cyan),
            };
            let op = match s.op {
                StepOp::Create => "create",
                StepOp::Drop => "drop",
                StepOp::Alter => "alter",
                StepOp::Replace => "replace",
                StepOp::Comment => "comment",
            };
            let _ = write!(out, "  {}[{:>3}]{} {c}{mark} {op} {}{}", p.dim, s.id, p.reset, s.object, p.reset);
            if s.destructive {
                let _ = write!(out, "  {}{}DESTRUCTIVE{}", p.bold, p.red, p.reset);
            }
            let mut notes = Vec::new();
            if s.lock != crate::types::LockLevel::None {
                notes.push(format!("lock {}", s.lock.as_str()));
            }
            if s.rewrites_table {
                notes.push("rewrites table".to_string());
            }
            if !s.transactional {
                notes.push("no transaction".to_string());
            }
            if !notes.is_empty() {
                let _ = write!(out, "  {}({}){}", p.dim, notes.join(", "), p.reset);
            }
            out.push('\n');
            for h in &s.hazards {
                let hc = if h.code.is_destructive() { p.red } else { p.yellow };
                let _ = writeln!(out, "        {hc}{}{}: {}", h.code, p.reset, h.message);
            }
            for a in s.approvals_needed() {
                let _ = writeln!(out, "        {}approve with {a}{}", p.red, p.reset);
            }
            for line in s.sql.lines() {
                let _ = writeln!(out, "        {}{line}{}", p.dim, p.reset);
            }
        }
    }
    out
}

//! Phases (ranks), their dump sections, ordering into ids and transaction groups, and the
//! approvals a list of steps needs.

use std::collections::HashSet;

use crate::model::*;
use crate::types::*;

pub(super) const R_DROP_POLICY: u16 = 10;
pub(super) const R_DROP_TRIGGER: u16 = 11;
pub(super) const R_DROP_FK: u16 = 12;
pub(super) const R_DROP_VIEW: u16 = 13;
pub(super) const R_DROP_CONSTRAINT: u16 = 14;
pub(super) const R_DROP_INDEX: u16 = 15;
pub(super) const R_DROP_FUNCTION_EARLY: u16 = 16;
pub(super) const R_DROP_TABLE: u16 = 17;
pub(super) const R_SCHEMA: u16 = 30;
pub(super) const R_EXTENSION: u16 = 31;
pub(super) const R_ENUM: u16 = 32;
pub(super) const R_DOMAIN: u16 = 33;
pub(super) const R_SEQUENCE: u16 = 34;
pub(super) const R_FUNCTION: u16 = 35;
pub(super) const R_CREATE_TABLE: u16 = 36;
pub(super) const R_ALTER_TABLE: u16 = 37;
pub(super) const R_SEQ_OWNED: u16 = 38;
pub(super) const R_DROP_FUNCTION: u16 = 39;
pub(super) const R_DROP_SEQUENCE: u16 = 40;
pub(super) const R_DROP_DOMAIN: u16 = 41;
pub(super) const R_DROP_ENUM: u16 = 42;
pub(super) const R_DROP_EXTENSION: u16 = 43;
pub(super) const R_DROP_SCHEMA: u16 = 44;
pub(super) const R_FUNCTION_LATE: u16 = 50;
pub(super) const R_VIEW: u16 = 51;
pub(super) const R_CONSTRAINT: u16 = 52;
pub(super) const R_INDEX: u16 = 53;
pub(super) const R_FK: u16 = 54;
pub(super) const R_TRIGGER: u16 = 55;
pub(super) const R_POLICY: u16 = 56;
pub(super) const R_RLS: u16 = 57;
pub(super) const R_COMMENT: u16 = 58;
pub(super) const R_GRANT: u16 = 59;

/// Name of the file section a phase belongs to (used by `dump`).
pub(crate) fn section_of(rank: u16) -> &'static str {
    match rank {
        R_SCHEMA => "schemas",
        R_EXTENSION => "extensions",
        R_ENUM | R_DOMAIN => "types",
        R_SEQUENCE => "sequences",
        R_FUNCTION => "functions",
        R_CREATE_TABLE | R_ALTER_TABLE => "tables",
        R_SEQ_OWNED => "sequence_ownership",
        R_FUNCTION_LATE => "functions_using_tables",
        R_VIEW => "views",
        R_CONSTRAINT => "constraints",
        R_INDEX => "indexes",
        R_FK => "foreign_keys",
        R_TRIGGER => "triggers",
        R_POLICY | R_RLS => "policies",
        R_COMMENT => "comments",
        R_GRANT => "grants",
        _ => "drops",
    }
}

/// A step before ordering.
pub(crate) struct Pending {
    pub rank: u16,
    pub seq: usize,
    pub step: Step,
    pub commit_after: bool,
}

/// Sort by phase, assign ids and transaction groups.
pub(crate) fn order(mut pending: Vec<Pending>) -> Vec<Step> {
    pending.sort_by_key(|p| (p.rank, p.seq));
    let mut steps = Vec::with_capacity(pending.len());
    let mut group = 0usize;
    let mut prev_breaks = true;
    for (i, p) in pending.into_iter().enumerate() {
        let mut step = p.step;
        if prev_breaks || !step.transactional {
            group += 1;
        }
        step.group = group;
        step.id = i + 1;
        prev_breaks = !step.transactional || p.commit_after;
        steps.push(step);
    }
    steps
}

/// Sections of a create-only plan, for `dump`.
pub(crate) fn dump_sections(live: &Model) -> Vec<(&'static str, Vec<Step>)> {
    let mut pending = super::diff_pending(&Model::empty(live.pg_major), live);
    pending.sort_by_key(|p| (p.rank, p.seq));
    let mut out: Vec<(&'static str, Vec<Step>)> = Vec::new();
    for (i, p) in pending.into_iter().enumerate() {
        let section = section_of(p.rank);
        let mut step = p.step;
        step.id = i + 1;
        match out.last_mut() {
            Some((s, v)) if *s == section => v.push(step),
            _ => out.push((section, vec![step])),
        }
    }
    out
}

/// The approvals a list of steps needs, as `HAZARD:object` strings (deduplicated, in order).
pub(crate) fn approvals_required(steps: &[Step]) -> Vec<String> {
    let mut seen = HashSet::new();
    let mut out = Vec::new();
    for s in steps {
        for a in s.approvals_needed() {
            let text = a.to_string();
            if seen.insert(text.clone()) {
                out.push(text);
            }
        }
    }
    out
}

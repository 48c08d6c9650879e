//! Building steps: `S` describes one step (kind, SQL, lock, hazards …), `Builder` collects them
//! in generation order.

use super::order::Pending;
use crate::types::*;

pub(super) struct Builder {
    pub(super) out: Vec<Pending>,
}

pub(super) struct S {
    pub(super) kind: ObjectKind,
    pub(super) object: String,
    pub(super) op: StepOp,
    pub(super) sql: String,
    pub(super) lock: LockLevel,
    pub(super) rewrites: bool,
    pub(super) transactional: bool,
    pub(super) hazards: Vec<Hazard>,
    pub(super) commit_after: bool,
    pub(super) check_index: Option<String>,
    pub(super) cleanup: Option<String>,
}

impl S {
    pub(super) fn new(kind: ObjectKind, object: impl Into<String>, op: StepOp, sql: impl Into<String>) -> S {
        S {
            kind,
            object: object.into(),
            op,
            sql: sql.into(),
            lock: LockLevel::None,
            rewrites: false,
            transactional: true,
            hazards: Vec::new(),
            commit_after: false,
            check_index: None,
            cleanup: None,
        }
    }
    pub(super) fn lock(mut self, l: LockLevel) -> S {
        self.lock = self.lock.max(l);
        self
    }
    pub(super) fn hazard(mut self, code: HazardCode, message: impl Into<String>) -> S {
        if !self.hazards.iter().any(|h| h.code == code) {
            self.hazards.push(Hazard { code, message: message.into() });
        }
        self
    }
    pub(super) fn non_transactional(mut self) -> S {
        self.transactional = false;
        self
    }
    pub(super) fn commit_after(mut self) -> S {
        self.commit_after = true;
        self
    }
    pub(super) fn rewrites(mut self) -> S {
        self.rewrites = true;
        self
    }
}

impl Builder {
    pub(super) fn push(&mut self, rank: u16, s: S) {
        let destructive = s.hazards.iter().any(|h| h.code.is_destructive());
        let seq = self.out.len();
        self.out.push(Pending {
            rank,
            seq,
            commit_after: s.commit_after,
            step: Step {
                id: 0,
                sql: s.sql,
                kind: s.kind,
                object: s.object,
                op: s.op,
                lock: s.lock,
                rewrites_table: s.rewrites,
                transactional: s.transactional,
                group: 0,
                hazards: s.hazards,
                destructive,
                check_index: s.check_index,
                cleanup: s.cleanup,
            },
        });
    }
}

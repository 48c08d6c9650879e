//! Row-level security policies: drop (phase 1), create or alter (phase 4).

use super::context::Ctx;
use super::order::*;
use super::step::{Builder, S};
use crate::ident::{qualified, quote_ident};
use crate::model::*;
use crate::types::*;

/// Policies that go away or are recreated (not those of dropped tables).
pub(super) fn drop(cx: &Ctx<'_>, b: &mut Builder) {
    let (from, to) = (cx.from, cx.to);
    for (k, p) in &from.policies {
        if (!to.policies.contains_key(k) || cx.recreated_policies.contains(k)) && !cx.table_dropped(&p.schema, &p.table) {
            b.push(
                R_DROP_POLICY,
                S::new(
                    ObjectKind::Policy,
                    k,
                    StepOp::Drop,
                    format!("DROP POLICY {} ON {}", quote_ident(&p.name), qualified(&p.schema, &p.table)),
                )
                .lock(LockLevel::AccessExclusive)
                .hazard(HazardCode::AuthzUpdate, "row access rules change"),
            );
        }
    }
}

/// New and recreated policies; in-place changes of roles and expressions.
pub(super) fn create(cx: &Ctx<'_>, b: &mut Builder) {
    let (from, to) = (cx.from, cx.to);
    for (k, p) in &to.policies {
        match from.policies.get(k) {
            Some(old) if !cx.recreated_policies.contains(k) => {
                if old.roles != p.roles || old.using != p.using || old.check != p.check {
                    let roles: Vec<String> =
                        p.roles.iter().map(|r| if r == "public" { "PUBLIC".to_string() } else { quote_ident(r) }).collect();
                    let mut sql =
                        format!("ALTER POLICY {} ON {} TO {}", quote_ident(&p.name), qualified(&p.schema, &p.table), roles.join(", "));
                    if let Some(u) = &p.using {
                        sql.push_str(&format!(" USING ({u})"));
                    }
                    if let Some(c) = &p.check {
                        sql.push_str(&format!(" WITH CHECK ({c})"));
                    }
                    b.push(
                        R_POLICY,
                        S::new(ObjectKind::Policy, k, StepOp::Alter, sql)
                            .lock(LockLevel::AccessExclusive)
                            .hazard(HazardCode::AuthzUpdate, "row access rules change"),
                    );
                }
            }
            _ => {
                let mut s = S::new(ObjectKind::Policy, k, StepOp::Create, policy_create_sql(p)).lock(LockLevel::AccessExclusive);
                if !cx.table_new(&p.schema, &p.table) {
                    s = s.hazard(HazardCode::AuthzUpdate, "row access rules change");
                }
                b.push(R_POLICY, s);
            }
        }
    }
}

pub(super) fn policy_create_sql(p: &Policy) -> String {
    let roles: Vec<String> = p.roles.iter().map(|r| if r == "public" { "PUBLIC".to_string() } else { quote_ident(r) }).collect();
    let mut s = format!(
        "CREATE POLICY {} ON {} AS {} FOR {} TO {}",
        quote_ident(&p.name),
        qualified(&p.schema, &p.table),
        if p.permissive { "PERMISSIVE" } else { "RESTRICTIVE" },
        p.command,
        roles.join(", ")
    );
    if let Some(u) = &p.using {
        s.push_str(&format!(" USING ({u})"));
    }
    if let Some(c) = &p.check {
        s.push_str(&format!(" WITH CHECK ({c})"));
    }
    s
}

//! GRANT and REVOKE of privileges held by roles other than the owner.

use std::collections::{BTreeMap, BTreeSet};

use super::context::Ctx;
use super::order::*;
use super::step::{Builder, S};
use crate::ident::quote_ident;
use crate::model::*;
use crate::types::*;

pub(super) fn object_exists(m: &Model, kind: ObjectKind, key: &str) -> bool {
    match kind {
        ObjectKind::Schema => m.schemas.contains_key(key),
        ObjectKind::Sequence => m.sequences.contains_key(key),
        ObjectKind::Function | ObjectKind::Procedure => m.functions.contains_key(key),
        ObjectKind::View | ObjectKind::MaterializedView => m.views.contains_key(key),
        _ => m.tables.contains_key(key),
    }
}

pub(super) fn grantee_sql(role: &str) -> String {
    if role == "public" { "PUBLIC".to_string() } else { quote_ident(role) }
}

/// GRANT and REVOKE so that every object's privileges (other than its owner's) are the desired
/// ones. A recreated view or function starts from its defaults again.
pub(super) fn grants(b: &mut Builder, cx: &Ctx<'_>) {
    let (from, to) = (cx.from, cx.to);
    let (recreated_views, recreated_functions) = (&cx.recreated_views, &cx.recreated_functions);
    let empty: BTreeSet<String> = BTreeSet::new();
    let keys: BTreeSet<&String> = from.grants.keys().chain(to.grants.keys()).collect();
    for key in keys {
        let new = to.grants.get(key);
        let old = from.grants.get(key);
        let Some(kind) = new.or(old).map(|g| g.kind) else { continue };
        if !object_exists(to, kind, key) {
            continue; // dropped: its privileges go with it
        }
        let recreated = recreated_views.contains(key.as_str()) || recreated_functions.contains(key.as_str());
        let fresh = recreated || !object_exists(from, kind, key);
        // A new function starts with EXECUTE for PUBLIC, like the ones PostgreSQL creates.
        let default_fn: BTreeSet<String> = ["public:EXECUTE".to_string()].into_iter().collect();
        let before: &BTreeSet<String> = if fresh {
            if matches!(kind, ObjectKind::Function | ObjectKind::Procedure) { &default_fn } else { &empty }
        } else {
            old.map(|g| &g.privileges).unwrap_or(&empty)
        };
        let after: &BTreeSet<String> = new.map(|g| &g.privileges).unwrap_or(&empty);
        if before == after {
            continue;
        }
        let Some(target) = new.or(old).map(|g| g.target.clone()) else { continue };
        let mut stmts = Vec::new();
        let group = |set: Vec<&String>| -> BTreeMap<(String, bool), Vec<String>> {
            let mut m: BTreeMap<(String, bool), Vec<String>> = BTreeMap::new();
            for p in set {
                let (role, privilege) = p.rsplit_once(':').unwrap_or(("public", p.as_str()));
                let grantable = privilege.ends_with('*');
                m.entry((role.to_string(), grantable)).or_default().push(privilege.trim_end_matches('*').to_string());
            }
            m
        };
        for ((role, _), privs) in group(before.difference(after).collect()) {
            stmts.push(format!("REVOKE {} ON {target} FROM {}", privs.join(", "), grantee_sql(&role)));
        }
        for ((role, grantable), privs) in group(after.difference(before).collect()) {
            stmts.push(format!(
                "GRANT {} ON {target} TO {}{}",
                privs.join(", "),
                grantee_sql(&role),
                if grantable { " WITH GRANT OPTION" } else { "" }
            ));
        }
        b.push(
            R_GRANT,
            S::new(kind, key.as_str(), StepOp::Alter, stmts.join(";\n"))
                .hazard(HazardCode::AuthzUpdate, "privileges of other roles on the object change"),
        );
    }
}

//! Schemas and extensions: creates and alters (phase 2), drops (phase 3, last).

use super::context::Ctx;
use super::order::*;
use super::step::{Builder, S};
use crate::ident::{quote_ident, quote_literal};
use crate::types::*;

/// New schemas.
pub(super) fn create_schemas(cx: &Ctx<'_>, b: &mut Builder) {
    let (from, to) = (cx.from, cx.to);
    for (k, s) in &to.schemas {
        if !from.schemas.contains_key(k) {
            b.push(
                R_SCHEMA,
                S::new(ObjectKind::Schema, k, StepOp::Create, format!("CREATE SCHEMA IF NOT EXISTS {}", quote_ident(&s.name))),
            );
        }
    }
}

/// New extensions, schema moves and version updates.
pub(super) fn extensions(cx: &Ctx<'_>, b: &mut Builder) {
    let (from, to) = (cx.from, cx.to);
    for (k, e) in &to.extensions {
        match from.extensions.get(k) {
            None => b.push(
                R_EXTENSION,
                S::new(
                    ObjectKind::Extension,
                    k,
                    StepOp::Create,
                    format!(
                        "CREATE EXTENSION IF NOT EXISTS {} WITH SCHEMA {} VERSION {}",
                        quote_ident(&e.name),
                        quote_ident(&e.schema),
                        quote_literal(&e.version)
                    ),
                ),
            ),
            Some(old) => {
                if old.schema != e.schema {
                    b.push(
                        R_EXTENSION,
                        S::new(
                            ObjectKind::Extension,
                            k,
                            StepOp::Alter,
                            format!("ALTER EXTENSION {} SET SCHEMA {}", quote_ident(&e.name), quote_ident(&e.schema)),
                        ),
                    );
                }
                if old.version != e.version {
                    b.push(
                        R_EXTENSION,
                        S::new(
                            ObjectKind::Extension,
                            k,
                            StepOp::Alter,
                            format!("ALTER EXTENSION {} UPDATE TO {}", quote_ident(&e.name), quote_literal(&e.version)),
                        )
                        .hazard(
                            HazardCode::UpgradingExtensionVersion,
                            format!("extension {} changes from version {} to {}", e.name, old.version, e.version),
                        ),
                    );
                }
            }
        }
    }
}

/// Extensions that go away.
pub(super) fn drop_extensions(cx: &Ctx<'_>, b: &mut Builder) {
    let (from, to) = (cx.from, cx.to);
    for (k, e) in &from.extensions {
        if !to.extensions.contains_key(k) {
            b.push(
                R_DROP_EXTENSION,
                S::new(ObjectKind::Extension, k, StepOp::Drop, format!("DROP EXTENSION {}", quote_ident(&e.name)))
                    .hazard(HazardCode::DeletesData, "the extension's objects (and data stored in its types) are deleted"),
            );
        }
    }
}

/// Schemas that go away.
pub(super) fn drop_schemas(cx: &Ctx<'_>, b: &mut Builder) {
    let (from, to) = (cx.from, cx.to);
    for (k, s) in &from.schemas {
        if !to.schemas.contains_key(k) {
            b.push(
                R_DROP_SCHEMA,
                S::new(ObjectKind::Schema, k, StepOp::Drop, format!("DROP SCHEMA {}", quote_ident(&s.name)))
                    .hazard(HazardCode::DeletesData, "the schema is dropped"),
            );
        }
    }
}

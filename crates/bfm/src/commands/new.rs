use crate::cli::{Global, NewArgs};
use anyhow::{Context, anyhow, bail};
use bfm_core::BackendKind;
use std::path::PathBuf;
use std::process::ExitCode;

/// `bfm new <connection> <name>`: `<sfm>/<backend>/<connection>/<UTC timestamp>_<name>.up|down.<ext>`.
pub fn run(global: &Global, args: NewArgs) -> anyhow::Result<ExitCode> {
    let config = super::load_config(global)?;
    let root = config.sfm_path.clone().or_else(|| global.sfm.clone()).unwrap_or_else(|| PathBuf::from("sfm"));
    if !bfm_core::catalog::is_valid_name(&args.connection) {
        bail!("connection {:?}: use letters, digits and `_`", args.connection);
    }
    let name: String = args.name.trim().to_lowercase().chars().map(|c| if c.is_ascii_alphanumeric() { c } else { '_' }).collect();
    let name = name.trim_matches('_').to_string();
    if name.is_empty() {
        bail!("the migration name needs at least one letter or digit");
    }
    if let Some(s) = &args.schema {
        bfm_core::validate_schema_name(s).map_err(|e| anyhow!("--schema: {e}"))?;
    }
    // Backend: flag, configured connection, or an existing <backend>/<connection> directory.
    let backend_dir = match &args.backend {
        Some(b) => {
            BackendKind::parse(b)
                .ok_or_else(|| anyhow!("--backend: unknown backend {b:?} (postgresql, mysql, sqlite, greptimedb, etcd)"))?;
            b.clone()
        }
        None => match config.connections.get(&args.connection) {
            Some(c) => existing_backend_dir(&root, &args.connection).unwrap_or_else(|| c.kind.as_str().to_string()),
            None => existing_backend_dir(&root, &args.connection)
                .ok_or_else(|| anyhow!("connection {:?} is not configured and has no directory yet: pass --backend", args.connection))?,
        },
    };
    let kind = BackendKind::parse(&backend_dir).ok_or_else(|| anyhow!("unknown backend directory {backend_dir:?}"))?;
    let dir = root.join(&backend_dir).join(&args.connection);
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;

    // A version that is not taken in this connection.
    let mut at = chrono::Utc::now();
    let version = loop {
        let v = at.format("%Y%m%d%H%M%S").to_string();
        let taken = std::fs::read_dir(&dir)?.filter_map(|e| e.ok()).any(|e| e.file_name().to_string_lossy().starts_with(&format!("{v}_")));
        if !taken {
            break v;
        }
        at += chrono::Duration::seconds(1);
    };
    let ext = kind.script_extension();
    let up = dir.join(format!("{version}_{name}.up.{ext}"));
    let down = dir.join(format!("{version}_{name}.down.{ext}"));
    let (up_text, down_text) = if kind == BackendKind::Etcd {
        (
            "[\n  {\"operation\": \"put\", \"key\": \"example/key\", \"value\": \"value\"}\n]\n".to_string(),
            "[\n  {\"operation\": \"delete\", \"key\": \"example/key\"}\n]\n".to_string(),
        )
    } else {
        let mut header = format!("-- {name}\n");
        if let Some(s) = &args.schema {
            header.push_str(&format!("-- bfm-schema: {s}\n"));
        }
        header.push_str("-- bfm-tags:\n");
        (format!("{header}\n"), format!("-- undo {name}\n\n"))
    };
    for (path, text) in [(&up, &up_text), (&down, &down_text)] {
        std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(path)
            .and_then(|mut f| std::io::Write::write_all(&mut f, text.as_bytes()))
            .with_context(|| format!("writing {}", path.display()))?;
        println!("created {}", path.display());
    }
    Ok(ExitCode::SUCCESS)
}

fn existing_backend_dir(root: &std::path::Path, connection: &str) -> Option<String> {
    std::fs::read_dir(root)
        .ok()?
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().to_string())
        .find(|b| root.join(b).join(connection).is_dir())
}

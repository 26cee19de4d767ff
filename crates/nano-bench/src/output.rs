//! Writing a run's report files: the same for `load` and `chaos`.

use std::path::Path;

use anyhow::Context;

/// Writes `report` as pretty JSON to `json` and `markdown(command)` to `md`, where given;
/// `command` is this process's command line, for the Markdown to name.
pub(crate) fn write_reports<R: serde::Serialize>(
    report: &R,
    json: Option<&Path>,
    md: Option<&Path>,
    markdown: impl FnOnce(&str) -> String,
) -> anyhow::Result<()> {
    if let Some(p) = json {
        std::fs::write(p, serde_json::to_string_pretty(report)?)
            .with_context(|| format!("writing {}", p.display()))?;
    }
    if let Some(p) = md {
        let command = std::env::args().collect::<Vec<_>>().join(" ");
        std::fs::write(p, markdown(&command))
            .with_context(|| format!("writing {}", p.display()))?;
    }
    Ok(())
}

//! PostgreSQL for `postgres-restart`: a real restart of the local cluster with
//! `pg_ctlcluster --skip-systemctl-redirect <version> main stop`, then `start` after the
//! outage, or the termination of the
//! relay's server processes (`pg_terminate_backend`), which a restart does to its connections,
//! scoped to the relay's database.

use std::process::Command;
use std::time::Duration;

use anyhow::{Context, bail};

/// Bound of the termination query (connect included), in seconds.
const QUERY_WAIT: Duration = Duration::from_secs(20);

/// How PostgreSQL is disturbed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum PgFault {
    /// Restart the local cluster (`pg_ctlcluster … restart`): every database goes down.
    Restart,
    /// Terminate the relay's server processes; the server itself stays up.
    Terminate,
}

/// `(host:port, database)` of a `postgres://` URL, without user or password.
fn parts(url: &str) -> Option<(String, String)> {
    let rest = url.split_once("://")?.1;
    let rest = rest.split_once('?').map_or(rest, |(r, _)| r);
    let (authority, db) = rest.split_once('/').unwrap_or((rest, ""));
    let host = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    Some((host.to_owned(), db.to_owned()))
}

/// Whether `url` is PostgreSQL.
pub(crate) fn is_postgres(url: &str) -> bool {
    url.starts_with("postgres://") || url.starts_with("postgresql://")
}

/// The storage as the report names it: `sqlite`, or `postgresql host:port/db` (no credentials).
pub(crate) fn label(url: Option<&str>) -> String {
    match url.filter(|u| is_postgres(u)).and_then(parts) {
        Some((host, db)) => format!("postgresql {host}/{db}"),
        None => "sqlite".into(),
    }
}

/// Whether the URL's server is on this machine (so the local cluster is the one to restart).
fn is_loopback(url: &str) -> bool {
    parts(url).is_some_and(|(h, _)| {
        let host = h.rsplit_once(':').map_or(h.as_str(), |(h, _)| h);
        matches!(host, "127.0.0.1" | "localhost" | "[::1]" | "")
    })
}

/// The local cluster's version (the first of `ls /etc/postgresql`) when `pg_ctlcluster` is on
/// PATH.
pub(crate) fn local_cluster() -> Option<String> {
    let found = Command::new("pg_ctlcluster").arg("--help").output().is_ok();
    if !found {
        return None;
    }
    let mut versions: Vec<String> = std::fs::read_dir("/etc/postgresql")
        .ok()?
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .collect();
    versions.sort();
    versions.into_iter().next()
}

/// The fault to use: `chosen`, or a restart when the server is local and `pg_ctlcluster` is
/// available, else termination. Returns it with the cluster version for a restart.
pub(crate) fn choose(chosen: Option<PgFault>, url: &str) -> anyhow::Result<(PgFault, String)> {
    let cluster = local_cluster().filter(|_| is_loopback(url));
    match (chosen, cluster) {
        (Some(PgFault::Terminate), _) | (None, None) => Ok((PgFault::Terminate, String::new())),
        (Some(PgFault::Restart) | None, Some(v)) => Ok((PgFault::Restart, v)),
        (Some(PgFault::Restart), None) => bail!(
            "--pg-fault restart needs pg_ctlcluster and a cluster under /etc/postgresql serving {}",
            label(Some(url))
        ),
    }
}

/// Runs `pg_ctlcluster … version main action` (`stop`, `start`) on the local cluster, blocking
/// until it returns.
pub(crate) fn cluster(version: &str, action: &str) -> anyhow::Result<()> {
    let out = Command::new("pg_ctlcluster")
        .args(["--skip-systemctl-redirect", version, "main", action])
        .output()
        .context("running pg_ctlcluster")?;
    if !out.status.success() {
        bail!(
            "pg_ctlcluster {version} main {action} failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

/// Terminates every server process connected to the database of `url` but this one; returns
/// how many. Runs on a thread of its own (the `postgres` crate runs its own runtime).
pub(crate) fn terminate_backends(url: &str) -> anyhow::Result<i64> {
    let url = url.to_owned();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let r = (|| {
            let mut c = postgres::Client::connect(&url, postgres::NoTls)?;
            let row = c.query_one(
                "SELECT COUNT(pg_terminate_backend(pid)) FROM pg_stat_activity
                 WHERE datname = current_database() AND pid <> pg_backend_pid()",
                &[],
            )?;
            row.try_get::<_, i64>(0)
        })();
        let _ = tx.send(r.map_err(anyhow::Error::from));
    });
    rx.recv_timeout(QUERY_WAIT)
        .context("pg_terminate_backend did not finish in time")?
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_hide_credentials() {
        assert_eq!(
            label(Some(
                "postgres://u:secret@127.0.0.1:5432/db?sslmode=disable"
            )),
            "postgresql 127.0.0.1:5432/db"
        );
        assert_eq!(label(None), "sqlite");
        assert!(is_loopback("postgres://postgres@127.0.0.1:5432/test"));
        assert!(is_loopback("postgres://postgres@localhost/test"));
        assert!(!is_loopback("postgres://postgres@db.example:5432/test"));
    }
}

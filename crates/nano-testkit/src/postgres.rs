//! A PostgreSQL database per test.

use crate::{WAIT, on_thread_within, random_hex};

/// A database of its own for one test, dropped (best effort) at the end.
#[derive(Debug)]
pub struct PgDb {
    admin_url: String,
    /// The database name (`nano_t_<hex>`).
    pub name: String,
    /// The URL of the database, for `storage.url`.
    pub url: String,
}

/// `url` with its database (path) replaced by `db`.
fn with_database(url: &str, db: &str) -> String {
    let (scheme, rest) = url.split_once("://").expect("URL with a scheme");
    let (authority, tail) = match rest.find('/') {
        Some(i) => rest.split_at(i),
        None => (rest, ""),
    };
    let query = tail.find('?').map_or("", |i| &tail[i..]);
    format!("{scheme}://{authority}/{db}{query}")
}

impl PgDb {
    /// Creates `nano_t_<hex>` when `NANO_TEST_POSTGRES_URL` is set; otherwise says why the test
    /// skips and returns `None`.
    pub fn create(test: &str) -> Option<Self> {
        let Ok(admin_url) = std::env::var("NANO_TEST_POSTGRES_URL") else {
            eprintln!("skipping {test}: NANO_TEST_POSTGRES_URL is not set");
            return None;
        };
        let name = format!("nano_t_{}", random_hex(8));
        let url = with_database(&admin_url, &name);
        let (a, n) = (admin_url.clone(), name.clone());
        // The postgres crate runs its own runtime: keep it off the test's async threads.
        let created = on_thread_within(WAIT, move || {
            let mut c = postgres::Client::connect(&a, postgres::NoTls)
                .map_err(|e| format!("connect to NANO_TEST_POSTGRES_URL: {e}"))?;
            c.batch_execute(&format!("CREATE DATABASE {n}"))
                .map_err(|e| format!("CREATE DATABASE: {e}"))
        });
        match created {
            Some(Ok(())) => {}
            Some(Err(e)) => panic!("{e}"),
            None => panic!("CREATE DATABASE did not finish within {WAIT:?}"),
        }
        Some(Self {
            admin_url,
            name,
            url,
        })
    }
}

impl PgDb {
    /// Terminates every server process connected to this database (what a database restart
    /// does to the relay's connections, scoped to this test); returns how many.
    pub fn terminate_connections(&self) -> i64 {
        let (a, n) = (self.admin_url.clone(), self.name.clone());
        let done = on_thread_within(WAIT, move || {
            let mut c = postgres::Client::connect(&a, postgres::NoTls).ok()?;
            let row = c
                .query_one(
                    "SELECT COUNT(pg_terminate_backend(pid)) FROM pg_stat_activity
                     WHERE datname = $1 AND pid <> pg_backend_pid()",
                    &[&n],
                )
                .ok()?;
            row.try_get::<_, i64>(0).ok()
        });
        done.flatten().expect("pg_terminate_backend")
    }

    /// Runs `sql` in this database (a test's own sabotage or check).
    pub fn execute(&self, sql: &str) -> Result<(), String> {
        let (u, sql) = (self.url.clone(), sql.to_owned());
        on_thread_within(WAIT, move || {
            let mut c =
                postgres::Client::connect(&u, postgres::NoTls).map_err(|e| e.to_string())?;
            c.batch_execute(&sql).map_err(|e| e.to_string())
        })
        .unwrap_or_else(|| Err(format!("did not finish within {WAIT:?}")))
    }
}

impl Drop for PgDb {
    fn drop(&mut self) {
        let (a, n) = (self.admin_url.clone(), self.name.clone());
        let _ = on_thread_within(WAIT, move || {
            if let Ok(mut c) = postgres::Client::connect(&a, postgres::NoTls) {
                let _ = c.batch_execute(&format!("DROP DATABASE IF EXISTS {n} WITH (FORCE)"));
            }
        });
    }
}

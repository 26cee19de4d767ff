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

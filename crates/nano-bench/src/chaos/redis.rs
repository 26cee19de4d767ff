//! Redis for `redis-restart`: the machine's shared server (stopped with `redis-cli shutdown
//! nosave`, started again with the CI's `redis-server` command line), or a private
//! `redis-server` child on a free port (`--redis-private`, what tests use). A few commands
//! (PING, PUBSUB NUMSUB, KEYS, DEL) go through a minimal RESP client over TCP.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

/// Bound of one Redis command (connect, write, read), in seconds.
const IO_TIMEOUT: Duration = Duration::from_secs(2);
/// How long a (re)started Redis has to answer PING, in seconds.
const START_WAIT: Duration = Duration::from_secs(20);

/// The Redis a run restarts.
#[derive(Debug)]
pub(crate) enum Redis {
    /// The machine's server on loopback at `port`.
    Shared {
        /// Its port.
        port: u16,
    },
    /// A child `redis-server` of this run (killed on drop).
    Private {
        /// Its port.
        port: u16,
        /// Its working directory (and log).
        dir: PathBuf,
        /// The running child, if any.
        child: Option<Child>,
    },
}

impl Drop for Redis {
    fn drop(&mut self) {
        if let Self::Private { child: Some(c), .. } = self {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// A RESP value, as far as these commands need it.
#[derive(Debug)]
enum Value {
    Line(String),
    Int(i64),
    Bulk(Option<String>),
    Array(Vec<Value>),
}

fn read_value(r: &mut impl BufRead) -> anyhow::Result<Value> {
    let mut line = String::new();
    r.read_line(&mut line)?;
    let line = line.trim_end_matches(['\r', '\n']);
    let (kind, rest) = line.split_at_checked(1).context("empty Redis reply")?;
    Ok(match kind {
        "+" => Value::Line(rest.to_owned()),
        "-" => bail!("Redis: {rest}"),
        ":" => Value::Int(rest.parse()?),
        "$" => match rest.parse::<i64>()? {
            n if n < 0 => Value::Bulk(None),
            n => {
                let mut b = vec![0u8; usize::try_from(n)? + 2];
                r.read_exact(&mut b)?;
                b.truncate(b.len() - 2);
                Value::Bulk(Some(String::from_utf8_lossy(&b).into_owned()))
            }
        },
        "*" => {
            let n = rest.parse::<i64>()?.max(0);
            (0..n)
                .map(|_| read_value(r))
                .collect::<anyhow::Result<Vec<_>>>()
                .map(Value::Array)?
        }
        _ => bail!("unexpected Redis reply {line:?}"),
    })
}

/// Runs one command on the Redis at `127.0.0.1:port`.
fn command(port: u16, args: &[&str]) -> anyhow::Result<Value> {
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    let mut s = TcpStream::connect_timeout(&addr, IO_TIMEOUT)?;
    s.set_read_timeout(Some(IO_TIMEOUT))?;
    s.set_write_timeout(Some(IO_TIMEOUT))?;
    let mut req = format!("*{}\r\n", args.len());
    for a in args {
        req.push_str(&format!("${}\r\n{a}\r\n", a.len()));
    }
    s.write_all(req.as_bytes())?;
    read_value(&mut BufReader::new(s))
}

/// A loopback port nothing listens on (bound, then released).
fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

impl Redis {
    /// The shared server named by `url` (`redis://127.0.0.1:PORT`), which must answer PING.
    pub(crate) fn shared(url: &str) -> anyhow::Result<Self> {
        let port = url
            .trim_end_matches('/')
            .rsplit(':')
            .next()
            .and_then(|p| p.parse().ok())
            .with_context(|| format!("no port in {url}"))?;
        let r = Self::Shared { port };
        r.ping()
            .with_context(|| format!("Redis at {url} does not answer"))?;
        Ok(r)
    }

    /// Starts a private `redis-server` on a free port, working in `dir`.
    pub(crate) fn private(dir: PathBuf) -> anyhow::Result<Self> {
        std::fs::create_dir_all(&dir)?;
        let mut r = Self::Private {
            port: free_port()?,
            dir,
            child: None,
        };
        r.start()?;
        Ok(r)
    }

    /// Its URL for `l2_cache_url`.
    pub(crate) fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port())
    }

    fn port(&self) -> u16 {
        match self {
            Self::Shared { port } | Self::Private { port, .. } => *port,
        }
    }

    /// What a fault does, for the report.
    pub(crate) fn describe(&self) -> String {
        match self {
            Self::Shared { port } => format!("shared redis-server :{port}, shutdown nosave"),
            Self::Private { port, .. } => format!("private redis-server :{port}, shutdown nosave"),
        }
    }

    fn ping(&self) -> anyhow::Result<()> {
        match command(self.port(), &["PING"])? {
            Value::Line(l) if l == "PONG" => Ok(()),
            v => bail!("PING answered {v:?}"),
        }
    }

    /// Waits (blocking) until PING is answered, up to 20 s.
    fn wait_ping(&self) -> anyhow::Result<()> {
        let deadline = Instant::now() + START_WAIT;
        loop {
            match self.ping() {
                Ok(()) => return Ok(()),
                Err(e) if Instant::now() >= deadline => return Err(e),
                Err(_) => std::thread::sleep(Duration::from_millis(50)),
            }
        }
    }

    /// Stops Redis without saving (blocking): `redis-cli -p PORT shutdown nosave`, then waits
    /// until it no longer answers (a private child is reaped, killed if it lingers).
    pub(crate) fn stop(&mut self) -> anyhow::Result<()> {
        let port = self.port().to_string();
        // redis-cli reports the closed connection of a successful shutdown as an error.
        let _ = Command::new("redis-cli")
            .args(["-p", &port, "shutdown", "nosave"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .context("running redis-cli")?;
        if let Self::Private { child, .. } = self
            && let Some(mut c) = child.take()
        {
            let deadline = Instant::now() + START_WAIT;
            while c.try_wait()?.is_none() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = c.kill();
            let _ = c.wait();
        }
        let deadline = Instant::now() + START_WAIT;
        while self.ping().is_ok() {
            if Instant::now() >= deadline {
                bail!("Redis on :{port} still answers after shutdown");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(())
    }

    /// Starts Redis again (blocking) and waits until it answers PING.
    pub(crate) fn start(&mut self) -> anyhow::Result<()> {
        match self {
            Self::Shared { port } => {
                let status = Command::new("redis-server")
                    .args(["--daemonize", "yes", "--bind", "127.0.0.1", "-::1"])
                    .args([
                        "--port",
                        &port.to_string(),
                        "--save",
                        "",
                        "--appendonly",
                        "no",
                    ])
                    .args(["--dir", "/var/lib/redis"])
                    .args(["--logfile", "/var/log/redis/ci.log"])
                    .status()
                    .context("running redis-server")?;
                if !status.success() {
                    bail!("redis-server exited with {status}");
                }
            }
            Self::Private { port, dir, child } => {
                let log = std::fs::File::create(dir.join("redis.log"))?;
                *child = Some(
                    Command::new("redis-server")
                        .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
                        .args(["--save", "", "--appendonly", "no"])
                        .arg("--dir")
                        .arg(&*dir)
                        .stdin(Stdio::null())
                        .stdout(Stdio::from(log.try_clone()?))
                        .stderr(Stdio::from(log))
                        .spawn()
                        .context("cannot start redis-server (is it on PATH?)")?,
                );
            }
        }
        self.wait_ping()
    }

    /// Clients subscribed to `channel` (`PUBSUB NUMSUB`).
    pub(crate) fn subscribers(&self, channel: &str) -> anyhow::Result<i64> {
        match command(self.port(), &["PUBSUB", "NUMSUB", channel])? {
            Value::Array(v) => match v.last() {
                Some(Value::Int(n)) => Ok(*n),
                other => bail!("PUBSUB NUMSUB answered {other:?}"),
            },
            v => bail!("PUBSUB NUMSUB answered {v:?}"),
        }
    }

    /// Deletes the keys under `prefix` (best effort; the run's own keys only).
    pub(crate) fn cleanup(&self, prefix: &str) {
        let pattern = format!("{prefix}*");
        if let Ok(Value::Array(keys)) = command(self.port(), &["KEYS", &pattern]) {
            let names: Vec<String> = keys
                .into_iter()
                .filter_map(|k| match k {
                    Value::Bulk(Some(s)) => Some(s),
                    _ => None,
                })
                .collect();
            if !names.is_empty() {
                let mut args = vec!["DEL"];
                args.extend(names.iter().map(String::as_str));
                let _ = command(self.port(), &args);
            }
        }
    }
}

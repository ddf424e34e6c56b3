//! A private PostgreSQL cluster for mathrank's tests.
//!
//! [`Cluster::start`] runs `initdb` in a new temporary directory and starts the server on a free
//! loopback port, with `trust` authentication for the user `mathrank` over TCP only. PostgreSQL
//! refuses to run as root, so as root (CI) every server command runs as the `postgres` OS user
//! (which Debian's `postgresql` package creates) through `runuser`.
//!
//! A watchdog process holds a pipe from the test process: when that process ends, however it
//! ends, the watchdog stops the server (`immediate`) and removes the directory, so a test binary
//! never leaves a server behind.
//!
//! The server binaries are found in `$MATHRANK_PG_BIN`, else the newest
//! `/usr/lib/postgresql/*/bin` (Debian), else on `PATH`. When there are none, [`shared`] and
//! [`private`] print why once and return `None`, so tests skip; with
//! `MATHRANK_REQUIRE_POSTGRES=1` (CI) they panic instead.
//!
//! ```no_run
//! let Some(cluster) = mathrank_pgtest::shared() else { return }; // skipped: no PostgreSQL
//! let url = cluster.create_database().unwrap();
//! assert!(url.starts_with("postgres://mathrank@127.0.0.1:"));
//! ```

use std::io::Write as _;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock};

/// Set to `1` to make a missing PostgreSQL a test failure instead of a skip.
pub const REQUIRE_ENV: &str = "MATHRANK_REQUIRE_POSTGRES";
/// A directory with `initdb`, `pg_ctl` and `postgres`, to use instead of the ones found.
pub const BIN_ENV: &str = "MATHRANK_PG_BIN";
/// The database user the cluster trusts.
pub const USER: &str = "mathrank";

/// Errors of the harness.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// PostgreSQL cannot run here at all (tests skip unless it is required).
    #[error(
        "{0}; install PostgreSQL (Debian: apt-get install -y postgresql) or set {BIN_ENV} to the directory of its initdb, pg_ctl and postgres"
    )]
    Unavailable(String),
    #[error("{what} failed: {detail}")]
    Failed { what: String, detail: String },
}

/// Result alias of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// A running (or stopped) private cluster.
#[derive(Debug)]
pub struct Cluster {
    bin: PathBuf,
    data: PathBuf,
    log: PathBuf,
    port: u16,
    /// `Some("postgres")` when this process runs as root.
    run_as: Option<String>,
    watchdog: Mutex<Option<Child>>,
    databases: AtomicU64,
}

impl Cluster {
    /// Creates and starts a new cluster.
    pub fn start() -> Result<Self> {
        let bin = find_bin()?;
        let run_as = if is_root()? { Some(server_user()?) } else { None };
        let dir = tempfile::Builder::new()
            .prefix("mathrank-pg-")
            .tempdir()
            .map_err(|err| failed("creating a temporary directory", err))?
            .keep();
        let watchdog = watchdog(&bin, &dir, run_as.as_deref())?;
        if let Some(user) = &run_as {
            let (uid, gid) = (id_of(user, "-u")?, id_of(user, "-g")?);
            std::os::unix::fs::chown(&dir, Some(uid), Some(gid))
                .map_err(|err| failed(&format!("handing {} to {user}", dir.display()), err))?;
        }
        let mut cluster = Self {
            data: dir.join("data"),
            log: dir.join("server.log"),
            bin,
            port: 0,
            run_as,
            watchdog: Mutex::new(Some(watchdog)),
            databases: AtomicU64::new(0),
        };
        let data = cluster.data.display().to_string();
        cluster.server_command(
            "initdb",
            &["-D", &data, "-U", USER, "--auth=trust", "--encoding=UTF8", "--locale=C", "--no-sync"],
        )?;
        let settings = format!(
            "\nlisten_addresses = '127.0.0.1'\nunix_socket_directories = '{}'\nmax_connections = 200\n",
            dir.display()
        );
        std::fs::OpenOptions::new()
            .append(true)
            .open(cluster.data.join("postgresql.conf"))
            .and_then(|mut conf| conf.write_all(settings.as_bytes()))
            .map_err(|err| failed("configuring the cluster", err))?;
        // A free port can be taken between our probe and the server's bind: try a few.
        let mut last = None;
        for _ in 0..5 {
            cluster.port = free_port()?;
            match cluster.resume() {
                Ok(()) => return Ok(cluster),
                Err(err) => last = Some(err),
            }
        }
        Err(last.unwrap_or_else(|| failed("starting the server", "no attempt made")))
    }

    /// The loopback port the server listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The URL of `database` on this cluster.
    pub fn url(&self, database: &str) -> String {
        format!("postgres://{USER}@127.0.0.1:{}/{database}", self.port)
    }

    /// Creates a new, empty database and returns its URL.
    pub fn create_database(&self) -> Result<String> {
        let name = format!("t{}_{}", std::process::id(), self.databases.fetch_add(1, Ordering::Relaxed));
        let port = self.port.to_string();
        let createdb = self.bin.join("createdb");
        let output = Command::new(&createdb)
            .args(["-h", "127.0.0.1", "-p", &port, "-U", USER, &name])
            .stdin(Stdio::null())
            .output()
            .map_err(|err| failed(&format!("running {}", createdb.display()), err))?;
        if !output.status.success() {
            return Err(failed(&format!("createdb {name}"), String::from_utf8_lossy(&output.stderr)));
        }
        Ok(self.url(&name))
    }

    /// Stops the server cleanly (`fast`: open transactions are rolled back, clients cut off).
    pub fn stop(&self) -> Result<()> {
        self.pg_ctl(&["-m", "fast", "stop"])
    }

    /// Stops the server as a crash would (`immediate`: no checkpoint; recovery on the next start).
    pub fn crash(&self) -> Result<()> {
        self.pg_ctl(&["-m", "immediate", "stop"])
    }

    /// Starts the stopped server again on the same port, and waits until it accepts connections.
    pub fn resume(&self) -> Result<()> {
        let options = format!("-p {}", self.port);
        let log = self.log.display().to_string();
        self.pg_ctl(&["-l", &log, "-t", "120", "-o", &options, "start"])
    }

    /// The server's log so far (to explain a failure).
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn pg_ctl(&self, args: &[&str]) -> Result<()> {
        let data = self.data.display().to_string();
        let mut all = vec!["-D", &data, "-w", "-s"];
        all.extend_from_slice(args);
        self.server_command("pg_ctl", &all).map_err(|err| match err {
            Error::Failed { what, detail } => {
                Error::Failed { what, detail: format!("{detail}\nserver log:\n{}", self.log()) }
            }
            other => other,
        })
    }

    /// Runs a server binary, as the server's OS user when this process is root.
    fn server_command(&self, name: &str, args: &[&str]) -> Result<()> {
        let program = self.bin.join(name);
        let mut command = match &self.run_as {
            Some(user) => {
                let mut command = Command::new("runuser");
                command.args(["-u", user, "--"]).arg(&program);
                command
            }
            None => Command::new(&program),
        };
        // The server's user may not be able to enter the test's directory.
        let cwd = self.data.parent().unwrap_or(Path::new("/"));
        let output = command
            .args(args)
            .current_dir(cwd)
            .stdin(Stdio::null())
            .output()
            .map_err(|err| failed(&format!("running {}", program.display()), err))?;
        if output.status.success() {
            return Ok(());
        }
        let mut detail = String::from_utf8_lossy(&output.stderr).into_owned();
        detail.push_str(&String::from_utf8_lossy(&output.stdout));
        Err(failed(&format!("{name} {}", args.join(" ")), detail.trim()))
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        // Closing the watchdog's stdin makes it stop the server and remove the directory.
        if let Ok(mut watchdog) = self.watchdog.lock()
            && let Some(mut child) = watchdog.take()
        {
            drop(child.stdin.take());
            let _ = child.wait();
        }
    }
}

/// The cluster shared by the tests of this process (each test takes its own database), or
/// `None` when PostgreSQL is unavailable and not required (said once on stderr).
pub fn shared() -> Option<&'static Cluster> {
    static SHARED: OnceLock<Option<Cluster>> = OnceLock::new();
    SHARED.get_or_init(|| available(Cluster::start())).as_ref()
}

/// A cluster of the caller's own, for tests that stop or crash it; `None` as in [`shared`].
pub fn private() -> Option<Cluster> {
    available(Cluster::start())
}

/// Turns "PostgreSQL is not installed" into a skip (said once) unless it is required; any
/// other failure panics.
fn available(started: Result<Cluster>) -> Option<Cluster> {
    static SAID: OnceLock<()> = OnceLock::new();
    match started {
        Ok(cluster) => Some(cluster),
        Err(Error::Unavailable(reason)) if !required() => {
            SAID.get_or_init(|| {
                // Straight to stderr: the test harness captures print macros of passing tests.
                let _ = writeln!(
                    std::io::stderr(),
                    "skipping the PostgreSQL tests: {}",
                    Error::Unavailable(reason.clone())
                );
            });
            None
        }
        Err(err @ Error::Unavailable(_)) => panic!("PostgreSQL is required here ({REQUIRE_ENV} is set): {err}"),
        Err(err) => panic!("a private PostgreSQL cluster could not start: {err}"),
    }
}

fn required() -> bool {
    std::env::var(REQUIRE_ENV).is_ok_and(|value| !value.is_empty() && value != "0")
}

fn failed(what: &str, detail: impl std::fmt::Display) -> Error {
    Error::Failed { what: what.into(), detail: detail.to_string() }
}

/// The directory of `initdb`, `pg_ctl` and `postgres`.
fn find_bin() -> Result<PathBuf> {
    let complete = |dir: &Path| ["initdb", "pg_ctl", "postgres", "createdb"].iter().all(|b| dir.join(b).is_file());
    if let Some(dir) = std::env::var_os(BIN_ENV) {
        let dir = PathBuf::from(dir);
        if complete(&dir) {
            return Ok(dir);
        }
        return Err(Error::Unavailable(format!(
            "{BIN_ENV}={} lacks initdb, pg_ctl, postgres or createdb",
            dir.display()
        )));
    }
    // Debian installs each major version under /usr/lib/postgresql/<major>/bin, off PATH.
    let mut debian: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| {
            let major = entry.file_name().to_str()?.parse::<u32>().ok()?;
            Some((major, entry.path().join("bin")))
        })
        .filter(|(_, dir)| complete(dir))
        .collect();
    debian.sort();
    if let Some((_, dir)) = debian.pop() {
        return Ok(dir);
    }
    std::env::var_os("PATH")
        .iter()
        .flat_map(std::env::split_paths)
        .find(|dir| complete(dir))
        .ok_or_else(|| Error::Unavailable("no PostgreSQL server binary (initdb, pg_ctl, postgres) found".into()))
}

fn is_root() -> Result<bool> {
    Ok(command_output("id", &["-u"])?.trim() == "0")
}

/// The OS user to run the server as when this process is root.
fn server_user() -> Result<String> {
    command_output("id", &["-u", "postgres"]).map(|_| "postgres".to_owned()).map_err(|_| {
        Error::Unavailable("running as root and there is no `postgres` OS user to run the server as".into())
    })
}

fn id_of(user: &str, flag: &str) -> Result<u32> {
    let text = command_output("id", &[flag, user])?;
    text.trim().parse().map_err(|err| failed(&format!("id {flag} {user}"), err))
}

fn command_output(program: &str, args: &[&str]) -> Result<String> {
    let output = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|err| failed(&format!("running {program}"), err))?;
    if !output.status.success() {
        return Err(failed(&format!("{program} {}", args.join(" ")), String::from_utf8_lossy(&output.stderr)));
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

fn free_port() -> Result<u16> {
    let listener = TcpListener::bind("127.0.0.1:0").map_err(|err| failed("finding a free loopback port", err))?;
    listener.local_addr().map(|addr| addr.port()).map_err(|err| failed("finding a free loopback port", err))
}

/// A process that waits for its stdin to close (this process ending), then stops the server and
/// removes `dir`. In its own session, so that a Ctrl-C to the tests does not kill it first.
fn watchdog(bin: &Path, dir: &Path, run_as: Option<&str>) -> Result<Child> {
    const SCRIPT: &str =
        r#"cat >/dev/null; "$1/pg_ctl" -D "$2/data" -m immediate -s stop >/dev/null 2>&1; rm -rf "$2""#;
    let mut command = Command::new("setsid");
    if let Some(user) = run_as {
        command.args(["runuser", "-u", user, "--"]);
    }
    command
        .args(["sh", "-c", SCRIPT, "sh"])
        .arg(bin)
        .arg(dir)
        .current_dir("/")
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|err| failed("starting the cluster's watchdog (setsid, sh)", err))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cluster_starts_stops_resumes_and_creates_databases() {
        let Some(cluster) = private() else { return };
        let first = cluster.create_database().unwrap();
        let second = cluster.create_database().unwrap();
        assert_ne!(first, second);
        assert!(first.starts_with(&format!("postgres://{USER}@127.0.0.1:{}/", cluster.port())));
        cluster.stop().unwrap();
        assert!(cluster.create_database().is_err(), "a stopped server takes no connection");
        cluster.resume().unwrap();
        cluster.crash().unwrap();
        cluster.resume().unwrap();
        cluster.create_database().unwrap();
        let dir = cluster.data.parent().unwrap().to_path_buf();
        drop(cluster);
        assert!(!dir.exists(), "the watchdog removes {}", dir.display());
    }
}

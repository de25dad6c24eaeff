//! A throw-away PostgreSQL server for tests: `initdb` into a temporary directory, `pg_ctl start` on
//! a free port of 127.0.0.1 with trust authentication, removed again on drop.
//!
//! The server binaries are looked up in `SCHEDULER_PG_BIN`, then `/usr/lib/postgresql/<newest>/bin`
//! (Debian's `postgresql` package), then `PATH`. Without them a test is skipped with a loud notice —
//! unless `SCHEDULER_REQUIRE_POSTGRES=1` (CI sets it), which makes it fail instead. As root (initdb
//! refuses to run as root) the server runs as the `postgres` user, through `runuser`.
//!
//! [`Setup`] turns on TLS with a given certificate, replaces `pg_hba.conf` and sets the superuser's
//! password, for the TLS tests.
//!
//! Shared by `tests/tests/cluster_postgres.rs`, `tests/tests/cluster_postgres_tls.rs`,
//! `tests/tests/cluster_faults.rs`, `tests/tests/cluster_scale.rs`,
//! `services-demo/tests/cluster.rs` and the benchmark's `fleet` scenario (`bench/src/fleet.rs`).

#![allow(
    dead_code,
    reason = "each test crate that includes this file uses a different part of it"
)]

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicUsize, Ordering};

static COUNT: AtomicUsize = AtomicUsize::new(0);

/// A running (or stopped) throw-away server.
pub(crate) struct Postgres {
    bin: PathBuf,
    dir: PathBuf,
    port: u16,
    as_postgres_user: bool,
    running: bool,
    /// `-c` settings for the server (TLS, `Setup::options`).
    settings: String,
}

/// How a server differs from the default (no TLS, trust for everyone).
#[derive(Default)]
pub(crate) struct Setup<'a> {
    /// The server's certificate (chain) and private key, PEM: turns `ssl` on.
    pub(crate) tls: Option<(&'a str, &'a str)>,
    /// The whole `pg_hba.conf`, instead of initdb's (trust).
    pub(crate) hba: Option<&'a str>,
    /// The `postgres` user's password.
    pub(crate) password: Option<&'a str>,
    /// More server options (`-c name=value …`).
    pub(crate) options: &'a str,
}

impl Postgres {
    /// Creates and starts a server for the test `name`; `None` (after a notice) to skip the test
    /// when the server binaries are not installed.
    ///
    /// # Panics
    /// If the binaries are missing and `SCHEDULER_REQUIRE_POSTGRES=1`, or the server cannot start.
    pub(crate) fn launch(name: &str) -> Option<Postgres> {
        Postgres::launch_with(name, &Setup::default())
    }

    /// [`launch`](Self::launch), set up as `setup` says.
    ///
    /// # Panics
    /// As `launch`, or if the files of `setup` cannot be written.
    pub(crate) fn launch_with(name: &str, setup: &Setup<'_>) -> Option<Postgres> {
        let Some(bin) = server_binaries() else {
            let help =
                "no PostgreSQL server binaries (initdb, pg_ctl) found in $SCHEDULER_PG_BIN, \
                        /usr/lib/postgresql/*/bin or PATH; install them with \
                        `apt-get install postgresql` (Debian/Ubuntu), or point SCHEDULER_PG_BIN at \
                        the directory that has them";
            assert!(
                std::env::var("SCHEDULER_REQUIRE_POSTGRES").as_deref() != Ok("1"),
                "{name}: {help} (SCHEDULER_REQUIRE_POSTGRES=1 makes this an error)"
            );
            // Straight to the process's stderr: the test harness captures `eprintln!`, and a skip
            // must be seen.
            let notice = format!(
                "\n==================== SKIPPED: {name} ====================\n\
                 {help}.\nSet SCHEDULER_REQUIRE_POSTGRES=1 to make this a failure.\n\
                 ========================================================\n"
            );
            let _ = std::io::Write::write_all(&mut std::io::stderr(), notice.as_bytes());
            return None;
        };
        let short: String = name
            .chars()
            .filter(char::is_ascii_alphanumeric)
            .take(20)
            .collect();
        // Short: the server's socket lives in this directory, and socket paths are limited to ~100
        // bytes.
        let dir = std::env::temp_dir().join(format!(
            "sched-pg-{}-{}-{short}",
            std::process::id(),
            COUNT.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("create the server's directory");
        let as_postgres_user = is_root();
        if as_postgres_user {
            let status = Command::new("chown")
                .args(["postgres:", dir.to_str().expect("a UTF-8 temp dir")])
                .status()
                .expect("run chown");
            assert!(
                status.success(),
                "chown postgres: {} failed; as root, the tests need the `postgres` user that \
                 Debian's postgresql package creates",
                dir.display()
            );
        }
        let mut server = Postgres {
            bin,
            dir,
            port: 0,
            as_postgres_user,
            running: false,
            settings: String::new(),
        };
        let data = server.data_dir();
        let data_arg = data.to_str().expect("a UTF-8 path");
        let mut initdb = vec![
            "-D",
            data_arg,
            "-U",
            "postgres",
            "-A",
            "trust",
            "-E",
            "UTF8",
            "--no-locale",
            "--no-sync",
        ];
        let password_file = server.dir.join("password");
        if let Some(password) = setup.password {
            server.write(&password_file, password);
            initdb.push("--pwfile");
            initdb.push(password_file.to_str().expect("a UTF-8 path"));
        }
        server.run("initdb", &initdb);
        if let Some(hba) = setup.hba {
            server.write(&data.join("pg_hba.conf"), hba);
        }
        if let Some((cert, key)) = setup.tls {
            server.write(&data.join("server.crt"), cert);
            server.write(&data.join("server.key"), key);
            server.settings = format!(
                " -c ssl=on -c ssl_cert_file=server.crt -c ssl_key_file=server.key {}",
                setup.options
            );
        } else if !setup.options.is_empty() {
            server.settings = format!(" {}", setup.options);
        }
        // A free port now may be taken by the time the server binds it: try a few.
        for attempt in 1..=3 {
            server.port = free_port();
            if server.try_start() {
                return Some(server);
            }
            eprintln!(
                "{name}: server did not start on port {} (attempt {attempt})",
                server.port
            );
        }
        panic!(
            "{name}: the PostgreSQL server did not start:\n{}",
            server.log()
        );
    }

    /// The URL to connect to, as the `postgres` superuser to the `postgres` database.
    pub(crate) fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    /// The port it listens on, on 127.0.0.1.
    pub(crate) fn port(&self) -> u16 {
        self.port
    }

    /// The directory of its Unix socket (`host=` this, with the port, to connect through it).
    pub(crate) fn socket_dir(&self) -> &Path {
        &self.dir
    }

    /// Stops the server (fast shutdown: open connections are cut), keeping its data.
    pub(crate) fn stop(&mut self) {
        let data = self.data_dir();
        self.run(
            "pg_ctl",
            &["-D", data.to_str().unwrap(), "-m", "fast", "-w", "stop"],
        );
        self.running = false;
    }

    /// Starts the stopped server again, on the same port with the same data.
    ///
    /// # Panics
    /// If it does not start.
    pub(crate) fn start(&mut self) {
        assert!(
            self.try_start(),
            "the server did not restart:\n{}",
            self.log()
        );
    }

    /// The server's log so far.
    pub(crate) fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("server.log")).unwrap_or_default()
    }

    fn try_start(&mut self) -> bool {
        let data = self.data_dir();
        let options = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c max_connections=50{}",
            self.port,
            self.dir.display(),
            self.settings
        );
        let output = self.command(
            "pg_ctl",
            &[
                "-D",
                data.to_str().unwrap(),
                "-l",
                self.dir.join("server.log").to_str().unwrap(),
                "-o",
                &options,
                "-w",
                "-t",
                "30",
                "start",
            ],
        );
        self.running = output.status.success();
        self.running
    }

    /// Writes a file the server reads: private to the server's user (as a key file must be).
    fn write(&self, path: &Path, contents: &str) {
        std::fs::write(path, contents)
            .unwrap_or_else(|error| panic!("write {}: {error}", path.display()));
        let path_arg = path.to_str().expect("a UTF-8 path");
        let chmod = Command::new("chmod").args(["600", path_arg]).status();
        assert!(chmod.is_ok_and(|s| s.success()), "chmod 600 {path_arg}");
        if self.as_postgres_user {
            let chown = Command::new("chown").args(["postgres:", path_arg]).status();
            assert!(
                chown.is_ok_and(|s| s.success()),
                "chown postgres: {path_arg}"
            );
        }
    }

    /// The server's data directory (its `postmaster.pid` names the server's process).
    pub(crate) fn data_dir(&self) -> PathBuf {
        self.dir.join("data")
    }

    fn command(&self, program: &str, args: &[&str]) -> Output {
        let program = self.bin.join(program);
        let mut command = if self.as_postgres_user {
            let mut command = Command::new("runuser");
            command.args(["-u", "postgres", "--"]).arg(&program);
            command
        } else {
            Command::new(&program)
        };
        command
            .args(args)
            .current_dir(&self.dir)
            .output()
            .unwrap_or_else(|error| panic!("cannot run {}: {error}", program.display()))
    }

    fn run(&self, program: &str, args: &[&str]) {
        let output = self.command(program, args);
        assert!(
            output.status.success(),
            "{program} {args:?} failed ({}):\n{}\n{}\n{}",
            output.status,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr),
            self.log()
        );
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        if self.running {
            let data = self.data_dir();
            let _ = self.command(
                "pg_ctl",
                &[
                    "-D",
                    data.to_str().unwrap(),
                    "-m",
                    "immediate",
                    "-w",
                    "stop",
                ],
            );
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn server_binaries() -> Option<PathBuf> {
    let has_server = |dir: &Path| dir.join("initdb").is_file() && dir.join("pg_ctl").is_file();
    if let Some(dir) = std::env::var_os("SCHEDULER_PG_BIN") {
        return Some(PathBuf::from(dir)).filter(|dir| has_server(dir));
    }
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .filter_map(Result::ok)
        .filter_map(|entry| {
            let version = entry.file_name().to_str()?.parse().ok()?;
            Some((version, entry.path().join("bin")))
        })
        .filter(|(_, bin)| has_server(bin))
        .collect();
    versions.sort();
    if let Some((_, bin)) = versions.pop() {
        return Some(bin);
    }
    std::env::split_paths(&std::env::var_os("PATH")?).find(|dir| has_server(dir))
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|output| String::from_utf8_lossy(&output.stdout).trim() == "0")
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("a free port on 127.0.0.1")
        .port()
}

/// Polls `check` every 20 ms until it returns `Some`, or panics with `what` after 40 s (reached
/// only when what the test waits for never happens).
pub(crate) async fn wait_for<T, F, Fut>(what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    const DEADLINE: std::time::Duration = std::time::Duration::from_secs(40);
    let until = std::time::Instant::now() + DEADLINE;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(
            std::time::Instant::now() < until,
            "timed out after {DEADLINE:?} waiting for {what}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

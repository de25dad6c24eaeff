//! The connection string, in either of libpq's forms: a `postgres://` URL or `key=value` pairs.
//!
//! `tokio-postgres` parses most of it, but knows only `sslmode=disable|prefer|require` and no
//! `sslrootcert`. So the TLS keys are taken out here, checked, and the rest is handed to
//! `tokio-postgres` unchanged. The password is kept aside as well, so that every message the
//! coordinator writes can be cleaned of it ([`Secret::scrub`]).
//!
//! No message made here quotes a value from the string other than `sslmode`'s, a key's name or
//! the `sslrootcert` path: a mistake in the string must not put the password in a log.

use std::fmt::Write as _;
use std::path::PathBuf;
use std::time::Duration;

use tokio_postgres::config::Host;
use tokio_postgres::Config;

/// libpq's `sslmode`, with libpq's meanings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum SslMode {
    /// Plain text only.
    Disable,
    /// Plain text first; TLS (unverified) if the server refuses that.
    Allow,
    /// TLS (unverified) if the server offers it, plain text otherwise; libpq's default.
    Prefer,
    /// TLS or nothing; the certificate is not checked, unless `sslrootcert` names a CA file
    /// (then as `verify-ca`).
    Require,
    /// TLS, with a certificate issued by a trusted CA.
    VerifyCa,
    /// TLS, with a certificate issued by a trusted CA for the host name connected to.
    VerifyFull,
}

impl SslMode {
    const ALL: [SslMode; 6] = [
        SslMode::Disable,
        SslMode::Allow,
        SslMode::Prefer,
        SslMode::Require,
        SslMode::VerifyCa,
        SslMode::VerifyFull,
    ];

    pub(super) fn name(self) -> &'static str {
        match self {
            SslMode::Disable => "disable",
            SslMode::Allow => "allow",
            SslMode::Prefer => "prefer",
            SslMode::Require => "require",
            SslMode::VerifyCa => "verify-ca",
            SslMode::VerifyFull => "verify-full",
        }
    }

    fn parse(value: &str) -> Result<SslMode, String> {
        SslMode::ALL
            .into_iter()
            .find(|mode| mode.name() == value)
            .ok_or_else(|| {
                let names: Vec<_> = SslMode::ALL.iter().map(|mode| mode.name()).collect();
                format!("sslmode '{value}' is not one of {}", names.join(", "))
            })
    }
}

/// Where trusted CA certificates come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Roots {
    /// The operating system's store (`sslrootcert=system`, and the default).
    System,
    /// A PEM file of one or more CA certificates (`sslrootcert=PATH`).
    File(PathBuf),
}

/// What the certificate is checked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Check {
    /// Nothing: encryption without authentication (`prefer`, `require`, `allow`).
    Nothing,
    /// Issued by a CA of `roots`; for the host name too when `name`.
    Issuer { roots: Roots, name: bool },
}

/// The TLS part of a connection string.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Tls {
    pub(super) mode: SslMode,
    pub(super) check: Check,
}

/// The password, known only to clean messages of it.
#[derive(Clone, Default)]
pub(super) struct Secret(Vec<String>);

impl Secret {
    /// `text` with every occurrence of the password (as written and as decoded) masked.
    pub(super) fn scrub(&self, text: String) -> String {
        self.0
            .iter()
            .filter(|secret| !secret.is_empty())
            .fold(text, |text, secret| {
                text.replace(secret.as_str(), "********")
            })
    }
}

/// A parsed connection string.
pub(super) struct Target {
    pub(super) config: Config,
    pub(super) tls: Tls,
    pub(super) secret: Secret,
}

impl Target {
    /// `user@host:port,…/dbname`, without the password: for `Debug` and messages.
    pub(super) fn describe(&self) -> String {
        let mut text = String::new();
        if let Some(user) = self.config.get_user() {
            let _ = write!(text, "{user}@");
        }
        text.push_str(&self.hosts());
        if let Some(dbname) = self.config.get_dbname() {
            let _ = write!(text, "/{dbname}");
        }
        text
    }

    /// The servers, `host:port` each.
    pub(super) fn hosts(&self) -> String {
        let ports = self.config.get_ports();
        let port = |i: usize| ports.get(i).or(ports.first()).copied().unwrap_or(5432);
        let hosts: Vec<String> = if self.config.get_hosts().is_empty() {
            let addrs = self.config.get_hostaddrs();
            addrs
                .iter()
                .enumerate()
                .map(|(i, addr)| format!("{addr}:{}", port(i)))
                .collect()
        } else {
            self.config
                .get_hosts()
                .iter()
                .enumerate()
                .map(|(i, host)| match host {
                    Host::Tcp(name) => format!("{name}:{}", port(i)),
                    #[cfg(unix)]
                    Host::Unix(path) => format!("{}", path.display()),
                })
                .collect()
        };
        hosts.join(",")
    }

    /// Whether every server is reached through a Unix socket, where libpq ignores `sslmode`.
    pub(super) fn only_unix_sockets(&self) -> bool {
        let hosts = self.config.get_hosts();
        self.config.get_hostaddrs().is_empty()
            && !hosts.is_empty()
            && !hosts.iter().any(|host| matches!(host, Host::Tcp(_)))
    }
}

/// Keys that take part in TLS but that this coordinator does not implement.
const UNSUPPORTED: [&str; 5] = ["sslcert", "sslkey", "sslpassword", "sslcrl", "sslcrldir"];

/// Parses `url` and applies the coordinator's defaults (connect timeout, application name).
pub(super) fn parse(url: &str, replica: &str) -> Result<Target, String> {
    let mut secret = Secret::default();
    let result = parse_into(url, &mut secret);
    let (mut config, tls) = result
        .map_err(|error| secret.scrub(format!("invalid PostgreSQL connection string: {error}")))?;
    if config.get_connect_timeout().is_none() {
        config.connect_timeout(Duration::from_secs(5));
    }
    if config.get_application_name().is_none() {
        config.application_name(format!("scheduler {replica}"));
    }
    Ok(Target {
        config,
        tls,
        secret,
    })
}

fn parse_into(url: &str, secret: &mut Secret) -> Result<(Config, Tls), String> {
    let (rest, pairs) = if let Some((prefix, tail)) = ["postgres://", "postgresql://"]
        .iter()
        .find_map(|prefix| Some((*prefix, url.strip_prefix(prefix)?)))
    {
        // As `tokio-postgres` reads it: credentials up to the first `@`, then the query from the
        // first `?` after them.
        let after_credentials = match tail.find('@') {
            Some(at) => {
                let credentials = &tail[..at];
                if let Some((_, password)) = credentials.split_once(':') {
                    secret.0.push(password.to_owned());
                    secret.0.push(percent_decode(password).unwrap_or_default());
                }
                at + 1
            }
            None => 0,
        };
        match tail[after_credentials..].find('?') {
            Some(q) => {
                let q = after_credentials + q;
                let pairs = url_query(&tail[q + 1..])?;
                (Rest::Url(format!("{prefix}{}", &tail[..q])), pairs)
            }
            None => (Rest::Url(url.to_owned()), Vec::new()),
        }
    } else {
        (Rest::KeyValue, key_values(url)?)
    };

    let mut mode = None;
    let mut roots = None;
    let mut kept = Vec::new();
    for pair in pairs {
        match pair.key.as_str() {
            "password" => {
                secret.0.push(pair.value.clone());
                secret.0.push(pair.raw_value.clone());
                kept.push(pair);
            }
            "sslmode" => mode = Some(SslMode::parse(&pair.value)?),
            "sslrootcert" => {
                roots =
                    Some(match pair.value.as_str() {
                        "" => return Err(
                            "sslrootcert is empty: give a PEM file of CA certificates, or `system`"
                                .into(),
                        ),
                        "system" => Roots::System,
                        path => Roots::File(PathBuf::from(path)),
                    });
            }
            key if UNSUPPORTED.contains(&key) => {
                return Err(format!(
                    "{key} is not supported: the coordinator authenticates the server (sslmode, \
                     sslrootcert) but offers no client certificate"
                ))
            }
            _ => kept.push(pair),
        }
    }
    let tls = tls_of(mode, roots)?;

    let rest = match rest {
        Rest::Url(base) => {
            let query: Vec<String> = kept
                .iter()
                .map(|pair| format!("{}={}", pair.raw_key, pair.raw_value))
                .collect();
            if query.is_empty() {
                base
            } else {
                format!("{base}?{}", query.join("&"))
            }
        }
        Rest::KeyValue => {
            let pairs: Vec<String> = kept
                .iter()
                .map(|pair| {
                    let value = pair.value.replace('\\', "\\\\").replace('\'', "\\'");
                    format!("{}='{value}'", pair.key)
                })
                .collect();
            pairs.join(" ")
        }
    };
    let config = rest
        .parse::<Config>()
        .map_err(|error| describe_parse_error(&error))?;
    if config.get_hosts().is_empty() && config.get_hostaddrs().is_empty() {
        return Err("no host: name the server (postgres://user@HOST/db, or host=HOST)".to_owned());
    }
    Ok((config, tls))
}

/// libpq's rules for the pair: the default mode is `prefer`, or `verify-full` with
/// `sslrootcert=system`, which allows no weaker mode; `require` with a CA file checks the issuer.
fn tls_of(mode: Option<SslMode>, roots: Option<Roots>) -> Result<Tls, String> {
    let mode = match (mode, &roots) {
        (Some(mode), _) => mode,
        (None, Some(Roots::System)) => SslMode::VerifyFull,
        (None, _) => SslMode::Prefer,
    };
    if roots == Some(Roots::System) && mode != SslMode::VerifyFull {
        return Err(format!(
            "sslmode={} may not be used with sslrootcert=system: the system's CAs vouch for host \
             names, so use sslmode=verify-full",
            mode.name()
        ));
    }
    let check = match (mode, roots) {
        (SslMode::VerifyFull, roots) => Check::Issuer {
            roots: roots.unwrap_or(Roots::System),
            name: true,
        },
        (SslMode::VerifyCa, roots) => Check::Issuer {
            roots: roots.unwrap_or(Roots::System),
            name: false,
        },
        (SslMode::Require, Some(roots)) => Check::Issuer { roots, name: false },
        _ => Check::Nothing,
    };
    Ok(Tls { mode, check })
}

/// What `tokio-postgres` gets back, once the TLS keys are out.
enum Rest {
    Url(String),
    KeyValue,
}

struct Pair {
    key: String,
    value: String,
    raw_key: String,
    raw_value: String,
}

/// `key=value&…`, percent-decoded.
fn url_query(query: &str) -> Result<Vec<Pair>, String> {
    query
        .split('&')
        .filter(|part| !part.is_empty())
        .enumerate()
        .map(|(i, part)| {
            let Some((raw_key, raw_value)) = part.split_once('=') else {
                return Err(format!("URL parameter {} has no `=`", i + 1));
            };
            let key = percent_decode(raw_key)
                .ok_or_else(|| format!("URL parameter {} has a malformed key", i + 1))?;
            let value = percent_decode(raw_value)
                .ok_or_else(|| format!("the value of URL parameter `{key}` is malformed"))?;
            Ok(Pair {
                key,
                value,
                raw_key: raw_key.to_owned(),
                raw_value: raw_value.to_owned(),
            })
        })
        .collect()
}

/// `%XX` escapes decoded; `None` if one is broken or the result is not UTF-8.
fn percent_decode(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = text.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// libpq's `key = value …` form: values bare (up to white space) or in single quotes, `\`
/// escaping the next character in both.
fn key_values(text: &str) -> Result<Vec<Pair>, String> {
    let mut pairs = Vec::new();
    let mut chars = text.chars().peekable();
    loop {
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        if chars.peek().is_none() {
            return Ok(pairs);
        }
        let mut key = String::new();
        while let Some(c) = chars.next_if(|c| !c.is_whitespace() && *c != '=') {
            key.push(c);
        }
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        if chars.next() != Some('=') {
            let after = pairs
                .last()
                .map(|pair: &Pair| format!(" (after `{}`)", pair.key))
                .unwrap_or_default();
            return Err(format!(
                "connection parameter {}{after} has no `=`",
                pairs.len() + 1
            ));
        }
        if key.is_empty() {
            return Err(format!(
                "connection parameter {} has no name before its `=`",
                pairs.len() + 1
            ));
        }
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        let mut value = String::new();
        if chars.next_if_eq(&'\'').is_some() {
            loop {
                match chars.next() {
                    Some('\'') => break,
                    Some('\\') => value.extend(chars.next()),
                    Some(c) => value.push(c),
                    None => return Err(format!("the value of `{key}` has no closing quote")),
                }
            }
        } else {
            while let Some(c) = chars.next_if(|c| !c.is_whitespace()) {
                if c == '\\' {
                    value.extend(chars.next());
                } else {
                    value.push(c);
                }
            }
            if value.is_empty() {
                return Err(format!("`{key}` has no value"));
            }
        }
        pairs.push(Pair {
            raw_key: key.clone(),
            raw_value: value.clone(),
            key,
            value,
        });
    }
}

/// `tokio-postgres`'s reason (the key at fault), without its "invalid connection string".
fn describe_parse_error(error: &tokio_postgres::Error) -> String {
    let mut source = std::error::Error::source(error);
    let Some(reason) = source else {
        return error.to_string();
    };
    let mut text = reason.to_string();
    source = reason.source();
    while let Some(cause) = source {
        let _ = write!(text, ": {cause}");
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tls(url: &str) -> Result<Tls, String> {
        parse(url, "r").map(|target| target.tls)
    }

    fn issuer(roots: Roots, name: bool) -> Check {
        Check::Issuer { roots, name }
    }

    #[test]
    fn sslmode_and_sslrootcert_as_libpq_reads_them() {
        let file = || Roots::File(PathBuf::from("/etc/ca.pem"));
        let cases = [
            ("postgres://u@h/db", SslMode::Prefer, Check::Nothing),
            (
                "postgres://u@h/db?sslmode=disable",
                SslMode::Disable,
                Check::Nothing,
            ),
            (
                "postgres://u@h/db?sslmode=allow",
                SslMode::Allow,
                Check::Nothing,
            ),
            (
                "postgres://u@h/db?sslmode=require",
                SslMode::Require,
                Check::Nothing,
            ),
            (
                "postgres://u@h/db?sslmode=require&sslrootcert=/etc/ca.pem",
                SslMode::Require,
                issuer(file(), false),
            ),
            (
                "postgres://u@h/db?sslmode=verify-ca",
                SslMode::VerifyCa,
                issuer(Roots::System, false),
            ),
            (
                "postgresql://u@h/db?sslrootcert=%2Fetc%2Fca.pem&sslmode=verify-full",
                SslMode::VerifyFull,
                issuer(file(), true),
            ),
            (
                "postgres://u@h/db?sslrootcert=system",
                SslMode::VerifyFull,
                issuer(Roots::System, true),
            ),
            (
                "host=h user=u sslmode = 'verify-ca' sslrootcert=/etc/ca.pem",
                SslMode::VerifyCa,
                issuer(file(), false),
            ),
            ("host=h sslmode=prefer", SslMode::Prefer, Check::Nothing),
        ];
        for (url, mode, check) in cases {
            assert_eq!(tls(url), Ok(Tls { mode, check }), "{url}");
        }
    }

    #[test]
    fn the_rest_reaches_tokio_postgres() {
        let target = parse(
            "postgres://app:pw@db.example:6543,other:7000/jobs?sslmode=verify-full&connect_timeout=2&application_name=x",
            "r",
        )
        .unwrap();
        assert_eq!(target.config.get_user(), Some("app"));
        assert_eq!(target.config.get_password(), Some(&b"pw"[..]));
        assert_eq!(target.config.get_dbname(), Some("jobs"));
        assert_eq!(target.config.get_ports(), [6543, 7000]);
        assert_eq!(
            target.config.get_connect_timeout(),
            Some(&Duration::from_secs(2))
        );
        assert_eq!(target.config.get_application_name(), Some("x"));
        assert_eq!(target.describe(), "app@db.example:6543,other:7000/jobs");

        let target = parse(
            r"host=db port=5433 user=app password='it\'s a secret' dbname=jobs sslmode=require",
            "web-1",
        )
        .unwrap();
        assert_eq!(target.config.get_password(), Some(&b"it's a secret"[..]));
        assert_eq!(
            target.config.get_application_name(),
            Some("scheduler web-1")
        );
        assert_eq!(target.describe(), "app@db:5433/jobs");
        assert_eq!(target.tls.mode, SslMode::Require);
    }

    #[test]
    fn bad_strings_are_errors_that_name_the_problem() {
        let cases = [
            ("postgres://h/db?sslmode=verify", "sslmode 'verify' is not one of disable, allow, prefer, require, verify-ca, verify-full"),
            ("postgres://h/db?sslmode=require&sslrootcert=system", "sslmode=require may not be used with sslrootcert=system"),
            ("postgres://h/db?sslrootcert=", "sslrootcert is empty"),
            ("postgres://h/db?sslcert=/c.pem", "sslcert is not supported"),
            ("postgres://h/db?sslmode", "URL parameter 1 has no `=`"),
            ("postgres://h/db?a=%zz", "the value of URL parameter `a` is malformed"),
            ("postgres://h/db?bogus=1", "unknown option `bogus`"),
            ("postgres://h:port/db", "invalid value for option `port`"),
            ("host=h password='open", "the value of `password` has no closing quote"),
            ("host=h user", "connection parameter 2 (after `host`) has no `=`"),
            ("user", "connection parameter 1 has no `=`"),
            ("host=h =x", "connection parameter 2 has no name before its `=`"),
            ("host=h user=", "`user` has no value"),
            ("host=h sslmode=on", "sslmode 'on' is not one of"),
            ("", "no host: name the server"),
            ("postgres:///db?sslmode=require", "no host: name the server"),
        ];
        for (url, expected) in cases {
            let Err(error) = parse(url, "r") else {
                panic!("{url} parsed")
            };
            assert!(
                error.starts_with("invalid PostgreSQL connection string: ")
                    && error.contains(expected),
                "{url}: {error}"
            );
        }
    }

    #[test]
    fn odd_strings_never_panic() {
        let odd = [
            "",
            " ",
            "=",
            "''",
            "'",
            "\\",
            "postgres://",
            "postgres://@",
            "postgres://:@",
            "postgres://?",
            "postgres://?&&",
            "postgres://u:p@?=",
            "postgres://[::1",
            "%",
            "postgres://h/%",
            "postgres://h/db?x=%e2%82",
            "k='\\",
            "k=\\",
            "ü=ü",
            "postgres://ü:ü@ü/ü?ü=ü",
        ];
        for url in odd {
            let _ = parse(url, "r");
        }
    }

    #[test]
    fn the_password_is_scrubbed_from_parse_errors() {
        for url in [
            "postgres://u:hunter2-secret@h/db?sslmode=nope",
            "postgres://u:hunter2%2Dsecret@h/db?hunter2-secret=1",
            "host=h password=hunter2-secret hunter2-secret",
            "host=h password=hunter2-secret port=x",
        ] {
            let Err(error) = parse(url, "r") else {
                panic!("{url} parsed")
            };
            assert!(!error.contains("hunter2"), "{url}: {error}");
        }
    }

    #[test]
    fn unix_sockets_skip_tls_as_in_libpq() {
        let unix = parse("host=/var/run/postgresql sslmode=require", "r").unwrap();
        assert!(unix.only_unix_sockets());
        let tcp = parse("host=/var/run/postgresql,db sslmode=require", "r").unwrap();
        assert!(!tcp.only_unix_sockets());
        let addr = parse("host=/tmp hostaddr=127.0.0.1", "r").unwrap();
        assert!(!addr.only_unix_sockets());
    }
}

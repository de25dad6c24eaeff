//! TLS for the coordinator's connections: rustls, with libpq's `sslmode` checks.
//!
//! # Why these crates
//! `tokio-postgres-rustls` is the adapter between `tokio-postgres` and rustls that the
//! rust-postgres community maintains alongside the driver (it also gives SCRAM channel binding).
//! rustls is pure Rust, and with its `ring` provider a fresh machine needs no OpenSSL headers, no
//! cmake and no NASM: a C compiler for `ring`'s few assembly files is all. The system's CAs come
//! from `rustls-native-certs`, the rustls project's reader of the operating system's store, so
//! `verify-full` trusts what `psql` on the same machine trusts.
//!
//! # What is checked
//! ```text
//! sslmode       TLS            certificate
//! disable       never          -
//! allow         if demanded    not checked
//! prefer        if offered     not checked
//! require       always         not checked (with sslrootcert=FILE: issued by its CA)
//! verify-ca     always         issued by a trusted CA
//! verify-full   always         issued by a trusted CA, for the host name connected to
//! ```
//! The host name is `host` (with `hostaddr`, the name checked while the address is dialled).
//! A certificate refused here is reported in words ([`Probe`]), naming the host and the CA file.

use std::path::Path;
use std::sync::{Arc, Mutex, PoisonError};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::{verify_server_cert_signed_by_trust_anchor, verify_server_name};
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, WebPkiSupportedAlgorithms};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::server::ParsedCertificate;
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};
use tokio_postgres_rustls::MakeRustlsConnect;

use super::url::{Check, Roots, SslMode};

/// What one connection attempt's certificate check saw.
#[derive(Debug, Default)]
pub(super) struct Probe {
    /// The server sent a certificate: a TLS handshake took place.
    pub(super) handshake: bool,
    /// Why the certificate was refused.
    pub(super) refused: Option<String>,
}

pub(super) type SharedProbe = Arc<Mutex<Probe>>;

/// What the probe saw, leaving it empty.
pub(super) fn take(probe: &SharedProbe) -> Probe {
    std::mem::take(&mut *probe.lock().unwrap_or_else(PoisonError::into_inner))
}

/// A connector for one attempt; the CA file is read anew each time, so a rotated file is
/// picked up on the next reconnection.
pub(super) fn connector(
    mode: SslMode,
    check: &Check,
    probe: SharedProbe,
) -> Result<MakeRustlsConnect, String> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let algorithms = provider.signature_verification_algorithms;
    let trust = match check {
        Check::Nothing => None,
        Check::Issuer { roots, name } => Some(Trust {
            store: Arc::new(load(roots)?),
            source: match roots {
                Roots::System => "the system's CA certificates".to_owned(),
                Roots::File(path) => format!("the CA in {}", path.display()),
            },
            name: *name,
        }),
    };
    let verifier = Verifier {
        mode,
        trust,
        algorithms,
        probe,
    };
    let config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|error| format!("TLS set-up: {error}"))?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(verifier))
        .with_no_client_auth();
    Ok(MakeRustlsConnect::new(config))
}

fn load(roots: &Roots) -> Result<RootCertStore, String> {
    let mut store = RootCertStore::empty();
    match roots {
        Roots::File(path) => {
            for (n, cert) in read_pem(path)?.into_iter().enumerate() {
                store.add(cert).map_err(|error| {
                    format!(
                        "sslrootcert {}: certificate {} is not a usable CA certificate: {error}",
                        path.display(),
                        n + 1
                    )
                })?;
            }
        }
        Roots::System => {
            let found = rustls_native_certs::load_native_certs();
            let (added, _) = store.add_parsable_certificates(found.certs);
            if added == 0 {
                let errors: Vec<String> = found.errors.iter().map(ToString::to_string).collect();
                return Err(format!(
                    "no CA certificates found on this system{}; install them (the \
                     `ca-certificates` package) or name a CA file with sslrootcert=PATH",
                    if errors.is_empty() {
                        String::new()
                    } else {
                        format!(" ({})", errors.join("; "))
                    }
                ));
            }
        }
    }
    Ok(store)
}

fn read_pem(path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let problem =
        |error: &dyn std::fmt::Display| format!("sslrootcert {}: {error}", path.display());
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|error| problem(&error))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|error| problem(&error))?;
    if certs.is_empty() {
        return Err(problem(
            &"no PEM certificate (-----BEGIN CERTIFICATE-----) in it",
        ));
    }
    Ok(certs)
}

struct Trust {
    store: Arc<RootCertStore>,
    /// "the CA in FILE", for messages.
    source: String,
    /// Whether the host name is checked too (`verify-full`).
    name: bool,
}

/// The certificate check of one connection attempt; it tells the [`Probe`] what it saw.
struct Verifier {
    mode: SslMode,
    trust: Option<Trust>,
    algorithms: WebPkiSupportedAlgorithms,
    probe: SharedProbe,
}

impl std::fmt::Debug for Verifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Verifier")
            .field("mode", &self.mode)
            .field("trust", &self.trust.as_ref().map(|trust| &trust.source))
            .finish_non_exhaustive()
    }
}

impl Verifier {
    fn refuse(&self, message: String, error: rustls::Error) -> rustls::Error {
        self.probe
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .refused = Some(message);
        error
    }
}

impl ServerCertVerifier for Verifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        self.probe
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .handshake = true;
        let Some(trust) = &self.trust else {
            return Ok(ServerCertVerified::assertion());
        };
        let host = server_name.to_str();
        let mode = self.mode.name();
        let cert = ParsedCertificate::try_from(end_entity).map_err(|error| {
            let message = format!("the certificate of {host} cannot be read: {error}");
            self.refuse(message, error)
        })?;
        verify_server_cert_signed_by_trust_anchor(
            &cert,
            &trust.store,
            intermediates,
            now,
            self.algorithms.all,
        )
        .map_err(|error| {
            let message = format!(
                "the certificate of {host} is not trusted by {} (sslmode={mode}): {error}",
                trust.source
            );
            self.refuse(message, error)
        })?;
        if trust.name {
            verify_server_name(&cert, server_name).map_err(|error| {
                let message = format!(
                    "the certificate of the server does not match the host name {host} \
                     (sslmode={mode}): {error}"
                );
                self.refuse(message, error)
            })?;
        }
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    fn file_check(path: &str) -> Check {
        Check::Issuer {
            roots: Roots::File(PathBuf::from(path)),
            name: true,
        }
    }

    #[test]
    fn a_missing_or_empty_ca_file_is_an_error_naming_it() {
        let probe = SharedProbe::default();
        let missing = "/nonexistent/scheduler-test-ca.pem";
        let Err(error) = connector(SslMode::VerifyFull, &file_check(missing), probe.clone()) else {
            panic!("a missing CA file was accepted")
        };
        assert!(
            error.starts_with(&format!("sslrootcert {missing}: ")),
            "{error}"
        );

        let dir = std::env::temp_dir().join(format!("sched-tls-unit-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let empty = dir.join("empty.pem");
        std::fs::write(&empty, "not a certificate\n").unwrap();
        let check = file_check(empty.to_str().unwrap());
        let Err(error) = connector(SslMode::VerifyFull, &check, probe) else {
            panic!("a CA file without certificates was accepted")
        };
        let _ = std::fs::remove_dir_all(&dir);
        assert!(error.contains("no PEM certificate"), "{error}");
    }

    #[test]
    fn verify_full_trusts_the_systems_cas_by_default() {
        let system = Check::Issuer {
            roots: Roots::System,
            name: true,
        };
        let result = connector(SslMode::VerifyFull, &system, SharedProbe::default());
        // Debian's and most distributions' bundle; without one the error says what to do.
        if Path::new("/etc/ssl/certs/ca-certificates.crt").is_file() {
            assert!(result.is_ok(), "{:?}", result.err());
        } else if let Err(error) = result {
            assert!(error.contains("sslrootcert=PATH"), "{error}");
        }
    }

    #[test]
    fn no_check_needs_no_file() {
        assert!(connector(SslMode::Require, &Check::Nothing, SharedProbe::default()).is_ok());
    }
}

//! Reading PEM files into rustls types, with errors that name the file and its flag.

use std::path::Path;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

use crate::TlsError;

fn file_error(flag: &'static str, path: &Path, reason: impl Into<String>) -> TlsError {
    TlsError::File {
        flag,
        path: path.display().to_string(),
        reason: reason.into(),
    }
}

/// Every certificate in a PEM file (at least one).
pub(crate) fn certs(
    flag: &'static str,
    path: &Path,
) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let bytes = std::fs::read(path).map_err(|e| file_error(flag, path, e.to_string()))?;
    let certs = CertificateDer::pem_slice_iter(&bytes)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| file_error(flag, path, format!("not a PEM certificate file: {e}")))?;
    if certs.is_empty() {
        return Err(file_error(flag, path, "no CERTIFICATE block in the file"));
    }
    Ok(certs)
}

/// The private key of a PEM file (PKCS#8, PKCS#1 or SEC1).
pub(crate) fn key(flag: &'static str, path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    let bytes = std::fs::read(path).map_err(|e| file_error(flag, path, e.to_string()))?;
    PrivateKeyDer::from_pem_slice(&bytes)
        .map_err(|e| file_error(flag, path, format!("no usable PEM private key: {e}")))
}

/// A root store of every certificate in `paths`.
pub(crate) fn roots(
    flag: &'static str,
    paths: &[std::path::PathBuf],
) -> Result<rustls::RootCertStore, TlsError> {
    let mut store = rustls::RootCertStore::empty();
    for path in paths {
        for cert in certs(flag, path)? {
            store
                .add(cert)
                .map_err(|e| file_error(flag, path, format!("not a usable CA certificate: {e}")))?;
        }
    }
    Ok(store)
}

/// Modification times of `paths` (None for a file that cannot be read now): a change means
/// the material is read again.
pub(crate) fn mtimes(paths: &[&Path]) -> Vec<Option<std::time::SystemTime>> {
    paths
        .iter()
        .map(|p| std::fs::metadata(p).and_then(|m| m.modified()).ok())
        .collect()
}

/// A certified key from a certificate chain file and a key file, checked to belong together.
pub(crate) fn certified_key(
    provider: &rustls::crypto::CryptoProvider,
    cert_flag: &'static str,
    cert_path: &Path,
    key_flag: &'static str,
    key_path: &Path,
) -> Result<rustls::sign::CertifiedKey, TlsError> {
    let chain = certs(cert_flag, cert_path)?;
    let key = key(key_flag, key_path)?;
    let signing = provider
        .key_provider
        .load_private_key(key)
        .map_err(|e| file_error(key_flag, key_path, format!("unusable private key: {e}")))?;
    let certified = rustls::sign::CertifiedKey::new(chain, signing);
    certified.keys_match().map_err(|e| {
        TlsError::Config(format!(
            "{cert_flag} {} and {key_flag} {} do not belong together: {e}",
            cert_path.display(),
            key_path.display()
        ))
    })?;
    Ok(certified)
}

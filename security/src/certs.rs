//! A CA and the certificates of a standalone Webb setup (`webb certs`), made with rcgen.
//!
//! Names (what the defaults of the servers' and the relay's flags expect):
//! - a node (agent): `<node>`, `<node>.node.webb.local` and `node.webb.local` (one name every
//!   node shares, for `webb-relay --peer-tls-server-name node.webb.local`), plus any `--dns`/`--ip`;
//!   server use only.
//! - the relay: `relay.webb.local` (the name agents trust with payload) plus `--dns`/`--ip`;
//!   server and client use (it serves clients and connects to agents).
//! - a client (`webb` users): `<name>.client.webb.local`; client use only, so never trusted
//!   with payload.

use std::net::IpAddr;
use std::time::{Duration, SystemTime};

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, SanType,
};

/// Default lifetimes: a CA outlives many rotations of what it signs.
pub const CA_DAYS: u32 = 3650;
pub const NODE_DAYS: u32 = 365;
pub const RELAY_DAYS: u32 = 365;
pub const CLIENT_DAYS: u32 = 90;

const DAY: Duration = Duration::from_secs(86_400);

/// When a certificate is valid.
#[derive(Debug, Clone, Copy)]
pub struct Validity {
    pub not_before: SystemTime,
    pub not_after: SystemTime,
}

impl Validity {
    /// From an hour ago (clocks differ a little) for `days` days.
    pub fn days(days: u32) -> Self {
        let now = SystemTime::now();
        Validity {
            not_before: now - Duration::from_secs(3600),
            not_after: now + DAY * days,
        }
    }
}

/// PEM text of a certificate and its private key.
#[derive(Debug, Clone)]
pub struct Pem {
    pub cert: String,
    pub key: String,
}

/// What a certificate is for.
#[derive(Debug, Clone)]
pub struct LeafSpec {
    pub common_name: String,
    pub dns_names: Vec<String>,
    pub ips: Vec<IpAddr>,
    pub server: bool,
    pub client: bool,
    pub validity: Validity,
}

impl LeafSpec {
    /// An agent's certificate.
    pub fn node(name: &str, dns: &[String], ips: &[IpAddr], days: u32) -> Self {
        let mut names = vec![
            name.to_string(),
            format!("{name}.node.webb.local"),
            "node.webb.local".to_string(),
        ];
        names.extend(dns.iter().cloned());
        LeafSpec {
            common_name: name.to_string(),
            dns_names: names,
            ips: ips.to_vec(),
            server: true,
            client: false,
            validity: Validity::days(days),
        }
    }

    /// The relay's certificate (server and client).
    pub fn relay(dns: &[String], ips: &[IpAddr], days: u32) -> Self {
        let mut names = vec![crate::trust::DEFAULT_PAYLOAD_NAME.to_string()];
        names.extend(dns.iter().cloned());
        LeafSpec {
            common_name: crate::trust::DEFAULT_PAYLOAD_NAME.to_string(),
            dns_names: names,
            ips: ips.to_vec(),
            server: true,
            client: true,
            validity: Validity::days(days),
        }
    }

    /// A user's client certificate.
    pub fn client(name: &str, days: u32) -> Self {
        LeafSpec {
            common_name: name.to_string(),
            dns_names: vec![format!("{name}.client.webb.local")],
            ips: Vec::new(),
            server: false,
            client: true,
            validity: Validity::days(days),
        }
    }
}

/// A certificate authority that signs the others.
pub struct Ca {
    issuer: Issuer<'static, KeyPair>,
    cert_pem: String,
}

impl std::fmt::Debug for Ca {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ca").finish_non_exhaustive()
    }
}

fn err(what: &str, e: rcgen::Error) -> anyhow::Error {
    anyhow::anyhow!("{what}: {e}")
}

impl Ca {
    /// A new CA named `name`.
    pub fn generate(name: &str, validity: Validity) -> anyhow::Result<Self> {
        let mut params = CertificateParams::default();
        params.distinguished_name.push(DnType::CommonName, name);
        params
            .distinguished_name
            .push(DnType::OrganizationName, "Webb");
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        params.not_before = validity.not_before.into();
        params.not_after = validity.not_after.into();
        let key = KeyPair::generate().map_err(|e| err("generating the CA key", e))?;
        let cert = params
            .self_signed(&key)
            .map_err(|e| err("signing the CA certificate", e))?;
        Ok(Ca {
            cert_pem: cert.pem(),
            issuer: Issuer::new(params, key),
        })
    }

    /// A CA from its PEM certificate and key (as [`Ca::cert_pem`] and [`Ca::key_pem`] wrote).
    pub fn from_pem(cert_pem: &str, key_pem: &str) -> anyhow::Result<Self> {
        let key = KeyPair::from_pem(key_pem).map_err(|e| err("reading the CA key", e))?;
        let issuer = Issuer::from_ca_cert_pem(cert_pem, key)
            .map_err(|e| err("reading the CA certificate", e))?;
        Ok(Ca {
            issuer,
            cert_pem: cert_pem.to_string(),
        })
    }

    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    pub fn key_pem(&self) -> String {
        self.issuer.key().serialize_pem()
    }

    /// A certificate signed by this CA.
    pub fn issue(&self, spec: &LeafSpec) -> anyhow::Result<Pem> {
        let mut params = CertificateParams::default();
        params
            .distinguished_name
            .push(DnType::CommonName, spec.common_name.as_str());
        params
            .distinguished_name
            .push(DnType::OrganizationName, "Webb");
        for name in &spec.dns_names {
            let dns = name
                .as_str()
                .try_into()
                .map_err(|e| err(&format!("DNS name {name:?}"), e))?;
            params.subject_alt_names.push(SanType::DnsName(dns));
        }
        params
            .subject_alt_names
            .extend(spec.ips.iter().map(|ip| SanType::IpAddress(*ip)));
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        if spec.server {
            params
                .extended_key_usages
                .push(ExtendedKeyUsagePurpose::ServerAuth);
        }
        if spec.client {
            params
                .extended_key_usages
                .push(ExtendedKeyUsagePurpose::ClientAuth);
        }
        params.not_before = spec.validity.not_before.into();
        params.not_after = spec.validity.not_after.into();
        params.use_authority_key_identifier_extension = true;
        let key = KeyPair::generate().map_err(|e| err("generating a key", e))?;
        let cert = params.signed_by(&key, &self.issuer).map_err(|e| {
            err(
                &format!("signing the certificate of {}", spec.common_name),
                e,
            )
        })?;
        Ok(Pem {
            cert: cert.pem(),
            key: key.serialize_pem(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_ca_read_back_from_its_files_signs_certificates_that_chain_to_it() {
        let ca = Ca::generate("Webb test CA", Validity::days(1)).unwrap();
        let again = Ca::from_pem(ca.cert_pem(), &ca.key_pem()).unwrap();
        let leaf = again
            .issue(&LeafSpec::node(
                "node-1",
                &[],
                &["198.18.0.1".parse().unwrap()],
                1,
            ))
            .unwrap();
        use rustls::client::danger::ServerCertVerifier;
        use rustls::pki_types::pem::PemObject;
        let roots = {
            let mut r = rustls::RootCertStore::empty();
            r.add(
                rustls::pki_types::CertificateDer::from_pem_slice(ca.cert_pem().as_bytes())
                    .unwrap(),
            )
            .unwrap();
            std::sync::Arc::new(r)
        };
        let verifier =
            rustls::client::WebPkiServerVerifier::builder_with_provider(roots, crate::provider())
                .build()
                .unwrap();
        let der = rustls::pki_types::CertificateDer::from_pem_slice(leaf.cert.as_bytes()).unwrap();
        for name in [
            "node-1",
            "node-1.node.webb.local",
            "node.webb.local",
            "198.18.0.1",
        ] {
            let name = rustls::pki_types::ServerName::try_from(name).unwrap();
            verifier
                .verify_server_cert(&der, &[], &name, &[], rustls::pki_types::UnixTime::now())
                .unwrap_or_else(|e| panic!("{name:?}: {e}"));
        }
    }
}

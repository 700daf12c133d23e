//! The lab's certificate authority and keys, generated in Rust with rcgen (ECDSA P-256).
//!
//! Files live in `DIR/pki/`. They are created once and reused by later `up`s, so kubeconfigs
//! written earlier stay valid. Other components (the CNPG emulator's webhook) get serving
//! certificates from the same CA through [`issue_serving_cert`], so every TLS hop in the lab is
//! verified against `DIR/pki/ca.crt`.

use std::path::Path;

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose,
};

use super::error::{LabError, Result};
use super::layout::LabLayout;

/// Subject alternative names of the apiservers' serving certificate.
const LOOPBACK_NAMES: [&str; 2] = ["127.0.0.1", "localhost"];

fn pki_error(action: &'static str) -> impl FnOnce(rcgen::Error) -> LabError {
    move |source| LabError::Pki { action, source }
}

fn read(path: &Path) -> Result<String> {
    std::fs::read_to_string(path).map_err(LabError::io("reading", path))
}

/// Writes a file readable only by its owner (keys and tokens).
pub fn write_private(path: &Path, contents: &str) -> Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .map_err(LabError::io("writing", path))?;
    file.write_all(contents.as_bytes())
        .map_err(LabError::io("writing", path))
}

/// Creates whatever of the CA, apiserver serving certificate, ServiceAccount signing key and
/// admin token is missing. Returns the admin token.
pub(crate) fn ensure(layout: &LabLayout) -> Result<String> {
    if !layout.ca_cert().exists() || !layout.ca_key().exists() {
        let key = KeyPair::generate().map_err(pki_error("generating the CA key"))?;
        let cert = ca_params()
            .self_signed(&key)
            .map_err(pki_error("self-signing the CA"))?;
        write_private(&layout.ca_key(), &key.serialize_pem())?;
        std::fs::write(layout.ca_cert(), cert.pem())
            .map_err(LabError::io("writing", layout.ca_cert()))?;
        // A new CA invalidates every certificate issued by the old one.
        let _ = std::fs::remove_file(layout.apiserver_cert());
    }
    // Loopback for the host, and what the real tier's nodes and pods dial (node IPs, each
    // member's `kubernetes` ClusterIP and names). The list is kept beside the certificate: a
    // certificate issued for another list is issued again.
    let mut names: Vec<String> = LOOPBACK_NAMES.map(String::from).to_vec();
    names.extend(super::real::plan::apiserver_addresses());
    let names_file = layout.pki_dir().join("apiserver.names");
    let wanted = names.join("\n");
    let issued_for = std::fs::read_to_string(&names_file).unwrap_or_default();
    if !layout.apiserver_cert().exists() || !layout.apiserver_key().exists() || issued_for != wanted
    {
        let names: Vec<&str> = names.iter().map(String::as_str).collect();
        let (cert, key) = issue_with(layout, &names)?;
        write_private(&layout.apiserver_key(), &key)?;
        std::fs::write(layout.apiserver_cert(), cert)
            .map_err(LabError::io("writing", layout.apiserver_cert()))?;
        std::fs::write(&names_file, wanted).map_err(LabError::io("writing", &names_file))?;
    }
    if !layout.sa_key().exists() || !layout.sa_pub().exists() {
        let key =
            KeyPair::generate().map_err(pki_error("generating the ServiceAccount signing key"))?;
        write_private(&layout.sa_key(), &key.serialize_pem())?;
        std::fs::write(layout.sa_pub(), key.public_key_pem())
            .map_err(LabError::io("writing", layout.sa_pub()))?;
    }
    let tokens = layout.tokens_csv();
    if !tokens.exists() {
        let token = random_hex(24)?;
        // token,user,uid,"groups": system:masters bypasses RBAC, like a cluster's admin.conf.
        write_private(
            &tokens,
            &format!("{token},lab-admin,lab-admin,\"system:masters\"\n"),
        )?;
    }
    let line = read(&tokens)?;
    line.split(',')
        .next()
        .filter(|t| !t.trim().is_empty())
        .map(|t| t.trim().to_owned())
        .ok_or_else(|| LabError::Parse {
            what: tokens.display().to_string(),
            message: "no token on the first line".into(),
        })
}

fn ca_params() -> CertificateParams {
    let mut params = CertificateParams::default();
    params.distinguished_name = DistinguishedName::new();
    params
        .distinguished_name
        .push(DnType::CommonName, "federator-lab-ca");
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    params
}

/// PEM of the lab CA certificate of the lab in `dir`.
pub fn ca_pem(dir: impl AsRef<Path>) -> Result<String> {
    read(&LabLayout::open(dir)?.ca_cert())
}

/// Issues a TLS serving certificate from the lab CA of the lab in `dir`, for the given DNS names
/// or IP addresses (e.g. `["127.0.0.1", "localhost"]`). Returns `(certificate_pem, key_pem)`.
/// The lab must have been brought up once (the CA exists).
pub fn issue_serving_cert(dir: impl AsRef<Path>, names: &[&str]) -> Result<(String, String)> {
    issue_with(&LabLayout::open(dir)?, names)
}

fn issue_with(layout: &LabLayout, names: &[&str]) -> Result<(String, String)> {
    let ca_key =
        KeyPair::from_pem(&read(&layout.ca_key())?).map_err(pki_error("loading the CA key"))?;
    // The issuer is rebuilt from the same parameters as the CA: its subject and key are all a
    // signature needs (parsing the PEM back would need rcgen's x509-parser feature).
    let issuer = Issuer::new(ca_params(), ca_key);
    let mut params =
        CertificateParams::new(names.iter().map(|n| (*n).to_owned()).collect::<Vec<_>>())
            .map_err(pki_error("building the certificate request"))?;
    params.distinguished_name = DistinguishedName::new();
    params.distinguished_name.push(
        DnType::CommonName,
        names.first().copied().unwrap_or("federator-lab"),
    );
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    let key = KeyPair::generate().map_err(pki_error("generating a serving key"))?;
    let cert = params
        .signed_by(&key, &issuer)
        .map_err(pki_error("signing a serving certificate"))?;
    Ok((cert.pem(), key.serialize_pem()))
}

/// `bytes` random bytes from the kernel, hex-encoded: tokens and namespace suffixes.
pub fn random_hex(bytes: usize) -> Result<String> {
    use std::io::Read;
    let mut buf = vec![0u8; bytes];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut buf))
        .map_err(LabError::io("reading", "/dev/urandom"))?;
    Ok(buf.iter().map(|b| format!("{b:02x}")).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serving_certificates_chain_to_the_lab_ca() {
        let dir = tempfile::tempdir().unwrap();
        let layout = LabLayout::create(dir.path()).unwrap();
        let token = ensure(&layout).unwrap();
        assert_eq!(token.len(), 48);
        // A second call reuses everything: the token is stable.
        assert_eq!(ensure(&layout).unwrap(), token);
        let (cert, key) = issue_serving_cert(dir.path(), &["127.0.0.1", "localhost"]).unwrap();
        assert!(cert.starts_with("-----BEGIN CERTIFICATE-----"));
        assert!(key.contains("PRIVATE KEY"));
        assert!(
            ca_pem(dir.path())
                .unwrap()
                .starts_with("-----BEGIN CERTIFICATE-----")
        );
    }
}

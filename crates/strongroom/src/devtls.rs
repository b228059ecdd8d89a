//! A development certificate authority and server certificate, generated once
//! into `DIR/tls/`. Clients trust `ca.pem`.

use std::path::PathBuf;

use anyhow::{Context, Result};
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose};

use crate::datadir::{DataDir, write_private};

/// Returns (server cert PEM, server key PEM, CA cert path), generating them if missing.
pub fn ensure(dir: &DataDir) -> Result<(Vec<u8>, Vec<u8>, PathBuf)> {
    let tls = dir.tls_dir();
    let (ca_path, cert_path, key_path) = (
        tls.join("ca.pem"),
        tls.join("server.pem"),
        tls.join("server-key.pem"),
    );
    if !(ca_path.exists() && cert_path.exists() && key_path.exists()) {
        std::fs::create_dir_all(&tls).context("could not create the tls directory")?;
        std::fs::set_permissions(&tls, std::os::unix::fs::PermissionsExt::from_mode(0o700))?;
        let ca_key = KeyPair::generate().context("could not generate the dev CA key")?;
        let mut ca_params = CertificateParams::new(Vec::<String>::new())?;
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        ca_params.distinguished_name.push(
            DnType::CommonName,
            "Strongroom development CA (not for production)",
        );
        let ca_cert = ca_params.self_signed(&ca_key)?;
        let issuer = Issuer::new(ca_params, ca_key);

        let server_key = KeyPair::generate()?;
        let mut params = CertificateParams::new(vec![
            "localhost".to_string(),
            "127.0.0.1".to_string(),
            "::1".to_string(),
        ])?;
        params
            .distinguished_name
            .push(DnType::CommonName, "Strongroom development server");
        let cert = params.signed_by(&server_key, &issuer)?;
        write_private(&ca_path, ca_cert.pem().as_bytes())?;
        write_private(&cert_path, cert.pem().as_bytes())?;
        write_private(&key_path, server_key.serialize_pem().as_bytes())?;
    }
    Ok((
        std::fs::read(&cert_path)?,
        std::fs::read(&key_path)?,
        ca_path,
    ))
}

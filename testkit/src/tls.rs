//! Throwaway certificate authorities and the certificates they sign, made with the
//! `openssl` command for a test's TLS servers and clients (P-256 keys: quick to make).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use tempfile::TempDir;

/// A CA of the test's own: its certificate, and a key to sign others with.
pub struct TestCa {
    pub cert: PathBuf,
    key: PathBuf,
    dir: TempDir,
}

/// A certificate signed by a [`TestCa`], and its private key (PKCS#8 PEM).
#[derive(Debug, Clone)]
pub struct Issued {
    pub cert: PathBuf,
    pub key: PathBuf,
}

impl TestCa {
    /// A new CA named `name` (its certificate's subject).
    pub fn new(name: &str) -> Self {
        Self::new_in(&std::env::temp_dir(), name)
    }

    /// A new CA named `name`, its files in a directory made under `parent` (removed with
    /// the CA).
    pub fn new_in(parent: &Path, name: &str) -> Self {
        let dir = tempfile::Builder::new()
            .prefix("stasis-ca-")
            .tempdir_in(parent)
            .expect("CA dir");
        let cert = dir.path().join("ca.crt");
        let key = dir.path().join("ca.key");
        openssl(&[
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-days",
            "2",
            "-subj",
            &format!("/CN={name}"),
            "-addext",
            "basicConstraints=critical,CA:TRUE",
            "-addext",
            "keyUsage=critical,keyCertSign,cRLSign",
            "-keyout",
            path(&key),
            "-out",
            path(&cert),
        ]);
        Self { cert, key, dir }
    }

    /// A certificate for `names` (DNS names or IP addresses, its subject alternative
    /// names), good for a server and a client.
    pub fn issue(&self, file: &str, names: &[&str]) -> Issued {
        let dir = self.dir.path();
        let key = dir.join(format!("{file}.key"));
        let csr = dir.join(format!("{file}.csr"));
        let cert = dir.join(format!("{file}.crt"));
        let ext = dir.join(format!("{file}.ext"));
        let alt = names
            .iter()
            .map(|n| match n.parse::<std::net::IpAddr>() {
                Ok(_) => format!("IP:{n}"),
                Err(_) => format!("DNS:{n}"),
            })
            .collect::<Vec<_>>()
            .join(",");
        std::fs::write(
            &ext,
            format!(
                "subjectAltName={alt}\nbasicConstraints=CA:FALSE\n\
                 keyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth,clientAuth\n"
            ),
        )
        .expect("write extensions");
        openssl(&[
            "req",
            "-new",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-subj",
            &format!("/CN={}", names.first().copied().unwrap_or(file)),
            "-keyout",
            path(&key),
            "-out",
            path(&csr),
        ]);
        openssl(&[
            "x509",
            "-req",
            "-in",
            path(&csr),
            "-CA",
            path(&self.cert),
            "-CAkey",
            path(&self.key),
            "-CAcreateserial",
            "-days",
            "2",
            "-extfile",
            path(&ext),
            "-out",
            path(&cert),
        ]);
        Issued { cert, key }
    }
}

fn path(p: &Path) -> &str {
    p.to_str().expect("UTF-8 temp path")
}

fn openssl(args: &[&str]) {
    let out = Command::new("openssl")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run openssl");
    assert!(
        out.status.success(),
        "openssl {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

//! The cluster store over TLS: an etcd (Debian's) that demands client certificates, reached
//! with `EtcdConfig`'s CA and client identity; refused without them. Certificates are made
//! with the `openssl` command in a temp dir; etcd listens on a loopback port of its own.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use berth::cluster::{ClusterStore, Etcd, EtcdConfig, EtcdTls};
use berth::sandbox::EtcdServer;

fn openssl(dir: &Path, args: &[&str]) {
    let st = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .expect("openssl");
    assert!(st.success(), "openssl {args:?}");
}

/// A CA, a server certificate for 127.0.0.1 and a client certificate, signed by the CA.
fn certificates(dir: &Path) {
    openssl(
        dir,
        &[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=berth-test-ca",
            "-keyout",
            "ca.key",
            "-out",
            "ca.pem",
        ],
    );
    std::fs::write(dir.join("server.ext"), "subjectAltName=IP:127.0.0.1\n").unwrap();
    std::fs::write(dir.join("client.ext"), "extendedKeyUsage=clientAuth\n").unwrap();
    for (who, ext) in [("server", "server.ext"), ("client", "client.ext")] {
        openssl(
            dir,
            &[
                "req",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-subj",
                &format!("/CN=berth-test-{who}"),
                "-keyout",
                &format!("{who}.key"),
                "-out",
                &format!("{who}.csr"),
            ],
        );
        openssl(
            dir,
            &[
                "x509",
                "-req",
                "-in",
                &format!("{who}.csr"),
                "-CA",
                "ca.pem",
                "-CAkey",
                "ca.key",
                "-CAcreateserial",
                "-days",
                "1",
                "-extfile",
                ext,
                "-out",
                &format!("{who}.pem"),
            ],
        );
    }
}

#[tokio::test]
async fn etcd_over_tls_with_a_client_certificate() {
    if !EtcdServer::installed() || Command::new("openssl").arg("version").output().is_err() {
        println!("SKIPPED: needs etcd (etcd-server) and openssl");
        return;
    }
    let dir = std::env::temp_dir().join(format!("berth-etcd-tls-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    certificates(&dir);
    let port = |_| {
        std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port()
    };
    let (cp, pp) = (port(0), port(1));
    let client_url = format!("https://127.0.0.1:{cp}");
    let peer_url = format!("http://127.0.0.1:{pp}");
    let mut etcd = Command::new("etcd")
        .args(["--name", "tls", "--data-dir"])
        .arg(dir.join("data"))
        .args([
            "--listen-client-urls",
            &client_url,
            "--advertise-client-urls",
            &client_url,
        ])
        .args([
            "--listen-peer-urls",
            &peer_url,
            "--initial-advertise-peer-urls",
            &peer_url,
        ])
        .args(["--initial-cluster", &format!("tls={peer_url}")])
        .arg("--cert-file")
        .arg(dir.join("server.pem"))
        .arg("--key-file")
        .arg(dir.join("server.key"))
        .arg("--trusted-ca-file")
        .arg(dir.join("ca.pem"))
        .args(["--client-cert-auth", "--log-level", "error"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    struct Kill<'a>(&'a mut std::process::Child, &'a Path);
    impl Drop for Kill<'_> {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
            let _ = std::fs::remove_dir_all(self.1);
        }
    }
    let _guard = Kill(&mut etcd, &dir);

    let mut cfg = EtcdConfig::new([client_url.clone()]);
    cfg.prefix = "/tls".into();
    cfg.tls = Some(EtcdTls {
        ca: Some(dir.join("ca.pem")),
        identity: Some((dir.join("client.pem"), dir.join("client.key"))),
        domain: None,
    });
    let t0 = Instant::now();
    let store = loop {
        match Etcd::with_config(cfg.clone()).await {
            Ok(s) if s.list("").await.is_ok() => break s,
            other => {
                assert!(
                    t0.elapsed() < Duration::from_secs(20),
                    "no TLS connection: {:?}",
                    other.map(|_| ()).err()
                );
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    };
    use berth::cluster::store::{Op, Txn};
    assert!(
        store
            .txn(Txn::new(vec![], vec![Op::put("k", "v")]))
            .await
            .unwrap()
    );
    assert_eq!(store.get("k").await.unwrap().unwrap().value, b"v");

    // Without the client certificate: refused, with the typed error naming the store.
    let mut no_cert = cfg.clone();
    no_cert.tls = Some(EtcdTls {
        ca: Some(dir.join("ca.pem")),
        identity: None,
        domain: None,
    });
    let r = match Etcd::with_config(no_cert).await {
        Ok(s) => s.get("k").await.map(drop),
        Err(e) => Err(e),
    };
    let e = r.expect_err("etcd demands a client certificate");
    assert!(
        matches!(&e, berth::Error::Store { store, .. } if store.contains(&client_url)),
        "{e}"
    );
}

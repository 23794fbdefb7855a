//! A certificate authority and one certificate it signs for 127.0.0.1 and
//! localhost, made with the `openssl` command, for stacks that speak TLS
//! between services.

use std::process::Command;

use service_runtime::grpc_tls::GrpcTls;

/// TLS settings for every component of a test stack: one certificate
/// (server and client use) signed by a fresh authority.
pub fn platform_tls() -> GrpcTls {
    let dir = std::env::temp_dir().join(format!("e2e-tls-{:016x}", rand::random::<u64>()));
    std::fs::create_dir_all(&dir).expect("a directory for the certificates");
    let run = |args: &[&str]| {
        let output = Command::new("openssl")
            .args(args)
            .current_dir(&dir)
            .output()
            .expect("running openssl: install it with `apt-get install openssl`");
        assert!(
            output.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    };
    let ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes"];
    run(&[
        &["req", "-x509"][..],
        &ec,
        &[
            "-keyout",
            "ca.key",
            "-out",
            "ca.pem",
            "-days",
            "2",
            "-subj",
            "/CN=e2e platform CA",
        ],
    ]
    .concat());
    run(&[
        &["req"][..],
        &ec,
        &["-keyout", "node.key", "-out", "node.csr", "-subj", "/CN=e2e platform"],
    ]
    .concat());
    std::fs::write(
        dir.join("node.ext"),
        "subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth,clientAuth\n",
    )
    .expect("the extensions file");
    run(&[
        "x509",
        "-req",
        "-in",
        "node.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-out",
        "node.pem",
        "-days",
        "2",
        "-extfile",
        "node.ext",
    ]);
    let read = |name: &str| std::fs::read(dir.join(name)).expect("a certificate file");
    let tls = GrpcTls::from_pem(read("node.pem"), read("node.key"), read("ca.pem"));
    let _ = std::fs::remove_dir_all(&dir);
    tls
}

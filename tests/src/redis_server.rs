//! A private Redis for one test, so a test can stop it mid-run without
//! touching anyone else's. Needs the `redis-server` binary (deploy/test.sh
//! installs it).

use std::{
    process::{Child, Command, Stdio},
    time::Duration,
};

pub struct RedisServer {
    pub url: String,
    child: Child,
}

impl RedisServer {
    pub async fn start() -> Self {
        let port = {
            let probe = std::net::TcpListener::bind("127.0.0.1:0").expect("a free port");
            probe.local_addr().expect("bound").port()
        };
        let child = Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!("cannot start redis-server ({e}); install it with `apt-get install redis-server` or run deploy/test.sh")
            });
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while tokio::net::TcpStream::connect(("127.0.0.1", port)).await.is_err() {
            assert!(
                tokio::time::Instant::now() < deadline,
                "redis-server did not listen on {port} within 10 s"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Self {
            url: format!("redis://127.0.0.1:{port}"),
            child,
        }
    }

    /// Kills the server, as a crash would.
    pub fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.stop();
    }
}

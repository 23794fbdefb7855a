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
    /// Removed, socket and all, when the server is dropped.
    _dir: tempfile::TempDir,
}

impl RedisServer {
    /// Starts a server on a Unix socket of its own: a TCP port chosen
    /// before the server binds it could be taken by another test first.
    pub async fn start() -> Self {
        let dir = tempfile::tempdir().expect("a directory for the socket");
        let socket = dir.path().join("redis.sock");
        let socket_text = socket.to_str().expect("a UTF-8 temporary path").to_owned();
        let child = Command::new("redis-server")
            .args(["--port", "0", "--unixsocket", &socket_text, "--save", "", "--appendonly", "no"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!("cannot start redis-server ({e}); install it with `apt-get install redis-server` or run deploy/test.sh")
            });
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while tokio::net::UnixStream::connect(&socket).await.is_err() {
            assert!(
                tokio::time::Instant::now() < deadline,
                "redis-server did not listen on {socket_text} within 10 s"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Self {
            url: format!("redis+unix://{socket_text}"),
            child,
            _dir: dir,
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

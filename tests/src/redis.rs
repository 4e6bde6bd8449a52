//! A real Redis for the shared greylist store: Debian's `redis-server` on a
//! free loopback port, nothing saved, stopped by its pid when dropped (or
//! on demand, to test an outage).

use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::{closed_port, ChildGuard, DEADLINE};

/// A running redis-server.
pub struct RedisServer {
    /// Its port on 127.0.0.1.
    pub port: u16,
    /// An address it listens on besides 127.0.0.1 (a veth's, for a host in
    /// a network namespace).
    also: Option<String>,
    child: Option<ChildGuard>,
}

impl RedisServer {
    /// Starts one on a free port and waits until it accepts connections.
    pub fn start() -> RedisServer {
        Self::start_also_on(None)
    }

    /// As [`RedisServer::start`], listening on `also` too.
    pub fn start_also_on(also: Option<&str>) -> RedisServer {
        let mut r = RedisServer {
            port: closed_port(),
            also: also.map(str::to_string),
            child: None,
        };
        r.restart();
        r
    }

    /// The store's URL for postern's configuration.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }

    /// Kills it (an outage); its data goes with it.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            c.stop();
        }
    }

    /// Starts it again on the same port.
    pub fn restart(&mut self) {
        self.kill();
        let mut bind = vec!["127.0.0.1"];
        bind.extend(self.also.as_deref());
        let child = Command::new("redis-server")
            .arg("--bind")
            .args(&bind)
            .args(["--save", "", "--appendonly", "no", "--protected-mode", "no"])
            .args(["--port", &self.port.to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server (tests/run installs it)");
        self.child = Some(ChildGuard(child));
        let start = Instant::now();
        while TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(
                start.elapsed() < DEADLINE,
                "redis-server did not listen on {}",
                self.port
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

//! Unit-test helper: a real `redis-server` on a free loopback port, killed
//! on drop (no persistence, no pid file).

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::config::{RedisConfig, RedisTopology};
use crate::redis_conn::RedisConn;

/// A running `redis-server`, stopped when dropped.
pub(crate) struct TestRedis {
    child: Child,
    port: u16,
}

impl TestRedis {
    /// Starts one and waits until it accepts connections.
    pub(crate) fn start() -> Self {
        let port = free_port();
        let child = Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server is installed (apt-get install redis-server)");
        let started = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "redis-server did not start"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
        Self { child, port }
    }

    /// A connection to it.
    pub(crate) fn conn(&self) -> RedisConn {
        conn_to(self.port)
    }
}

impl Drop for TestRedis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A connection to a port nothing listens on: every command fails.
pub(crate) fn dead_conn() -> RedisConn {
    conn_to(free_port())
}

fn conn_to(port: u16) -> RedisConn {
    let url = url::Url::parse(&format!("redis://127.0.0.1:{port}/")).expect("valid url");
    RedisConn::new(&RedisConfig {
        topology: RedisTopology::Single(url),
        password: None,
    })
    .expect("a redis client")
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

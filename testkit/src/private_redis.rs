//! A `redis-server` of a test's own on a port it chose: for tests that stop or restart
//! Redis, which must not disturb the shared one every other test uses.

use std::process::{Child, Command, Stdio};

use crate::git::wait_for_port;

pub struct PrivateRedis {
    pub port: u16,
    child: Child,
}

impl PrivateRedis {
    /// Starts an empty, non-persistent server on `port` and waits until it accepts
    /// connections.
    pub fn start(port: u16) -> Self {
        let child = Command::new("redis-server")
            .args(["--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .args(["--port", &port.to_string()])
            .stdout(Stdio::null())
            .spawn()
            .expect("start redis-server");
        wait_for_port(port, "redis-server");
        Self { port, child }
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Kills the server and waits for it to be gone: from here on, every command to it
    /// fails and its data is lost.
    pub fn stop(self) {
        drop(self);
    }
}

impl Drop for PrivateRedis {
    fn drop(&mut self) {
        self.child.kill().ok();
        self.child.wait().ok();
    }
}

//! A slow network for tests: a TCP proxy on 127.0.0.1 that forwards each chunk of bytes, in both
//! directions, a fixed delay after it arrived (a delay line: chunks in flight do not wait for one
//! another, so the link is slow, not narrow). A coordinator pointed at it sees a slow database:
//! every round trip takes at least twice the delay.
//!
//! Shared by `cluster_control_faults.rs`.

#![allow(
    dead_code,
    reason = "each test crate that includes this file uses a different part of it"
)]

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::time::Instant;

/// A running proxy; it stops accepting when dropped (connections already open go on).
pub(crate) struct DelayProxy {
    port: u16,
    accept: tokio::task::JoinHandle<()>,
}

impl DelayProxy {
    /// Listens on a free local port and forwards every connection to `127.0.0.1:upstream`, each
    /// chunk `delay` late.
    pub(crate) async fn start(upstream: u16, delay: Duration) -> DelayProxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let accept = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                tokio::spawn(async move {
                    let Ok(server) = TcpStream::connect(("127.0.0.1", upstream)).await else {
                        return; // the server is down: the client sees its connection closed
                    };
                    let (client_read, client_write) = client.into_split();
                    let (server_read, server_write) = server.into_split();
                    tokio::join!(
                        delayed(client_read, server_write, delay),
                        delayed(server_read, client_write, delay),
                    );
                });
            }
        });
        DelayProxy { port, accept }
    }

    /// The port to connect to instead of the server's.
    pub(crate) fn port(&self) -> u16 {
        self.port
    }
}

impl Drop for DelayProxy {
    fn drop(&mut self) {
        self.accept.abort();
    }
}

/// Copies `from` to `to`, each chunk `delay` after it was read; ends when either side closes.
async fn delayed(mut from: OwnedReadHalf, mut to: OwnedWriteHalf, delay: Duration) {
    let (send, mut line) = mpsc::unbounded_channel::<(Instant, Vec<u8>)>();
    let reader = async move {
        let mut buffer = vec![0; 16 * 1024];
        while let Ok(read @ 1..) = from.read(&mut buffer).await {
            if send
                .send((Instant::now(), buffer[..read].to_vec()))
                .is_err()
            {
                break;
            }
        }
        // Dropping `send` ends the writer once what is in flight is delivered.
    };
    let writer = async move {
        while let Some((read_at, chunk)) = line.recv().await {
            tokio::time::sleep_until(read_at + delay).await;
            if to.write_all(&chunk).await.is_err() {
                break;
            }
        }
        let _ = to.shutdown().await;
    };
    tokio::join!(reader, writer);
}

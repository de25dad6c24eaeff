//! A bare HTTP/1.1 client for the admin API of a replica under test, and a server for one.
//!
//! Shared by `cluster_control_postgres.rs`, `cluster_health_postgres.rs` and
//! `cluster_control_faults.rs`.

#![allow(
    dead_code,
    reason = "each test crate that includes this file uses a different part of it"
)]

use std::net::SocketAddr;

use scheduler::admin::AdminConfig;
use scheduler::ServiceManager;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// Serves `manager`'s admin API (actions allowed without a token) on a free local port.
pub(crate) async fn serve_admin(manager: &ServiceManager) -> SocketAddr {
    let router = AdminConfig::new().trusted().router(manager.clone());
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, router).await });
    addr
}

/// One HTTP/1.1 request: the status code and the body.
pub(crate) async fn http(addr: SocketAddr, method: &str, path: &str) -> (u16, String) {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let request = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).await.unwrap();
    let status = answer
        .split(' ')
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or(0);
    let body = answer
        .split_once("\r\n\r\n")
        .map(|(_, body)| body.to_owned())
        .unwrap_or_default();
    (status, body)
}

/// The `state` the replica's API shows for `service`.
pub(crate) async fn api_state(addr: SocketAddr, service: &str) -> String {
    let (status, body) = http(addr, "GET", &format!("/api/services/{service}")).await;
    assert_eq!(status, 200, "{body}");
    let (_, rest) = body.split_once("\"state\":\"").expect("a state field");
    rest.split('"').next().unwrap().to_owned()
}

/// `POST /api/services/{service}/{action}`, which must succeed.
pub(crate) async fn act(addr: SocketAddr, service: &str, action: &str) {
    let (status, body) = http(addr, "POST", &format!("/api/services/{service}/{action}")).await;
    assert!((200..300).contains(&status), "{action}: {status} {body}");
}

//! Opening `/ws` on a test server as a browser would: cookie, query, `Origin` or other headers.

use std::time::{Duration, Instant};

use tokio_tungstenite::tungstenite;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::handshake::client::Request;
use tokio_tungstenite::tungstenite::http::{HeaderName, HeaderValue};

use super::client::Client;
use super::server::Server;

impl Server {
    /// Opens a session as a new user.
    pub async fn connect(&self, query: &str) -> Client {
        let cookie = self.new_identity().await;
        self.connect_as(&cookie, query).await
    }

    pub async fn connect_as(&self, cookie: &str, query: &str) -> Client {
        self.try_connect(cookie, query, None)
            .await
            .unwrap_or_else(|(status, body)| panic!("upgrade refused: {status} {body}"))
    }

    /// Opens `/ws?query`; on refusal, the HTTP status and body.
    pub async fn try_connect(
        &self,
        cookie: &str,
        query: &str,
        origin: Option<&str>,
    ) -> Result<Client, (u16, String)> {
        self.try_connect_path("/ws", cookie, query, origin).await
    }

    /// The HTTP status and body of an upgrade that must be refused.
    pub async fn refusal(&self, cookie: &str, query: &str, origin: Option<&str>) -> (u16, String) {
        match self.try_connect(cookie, query, origin).await {
            Ok(_) => panic!("the upgrade was accepted, but must be refused"),
            Err(refused) => refused,
        }
    }

    /// Connects as `cookie`, retrying while the server refuses, for at most `within`.
    pub async fn connect_within(&self, cookie: &str, within: Duration) -> Client {
        let deadline = Instant::now() + within;
        loop {
            match self.try_connect(cookie, "", None).await {
                Ok(c) => return c,
                Err(_) if Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err((status, body)) => panic!("still refused after {within:?}: {status} {body}"),
            }
        }
    }

    pub async fn try_connect_path(
        &self,
        path: &str,
        cookie: &str,
        query: &str,
        origin: Option<&str>,
    ) -> Result<Client, (u16, String)> {
        try_connect_at(&self.addr, path, cookie, query, origin).await
    }
}

/// Opens `path?query` on the server at `addr` (any server, e.g. one in a Swarm stack).
pub async fn try_connect_at(
    addr: &str,
    path: &str,
    cookie: &str,
    query: &str,
    origin: Option<&str>,
) -> Result<Client, (u16, String)> {
    let url = format!("ws://{addr}{path}?{query}");
    let mut request = url.into_client_request().unwrap();
    if !cookie.is_empty() {
        request
            .headers_mut()
            .insert("Cookie", HeaderValue::from_str(cookie).unwrap());
    }
    if let Some(origin) = origin {
        request
            .headers_mut()
            .insert("Origin", HeaderValue::from_str(origin).unwrap());
    }
    handshake(request).await
}

/// Opens `/ws` on `server` with the request headers `headers` (e.g. an auth proxy's identity
/// header); the client, or the HTTP status and body of the refusal.
pub async fn connect_with_headers(
    server: &Server,
    headers: &[(&str, &str)],
) -> Result<Client, (u16, String)> {
    let mut request = format!("ws://{}/ws", server.addr)
        .into_client_request()
        .unwrap();
    for (k, v) in headers {
        let name = HeaderName::from_bytes(k.as_bytes()).unwrap();
        request
            .headers_mut()
            .insert(name, HeaderValue::from_str(v).unwrap());
    }
    handshake(request).await
}

/// The upgrade of `request`: a client, or the HTTP status and body of the refusal.
async fn handshake(request: Request) -> Result<Client, (u16, String)> {
    match tokio_tungstenite::connect_async_with_config(request, None, true).await {
        Ok((ws, _)) => Ok(Client::new(ws)),
        Err(tungstenite::Error::Http(response)) => {
            let body = response
                .body()
                .as_ref()
                .map(|b| String::from_utf8_lossy(b).into_owned())
                .unwrap_or_default();
            Err((response.status().as_u16(), body))
        }
        Err(e) => panic!("WebSocket connect failed: {e}"),
    }
}

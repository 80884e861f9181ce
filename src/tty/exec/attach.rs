//! The exec's TTY stream, attached on a raw HTTP upgrade of the Engine API rather than through
//! bollard, whose attach decoder takes output starting with bytes 0x00-0x02 for stream headers.

use std::io;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::tty::{TtyError, Unavailability};

pub(super) type BoxRead = Box<dyn AsyncRead + Send + Unpin>;
pub(super) type BoxWrite = Box<dyn AsyncWrite + Send + Unpin>;

/// Where the Engine API listens, as the Docker CLI reads `DOCKER_HOST`.
#[derive(Debug, Clone)]
pub(super) enum Endpoint {
    Unix(String),
    Tcp(String),
}

impl Endpoint {
    pub(super) fn from_env() -> Result<Self, TtyError> {
        let host = std::env::var("DOCKER_HOST").unwrap_or_default();
        if host.is_empty() {
            return Ok(Endpoint::Unix("/var/run/docker.sock".into()));
        }
        if let Some(path) = host.strip_prefix("unix://") {
            return Ok(Endpoint::Unix(path.into()));
        }
        if let Some(addr) = host.strip_prefix("tcp://").or(host.strip_prefix("http://")) {
            if std::env::var("DOCKER_TLS_VERIFY").is_ok_and(|v| !v.is_empty()) {
                return Err(TtyError::unavailable(
                    Unavailability::EngineDown,
                    "DOCKER_TLS_VERIFY is set, but TLS to the Engine API is not supported: use a unix socket or an SSH tunnel",
                ));
            }
            return Ok(Endpoint::Tcp(addr.trim_end_matches('/').into()));
        }
        Err(TtyError::unavailable(
            Unavailability::EngineDown,
            format!("DOCKER_HOST={host:?} is not supported: use unix:// or tcp://"),
        ))
    }

    /// `POST /exec/{id}/start` upgraded to a raw stream: the exec's TTY, both ways.
    pub(super) async fn start_exec(
        &self,
        exec_id: &str,
        tty: bool,
    ) -> Result<(BoxRead, BoxWrite), TtyError> {
        let unavailable = |e: io::Error| {
            TtyError::unavailable(
                Unavailability::EngineDown,
                format!("starting exec {exec_id} through the engine's API: {e}"),
            )
        };
        let (mut read, mut write) = self.connect().await.map_err(unavailable)?;
        let body = format!(r#"{{"Detach":false,"Tty":{tty}}}"#);
        let request = format!(
            "POST /v1.41/exec/{exec_id}/start HTTP/1.1\r\nHost: docker\r\n\
             Content-Type: application/json\r\nConnection: Upgrade\r\nUpgrade: tcp\r\n\
             Content-Length: {}\r\n\r\n{body}",
            body.len()
        );
        write
            .write_all(request.as_bytes())
            .await
            .map_err(unavailable)?;
        let head = read_response_head(&mut read).await.map_err(unavailable)?;
        let status = head.split_whitespace().nth(1).unwrap_or("");
        if status != "101" && status != "200" {
            return Err(TtyError::unavailable(
                Unavailability::NotPrepared,
                format!(
                    "the engine refused to start exec {exec_id}: {}",
                    head.lines().next().unwrap_or("")
                ),
            ));
        }
        Ok((read, write))
    }

    async fn connect(&self) -> io::Result<(BoxRead, BoxWrite)> {
        Ok(match self {
            Endpoint::Unix(path) => {
                let (r, w) = tokio::net::UnixStream::connect(path).await?.into_split();
                (Box::new(r), Box::new(w))
            }
            Endpoint::Tcp(addr) => {
                let s = tokio::net::TcpStream::connect(addr.as_str()).await?;
                s.set_nodelay(true)?;
                let (r, w) = s.into_split();
                (Box::new(r), Box::new(w))
            }
        })
    }
}

/// Reads an HTTP response head byte by byte, so that no byte of the raw stream after it is taken.
async fn read_response_head(read: &mut BoxRead) -> io::Result<String> {
    let mut head = Vec::with_capacity(256);
    while !head.ends_with(b"\r\n\r\n") {
        if head.len() > 16 * 1024 {
            return Err(io::Error::other("response head too large"));
        }
        let byte = read.read_u8().await?;
        head.push(byte);
    }
    Ok(String::from_utf8_lossy(&head).into_owned())
}

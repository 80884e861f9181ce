//! Uploads into a container on another node: WRITE, the file as INPUT frames, then the agent's
//! RESULT. The agent writes as the user; a body cut short closes the connection, and the agent
//! removes what it wrote.

use bytes::Bytes;
use termpool_agent_proto::{AgentResult, FrameType, WriteRequest, MAX_BODY};
use tokio::sync::mpsc;

use super::RemoteAgent;
use crate::workspace::files::UploadError;

impl RemoteAgent {
    /// Writes the `req.length` bytes of `body` as a new file; its path in the container.
    pub async fn write_file(
        &self,
        req: &WriteRequest,
        mut body: mpsc::Receiver<Bytes>,
    ) -> Result<String, UploadError> {
        let failed = |e: String| UploadError::Io(std::io::Error::other(e));
        let mut link = self.connect().await.map_err(|e| failed(e.to_string()))?;
        let head = serde_json::to_vec(req).map_err(|e| failed(e.to_string()))?;
        let sending = self.send(&mut link, FrameType::Write, &head).await;
        sending.map_err(|e| failed(e.to_string()))?;
        let mut sent = 0u64;
        while let Some(chunk) = body.recv().await {
            sent += chunk.len() as u64;
            if sent > req.length {
                return Err(failed("the body is longer than announced".into()));
            }
            for piece in chunk.chunks(MAX_BODY) {
                let sending = self.send(&mut link, FrameType::Input, piece).await;
                sending.map_err(|e| failed(e.to_string()))?;
            }
        }
        if sent != req.length {
            // Dropping the connection tells the agent, which removes the file.
            return Err(failed("the body ended short".into()));
        }
        let answer = self.receive_result(&mut link).await;
        match answer.map_err(|e| failed(e.to_string()))? {
            AgentResult::Written { path } => Ok(path),
            AgentResult::Failed { kind, message } => {
                Err(UploadError::refused(kind, &req.file, &message)
                    .unwrap_or_else(|| failed(format!("the agent of {}: {message}", self.slot))))
            }
            other => Err(failed(self.unexpected(other).to_string())),
        }
    }
}

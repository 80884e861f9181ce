//! ACCOUNT, END and STATUS: today's account script and process ending, and the lockdown's
//! report, answered as a RESULT.

use std::os::unix::fs::MetadataExt;
use std::process::Command;

use termpool_agent_proto::{
    AccountRequest, AgentResult, EndRequest, FailureKind, HomeOwner, StatusReport, ACCOUNT_SCRIPT,
    WORKSPACE,
};

use super::Context;
use crate::{end, lockdown};

/// Where the volume's marker is (written by the server when it first prepares a slot).
const VOLUME_MARKER: &str = ".termpool-volume";

fn failed(kind: FailureKind, message: impl Into<String>) -> AgentResult {
    AgentResult::Failed {
        kind,
        message: message.into(),
    }
}

/// Creates the account and its home with the account script.
pub fn account(body: &[u8], uid_min: u32) -> AgentResult {
    let req: AccountRequest = match serde_json::from_slice(body) {
        Ok(req) => req,
        Err(e) => return failed(FailureKind::BadRequest, e.to_string()),
    };
    if let Err(e) = check_account(&req, uid_min) {
        return failed(FailureKind::BadRequest, e);
    }
    let uid = req.uid.to_string();
    let out = Command::new("/bin/sh")
        .args(["-c", ACCOUNT_SCRIPT, "sh", &req.name, &uid, &req.home])
        .output();
    let out = match out {
        Ok(out) => out,
        Err(e) => return failed(FailureKind::Failed, format!("the account script: {e}")),
    };
    let stderr = String::from_utf8_lossy(&out.stderr).trim().to_owned();
    match out.status.code() {
        Some(0) => AgentResult::Ok,
        Some(3) => failed(FailureKind::AccountUidMismatch, stderr),
        Some(4) => failed(FailureKind::HomeNotOwned, stderr),
        Some(5) => failed(FailureKind::UidOwnsOtherHome, stderr),
        code => failed(
            FailureKind::Failed,
            format!("the account script ended with {code:?}: {stderr}"),
        ),
    }
}

/// A name as the server makes them (a letter, then letters, digits, `_` or `-`; at most 32),
/// a termpool UID, and the home the server gives that name.
fn check_account(req: &AccountRequest, uid_min: u32) -> Result<(), String> {
    let name_ok = req.name.len() <= 32
        && req.name.starts_with(|c: char| c.is_ascii_lowercase())
        && req
            .name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-');
    if !name_ok {
        return Err(format!("{:?} is not a termpool account name", req.name));
    }
    end::target_uid(&req.uid.to_string(), uid_min)?;
    if req.home != format!("{WORKSPACE}/{}", req.name) {
        return Err(format!("{:?} is not {}'s home", req.home, req.name));
    }
    Ok(())
}

/// Ends every process of the UID.
pub fn end(body: &[u8], uid_min: u32) -> AgentResult {
    let req: EndRequest = match serde_json::from_slice(body) {
        Ok(req) => req,
        Err(e) => return failed(FailureKind::BadRequest, e.to_string()),
    };
    let uid = match end::target_uid(&req.uid.to_string(), uid_min) {
        Ok(uid) => uid,
        Err(e) => return failed(FailureKind::BadRequest, e),
    };
    match end::kill_all(uid) {
        Ok(None) => AgentResult::Ok,
        Ok(Some(pid)) => failed(
            FailureKind::Failed,
            format!("process {pid} of uid {uid} survives SIGKILL"),
        ),
        Err(e) => failed(FailureKind::Failed, e.to_string()),
    }
}

/// The lockdown read back, the homes on the volume and its marker.
pub fn status(context: &Context) -> AgentResult {
    AgentResult::Status(StatusReport {
        lockdown: lockdown::report(context.lockdown_error.clone()),
        homes: homes(),
        volume_marker: std::fs::read_to_string(format!("{WORKSPACE}/{VOLUME_MARKER}"))
            .ok()
            .map(|m| m.trim().to_owned()),
    })
}

/// The directories of the volume (never through a link) and their owners.
fn homes() -> Vec<HomeOwner> {
    let Ok(dir) = std::fs::read_dir(WORKSPACE) else {
        return Vec::new();
    };
    let mut homes: Vec<HomeOwner> = dir
        .filter_map(|e| {
            let e = e.ok()?;
            let meta = e.path().symlink_metadata().ok()?;
            meta.is_dir().then(|| HomeOwner {
                name: e.file_name().to_string_lossy().into_owned(),
                uid: meta.uid(),
            })
        })
        .collect();
    homes.sort_by(|a, b| a.name.cmp(&b.name));
    homes
}

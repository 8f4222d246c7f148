//! What a session tells the audit log (`auth/audit`): logins, refused
//! commands, administrative commands. Each call is one branch when the
//! audit log is off.

use super::*;
use crate::auth::audit::{Audit, Event, Outcome};

/// The error code of a refusal (`-NOPERM …` → `NOPERM`), never its text:
/// a refusal's text can quote the command.
fn code(reply: &[u8]) -> String {
    let text = reply.strip_prefix(b"-").unwrap_or(reply);
    let end = text
        .iter()
        .position(|&b| b == b' ' || b == b'\r')
        .unwrap_or(text.len());
    String::from_utf8_lossy(&text[..end]).into_owned()
}

/// A command's name as the log shows it: `config|set`, or the first
/// argument, lower-cased, for a command the table does not know.
fn command_name(req: &Request, spec: Option<&'static CommandSpec>) -> String {
    match spec {
        Some(spec) => spec.name.to_string(),
        None => req
            .arg(0)
            .map(|a| String::from_utf8_lossy(a).to_ascii_lowercase())
            .unwrap_or_default(),
    }
}

impl Session {
    fn audit(&self) -> Option<&Audit> {
        self.shared.audit.as_deref()
    }

    fn user_string(&self) -> String {
        String::from_utf8_lossy(&self.info.user()).into_owned()
    }

    /// A command the policy answered instead of running (NOAUTH, NOPERM,
    /// the deny list, …).
    pub(super) fn audit_refused(
        &self,
        req: &Request,
        spec: Option<&'static CommandSpec>,
        answer: &[u8],
    ) {
        let Some(audit) = self.audit() else {
            return;
        };
        if !answer.starts_with(b"-") {
            return; // answered (PING before AUTH, …), not refused
        }
        let key = spec
            .filter(|s| s.first_key > 0)
            .and_then(|s| req.arg(s.first_key as usize));
        audit.record(Event::Refused {
            client_id: self.info.id,
            addr: self.info.addr.to_string(),
            user: self.user_string(),
            command: command_name(req, spec),
            reason: code(answer),
            key: audit.key(key),
        });
    }

    /// An administrative command (the table's `admin` flag, or PROXY …)
    /// about to run (its reply is the client's: the log says it was asked).
    pub(super) fn audit_admin(&self, command: String) {
        let Some(audit) = self.audit() else {
            return;
        };
        audit.record(Event::Admin {
            client_id: self.info.id,
            addr: self.info.addr.to_string(),
            user: self.user_string(),
            command,
        });
    }

    /// True when a command is to be recorded as administrative.
    pub(super) fn audits_admin(&self, spec: Option<&'static CommandSpec>) -> bool {
        self.shared.audit.is_some() && spec.is_some_and(|s| s.has(Flags::ADMIN))
    }

    /// `audit_admin` for a command of the table.
    pub(super) fn audit_admin_command(&self, req: &Request, spec: Option<&'static CommandSpec>) {
        if self.audits_admin(spec) {
            self.audit_admin(command_name(req, spec));
        }
    }

    /// AUTH or HELLO … AUTH: the user named and how it went.
    pub(super) fn audit_login(&self, user: Option<&[u8]>, result: &Result<(), Bytes>) {
        let Some(audit) = self.audit() else {
            return;
        };
        let user = user
            .map(|u| String::from_utf8_lossy(u).into_owned())
            .unwrap_or_else(|| "default".into());
        let (outcome, reason) = match result {
            Ok(()) => (Outcome::Ok, None),
            Err(reply) => (Outcome::Failed, Some(code(reply))),
        };
        audit.record(Event::Login {
            client_id: self.info.id,
            addr: self.info.addr.to_string(),
            user,
            outcome,
            reason,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::code;

    #[test]
    fn a_refusal_is_logged_by_its_code_only() {
        assert_eq!(
            code(b"-NOPERM User x has no permissions to run the 'get' command\r\n"),
            "NOPERM"
        );
        assert_eq!(
            code(b"-WRONGPASS invalid username-password pair\r\n"),
            "WRONGPASS"
        );
        assert_eq!(code(b"-ERR\r\n"), "ERR");
        assert_eq!(code(b""), "");
    }
}

//! Sending email: handlebars templates embedded in the binary, rendered to a multipart/alternative
//! (plain text + HTML) message and sent over SMTP with lettre.
//!
//! The caller (a Temporal activity) supplies a deterministic `Message-ID`, so a retried send is
//! recognisable as the same message, and retries only errors for which
//! [`EmailError::is_transient`] holds.
//!
//! Templates live in `templates/email/` (see `templates/README.md` for the data each takes) and
//! are compiled in with `include_str!`: the binary needs no template files at run time.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use handlebars::Handlebars;
use lettre::message::{Mailbox, MultiPart};
use lettre::transport::smtp::Error as SmtpError;
use lettre::{Address, AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use url::Url;

/// How long one SMTP exchange (connecting, each command) may take before it counts as a
/// transient failure.
const SMTP_TIMEOUT: Duration = Duration::from_secs(30);

/// Where and as whom Archer sends email. (`Debug` leaves out the URL's password.)
#[derive(Clone)]
pub struct MailConfig {
    /// The SMTP server, as lettre's connection URL:
    /// `smtp://127.0.0.1:1025` (plain, for local catchers and tests),
    /// `smtp://user:pass@host:587?tls=required` (STARTTLS, required) or
    /// `smtps://user:pass@host:465` (TLS from the start). Credentials are percent-encoded;
    /// a path (`smtp://host/ehlo.name`) sets the name sent in `EHLO`.
    pub smtp_url: Url,
    /// The `From` mailbox, e.g. `Archer <archer@archer.localhost>`.
    pub from: String,
}

impl fmt::Debug for MailConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MailConfig").field("smtp_url", &redacted(&self.smtp_url)).field("from", &self.from).finish()
    }
}

/// `url` without its password, for logs and debug output.
fn redacted(url: &Url) -> String {
    let mut url = url.clone();
    if url.password().is_some() {
        let _ = url.set_password(Some("***"));
    }
    url.to_string()
}

/// Why an email was not sent. The calling activity retries only [transient](Self::is_transient)
/// errors.
#[derive(Debug, thiserror::Error)]
pub enum EmailError {
    /// The mail settings cannot work (an unparsable SMTP URL or `From` mailbox). Not retried:
    /// the configuration has to change.
    #[error("mail configuration: {0}")]
    Config(String),
    /// This email can never be sent as it is: a bad address or Message-ID, a template that does
    /// not exist or does not render with the data, or a 5xx refusal by the server.
    #[error("email refused: {0}")]
    Permanent(String),
    /// This email could not be sent now but may be later: the server is unreachable, timed out,
    /// dropped the connection, failed TLS, or answered 4xx.
    #[error("email not sent, worth retrying: {0}")]
    Transient(String),
}

impl EmailError {
    /// Whether sending the same email again later may succeed.
    pub fn is_transient(&self) -> bool {
        matches!(self, EmailError::Transient(_))
    }
}

/// Sorts lettre's SMTP errors into permanent and transient ones.
fn classify(e: SmtpError) -> EmailError {
    // 5xx replies, and refusals by lettre itself (say, a non-ASCII address the server cannot
    // take) will not change on a retry; everything else (4xx, connection, timeout, TLS, a garbled
    // reply, a pool shutting down) may.
    if e.is_permanent() || e.is_client() {
        EmailError::Permanent(e.to_string())
    } else {
        EmailError::Transient(e.to_string())
    }
}

/// One recipient of an email. As JSON: `{"name": "Alex Agent", "address": "alex@acme.example"}`
/// (`name` may be left out).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Recipient {
    /// Display name; may be empty.
    #[serde(default)]
    pub name: String,
    /// The email address.
    pub address: String,
}

/// An email to render and send.
#[derive(Debug, Clone)]
pub struct OutgoingEmail {
    /// Everyone in `To` (at least one). The server must accept every recipient, or nothing is
    /// sent.
    pub to: Vec<Recipient>,
    /// The template's name, e.g. `sla_breach` (see [`Templates::names`]).
    pub template: String,
    /// The template's data (documented at the top of `templates/email/<name>.text.hbs`).
    pub data: serde_json::Value,
    /// The `Message-ID` header, angle brackets included, e.g.
    /// `<sla-breach.acme.INC-000045.resolution.1@archer>`. Deterministic per logical message, so
    /// a retried send carries the same id.
    pub message_id: String,
}

/// A rendered email template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rendered {
    /// The subject, on one line.
    pub subject: String,
    /// The plain-text part.
    pub text: String,
    /// The HTML part.
    pub html: String,
}

/// One email template's three files, embedded at compile time.
struct Embedded {
    name: &'static str,
    subject: &'static str,
    text: &'static str,
    html: &'static str,
}

/// Embeds `templates/email/<name>.{subject,text,html}.hbs`.
macro_rules! embed {
    ($name:literal) => {
        Embedded {
            name: $name,
            subject: include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/../templates/email/", $name, ".subject.hbs")),
            text: include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/../templates/email/", $name, ".text.hbs")),
            html: include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/../templates/email/", $name, ".html.hbs")),
        }
    };
}

/// Every email template Archer sends. Add a template's three files and a line here.
const EMBEDDED: &[Embedded] = &[
    embed!("approval_escalated"),
    embed!("approval_reminder"),
    embed!("approval_request"),
    embed!("sla_breach"),
    embed!("sla_warning"),
];

/// The email templates, compiled from the embedded sources, in strict mode (a field the
/// template uses but the data lacks is an error, except under `{{#if}}`).
///
/// Subjects and text parts are rendered without escaping; HTML parts HTML-escape every
/// `{{value}}`.
pub struct Templates {
    /// Subjects (`<name>.subject`) and text parts (`<name>.text`), not escaped.
    plain: Handlebars<'static>,
    /// HTML parts (`<name>`), HTML-escaped.
    html: Handlebars<'static>,
}

impl fmt::Debug for Templates {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Templates").field("names", &self.names().collect::<Vec<_>>()).finish()
    }
}

impl Templates {
    /// Compiles the embedded templates. Fails only if a template does not parse, which the unit
    /// tests rule out.
    pub fn new() -> Result<Self, EmailError> {
        let mut plain = Handlebars::new();
        plain.set_strict_mode(true);
        plain.register_escape_fn(handlebars::no_escape);
        let mut html = Handlebars::new();
        html.set_strict_mode(true);
        html.register_escape_fn(handlebars::html_escape);
        let bad = |name: &str, e: handlebars::TemplateError| {
            EmailError::Permanent(format!("email template {name} does not parse: {e}"))
        };
        for t in EMBEDDED {
            plain.register_template_string(&format!("{}.subject", t.name), t.subject).map_err(|e| bad(t.name, e))?;
            plain.register_template_string(&format!("{}.text", t.name), t.text).map_err(|e| bad(t.name, e))?;
            html.register_template_string(t.name, t.html).map_err(|e| bad(t.name, e))?;
        }
        Ok(Templates { plain, html })
    }

    /// The names of the email templates.
    pub fn names(&self) -> impl Iterator<Item = &'static str> {
        EMBEDDED.iter().map(|t| t.name)
    }

    /// Renders template `name` with `data`. An unknown template or a field the template needs but
    /// `data` lacks is a [permanent](EmailError::Permanent) error. The subject comes out on one
    /// line (runs of whitespace, newlines included, become one space).
    pub fn render(&self, name: &str, data: &serde_json::Value) -> Result<Rendered, EmailError> {
        if !self.html.has_template(name) {
            return Err(EmailError::Permanent(format!("no email template named {name:?}")));
        }
        let failed = |part: &str, e: handlebars::RenderError| {
            EmailError::Permanent(format!("email template {name} ({part}) does not render: {e}"))
        };
        let subject = self.plain.render(&format!("{name}.subject"), data).map_err(|e| failed("subject", e))?;
        let subject = subject.split_whitespace().collect::<Vec<_>>().join(" ");
        if subject.is_empty() {
            return Err(EmailError::Permanent(format!("email template {name} rendered an empty subject")));
        }
        let text = self.plain.render(&format!("{name}.text"), data).map_err(|e| failed("text", e))?;
        let html = self.html.render(name, data).map_err(|e| failed("html", e))?;
        Ok(Rendered { subject, text, html })
    }
}

/// Sends email. Cheap to clone (the SMTP connection pool and the templates are shared).
///
/// Connections are pooled on the Tokio runtime that [`Mailer::new`] ran on; create the mailer on
/// the runtime that will use it.
#[derive(Clone)]
pub struct Mailer {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    from: Mailbox,
    templates: Arc<Templates>,
    /// The SMTP URL without its password, for logs.
    server: String,
}

impl fmt::Debug for Mailer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Mailer").field("server", &self.server).field("from", &self.from.to_string()).finish()
    }
}

impl Mailer {
    /// Checks the configuration and compiles the templates. Connects to nothing yet: the first
    /// send does. Must run inside a Tokio runtime (the connection pool lives on it).
    pub fn new(config: &MailConfig) -> Result<Mailer, EmailError> {
        let from: Mailbox = config
            .from
            .parse()
            .map_err(|e| EmailError::Config(format!("mail_from {:?} is not a mailbox: {e}", config.from)))?;
        let server = redacted(&config.smtp_url);
        if tokio::runtime::Handle::try_current().is_err() {
            return Err(EmailError::Config("the mailer must be created inside a Tokio runtime".into()));
        }
        let transport = AsyncSmtpTransport::<Tokio1Executor>::from_url(config.smtp_url.as_str())
            .map_err(|e| EmailError::Config(format!("smtp_url {server}: {e}")))?
            .timeout(Some(SMTP_TIMEOUT))
            .build();
        Ok(Mailer { transport, from, templates: Arc::new(Templates::new()?), server })
    }

    /// The templates this mailer renders.
    pub fn templates(&self) -> &Templates {
        &self.templates
    }

    /// Renders `email` and sends it to every recipient as one multipart/alternative message.
    pub async fn send(&self, email: &OutgoingEmail) -> Result<(), EmailError> {
        let message = self.message(email)?;
        match self.transport.send(message).await {
            Ok(response) => {
                tracing::info!(
                    template = %email.template,
                    message_id = %email.message_id,
                    recipients = email.to.len(),
                    server = %self.server,
                    reply = %response.code(),
                    "email sent"
                );
                Ok(())
            }
            Err(e) => {
                let e = classify(e);
                tracing::warn!(
                    template = %email.template,
                    message_id = %email.message_id,
                    server = %self.server,
                    transient = e.is_transient(),
                    error = %e,
                    "email not sent"
                );
                Err(e)
            }
        }
    }

    /// Builds the message `send` sends.
    fn message(&self, email: &OutgoingEmail) -> Result<Message, EmailError> {
        check_message_id(&email.message_id)?;
        if email.to.is_empty() {
            return Err(EmailError::Permanent(format!("email {} has no recipients", email.message_id)));
        }
        let rendered = self.templates.render(&email.template, &email.data)?;
        let mut builder = Message::builder()
            .from(self.from.clone())
            .message_id(Some(email.message_id.clone()))
            .subject(rendered.subject);
        for r in &email.to {
            let address: Address = r
                .address
                .trim()
                .parse()
                .map_err(|e| EmailError::Permanent(format!("bad recipient address {:?}: {e}", r.address)))?;
            let name = r.name.trim();
            builder = builder.to(Mailbox::new((!name.is_empty()).then(|| name.to_owned()), address));
        }
        builder
            .multipart(MultiPart::alternative_plain_html(rendered.text, rendered.html))
            .map_err(|e| EmailError::Permanent(format!("cannot build email {}: {e}", email.message_id)))
    }
}

/// Checks that `id` is a Message-ID of the form `<left@right>` (RFC 5322 `msg-id`, both sides
/// dot-atoms: letters, digits, ``!#$%&'*+-/=?^_`{|}~`` and single dots between them).
fn check_message_id(id: &str) -> Result<(), EmailError> {
    let bad = || EmailError::Permanent(format!("Message-ID {id:?} is not of the form <left@right>"));
    let inner = id.strip_prefix('<').and_then(|s| s.strip_suffix('>')).ok_or_else(bad)?;
    let (left, right) = inner.split_once('@').ok_or_else(bad)?;
    let dot_atom = |s: &str| {
        !s.is_empty()
            && s.split('.').all(|atom| {
                !atom.is_empty() && atom.chars().all(|c| c.is_ascii_alphanumeric() || "!#$%&'*+-/=?^_`{|}~".contains(c))
            })
    };
    if dot_atom(left) && dot_atom(right) { Ok(()) } else { Err(bad()) }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use serde_json::json;

    /// The sample data of `templates/README.md`: everything either SLA template reads.
    fn sample() -> serde_json::Value {
        json!({
            "recipient": {"name": "Alex Agent"},
            "tenant": {"name": "Acme Corporation"},
            "ticket": {
                "number": "INC-000045",
                "title": "VPN drops",
                "priority": 1,
                "status": "in_progress",
                "url": "http://127.0.0.1:8080/api/v1/tickets/INC-000045"
            },
            "target": {"name": "resolution", "label": "Resolution"},
            "due_at": "2026-11-23 17:00 CET",
            "breached_at": "2026-11-23 17:00:00 CET",
            "threshold_percent": 80,
            "elapsed": "3h 12m",
            "remaining": "48m",
            "escalation": {"level": 1, "name": "Notify the team lead"}
        })
    }

    fn without(mut data: serde_json::Value, pointer: &str) -> serde_json::Value {
        let (parent, key) = pointer.rsplit_once('/').unwrap();
        data.pointer_mut(parent).unwrap().as_object_mut().unwrap().remove(key).unwrap();
        data
    }

    #[test]
    fn every_template_renders_the_sample() {
        let t = Templates::new().unwrap();
        let names: Vec<_> = t.names().collect();
        assert_eq!(names, ["approval_escalated", "approval_reminder", "approval_request", "sla_breach", "sla_warning"]);
        for &name in &names {
            let data = if name.starts_with("approval_") { approval_sample() } else { sample() };
            t.render(name, &data).unwrap();
        }
        for name in ["sla_breach", "sla_warning"] {
            let r = t.render(name, &sample()).unwrap();
            assert!(!r.subject.contains('\n'), "{name}: {:?}", r.subject);
            assert!(r.subject.starts_with("[INC-000045] SLA "), "{name}: {:?}", r.subject);
            assert!(r.subject.ends_with("(P1)"), "{name}: {:?}", r.subject);
            for body in [&r.text, &r.html] {
                for needle in [
                    "Alex Agent",
                    "INC-000045",
                    "VPN drops",
                    "Resolution",
                    "2026-11-23 17:00 CET",
                    "http://127.0.0.1:8080/api/v1/tickets/INC-000045",
                    "Notify the team lead",
                    "3h 12m",
                    "Acme Corporation",
                ] {
                    assert!(body.contains(needle), "{name} lacks {needle:?}:\n{body}");
                }
                assert!(!body.contains("{{") && !body.contains("sla_"), "{name} leaks template text:\n{body}");
            }
            assert!(r.text.starts_with("Hello Alex Agent,\n"), "{name}:\n{}", r.text);
            assert!(r.html.starts_with("<!DOCTYPE html>"), "{name}:\n{}", r.html);
        }
        let breach = t.render("sla_breach", &sample()).unwrap();
        assert_eq!(breach.subject, "[INC-000045] SLA breached: Resolution (P1)");
        assert!(breach.text.contains("breached at 2026-11-23 17:00:00 CET"), "{}", breach.text);
        let warning = t.render("sla_warning", &sample()).unwrap();
        assert_eq!(warning.subject, "[INC-000045] SLA warning: Resolution due 2026-11-23 17:00 CET (P1)");
        assert!(warning.text.contains("80% of the time") && warning.text.contains("in 48m"), "{}", warning.text);
    }

    #[test]
    fn optional_parts_may_be_missing() {
        let t = Templates::new().unwrap();
        let data = without(without(sample(), "/escalation"), "/elapsed");
        for name in ["sla_breach", "sla_warning"] {
            let r = t.render(name, &data).unwrap();
            for body in [&r.text, &r.html] {
                assert!(!body.contains("Escalation") && !body.contains("Elapsed"), "{name}:\n{body}");
            }
        }
        // Each template needs only its own fields.
        t.render("sla_breach", &without(without(sample(), "/threshold_percent"), "/remaining")).unwrap();
        t.render("sla_warning", &without(sample(), "/breached_at")).unwrap();
    }

    #[test]
    fn a_missing_required_field_is_an_error() {
        let t = Templates::new().unwrap();
        for (name, pointer) in [
            ("sla_breach", "/ticket/number"),
            ("sla_breach", "/breached_at"),
            ("sla_breach", "/recipient/name"),
            ("sla_warning", "/remaining"),
            ("sla_warning", "/ticket/url"),
            ("sla_warning", "/threshold_percent"),
        ] {
            let e = t.render(name, &without(sample(), pointer)).unwrap_err();
            assert!(!e.is_transient(), "{name} without {pointer}: {e}");
            assert!(matches!(e, EmailError::Permanent(_)), "{name} without {pointer}: {e}");
        }
        let e = t.render("no_such_template", &sample()).unwrap_err();
        assert!(matches!(e, EmailError::Permanent(_)), "{e}");
    }

    #[test]
    fn only_html_is_escaped() {
        let t = Templates::new().unwrap();
        let mut data = sample();
        data["ticket"]["title"] = json!("Printer <b>jam</b> & more");
        data["recipient"]["name"] = json!("O'Brien \"Bob\"");
        for name in ["sla_breach", "sla_warning"] {
            let r = t.render(name, &data).unwrap();
            assert!(r.html.contains("Printer &lt;b&gt;jam&lt;/b&gt; &amp; more"), "{name}:\n{}", r.html);
            assert!(!r.html.contains("<b>jam</b>"), "{name}:\n{}", r.html);
            assert!(r.html.contains("O&#x27;Brien &quot;Bob&quot;"), "{name}:\n{}", r.html);
            assert!(r.text.contains("Printer <b>jam</b> & more"), "{name}:\n{}", r.text);
            assert!(r.text.contains("Hello O'Brien \"Bob\","), "{name}:\n{}", r.text);
        }
        // The subject is not escaped either, and a newline in a value cannot split it.
        data["target"]["label"] = json!("Resolution <&>\r\nBcc: x@example.com");
        let r = t.render("sla_breach", &data).unwrap();
        assert_eq!(r.subject, "[INC-000045] SLA breached: Resolution <&> Bcc: x@example.com (P1)");
    }

    /// The sample data of `templates/README.md` for `approval_request` and `approval_reminder`.
    fn approval_sample() -> serde_json::Value {
        json!({
            "recipient": {"name": "Morgan Manager"},
            "ticket": {
                "number": "REQ-000012",
                "title": "Laptop for a new starter",
                "url": "http://127.0.0.1:8080/api/v1/tickets/REQ-000012"
            },
            "requester": {"name": "Riley Requester"},
            "step": {"name": "Manager approval"},
            "on_behalf_of": "Avery Approver",
            "fields": [
                {"label": "Device", "value": "laptop"},
                {"label": "Justification", "value": "Starts Monday in sales"}
            ],
            "approve_url": "http://127.0.0.1:8080/approvals/decide?token=eyJkIjoiYXBwcm92ZSJ9.c2lnLWE",
            "reject_url": "http://127.0.0.1:8080/approvals/decide?token=eyJkIjoicmVqZWN0In0.c2lnLXI",
            "expires_at": "2026-11-30 18:00:00 UTC",
            "reminder": false,
            "escalated": false
        })
    }

    #[test]
    fn approval_emails_render_the_sample() {
        let t = Templates::new().unwrap();
        for (name, subject) in [
            ("approval_request", "[REQ-000012] Approval needed: Laptop for a new starter"),
            ("approval_reminder", "[REQ-000012] Reminder: approval needed: Laptop for a new starter"),
            ("approval_escalated", "[REQ-000012] Escalated to you: approval needed: Laptop for a new starter"),
        ] {
            let mut data = approval_sample();
            data["reminder"] = json!(name == "approval_reminder");
            let r = t.render(name, &data).unwrap();
            assert_eq!(r.subject, subject);
            for body in [&r.text, &r.html] {
                for needle in [
                    "Morgan Manager",
                    "Riley Requester",
                    "REQ-000012",
                    "Laptop for a new starter",
                    "Manager approval",
                    "on behalf of Avery Approver",
                    "Device",
                    "laptop",
                    "Justification",
                    "Starts Monday in sales",
                    "2026-11-30 18:00:00 UTC",
                    "confirmation page",
                    "http://127.0.0.1:8080/api/v1/tickets/REQ-000012",
                ] {
                    assert!(body.contains(needle), "{name} lacks {needle:?}:\n{body}");
                }
                assert!(!body.contains("{{") && !body.contains("approval_"), "{name} leaks template text:\n{body}");
                assert_eq!(body.contains("escalated"), name == "approval_escalated", "{name}:\n{body}");
            }
            assert!(r.text.starts_with("Hello Morgan Manager,\n"), "{name}:\n{}", r.text);
            assert!(r.html.starts_with("<!DOCTYPE html>"), "{name}:\n{}", r.html);
            assert_eq!(r.text.contains("reminder"), name == "approval_reminder", "{name}:\n{}", r.text);

            // The links: each alone on its labelled line in the text part, buttons in the HTML.
            let lines: Vec<&str> = r.text.lines().collect();
            assert!(
                lines.contains(&"Approve: http://127.0.0.1:8080/approvals/decide?token=eyJkIjoiYXBwcm92ZSJ9.c2lnLWE"),
                "{name}:\n{}",
                r.text
            );
            assert!(
                lines.contains(&"Reject: http://127.0.0.1:8080/approvals/decide?token=eyJkIjoicmVqZWN0In0.c2lnLXI"),
                "{name}:\n{}",
                r.text
            );
            // The HTML part escapes `=` too (`&#x3D;`), which a browser reads back as `=`.
            for (url, label) in [
                ("http://127.0.0.1:8080/approvals/decide?token&#x3D;eyJkIjoiYXBwcm92ZSJ9.c2lnLWE", "Approve"),
                ("http://127.0.0.1:8080/approvals/decide?token&#x3D;eyJkIjoicmVqZWN0In0.c2lnLXI", "Reject"),
            ] {
                let at = r
                    .html
                    .find(&format!("<a href=\"{url}\""))
                    .unwrap_or_else(|| panic!("{name}: no {label} link:\n{}", r.html));
                let end = at + r.html[at..].find("</a>").unwrap();
                assert!(r.html[at..end].ends_with(&format!(">{label}")), "{name}:\n{}", r.html);
            }
        }
    }

    #[test]
    fn approval_emails_optional_parts() {
        let t = Templates::new().unwrap();
        for name in ["approval_request", "approval_reminder"] {
            // No stand-in, no answers, and `reminder` and `escalated` left out altogether.
            let mut data = approval_sample();
            data["on_behalf_of"] = serde_json::Value::Null;
            data["fields"] = json!([]);
            let data = without(without(data, "/reminder"), "/escalated");
            let r = t.render(name, &data).unwrap();
            for body in [&r.text, &r.html] {
                for absent in ["on behalf of", "Answers", "Device", "escalated"] {
                    assert!(!body.contains(absent), "{name} has {absent:?}:\n{body}");
                }
                assert!(
                    body.contains("Riley Requester") && body.contains("2026-11-30 18:00:00 UTC"),
                    "{name}:\n{body}"
                );
            }
            assert!(r.text.contains("\nApprove: http://"), "{name}:\n{}", r.text);
            assert!(!r.text.contains("\n\n\n"), "{name}:\n{}", r.text);

            // Escalated to this approver: one sentence says so.
            let mut data = approval_sample();
            data["escalated"] = json!(true);
            let r = t.render(name, &data).unwrap();
            for body in [&r.text, &r.html] {
                assert!(body.contains("has been escalated to you."), "{name}:\n{body}");
            }

            // The rest is required.
            for pointer in
                ["/approve_url", "/reject_url", "/expires_at", "/ticket/title", "/step/name", "/recipient/name"]
            {
                let e = t.render(name, &without(approval_sample(), pointer)).unwrap_err();
                assert!(matches!(e, EmailError::Permanent(_)), "{name} without {pointer}: {e}");
            }
        }
    }

    #[test]
    fn approval_emails_escape_only_html() {
        let t = Templates::new().unwrap();
        let mut data = approval_sample();
        data["ticket"]["title"] = json!("Laptop <b>now</b> & \"fast\"");
        data["fields"][0]["value"] = json!("<script>x</script>");
        for name in ["approval_request", "approval_reminder"] {
            let r = t.render(name, &data).unwrap();
            assert!(r.html.contains("Laptop &lt;b&gt;now&lt;/b&gt; &amp; &quot;fast&quot;"), "{name}:\n{}", r.html);
            assert!(!r.html.contains("<b>now</b>") && !r.html.contains("<script>"), "{name}:\n{}", r.html);
            assert!(r.text.contains("Laptop <b>now</b> & \"fast\""), "{name}:\n{}", r.text);
            assert!(r.text.contains("<script>x</script>"), "{name}:\n{}", r.text);
            assert!(r.subject.ends_with(": Laptop <b>now</b> & \"fast\""), "{name}: {}", r.subject);
        }
    }

    #[test]
    fn message_ids_must_look_like_msg_ids() {
        for ok in ["<sla-breach.acme.INC-000045.resolution.1@archer>", "<a@b.c>", "<x+y=z@archer.localhost>"] {
            check_message_id(ok).unwrap();
        }
        for bad in [
            "",
            "a@b",
            "<a@b",
            "<ab>",
            "<@b>",
            "<a@>",
            "<a@b@c>",
            "<a b@c>",
            "<a@b>\r\nBcc: x@y",
            "<a..b@c>",
            "<.a@b>",
            "<a<b@c>",
            "<é@b>",
        ] {
            assert!(check_message_id(bad).is_err(), "{bad:?} accepted");
        }
    }

    fn config(url: &str) -> MailConfig {
        MailConfig { smtp_url: Url::parse(url).unwrap(), from: "Archer <archer@archer.localhost>".into() }
    }

    fn email() -> OutgoingEmail {
        OutgoingEmail {
            to: vec![
                Recipient { name: "Alex Agent".into(), address: "alex@acme.example".into() },
                Recipient { name: String::new(), address: "lead@acme.example".into() },
            ],
            template: "sla_breach".into(),
            data: sample(),
            message_id: "<sla-breach.acme.INC-000045.resolution.1@archer>".into(),
        }
    }

    #[tokio::test]
    async fn builds_a_multipart_alternative_message() {
        let mailer = Mailer::new(&config("smtp://127.0.0.1:1025")).unwrap();
        let raw = String::from_utf8(mailer.message(&email()).unwrap().formatted()).unwrap();
        assert!(raw.contains("Message-ID: <sla-breach.acme.INC-000045.resolution.1@archer>\r\n"), "{raw}");
        assert!(raw.contains("From: Archer <archer@archer.localhost>\r\n"), "{raw}");
        assert!(raw.contains("To: \"Alex Agent\" <alex@acme.example>, lead@acme.example\r\n"), "{raw}");
        assert!(raw.contains("Subject: [INC-000045] SLA breached: Resolution (P1)\r\n"), "{raw}");
        assert!(raw.contains("Content-Type: multipart/alternative;"), "{raw}");
        assert!(raw.contains("Content-Type: text/plain; charset=utf-8"), "{raw}");
        assert!(raw.contains("Content-Type: text/html; charset=utf-8"), "{raw}");
        assert!(raw.contains("\r\nDate: "), "{raw}");
    }

    #[tokio::test]
    async fn bad_input_is_permanent() {
        let mailer = Mailer::new(&config("smtp://127.0.0.1:1025")).unwrap();
        let mut e = email();
        e.to[1].address = "not an address".into();
        assert!(matches!(mailer.send(&e).await, Err(EmailError::Permanent(_))));
        let mut e = email();
        e.to.clear();
        assert!(matches!(mailer.send(&e).await, Err(EmailError::Permanent(_))));
        let mut e = email();
        e.message_id = "sla-breach-1".into();
        assert!(matches!(mailer.send(&e).await, Err(EmailError::Permanent(_))));
        let mut e = email();
        e.template = "nope".into();
        assert!(matches!(mailer.send(&e).await, Err(EmailError::Permanent(_))));
    }

    #[tokio::test]
    async fn configuration_is_checked() {
        for url in ["smtp://user:s3cret@mail.example.com:587?tls=required", "smtps://mail.example.com:465"] {
            let mailer = Mailer::new(&config(url)).unwrap();
            assert!(!format!("{mailer:?}").contains("s3cret"), "{mailer:?}");
            assert!(!format!("{:?}", config(url)).contains("s3cret"), "{:?}", config(url));
        }
        assert!(matches!(Mailer::new(&config("smtp://mail.example.com?tls=sometimes")), Err(EmailError::Config(_))));
        assert!(matches!(Mailer::new(&config("http://mail.example.com")), Err(EmailError::Config(_))));
        let mut c = config("smtp://127.0.0.1:1025");
        c.from = "not a mailbox".into();
        assert!(matches!(Mailer::new(&c), Err(EmailError::Config(_))));
    }

    #[test]
    fn needs_a_runtime() {
        assert!(matches!(Mailer::new(&config("smtp://127.0.0.1:1025")), Err(EmailError::Config(_))));
    }
}

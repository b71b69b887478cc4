//! Sending email: handlebars templates embedded in the binary, rendered to a multipart/alternative
//! (plain text + HTML) message and sent over SMTP with lettre.
//!
//! The caller (a Temporal activity) supplies a deterministic `Message-ID`, so a retried send is
//! recognisable as the same message, and retries only errors for which
//! [`EmailError::is_transient`] holds.
//!
//! Templates live in `templates/email/` (see `templates/README.md` for the data each takes) and
//! are compiled in with `include_str!`: the binary needs no template files at run time.
//!
//! It also says values the way emails (and the pages their links open) show them to people:
//! instants ([`human_time`]: `13 Dec 2026, 22:18 UTC`), a request's answers in its form's order
//! with the form's labels ([`answers`]), and an approval step with its rule ([`step_text`]:
//! `step 2 of 2: any 2 of 3 approvers`).

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
    /// The `Date` header: when it was sent, by Archer's clock (otherwise lettre would read the
    /// system's).
    pub date: time::OffsetDateTime,
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
    embed!("playbook_message"),
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

    /// Connects to the SMTP server as sending does (TLS and the login included) and asks it for
    /// a NOOP: `archer doctor`'s check that email can go out.
    pub async fn test_connection(&self) -> Result<(), EmailError> {
        match self.transport.test_connection().await {
            Ok(true) => Ok(()),
            Ok(false) => Err(EmailError::Transient(format!("{} did not answer NOOP", self.server))),
            Err(e) => Err(classify(e)),
        }
    }

    /// Renders `email` and sends it to every recipient as one multipart/alternative message.
    pub async fn send(&self, email: &OutgoingEmail) -> Result<(), EmailError> {
        use tracing::Instrument;
        // a span of the activity's trace (tracing on), its id on every line logged here
        let span = tracing::info_span!(
            "smtp.send",
            template = %email.template,
            message_id = %email.message_id,
            trace_id = crate::telemetry::current_trace_id(),
        );
        self.send_traced(email).instrument(span).await
    }

    async fn send_traced(&self, email: &OutgoingEmail) -> Result<(), EmailError> {
        let message = self.message(email)?;
        match self.transport.send(message).await {
            Ok(response) => {
                archer_store::metrics::metrics().emails.with_label_values(&["sent"]).inc();
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
                archer_store::metrics::metrics().emails.with_label_values(&["failed"]).inc();
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
            .date(email.date.into())
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

// ---------------------------------------------------------------------------------------------
// Presenting values to people: emails, and the pages their links open, show instants, answers
// and approval steps the way a person reads them, not the way the database stores them.
// ---------------------------------------------------------------------------------------------

/// What an empty answer (null, an empty list) reads as.
const NO_ANSWER: &str = "—";

/// An instant as a person reads it: `13 Dec 2026, 22:18 UTC` (to the minute, in `tz`, with the
/// zone's abbreviation, e.g. `23 Nov 2026, 17:00 CET`). Every instant an email shows is written
/// this way.
pub fn human_time(t: jiff::Timestamp, tz: &jiff::tz::TimeZone) -> String {
    let zoned = jiff::ZonedDateTime::new(t, tz.clone());
    // Formatting fails only for a format jiff cannot fill; fall back to RFC 3339 rather than
    // showing nothing.
    jiff::fmt::strtime::format("%-d %b %Y, %H:%M %Z", &zoned).unwrap_or_else(|_| t.to_string())
}

/// An instant in UTC, as [`human_time`] writes it: `13 Dec 2026, 22:18 UTC`.
pub fn human_utc(t: jiff::Timestamp) -> String {
    human_time(t, &jiff::tz::TimeZone::UTC)
}

/// A calendar date as a person reads it: `14 Dec 2026`.
pub fn human_date(d: jiff::civil::Date) -> String {
    jiff::fmt::strtime::format("%-d %b %Y", d).unwrap_or_else(|_| d.to_string())
}

/// One answer of a request, as emails and pages show it: the form's label and the value as text.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Answer {
    /// The field's `title` in the form, else its key.
    pub label: String,
    /// The answer as text (see [`answers`]).
    pub value: String,
}

/// A request's answers as a person reads them, from `fields` (the answers as submitted) and
/// `form` (the JSON Schema of the item version the request was submitted against, if known).
///
/// Answers come in the order of the form's `properties`, each labelled with its `title` (else
/// its key); answers the form does not list come last, in key order. Values read as text:
/// a choice by its label when the schema gives one (`oneOf`/`anyOf` branches with `const` and
/// `title`), booleans as Yes/No, lists comma-separated, dates (`format: date`, `date-time`) as
/// [`human_date`]/[`human_utc`] write them, an object chosen from `oneOf` branches as the
/// branch's title with its own fields, and nothing (null, an empty list) as a dash.
pub fn answers(form: Option<&serde_json::Value>, fields: &serde_json::Map<String, serde_json::Value>) -> Vec<Answer> {
    answers_in(form.and_then(|f| f.get("properties")).and_then(serde_json::Value::as_object), fields)
}

/// [`answers`], given the form's `properties`.
fn answers_in(
    properties: Option<&serde_json::Map<String, serde_json::Value>>,
    fields: &serde_json::Map<String, serde_json::Value>,
) -> Vec<Answer> {
    let mut out = Vec::with_capacity(fields.len());
    for (key, schema) in properties.into_iter().flatten() {
        if let Some(value) = fields.get(key) {
            out.push(Answer { label: label_of(key, Some(schema)), value: answer_text(Some(schema), value) });
        }
    }
    let mut rest: Vec<(&String, &serde_json::Value)> =
        fields.iter().filter(|(k, _)| !properties.is_some_and(|p| p.contains_key(k.as_str()))).collect();
    rest.sort_by(|a, b| a.0.cmp(b.0));
    out.extend(rest.into_iter().map(|(k, v)| Answer { label: k.clone(), value: answer_text(None, v) }));
    out
}

/// A field's label: its schema's non-blank `title`, else its key.
fn label_of(key: &str, schema: Option<&serde_json::Value>) -> String {
    schema
        .and_then(|s| s.get("title"))
        .and_then(serde_json::Value::as_str)
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .unwrap_or(key)
        .to_owned()
}

/// The branches a schema chooses among (`oneOf`, then `anyOf`).
fn branches(schema: Option<&serde_json::Value>) -> impl Iterator<Item = &serde_json::Value> {
    ["oneOf", "anyOf"]
        .into_iter()
        .filter_map(move |k| schema.and_then(|s| s.get(k)).and_then(serde_json::Value::as_array))
        .flatten()
}

/// The label the schema gives the choice `value`: the `title` of the branch whose `const` it is.
fn choice_label<'s>(schema: Option<&'s serde_json::Value>, value: &serde_json::Value) -> Option<&'s str> {
    branches(schema)
        .find(|b| b.get("const") == Some(value))
        .and_then(|b| b.get("title"))
        .and_then(serde_json::Value::as_str)
        .filter(|t| !t.trim().is_empty())
}

/// One answer as text, read with its schema (see [`answers`]).
fn answer_text(schema: Option<&serde_json::Value>, value: &serde_json::Value) -> String {
    use serde_json::Value;
    if let Some(label) = choice_label(schema, value) {
        return label.to_owned();
    }
    match value {
        Value::Null => NO_ANSWER.to_owned(),
        Value::Bool(true) => "Yes".to_owned(),
        Value::Bool(false) => "No".to_owned(),
        Value::Number(n) => n.to_string(),
        Value::String(s) => {
            let format = schema.and_then(|s| s.get("format")).and_then(Value::as_str);
            match format {
                Some("date") => s.parse::<jiff::civil::Date>().map(human_date).unwrap_or_else(|_| s.clone()),
                Some("date-time") => s.parse::<jiff::Timestamp>().map(human_utc).unwrap_or_else(|_| s.clone()),
                _ => s.clone(),
            }
        }
        Value::Array(items) if items.is_empty() => NO_ANSWER.to_owned(),
        Value::Array(items) => {
            let item_schema = schema.and_then(|s| s.get("items")).filter(|i| i.is_object());
            items.iter().map(|v| answer_text(item_schema, v)).collect::<Vec<_>>().join(", ")
        }
        Value::Object(fields) => object_text(schema, fields),
    }
}

/// An object answer as text: the `oneOf`/`anyOf` branch it matches by title, with its other
/// fields in brackets (`Contractor (Contract ends: 31 Mar 2027; Agency: Hays)`); without a
/// matching branch, its fields as `Label: value` pairs in the schema's order.
fn object_text(schema: Option<&serde_json::Value>, fields: &serde_json::Map<String, serde_json::Value>) -> String {
    use serde_json::Value;
    let properties = |s: &'_ Value| s.get("properties").and_then(Value::as_object).cloned().unwrap_or_default();
    // A branch matches when every `const` it sets is what the answer says; failing that, when
    // it lists every field the answer has and has every field it requires.
    let by_const = branches(schema).find(|b| {
        let props = properties(b);
        let mut consts = props.iter().filter_map(|(k, p)| p.get("const").map(|c| (k, c))).peekable();
        consts.peek().is_some() && consts.all(|(k, c)| fields.get(k) == Some(c))
    });
    let by_shape = || {
        branches(schema).find(|b| {
            let props = properties(b);
            let mut required = b.get("required").and_then(Value::as_array).into_iter().flatten();
            !props.is_empty()
                && fields.keys().all(|k| props.contains_key(k))
                && required.all(|r| r.as_str().is_some_and(|r| fields.contains_key(r)))
        })
    };
    let branch = by_const.or_else(by_shape);
    let own = branch.or(schema).map(properties).unwrap_or_default();
    // the discriminating constants are said by the branch's title, not repeated
    let shown: serde_json::Map<String, Value> = fields
        .iter()
        .filter(|(k, _)| branch.is_none() || own.get(k.as_str()).and_then(|p| p.get("const")).is_none())
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let inner: Vec<String> =
        answers_in(Some(&own), &shown).into_iter().map(|a| format!("{}: {}", a.label, a.value)).collect();
    let title = branch.and_then(|b| b.get("title")).and_then(Value::as_str).filter(|t| !t.trim().is_empty());
    match (title, inner.is_empty()) {
        (Some(t), true) => t.to_owned(),
        (Some(t), false) => format!("{t} ({})", inner.join("; ")),
        (None, true) => NO_ANSWER.to_owned(),
        (None, false) => inner.join("; "),
    }
}

/// Which step of an approval chain an email or page is about, and what settles it, in words.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct StepText {
    /// `step 2 of 2` (`step 2` when the chain's length is not known).
    pub position: String,
    /// What settles the step: `all 3 approvers`, `any 2 of 3 approvers`, `one approver`,
    /// `all 2 approvers, one after another`, `escalated to 2 approvers; the first decision
    /// settles it`...
    pub rule: String,
    /// Both: `step 2 of 2: any 2 of 3 approvers`.
    pub summary: String,
}

/// Describes step `index` (from 0) of a chain of `total` steps: `spec` is the step as authored
/// (unknown: the rule names only the number of approvers), `approvers` how many approvers it
/// asks (those it resolved when it opened, or, once `escalated`, those it was escalated to, of
/// whom the first decision settles it).
pub fn step_text(
    index: usize,
    total: Option<usize>,
    spec: Option<&archer_orchestrator::approval::StepSpec>,
    approvers: usize,
    escalated: bool,
) -> StepText {
    use archer_orchestrator::approval::{Mode, Rule};
    let position = match total {
        Some(total) if total > index => format!("step {} of {total}", index + 1),
        _ => format!("step {}", index + 1),
    };
    let people = |n: usize| if n == 1 { "1 approver".to_owned() } else { format!("{n} approvers") };
    let rule = if escalated {
        if approvers == 1 {
            "escalated to one approver, whose decision settles it".to_owned()
        } else {
            format!("escalated to {}; the first decision settles it", people(approvers))
        }
    } else if approvers == 0 {
        "no approvers".to_owned()
    } else if let Some(spec) = spec {
        let n = u32::try_from(approvers).unwrap_or(u32::MAX);
        let needed = spec.approve_when.needed(n);
        let mut rule = if n == 1 {
            "one approver".to_owned()
        } else if needed >= n {
            format!("all {n} approvers")
        } else if needed == 1 {
            format!("any one of {n} approvers")
        } else {
            format!("any {needed} of {n} approvers")
        };
        if let Rule::Percent(p) = spec.approve_when
            && needed < n
        {
            rule.push_str(&format!(" ({p}%)"));
        }
        if spec.mode == Mode::Sequential && n > 1 {
            rule.push_str(", one after another");
        }
        // an explicit rejection rule is worth saying only when it is stricter than the default
        // (rejected once the approvals needed can no longer be reached)
        if let Some(reject) = spec.reject_when {
            let rejections = reject.needed(n);
            if rejections < n - needed + 1 {
                let any = if rejections == 1 { "one".to_owned() } else { rejections.to_string() };
                rule.push_str(&format!("; rejected by any {any}"));
            }
        }
        rule
    } else {
        people(approvers)
    };
    let summary = format!("{position}: {rule}");
    StepText { position, rule, summary }
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
                "url": "http://127.0.0.1:8080/portal/tickets/INC-000045"
            },
            "target": {"name": "resolution", "label": "Resolution"},
            "due_at": "23 Nov 2026, 17:00 CET",
            "breached_at": "23 Nov 2026, 17:00 CET",
            "threshold_percent": 80,
            "elapsed": "3h 12m",
            "remaining": "48m",
            "escalation": {"level": 1, "name": "Notify the team lead"}
        })
    }

    /// What a playbook's `email.send` step renders `playbook_message` with.
    fn playbook_sample() -> serde_json::Value {
        json!({
            "subject": "Your laptop <b>ships</b>",
            "body": "Hello Riley,\n\nit ships Monday.",
            "ticket": {"number": "REQ-000012", "title": "Laptop", "url": "http://127.0.0.1:8080/portal/tickets/REQ-000012"},
            "tenant": {"name": "Acme Corporation"},
            "playbook": {"name": "laptop-order"}
        })
    }

    #[test]
    fn playbook_messages_carry_the_steps_subject_and_body() {
        let r = Templates::new().unwrap().render("playbook_message", &playbook_sample()).unwrap();
        assert_eq!(r.subject, "[REQ-000012] Your laptop <b>ships</b>");
        assert!(r.text.starts_with("Hello Riley,\n\nit ships Monday."), "{}", r.text);
        assert!(r.html.contains("Your laptop &lt;b&gt;ships&lt;/b&gt;"), "{}", r.html);
        assert!(r.text.contains("playbook laptop-order"), "{}", r.text);
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
        assert_eq!(
            names,
            [
                "approval_escalated",
                "approval_reminder",
                "approval_request",
                "playbook_message",
                "sla_breach",
                "sla_warning"
            ]
        );
        for &name in &names {
            let data = match name {
                n if n.starts_with("approval_") => approval_sample(),
                "playbook_message" => playbook_sample(),
                _ => sample(),
            };
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
                    "23 Nov 2026, 17:00 CET",
                    "http://127.0.0.1:8080/portal/tickets/INC-000045",
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
        assert!(breach.text.contains("breached at 23 Nov 2026, 17:00 CET"), "{}", breach.text);
        let warning = t.render("sla_warning", &sample()).unwrap();
        assert_eq!(warning.subject, "[INC-000045] SLA warning: Resolution due 23 Nov 2026, 17:00 CET (P1)");
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
            "ticket": {"number": "REQ-000012", "title": "Laptop for a new starter"},
            "requester": {"name": "Riley Requester"},
            "step": {
                "name": "Manager approval",
                "position": "step 1 of 2",
                "rule": "one approver",
                "summary": "step 1 of 2: one approver"
            },
            "on_behalf_of": "Avery Approver",
            "fields": [
                {"label": "Device", "value": "laptop"},
                {"label": "Justification", "value": "Starts Monday in sales"}
            ],
            "approve_url": "http://127.0.0.1:8080/approvals/decide?token=eyJkIjoiYXBwcm92ZSJ9.c2lnLWE",
            "reject_url": "http://127.0.0.1:8080/approvals/decide?token=eyJkIjoicmVqZWN0In0.c2lnLXI",
            "view_url": "http://127.0.0.1:8080/approvals/view?token=eyJ0YXNrIjoiMSJ9.c2lnLXY",
            "expires_at": "30 Nov 2026, 18:00 UTC",
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
                    "30 Nov 2026, 18:00 UTC",
                    "confirmation page",
                    "step 1 of 2: one approver",
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
                assert!(body.contains("Riley Requester") && body.contains("30 Nov 2026, 18:00 UTC"), "{name}:\n{body}");
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
            for pointer in [
                "/approve_url",
                "/reject_url",
                "/view_url",
                "/expires_at",
                "/ticket/title",
                "/step/name",
                "/step/summary",
                "/recipient/name",
            ] {
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
            date: time::macros::datetime!(2026-12-13 22:18:19 UTC),
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
        assert!(raw.contains("\r\nDate: Sun, 13 Dec 2026 22:18:19 +0000\r\n"), "{raw}");
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
    fn instants_read_like_a_person_wrote_them() {
        let t: jiff::Timestamp = "2026-12-13T22:18:19.734Z".parse().unwrap();
        assert_eq!(human_utc(t), "13 Dec 2026, 22:18 UTC");
        let berlin = jiff::tz::TimeZoneDatabase::bundled().get("Europe/Berlin").unwrap();
        assert_eq!(human_time("2026-11-23T16:00:00Z".parse().unwrap(), &berlin), "23 Nov 2026, 17:00 CET");
        assert_eq!(human_time("2026-07-01T06:05:00Z".parse().unwrap(), &berlin), "1 Jul 2026, 08:05 CEST");
        assert_eq!(human_date("2027-01-04".parse().unwrap()), "4 Jan 2027");
        // no seconds, no fractions, no offsets spelled as +00:00:00
        assert!(!human_utc(t).contains(":19") && !human_utc(t).contains("+00"), "{}", human_utc(t));
    }

    /// The demo forms (`schemas/catalog/`).
    fn form(name: &str) -> serde_json::Value {
        let text = match name {
            "laptop" => include_str!("../../schemas/catalog/laptop.schema.json"),
            "onboarding" => include_str!("../../schemas/catalog/onboarding.schema.json"),
            _ => include_str!("../../schemas/catalog/software-access.schema.json"),
        };
        serde_json::from_str(text).unwrap()
    }

    fn pairs(answers: &[Answer]) -> Vec<(&str, &str)> {
        answers.iter().map(|a| (a.label.as_str(), a.value.as_str())).collect()
    }

    #[test]
    fn answers_come_in_the_form_order_with_its_labels() {
        // as PostgreSQL's jsonb returns them: shorter keys first
        let fields = json!({
            "os": "linux",
            "zeta": 3,
            "alpha": ["x", "y"],
            "needed_by": "2026-12-14",
            "replacement": false,
            "device_type": "laptop",
            "justification": "New starter in the data team"
        });
        let answers = answers(Some(&form("laptop")), fields.as_object().unwrap());
        assert_eq!(
            pairs(&answers),
            [
                ("Device type", "laptop"),
                ("Operating system", "linux"),
                ("Replaces an existing device", "No"),
                ("Needed by", "14 Dec 2026"),
                ("Business justification", "New starter in the data team"),
                // not in the form: last, in key order, by key
                ("alpha", "x, y"),
                ("zeta", "3"),
            ]
        );
        // without a form: key order, keys as labels
        let answers = super::answers(None, fields.as_object().unwrap());
        assert_eq!(answers[0].label, "alpha");
        assert_eq!(answers.last().unwrap().label, "zeta");
    }

    #[test]
    fn answers_show_choices_by_their_labels() {
        let fields = json!({
            "duration": {"until": "2027-03-31"},
            "paid_seat": true,
            "application": "github",
            "justification": "Reviews"
        });
        let answers = answers(Some(&form("software")), fields.as_object().unwrap());
        assert_eq!(
            pairs(&answers),
            [
                ("Application", "github"),
                ("Needs a paid seat", "Yes"),
                ("Duration", "Temporary (Until: 31 Mar 2027)"),
                ("Why do you need it", "Reviews"),
            ]
        );
        let fields = json!({"duration": "permanent"});
        assert_eq!(
            pairs(&super::answers(Some(&form("software")), fields.as_object().unwrap())),
            [("Duration", "Permanent")]
        );

        let fields = json!({
            "notes": null,
            "equipment": ["laptop", "headset"],
            "employment": {"type": "contractor", "end_date": "2027-03-31", "agency": "Hays"},
            "full_name": "Jo Joiner"
        });
        let answers = super::answers(Some(&form("onboarding")), fields.as_object().unwrap());
        assert_eq!(
            pairs(&answers),
            [
                ("Full name", "Jo Joiner"),
                ("Employment", "Contractor (Contract ends: 31 Mar 2027; Agency: Hays)"),
                ("Equipment", "laptop, headset"),
                ("Notes", "—"),
            ]
        );
        let fields = json!({"employment": {"type": "permanent"}, "equipment": []});
        let answers = super::answers(Some(&form("onboarding")), fields.as_object().unwrap());
        assert_eq!(pairs(&answers), [("Employment", "Permanent"), ("Equipment", "—")]);

        // enum labels from oneOf const/title, in lists too; a value without a label as it is;
        // a blank title falls back to the key
        let schema = json!({"properties": {
            "size": {"title": "Size", "oneOf": [{"const": "s", "title": "Small"}, {"const": "l", "title": "Large"}]},
            "extras": {"title": "Extras", "type": "array",
                       "items": {"anyOf": [{"const": 1, "title": "One"}, {"const": 2, "title": "Two"}]}},
            "colour": {"title": "  ", "enum": ["red"]},
            "when": {"title": "When", "type": "string", "format": "date-time"},
            "odd": {"title": "Odd date", "type": "string", "format": "date"}
        }});
        let fields =
            json!({"odd": "soon", "when": "2026-12-13T22:18:19Z", "colour": "red", "extras": [2, 3], "size": "l"});
        assert_eq!(
            pairs(&super::answers(Some(&schema), fields.as_object().unwrap())),
            [
                ("Size", "Large"),
                ("Extras", "Two, 3"),
                ("colour", "red"),
                ("When", "13 Dec 2026, 22:18 UTC"),
                ("Odd date", "soon"),
            ]
        );
    }

    #[test]
    fn steps_say_which_of_how_many_and_their_rule() {
        let step = |j: serde_json::Value| {
            let mut spec = json!({"name": "s", "approvers": [{"role": "x"}]});
            spec.as_object_mut().unwrap().extend(j.as_object().unwrap().clone());
            serde_json::from_value::<archer_orchestrator::approval::StepSpec>(spec).unwrap()
        };
        let text = |index, total, spec: serde_json::Value, n, escalated| {
            step_text(index, total, Some(&step(spec)), n, escalated).summary
        };
        assert_eq!(
            text(1, Some(2), json!({"approve_when": {"count": 2}}), 3, false),
            "step 2 of 2: any 2 of 3 approvers"
        );
        assert_eq!(
            text(0, Some(2), json!({"mode": "sequential"}), 2, false),
            "step 1 of 2: all 2 approvers, one after another"
        );
        assert_eq!(text(0, Some(2), json!({"approve_when": "any"}), 1, false), "step 1 of 2: one approver");
        assert_eq!(text(0, Some(1), json!({}), 3, false), "step 1 of 1: all 3 approvers");
        assert_eq!(text(0, Some(1), json!({"approve_when": "any"}), 3, false), "step 1 of 1: any one of 3 approvers");
        assert_eq!(text(2, Some(3), json!({"approve_when": {"count": 5}}), 3, false), "step 3 of 3: all 3 approvers");
        assert_eq!(
            text(0, Some(1), json!({"approve_when": {"percent": 60}}), 5, false),
            "step 1 of 1: any 3 of 5 approvers (60%)"
        );
        assert_eq!(
            text(0, Some(1), json!({"approve_when": "any", "reject_when": "any"}), 3, false),
            "step 1 of 1: any one of 3 approvers; rejected by any one"
        );
        // a rejection rule no stricter than the default goes unsaid
        assert_eq!(text(0, Some(1), json!({"reject_when": "any"}), 3, false), "step 1 of 1: all 3 approvers");
        assert_eq!(
            text(0, Some(1), json!({"approve_when": "any"}), 2, true),
            "step 1 of 1: escalated to 2 approvers; the first decision settles it"
        );
        assert_eq!(
            text(0, Some(1), json!({}), 1, true),
            "step 1 of 1: escalated to one approver, whose decision settles it"
        );
        let unknown = step_text(3, None, None, 2, false);
        assert_eq!((unknown.position.as_str(), unknown.rule.as_str()), ("step 4", "2 approvers"));
        assert_eq!(step_text(0, Some(1), None, 0, false).rule, "no approvers");
    }

    #[test]
    fn approval_emails_say_the_step_its_rule_and_link_a_readable_page() {
        let t = Templates::new().unwrap();
        for name in ["approval_request", "approval_reminder", "approval_escalated"] {
            let mut data = approval_sample();
            data["step"]["summary"] = json!("step 2 of 2: any 2 of 3 approvers");
            let r = t.render(name, &data).unwrap();
            let lines: Vec<&str> = r.text.lines().collect();
            assert!(
                lines.contains(&"  Step:       Manager approval (step 2 of 2: any 2 of 3 approvers)"),
                "{name}:\n{}",
                r.text
            );
            assert!(
                lines
                    .contains(&"View the request: http://127.0.0.1:8080/approvals/view?token=eyJ0YXNrIjoiMSJ9.c2lnLXY"),
                "{name}:\n{}",
                r.text
            );
            assert!(r.text.contains("The links expire at 30 Nov 2026, 18:00 UTC."), "{name}:\n{}", r.text);
            assert!(r.html.contains("Manager approval (step 2 of 2: any 2 of 3 approvers)"), "{name}:\n{}", r.html);
            let href = "<a href=\"http://127.0.0.1:8080/approvals/view?token&#x3D;eyJ0YXNrIjoiMSJ9.c2lnLXY\"";
            let at = r.html.find(href).unwrap_or_else(|| panic!("{name}: no view link:\n{}", r.html));
            let end = at + r.html[at..].find("</a>").unwrap();
            assert!(r.html[at..end].ends_with(">View the request"), "{name}:\n{}", r.html);
            // the JSON API (401 in a browser) is linked no more
            for body in [&r.text, &r.html] {
                assert!(!body.contains("/api/v1/"), "{name}:\n{body}");
            }
            // the answers keep the order they are given in
            let (device, why) = (r.text.find("  Device: laptop").unwrap(), r.text.find("  Justification: ").unwrap());
            assert!(device < why, "{name}:\n{}", r.text);
        }
    }

    #[test]
    fn needs_a_runtime() {
        assert!(matches!(Mailer::new(&config("smtp://127.0.0.1:1025")), Err(EmailError::Config(_))));
    }
}

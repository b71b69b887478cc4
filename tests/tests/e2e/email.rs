//! Email over real SMTP: Archer's mailer sends to the in-process SMTP sink, and the tests read
//! what arrived. Needs no PostgreSQL and no Temporal.

use std::time::Duration;

use archer_tests::smtp::{ReceivedMail, SmtpSink};
use archer_workers::email::{EmailError, MailConfig, Mailer, OutgoingEmail, Recipient};
use serde_json::{Value, json};

const FROM: &str = "Archer <archer@archer.localhost>";
const URL: &str = "http://127.0.0.1:8080/api/v1/tickets/INC-000045";
const HOSTILE: &str = "Printer <b>jam</b> & <script>alert(1)</script>";
const WAIT: Duration = Duration::from_secs(10);

fn mailer(sink_url: url::Url) -> Mailer {
    Mailer::new(&MailConfig { smtp_url: sink_url, from: FROM.into() }).unwrap()
}

/// The data both SLA templates take (see templates/README.md).
fn data(title: &str) -> Value {
    json!({
        "recipient": {"name": "Alex Agent"},
        "tenant": {"name": "Acme Corporation"},
        "ticket": {"number": "INC-000045", "title": title, "priority": 1, "status": "in_progress", "url": URL},
        "target": {"name": "resolution", "label": "Resolution"},
        "due_at": "2026-11-23 17:00 CET",
        "breached_at": "2026-11-23 17:00:00 CET",
        "threshold_percent": 80,
        "elapsed": "3h 12m",
        "remaining": "48m",
        "escalation": {"level": 1, "name": "Notify the team lead"}
    })
}

fn recipients() -> Vec<Recipient> {
    vec![
        Recipient { name: "Alex Agent".into(), address: "alex@acme.example".into() },
        Recipient { name: "Lee Lead".into(), address: "lee@acme.example".into() },
    ]
}

fn email(template: &str, message_id: &str, to: Vec<Recipient>) -> OutgoingEmail {
    let date = time::OffsetDateTime::now_utc();
    OutgoingEmail { to, template: template.into(), data: data(HOSTILE), message_id: message_id.into(), date }
}

/// What every SLA email carries, whatever its kind.
fn assert_sla_email(m: &ReceivedMail, message_id: &str) {
    assert_eq!(m.message_id, message_id, "{}", m.raw);
    assert_eq!(m.from, "archer@archer.localhost");
    assert_eq!(m.to, ["alex@acme.example", "lee@acme.example"]);
    assert_eq!(m.header("From").as_deref(), Some(FROM));
    let to = m.header("To").unwrap();
    assert!(
        to.contains("\"Alex Agent\" <alex@acme.example>") && to.contains("\"Lee Lead\" <lee@acme.example>"),
        "{to}"
    );
    assert!(m.raw.contains("Content-Type: multipart/alternative;"), "{}", m.raw);
    for needle in ["INC-000045", URL, "Resolution", "2026-11-23 17:00 CET", HOSTILE] {
        assert!(m.text.contains(needle), "the text part lacks {needle:?}:\n{}", m.text);
    }
    let escaped = "Printer &lt;b&gt;jam&lt;/b&gt; &amp; &lt;script&gt;alert(1)&lt;/script&gt;";
    assert!(m.html.contains(escaped), "the HTML part does not escape the title:\n{}", m.html);
    assert!(!m.html.contains("<script>") && !m.html.contains("<b>jam"), "{}", m.html);
    assert!(m.html.contains(&format!("href=\"{URL}\"")), "{}", m.html);
}

#[tokio::test]
async fn sla_emails_arrive_over_smtp_as_rendered() {
    let sink = SmtpSink::start().await;
    let mailer = mailer(sink.url());
    let breach_id = "<sla-breach.acme.INC-000045.resolution.1@archer>";
    let warning_id = "<sla-warning.acme.INC-000045.resolution.80@archer>";
    mailer.send(&email("sla_breach", breach_id, recipients())).await.unwrap();
    mailer.send(&email("sla_warning", warning_id, recipients())).await.unwrap();

    let breach = sink.wait_for(|m| m.message_id == breach_id, WAIT).await;
    assert_sla_email(&breach, breach_id);
    assert_eq!(breach.subject, "[INC-000045] SLA breached: Resolution (P1)");
    assert!(breach.text.contains("breached at 2026-11-23 17:00:00 CET"), "{}", breach.text);

    let warning = sink.wait_for(|m| m.message_id == warning_id, WAIT).await;
    assert_sla_email(&warning, warning_id);
    assert_eq!(warning.subject, "[INC-000045] SLA warning: Resolution due 2026-11-23 17:00 CET (P1)");
    assert!(warning.text.contains("80% of the time") && warning.text.contains("48m"), "{}", warning.text);

    assert_eq!(sink.count(|_| true), 2, "{:#?}", sink.messages());
}

#[tokio::test]
async fn a_retried_send_is_the_same_message() {
    let sink = SmtpSink::start().await;
    let mailer = mailer(sink.url());
    let id = "<sla-breach.acme.INC-000045.resolution.1@archer>";
    let e = email("sla_breach", id, recipients());
    mailer.send(&e).await.unwrap();
    mailer.clone().send(&e).await.unwrap();
    // The sink stores a message before it answers 250, so both are there once `send` returns.
    let both = sink.messages();
    assert_eq!(both.len(), 2);
    assert!(both.iter().all(|m| m.message_id == id), "{both:#?}");
    assert_eq!(both[0].subject, both[1].subject);
    assert_eq!(both[0].text, both[1].text);
}

#[tokio::test]
async fn an_unreachable_server_is_a_transient_error() {
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let mailer = mailer(format!("smtp://127.0.0.1:{closed}").parse().unwrap());
    let e = mailer.send(&email("sla_breach", "<a@archer>", recipients())).await.unwrap_err();
    assert!(e.is_transient(), "{e:?}");
    assert!(matches!(e, EmailError::Transient(_)), "{e:?}");
}

#[tokio::test]
async fn a_refused_recipient_is_permanent_on_5xx_and_transient_on_4xx() {
    let sink = SmtpSink::start().await;
    sink.refuse_recipient("gone@acme.example", 550);
    sink.refuse_recipient("full@acme.example", 452);
    let mailer = mailer(sink.url());
    let to = |address: &str| {
        let mut r = recipients();
        r.push(Recipient { name: String::new(), address: address.into() });
        r
    };
    let e = mailer.send(&email("sla_breach", "<b@archer>", to("gone@acme.example"))).await.unwrap_err();
    assert!(matches!(e, EmailError::Permanent(_)) && !e.is_transient(), "{e:?}");
    let e = mailer.send(&email("sla_breach", "<c@archer>", to("full@acme.example"))).await.unwrap_err();
    assert!(matches!(e, EmailError::Transient(_)) && e.is_transient(), "{e:?}");
    // The pooled connection survives refusals: the next email goes through.
    mailer.send(&email("sla_breach", "<d@archer>", recipients())).await.unwrap();
    sink.wait_for(|m| m.message_id == "<d@archer>", WAIT).await;
    assert_eq!(sink.count(|_| true), 1, "nothing is sent when a recipient is refused");
}

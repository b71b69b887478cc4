//! A real SMTP server for tests, in this process: what Archer sent, as a mail server received it.
//!
//! [`SmtpSink::start`] listens on `127.0.0.1` on a free port and speaks enough ESMTP for lettre
//! (and `smtplib`, `swaks`…): `EHLO`/`HELO`, `MAIL FROM`, `RCPT TO`, `DATA` (dot-unstuffed, ended
//! by `<CRLF>.<CRLF>`), `RSET`, `NOOP`, `QUIT`; several connections at once and several messages
//! per connection. It offers no `STARTTLS` and no `AUTH`, so point a mailer at it with a plain
//! `smtp://` URL ([`SmtpSink::url`]). Each message is parsed with `mail-parser` into a
//! [`ReceivedMail`]. It needs no environment variable and no other service.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use mail_parser::{HeaderValue, MessageParser, MessagePart, MimeHeaders, PartType};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::{JoinHandle, JoinSet};

/// The largest message the sink accepts, in bytes (larger ones are refused with 552).
const MAX_MESSAGE_BYTES: usize = 16 * 1024 * 1024;
/// The longest command line the sink accepts, in bytes (RFC 5321 allows 512).
const MAX_LINE_BYTES: usize = 4096;

/// One message as the sink received it.
#[derive(Debug, Clone)]
pub struct ReceivedMail {
    /// The envelope sender (`MAIL FROM`), without angle brackets.
    pub from: String,
    /// The envelope recipients (`RCPT TO`), without angle brackets, in the order given. Unlike
    /// the `To` header this includes `Bcc` recipients.
    pub to: Vec<String>,
    /// The decoded `Subject` header (empty if there is none).
    pub subject: String,
    /// The decoded `text/plain` body part (empty if there is none).
    pub text: String,
    /// The decoded `text/html` body part (empty if there is none).
    pub html: String,
    /// The `Message-ID` header as sent, angle brackets included (empty if there is none).
    pub message_id: String,
    /// The whole message (headers and body) after dot-unstuffing, CRLF line ends and all.
    pub raw: String,
    /// When the sink had the whole message (its data ended), by this process's monotonic clock:
    /// benchmarks measure delivery latency to it.
    pub received_at: std::time::Instant,
}

impl ReceivedMail {
    /// The value of the first header called `name` (case-insensitive), if any: decoded for text
    /// headers such as `Subject`, as written (unfolded) for the others, e.g. `header("From")` is
    /// `Some("Archer <archer@archer.localhost>")`.
    pub fn header(&self, name: &str) -> Option<String> {
        let message = MessageParser::default().parse(self.raw.as_bytes())?;
        if let Some(HeaderValue::Text(text)) = message.header(name) {
            return Some(text.to_string());
        }
        // Addresses, ids, dates: the value as written, unfolded (RFC 5322 2.2.3).
        let raw = message.header_raw(name)?;
        Some(raw.replace("\r\n", "").replace('\n', "").trim().to_owned())
    }

    /// A one-line description, for failure messages.
    fn describe(&self) -> String {
        format!("{} -> {}: {:?} {}", self.from, self.to.join(", "), self.subject, self.message_id)
    }
}

/// A recipient the sink refuses, and how.
#[derive(Debug, Clone)]
struct Refusal {
    code: u16,
    text: String,
}

#[derive(Debug)]
struct State {
    messages: Mutex<Vec<ReceivedMail>>,
    /// Recipients (lower-cased) that `RCPT TO` refuses.
    refusals: Mutex<HashMap<String, Refusal>>,
    /// The number of messages received so far; `wait_for` watches it.
    received: watch::Sender<usize>,
    /// How long the sink takes to accept each message once its data arrived (a slow server).
    accept_delay: Mutex<Duration>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// An SMTP server on `127.0.0.1` that keeps every message it receives. Stops when dropped.
#[derive(Debug)]
pub struct SmtpSink {
    addr: SocketAddr,
    state: Arc<State>,
    server: JoinHandle<()>,
}

impl Drop for SmtpSink {
    fn drop(&mut self) {
        // Dropping the accept loop drops its JoinSet, which aborts every open connection.
        self.server.abort();
    }
}

impl SmtpSink {
    /// Starts a sink on `127.0.0.1` on a free port. Needs a Tokio runtime.
    pub async fn start() -> SmtpSink {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind the SMTP sink to 127.0.0.1");
        let addr = listener.local_addr().expect("the SMTP sink's address");
        let state = Arc::new(State {
            messages: Mutex::new(Vec::new()),
            refusals: Mutex::new(HashMap::new()),
            received: watch::channel(0).0,
            accept_delay: Mutex::new(Duration::ZERO),
        });
        let server = tokio::spawn(accept_loop(listener, Arc::clone(&state)));
        SmtpSink { addr, state, server }
    }

    /// Where the sink listens.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The URL to give a mailer: `smtp://127.0.0.1:<port>` (plain SMTP).
    pub fn url(&self) -> url::Url {
        url::Url::parse(&format!("smtp://{}", self.addr)).expect("an smtp URL")
    }

    /// The messages received after the first `n`, oldest first (a reader that keeps up with
    /// the sink copies each message once).
    pub fn messages_since(&self, n: usize) -> Vec<ReceivedMail> {
        lock(&self.state.messages).iter().skip(n).cloned().collect()
    }

    /// Every message received so far, oldest first.
    pub fn messages(&self) -> Vec<ReceivedMail> {
        lock(&self.state.messages).clone()
    }

    /// How many messages received so far satisfy `pred`.
    pub fn count(&self, pred: impl Fn(&ReceivedMail) -> bool) -> usize {
        // On a copy, so `pred` may itself call the sink.
        self.messages().iter().filter(|m| pred(m)).count()
    }

    /// The first message (oldest first) that satisfies `pred`, waiting up to `timeout` for it to
    /// arrive. Panics after `timeout`, listing what did arrive.
    pub async fn wait_for(&self, pred: impl Fn(&ReceivedMail) -> bool, timeout: Duration) -> ReceivedMail {
        let mut received = self.state.received.subscribe();
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            received.borrow_and_update();
            if let Some(m) = self.messages().into_iter().find(|m| pred(m)) {
                return m;
            }
            if tokio::time::timeout_at(deadline, received.changed()).await.is_err() {
                let arrived = self.messages();
                let list = if arrived.is_empty() {
                    "  (nothing)".to_owned()
                } else {
                    arrived.iter().map(|m| format!("  {}", m.describe())).collect::<Vec<_>>().join("\n")
                };
                panic!(
                    "timed out after {timeout:?} waiting for an email on {}; {} arrived:\n{list}",
                    self.url(),
                    arrived.len()
                );
            }
        }
    }

    /// Makes the sink wait `delay` before accepting each message (after its data, before the
    /// `250`), as a slow or distant mail server does, so that sending email takes a while.
    pub fn delay_acceptance(&self, delay: Duration) {
        *lock(&self.state.accept_delay) = delay;
    }

    /// Makes `RCPT TO` refuse `address` (case-insensitive) with `code` (a 4xx reply is a
    /// temporary refusal, a 5xx one permanent), to test how a sender handles refusals.
    pub fn refuse_recipient(&self, address: &str, code: u16) {
        assert!((400..600).contains(&code), "a refusal needs a 4xx or 5xx code, not {code}");
        let text = if code >= 500 { "5.1.1 mailbox unavailable" } else { "4.2.2 mailbox full, try again later" };
        lock(&self.state.refusals).insert(address.to_ascii_lowercase(), Refusal { code, text: text.to_owned() });
    }

    /// Takes back [`SmtpSink::refuse_recipient`]: `address` is accepted again.
    pub fn accept_recipient(&self, address: &str) {
        lock(&self.state.refusals).remove(&address.to_ascii_lowercase());
    }
}

async fn accept_loop(listener: TcpListener, state: Arc<State>) {
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    let state = Arc::clone(&state);
                    connections.spawn(async move {
                        if let Err(e) = serve(stream, &state).await {
                            tracing::debug!(error = %e, "SMTP sink: connection ended");
                        }
                    });
                }
                Err(e) => {
                    tracing::warn!(error = %e, "SMTP sink: accept failed");
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            },
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
}

/// The envelope of the mail transaction under way.
#[derive(Default)]
struct Transaction {
    from: Option<String>,
    to: Vec<String>,
}

/// One SMTP session.
async fn serve(stream: TcpStream, state: &State) -> std::io::Result<()> {
    let (read, mut write) = stream.into_split();
    let mut read = BufReader::new(read);
    write.write_all(b"220 archer-tests ESMTP sink ready\r\n").await?;
    let mut tx = Transaction::default();
    let mut line = Vec::new();
    loop {
        line.clear();
        if (&mut read).take(MAX_LINE_BYTES as u64).read_until(b'\n', &mut line).await? == 0 {
            return Ok(());
        }
        if !line.ends_with(b"\n") {
            write.write_all(b"500 5.5.2 line too long\r\n").await?;
            return Ok(());
        }
        let command = String::from_utf8_lossy(&line);
        let command = command.trim_end_matches(['\r', '\n']);
        let (verb, arg) = command.split_once(' ').unwrap_or((command, ""));
        let reply: String = match verb.to_ascii_uppercase().as_str() {
            "EHLO" => {
                tx = Transaction::default();
                "250-archer-tests greets you\r\n250-8BITMIME\r\n250-SMTPUTF8\r\n250 SIZE 16777216\r\n".to_owned()
            }
            "HELO" => {
                tx = Transaction::default();
                "250 archer-tests\r\n".to_owned()
            }
            "MAIL" => match path(arg, "FROM:") {
                _ if tx.from.is_some() => "503 5.5.1 nested MAIL command\r\n".to_owned(),
                Some(from) => {
                    tx.from = Some(from);
                    "250 2.1.0 OK\r\n".to_owned()
                }
                None => "501 5.5.4 syntax: MAIL FROM:<address>\r\n".to_owned(),
            },
            "RCPT" => match path(arg, "TO:") {
                _ if tx.from.is_none() => "503 5.5.1 need MAIL first\r\n".to_owned(),
                Some(to) if to.is_empty() => "501 5.1.3 empty recipient\r\n".to_owned(),
                Some(to) => match lock(&state.refusals).get(&to.to_ascii_lowercase()) {
                    Some(r) => format!("{} {}\r\n", r.code, r.text),
                    None => {
                        tx.to.push(to);
                        "250 2.1.5 OK\r\n".to_owned()
                    }
                },
                None => "501 5.5.4 syntax: RCPT TO:<address>\r\n".to_owned(),
            },
            "DATA" if tx.to.is_empty() => "503 5.5.1 need RCPT first\r\n".to_owned(),
            "DATA" => {
                write.write_all(b"354 end data with <CR><LF>.<CR><LF>\r\n").await?;
                let raw = match read_data(&mut read).await? {
                    Some(raw) => raw,
                    None => {
                        tx = Transaction::default();
                        write.write_all(b"552 5.3.4 message too big\r\n").await?;
                        continue;
                    }
                };
                let tx = std::mem::take(&mut tx);
                let delay = *lock(&state.accept_delay);
                if !delay.is_zero() {
                    tokio::time::sleep(delay).await;
                }
                let mail = received_mail(tx.from.unwrap_or_default(), tx.to, raw);
                let id = {
                    let mut messages = lock(&state.messages);
                    messages.push(mail);
                    messages.len()
                };
                state.received.send_replace(id);
                format!("250 2.0.0 OK queued as {id}\r\n")
            }
            "RSET" => {
                tx = Transaction::default();
                "250 2.0.0 OK\r\n".to_owned()
            }
            "NOOP" => "250 2.0.0 OK\r\n".to_owned(),
            "QUIT" => "221 2.0.0 bye\r\n".to_owned(),
            "VRFY" => "252 2.1.5 cannot verify, will accept\r\n".to_owned(),
            _ => "502 5.5.1 command not implemented\r\n".to_owned(),
        };
        write.write_all(reply.as_bytes()).await?;
        if verb.eq_ignore_ascii_case("QUIT") {
            return write.shutdown().await;
        }
    }
}

/// The address of `FROM:<a@b> [parameters]` or `TO:<a@b> [parameters]` (the keyword is
/// case-insensitive; `<>` gives an empty address).
fn path(arg: &str, keyword: &str) -> Option<String> {
    let head = arg.get(..keyword.len())?;
    if !head.eq_ignore_ascii_case(keyword) {
        return None;
    }
    let rest = arg[keyword.len()..].trim_start();
    let inner = rest.strip_prefix('<')?;
    let end = inner.find('>')?;
    Some(inner[..end].to_owned())
}

/// Reads message data up to the terminating `.` line, undoing dot-stuffing. `None` if it is
/// larger than the sink accepts (the data is still read to the end).
async fn read_data<R: tokio::io::AsyncBufRead + Unpin>(read: &mut R) -> std::io::Result<Option<Vec<u8>>> {
    let mut data = Vec::new();
    let mut too_big = false;
    let mut line = Vec::new();
    loop {
        line.clear();
        if read.read_until(b'\n', &mut line).await? == 0 {
            return Err(std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "connection closed during DATA"));
        }
        if line == b".\r\n" || line == b".\n" {
            return Ok(if too_big { None } else { Some(data) });
        }
        let unstuffed = if line.starts_with(b".") { &line[1..] } else { &line[..] };
        if data.len() + unstuffed.len() > MAX_MESSAGE_BYTES {
            too_big = true;
            data.clear();
        }
        if !too_big {
            data.extend_from_slice(unstuffed);
        }
    }
}

fn received_mail(from: String, to: Vec<String>, raw: Vec<u8>) -> ReceivedMail {
    let mut mail = ReceivedMail {
        from,
        to,
        subject: String::new(),
        text: String::new(),
        html: String::new(),
        message_id: String::new(),
        raw: String::from_utf8_lossy(&raw).into_owned(),
        received_at: std::time::Instant::now(),
    };
    let Some(message) = MessageParser::default().parse(&raw[..]) else { return mail };
    mail.subject = message.subject().unwrap_or_default().to_owned();
    mail.message_id = message.header_raw("Message-ID").map(|v| v.trim().to_owned()).unwrap_or_default();
    // The parts as sent: no conversion between text and HTML when one of them is missing.
    let inline = |p: &MessagePart<'_>| !p.content_disposition().is_some_and(|d| d.is_attachment());
    mail.text = message
        .parts
        .iter()
        .find_map(|p| match &p.body {
            PartType::Text(t) if inline(p) && (p.content_type().is_none() || p.is_content_type("text", "plain")) => {
                Some(t.to_string())
            }
            _ => None,
        })
        .unwrap_or_default();
    mail.html = message
        .parts
        .iter()
        .find_map(|p| match &p.body {
            PartType::Html(h) if inline(p) => Some(h.to_string()),
            _ => None,
        })
        .unwrap_or_default();
    mail
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    /// A minimal SMTP client: sends `line` (unless empty) and returns the full reply.
    struct Client {
        read: BufReader<tokio::net::tcp::OwnedReadHalf>,
        write: tokio::net::tcp::OwnedWriteHalf,
    }

    impl Client {
        async fn connect(sink: &SmtpSink) -> Client {
            let (read, write) = TcpStream::connect(sink.addr()).await.unwrap().into_split();
            let mut c = Client { read: BufReader::new(read), write };
            assert!(c.reply().await.starts_with("220 "));
            c
        }

        async fn reply(&mut self) -> String {
            let mut all = String::new();
            loop {
                let mut line = String::new();
                self.read.read_line(&mut line).await.unwrap();
                all.push_str(&line);
                if line.len() < 4 || line.as_bytes()[3] == b' ' {
                    return all;
                }
            }
        }

        async fn cmd(&mut self, line: &str) -> String {
            self.write.write_all(format!("{line}\r\n").as_bytes()).await.unwrap();
            self.reply().await
        }
    }

    #[tokio::test]
    async fn speaks_smtp_and_keeps_what_it_received() {
        let sink = SmtpSink::start().await;
        assert_eq!(sink.url().as_str(), format!("smtp://127.0.0.1:{}", sink.addr().port()));
        let mut c = Client::connect(&sink).await;
        let ehlo = c.cmd("EHLO client.test").await;
        assert!(ehlo.starts_with("250-") && !ehlo.contains("STARTTLS") && !ehlo.contains("AUTH"), "{ehlo}");
        assert!(c.cmd("RCPT TO:<x@y.test>").await.starts_with("503"));
        assert!(c.cmd("DATA").await.starts_with("503"));
        assert!(c.cmd("MAIL FROM:<a@x.test> BODY=8BITMIME").await.starts_with("250"));
        assert!(c.cmd("RCPT TO:<b@y.test>").await.starts_with("250"));
        assert!(c.cmd("rcpt to: <c@y.test>").await.starts_with("250"));
        assert!(c.cmd("NOOP").await.starts_with("250"));
        assert!(c.cmd("DATA").await.starts_with("354"));
        let body = "Subject: first\r\nMessage-ID: <1@x.test>\r\n\r\n..leading dot\r\n..\r\nend\r\n.\r\n";
        c.write.write_all(body.as_bytes()).await.unwrap();
        assert!(c.reply().await.starts_with("250"));
        // A second message on the same connection, after an abandoned one.
        assert!(c.cmd("MAIL FROM:<a@x.test>").await.starts_with("250"));
        assert!(c.cmd("RCPT TO:<gone@y.test>").await.starts_with("250"));
        assert!(c.cmd("RSET").await.starts_with("250"));
        assert!(c.cmd("MAIL FROM:<>").await.starts_with("250"));
        assert!(c.cmd("RCPT TO:<d@y.test>").await.starts_with("250"));
        assert!(c.cmd("DATA").await.starts_with("354"));
        c.write.write_all(b"Subject: second\r\n\r\nhi\r\n.\r\n").await.unwrap();
        assert!(c.reply().await.starts_with("250"));
        assert!(c.cmd("QUIT").await.starts_with("221"));

        let all = sink.messages();
        assert_eq!(all.len(), 2);
        assert_eq!(all[0].from, "a@x.test");
        assert_eq!(all[0].to, ["b@y.test", "c@y.test"]);
        assert_eq!(all[0].subject, "first");
        assert_eq!(all[0].message_id, "<1@x.test>");
        assert_eq!(all[0].text, ".leading dot\r\n.\r\nend\r\n");
        assert!(all[0].raw.ends_with("\r\n\r\n.leading dot\r\n.\r\nend\r\n"), "{:?}", all[0].raw);
        assert_eq!(all[1].from, "");
        assert_eq!(all[1].to, ["d@y.test"]);
        assert_eq!(all[1].header("subject").as_deref(), Some("second"));
        assert_eq!(all[1].html, "");
        assert_eq!(sink.count(|m| m.subject.starts_with("sec")), 1);
    }

    #[tokio::test]
    async fn serves_connections_concurrently_and_waits_for_mail() {
        let sink = SmtpSink::start().await;
        let mut idle = Client::connect(&sink).await; // holds a session open meanwhile
        assert!(idle.cmd("HELO idle.test").await.starts_with("250"));
        let mut clients = Vec::new();
        for _ in 0..3 {
            clients.push(Client::connect(&sink).await);
        }
        for (i, c) in clients.iter_mut().enumerate() {
            assert!(c.cmd("HELO c.test").await.starts_with("250"));
            assert!(c.cmd(&format!("MAIL FROM:<c{i}@x.test>")).await.starts_with("250"));
            assert!(c.cmd("RCPT TO:<r@y.test>").await.starts_with("250"));
        }
        for (i, c) in clients.iter_mut().enumerate().rev() {
            assert!(c.cmd("DATA").await.starts_with("354"));
            c.write.write_all(format!("Subject: from {i}\r\n\r\nbody\r\n.\r\n").as_bytes()).await.unwrap();
            assert!(c.reply().await.starts_with("250"));
        }
        let m = sink.wait_for(|m| m.subject == "from 1", Duration::from_secs(5)).await;
        assert_eq!(m.from, "c1@x.test");
        assert_eq!(sink.count(|_| true), 3);
        assert!(idle.cmd("QUIT").await.starts_with("221"));
    }

    #[tokio::test]
    async fn refuses_recipients_on_request() {
        let sink = SmtpSink::start().await;
        sink.refuse_recipient("Gone@Y.test", 550);
        sink.refuse_recipient("full@y.test", 452);
        let mut c = Client::connect(&sink).await;
        assert!(c.cmd("MAIL FROM:<a@x.test>").await.starts_with("250"));
        assert!(c.cmd("RCPT TO:<gone@y.test>").await.starts_with("550 "));
        assert!(c.cmd("RCPT TO:<full@y.test>").await.starts_with("452 "));
    }

    #[tokio::test]
    #[should_panic(expected = "1 arrived:\n  a@x.test -> b@y.test: \"only this\"")]
    async fn wait_for_lists_what_arrived() {
        let sink = SmtpSink::start().await;
        let mut c = Client::connect(&sink).await;
        c.cmd("MAIL FROM:<a@x.test>").await;
        c.cmd("RCPT TO:<b@y.test>").await;
        c.cmd("DATA").await;
        c.write.write_all(b"Subject: only this\r\n\r\nx\r\n.\r\n").await.unwrap();
        c.reply().await;
        sink.wait_for(|m| m.subject == "something else", Duration::from_millis(200)).await;
    }
}

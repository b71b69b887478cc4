//! `webhook.post`: an event POSTed to a connection as Standard Webhooks
//! (<https://www.standardwebhooks.com>) describe it, signed with the connection's `whsec_…`
//! secret by the `standardwebhooks` crate: `webhook-id` is the step's idempotency key (so a
//! receiver dedupes a retry), `webhook-timestamp` the sending instant in seconds,
//! `webhook-signature` the HMAC-SHA256 of `id.timestamp.body`. Sent as `http.request` sends
//! (same base URL, address and redirect rules).

use reqwest::header::{HeaderMap, HeaderValue};
use secrecy::ExposeSecret;
use serde::Deserialize;
use serde_json::{Value, json};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use super::StepError;
use super::http::{self, Outgoing, Target};
use super::net::{self, HttpClients};

/// `webhook.post`'s inputs.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookPost {
    pub connection: String,
    pub event_type: String,
    #[serde(default)]
    pub payload: Option<Value>,
}

/// The signed request: the body `{"type", "timestamp", "data"}` POSTed to the base URL.
pub fn prepare(
    input: &WebhookPost,
    target: &Target,
    webhook_id: &str,
    now: OffsetDateTime,
) -> Result<Outgoing, StepError> {
    if input.payload.as_ref().is_some_and(http::names_a_secret) {
        return Err(StepError::Input("{{secrets.…}} may not appear in a webhook's payload".into()));
    }
    let secret = target
        .secret
        .as_ref()
        .ok_or_else(|| StepError::Input(format!("connection {:?} has no signing secret set", target.name)))?;
    let signer = standardwebhooks::Webhook::new(secret.expose_secret()).map_err(|_| {
        StepError::Input(format!("connection {:?}: its secret is not a whsec_… signing secret", target.name))
    })?;
    let timestamp = now.unix_timestamp();
    let body = json!({
        "type": input.event_type,
        "timestamp": now.format(&Rfc3339).map_err(|e| StepError::Internal(e.to_string()))?,
        "data": input.payload.clone().unwrap_or_else(|| json!({})),
    });
    let body = serde_json::to_vec(&body).map_err(|e| StepError::Internal(e.to_string()))?;
    let signature = signer
        .sign(webhook_id, timestamp, &body)
        .map_err(|e| StepError::Internal(format!("signing the webhook: {e}")))?;
    let mut headers = HeaderMap::new();
    let value =
        |v: &str| HeaderValue::from_str(v).map_err(|_| StepError::Input(format!("{v:?} is not a valid header value")));
    headers.insert("webhook-id", value(webhook_id)?);
    headers.insert("webhook-timestamp", value(&timestamp.to_string())?);
    headers.insert("webhook-signature", value(&signature)?);
    headers.insert(reqwest::header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    // the base URL itself (a receiver at `/hooks` gets `/hooks`), under the same rules as any
    // connection URL
    net::join(&target.base_url, "/")?;
    let url =
        url::Url::parse(&target.base_url).map_err(|e| StepError::Input(format!("the connection's base URL: {e}")))?;
    Ok(Outgoing { method: reqwest::Method::POST, url, headers, body: Some(body) })
}

/// `webhook.post`: the step's output `{status, webhook_id}`.
pub async fn post(
    clients: &HttpClients,
    target: &Target,
    input: &WebhookPost,
    webhook_id: &str,
    now: OffsetDateTime,
) -> Result<Value, StepError> {
    let out = prepare(input, target, webhook_id, now)?;
    let answer = http::send(clients, out, target).await?;
    Ok(json!({"status": answer.status, "webhook_id": webhook_id}))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use secrecy::SecretString;

    const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

    fn target(secret: Option<&str>) -> Target {
        Target {
            name: "hooks".into(),
            base_url: "https://hooks.example/in".into(),
            auth: http::Auth::Webhook,
            allow_private: false,
            secret: secret.map(SecretString::from),
        }
    }

    #[test]
    fn the_signature_verifies_with_the_reference_algorithm() {
        let now = OffsetDateTime::now_utc();
        let input =
            WebhookPost { connection: "hooks".into(), event_type: "ticket.p1".into(), payload: Some(json!({"n": 1})) };
        let out = prepare(&input, &target(Some(SECRET)), "acme/INC-000001/playbook/p/1/notify", now).unwrap();
        assert_eq!(out.url.as_str(), "https://hooks.example/in");
        assert_eq!(out.headers["webhook-id"], "acme/INC-000001/playbook/p/1/notify");
        assert_eq!(out.headers["webhook-timestamp"], now.unix_timestamp().to_string().as_str());
        let body = out.body.unwrap();
        let mut headers = http::HeaderMap::new();
        for (k, v) in &out.headers {
            headers.insert(k.clone(), v.clone());
        }
        standardwebhooks::Webhook::new(SECRET).unwrap().verify(&body, &headers).unwrap();
        let parsed: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(parsed["type"], "ticket.p1");
        assert_eq!(parsed["data"], json!({"n": 1}));
        // another secret does not verify it
        let other = standardwebhooks::Webhook::new("whsec_QUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFB").unwrap();
        assert!(other.verify(&body, &headers).is_err());
    }

    #[test]
    fn a_missing_or_malformed_secret_is_an_input_error() {
        let input = WebhookPost { connection: "hooks".into(), event_type: "e".into(), payload: None };
        let now = OffsetDateTime::now_utc();
        assert!(matches!(prepare(&input, &target(None), "k", now), Err(StepError::Input(_))));
        let e = prepare(&input, &target(Some("whsec_not base64!")), "k", now).unwrap_err();
        assert!(matches!(e, StepError::Input(_)) && !e.to_string().contains("not base64!"), "{e}");
    }
}

//! Signed, expiring, single-use decision links for approvals sent by email.
//!
//! A link carries a token: the claims (which approval, step, task, approver and decision, and
//! until when) as base64url JSON, a dot, and an HMAC-SHA256 of that text under a server secret.
//! Tampering with one byte breaks the signature; the token id is recorded when it decides, so
//! it works once. Opening a link only shows a confirmation page; the POST from that page
//! decides (mail scanners and link previews fetch GETs).
//!
//! A view link ("View the request" in the email) carries a token of its own kind
//! ([`ViewClaims`], signed the same way but for another purpose): it opens a page showing the
//! request and can never decide, and a decision token does not open that page.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, KeyInit, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use uuid::Uuid;

use archer_orchestrator::approval::Decision;

/// What a decision link says.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LinkClaims {
    /// The token's id, recorded when it is used.
    pub jti: Uuid,
    pub tenant: Uuid,
    pub approval: Uuid,
    pub step: Uuid,
    pub task: Uuid,
    pub approver: Uuid,
    pub decision: Decision,
    /// Unix seconds after which the link no longer decides.
    pub exp: i64,
}

/// What a view link says: whose task in which step it shows, and until when. It decides
/// nothing: it opens a page that shows the request, its answers and what is pending.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ViewClaims {
    pub tenant: Uuid,
    pub approval: Uuid,
    pub step: Uuid,
    pub task: Uuid,
    pub approver: Uuid,
    /// Unix seconds after which the link no longer opens the page.
    pub exp: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LinkError {
    #[error("this link is not one Archer sent, or it was changed on the way")]
    Tampered,
}

/// Signs and checks decision links.
#[derive(Clone)]
pub struct LinkSigner {
    key: Vec<u8>,
}

impl std::fmt::Debug for LinkSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("LinkSigner(..)")
    }
}

type HmacSha256 = Hmac<Sha256>;

impl LinkSigner {
    /// A signer whose key is derived from `secret` for this purpose only (so the key that signs
    /// access tokens never signs links).
    pub fn new(secret: &[u8]) -> Self {
        let mut mac = <HmacSha256 as KeyInit>::new_from_slice(secret).unwrap_or_else(|_| {
            <HmacSha256 as KeyInit>::new_from_slice(b"archer").expect("HMAC accepts any key length")
        });
        mac.update(b"archer approval links v1");
        Self { key: mac.finalize().into_bytes().to_vec() }
    }

    fn mac(&self, payload: &str) -> Vec<u8> {
        let mut mac = <HmacSha256 as KeyInit>::new_from_slice(&self.key).expect("HMAC accepts any key length");
        mac.update(payload.as_bytes());
        mac.finalize().into_bytes().to_vec()
    }

    pub fn sign(&self, claims: &LinkClaims) -> String {
        self.sign_as(DECIDE, claims)
    }

    /// The claims of an authentic token (expiry and use are the caller's to check).
    pub fn verify(&self, token: &str) -> Result<LinkClaims, LinkError> {
        self.verify_as(DECIDE, token)
    }

    /// Signs a view link's token. A view token never verifies as a decision token, nor a
    /// decision token as a view token: the signature covers what the token is for.
    pub fn sign_view(&self, claims: &ViewClaims) -> String {
        self.sign_as(VIEW, claims)
    }

    /// The claims of an authentic view token (expiry is the caller's to check).
    pub fn verify_view(&self, token: &str) -> Result<ViewClaims, LinkError> {
        self.verify_as(VIEW, token)
    }

    /// `payload.signature`, the signature an HMAC of `purpose` followed by the payload.
    fn sign_as(&self, purpose: &str, claims: &impl Serialize) -> String {
        let payload = URL_SAFE_NO_PAD.encode(serde_json::to_vec(claims).unwrap_or_default());
        let sig = URL_SAFE_NO_PAD.encode(self.mac(&format!("{purpose}{payload}")));
        format!("{payload}.{sig}")
    }

    /// What a token's payload says about its tenant and approver, WITHOUT checking its
    /// signature: only to record where a refused (forged or damaged) link claims to belong.
    pub fn unverified_claims(token: &str) -> (Option<Uuid>, Option<Uuid>) {
        let payload = token.trim().split('.').next().unwrap_or_default();
        let claims: Option<serde_json::Value> =
            URL_SAFE_NO_PAD.decode(payload).ok().and_then(|json| serde_json::from_slice(&json).ok());
        let field = |name: &str| {
            claims.as_ref().and_then(|c| c.get(name)).and_then(|v| v.as_str()).and_then(|v| Uuid::parse_str(v).ok())
        };
        (field("tenant"), field("approver"))
    }

    /// The claims of a token signed for `purpose`.
    fn verify_as<T: serde::de::DeserializeOwned>(&self, purpose: &str, token: &str) -> Result<T, LinkError> {
        let (payload, sig) = token.trim().split_once('.').ok_or(LinkError::Tampered)?;
        let sig = URL_SAFE_NO_PAD.decode(sig).map_err(|_| LinkError::Tampered)?;
        let mut mac = <HmacSha256 as KeyInit>::new_from_slice(&self.key).expect("HMAC accepts any key length");
        mac.update(purpose.as_bytes());
        mac.update(payload.as_bytes());
        mac.verify_slice(&sig).map_err(|_| LinkError::Tampered)?;
        let json = URL_SAFE_NO_PAD.decode(payload).map_err(|_| LinkError::Tampered)?;
        serde_json::from_slice(&json).map_err(|_| LinkError::Tampered)
    }
}

/// What the signature of a decision token covers before its payload: nothing (the tokens in
/// emails already sent are signed so).
const DECIDE: &str = "";
/// What the signature of a view token covers before its payload. A payload is base64url, which
/// has no `.`, so no view token's signed text is ever a decision token's.
const VIEW: &str = "view.";

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn claims() -> LinkClaims {
        LinkClaims {
            jti: Uuid::now_v7(),
            tenant: Uuid::now_v7(),
            approval: Uuid::now_v7(),
            step: Uuid::now_v7(),
            task: Uuid::now_v7(),
            approver: Uuid::now_v7(),
            decision: Decision::Approve,
            exp: 2_000_000_000,
        }
    }

    #[test]
    fn a_signed_link_verifies_and_any_changed_byte_does_not() {
        let s = LinkSigner::new(b"a server secret of enough length, really");
        let c = claims();
        let token = s.sign(&c);
        assert_eq!(s.verify(&token), Ok(c));
        for i in 0..token.len() {
            let mut bytes = token.clone().into_bytes();
            bytes[i] = if bytes[i] == b'A' { b'B' } else { b'A' };
            if let Ok(t) = String::from_utf8(bytes)
                && t != token
            {
                assert_eq!(s.verify(&t), Err(LinkError::Tampered), "byte {i}");
            }
        }
        assert_eq!(LinkSigner::new(b"another secret").verify(&token), Err(LinkError::Tampered));
        assert_eq!(s.verify("garbage"), Err(LinkError::Tampered));
    }

    #[test]
    fn view_tokens_and_decision_tokens_are_not_interchangeable() {
        let s = LinkSigner::new(b"a server secret of enough length, really");
        let c = claims();
        let view = ViewClaims {
            tenant: c.tenant,
            approval: c.approval,
            step: c.step,
            task: c.task,
            approver: c.approver,
            exp: c.exp,
        };
        let view_token = s.sign_view(&view);
        assert_eq!(s.verify_view(&view_token), Ok(view.clone()));
        assert_eq!(s.verify(&view_token), Err(LinkError::Tampered), "a view token never decides");
        let decision_token = s.sign(&c);
        assert_eq!(s.verify_view(&decision_token), Err(LinkError::Tampered));
        // the same payload signed for the other purpose does not verify either
        let (payload, _) = view_token.split_once('.').unwrap();
        let (_, decision_sig) = decision_token.split_once('.').unwrap();
        assert_eq!(s.verify_view(&format!("{payload}.{decision_sig}")), Err(LinkError::Tampered));
        assert_eq!(LinkSigner::new(b"another secret").verify_view(&view_token), Err(LinkError::Tampered));
        let mut tampered = view.clone();
        tampered.exp += 1;
        let forged =
            format!("{}.{}", s.sign_view(&tampered).split_once('.').unwrap().0, view_token.split_once('.').unwrap().1);
        assert_eq!(s.verify_view(&forged), Err(LinkError::Tampered));
    }
}

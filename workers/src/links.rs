//! Signed, expiring, single-use decision links for approvals sent by email.
//!
//! A link carries a token: the claims (which approval, step, task, approver and decision, and
//! until when) as base64url JSON, a dot, and an HMAC-SHA256 of that text under a server secret.
//! Tampering with one byte breaks the signature; the token id is recorded when it decides, so
//! it works once. Opening a link only shows a confirmation page; the POST from that page
//! decides (mail scanners and link previews fetch GETs).

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
        let payload = URL_SAFE_NO_PAD.encode(serde_json::to_vec(claims).unwrap_or_default());
        let sig = URL_SAFE_NO_PAD.encode(self.mac(&payload));
        format!("{payload}.{sig}")
    }

    /// The claims of an authentic token (expiry and use are the caller's to check).
    pub fn verify(&self, token: &str) -> Result<LinkClaims, LinkError> {
        let (payload, sig) = token.trim().split_once('.').ok_or(LinkError::Tampered)?;
        let sig = URL_SAFE_NO_PAD.decode(sig).map_err(|_| LinkError::Tampered)?;
        let mut mac = <HmacSha256 as KeyInit>::new_from_slice(&self.key).expect("HMAC accepts any key length");
        mac.update(payload.as_bytes());
        mac.verify_slice(&sig).map_err(|_| LinkError::Tampered)?;
        let json = URL_SAFE_NO_PAD.decode(payload).map_err(|_| LinkError::Tampered)?;
        serde_json::from_slice(&json).map_err(|_| LinkError::Tampered)
    }
}

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
}

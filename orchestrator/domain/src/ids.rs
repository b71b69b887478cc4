//! Identifiers whose only constructors check their invariants.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

use crate::ticket::TicketKind;

/// A tenant's short, immutable, URL- and workflow-id-safe name (`acme`, `globex-eu`).
///
/// Lowercase ASCII letters, digits and inner hyphens, 2 to 40 characters. It is part of every
/// workflow id, so it never changes once a tenant exists.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct TenantSlug(String);

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error(
    "a tenant slug has 2 to 40 lowercase letters, digits or inner hyphens, and starts and ends with a letter or digit"
)]
pub struct InvalidTenantSlug;

impl TenantSlug {
    pub fn parse(s: &str) -> Result<Self, InvalidTenantSlug> {
        let bytes = s.as_bytes();
        let ok_char = |b: &u8| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'-';
        let edge_ok = |b: Option<&u8>| b.is_some_and(|b| b.is_ascii_lowercase() || b.is_ascii_digit());
        if (2..=40).contains(&bytes.len())
            && bytes.iter().all(ok_char)
            && edge_ok(bytes.first())
            && edge_ok(bytes.last())
        {
            Ok(Self(s.to_owned()))
        } else {
            Err(InvalidTenantSlug)
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for TenantSlug {
    type Error = InvalidTenantSlug;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        Self::parse(&s)
    }
}

impl From<TenantSlug> for String {
    fn from(s: TenantSlug) -> Self {
        s.0
    }
}

impl fmt::Display for TenantSlug {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A ticket's human number: kind prefix and a per-tenant, per-kind sequence (`INC-000045`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct TicketNumber {
    kind: TicketKind,
    seq: u32,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("a ticket number looks like INC-000045: a prefix (INC, REQ, CHG, PRB, TASK), a hyphen and a positive number")]
pub struct InvalidTicketNumber;

impl TicketNumber {
    /// Sequences start at 1; the database allocates them without gaps.
    pub fn new(kind: TicketKind, seq: u32) -> Result<Self, InvalidTicketNumber> {
        if seq == 0 { Err(InvalidTicketNumber) } else { Ok(Self { kind, seq }) }
    }

    pub fn kind(&self) -> TicketKind {
        self.kind
    }

    pub fn seq(&self) -> u32 {
        self.seq
    }
}

impl fmt::Display for TicketNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{:06}", self.kind.prefix(), self.seq)
    }
}

impl FromStr for TicketNumber {
    type Err = InvalidTicketNumber;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (prefix, digits) = s.split_once('-').ok_or(InvalidTicketNumber)?;
        let kind = TicketKind::from_prefix(&prefix.to_ascii_uppercase()).ok_or(InvalidTicketNumber)?;
        if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return Err(InvalidTicketNumber);
        }
        let seq: u32 = digits.parse().map_err(|_| InvalidTicketNumber)?;
        Self::new(kind, seq)
    }
}

impl TryFrom<String> for TicketNumber {
    type Error = InvalidTicketNumber;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        s.parse()
    }
}

impl From<TicketNumber> for String {
    fn from(n: TicketNumber) -> Self {
        n.to_string()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn slugs() {
        for ok in ["acme", "a1", "globex-eu", "x-y-z"] {
            assert!(TenantSlug::parse(ok).is_ok(), "{ok}");
        }
        for bad in ["", "a", "-acme", "acme-", "Acme", "ac me", "ac/me", &"a".repeat(41)] {
            assert_eq!(TenantSlug::parse(bad), Err(InvalidTenantSlug), "{bad}");
        }
    }

    #[test]
    fn ticket_numbers_round_trip() {
        let n = TicketNumber::new(TicketKind::Incident, 45).unwrap();
        assert_eq!(n.to_string(), "INC-000045");
        assert_eq!("INC-000045".parse::<TicketNumber>().unwrap(), n);
        assert_eq!("inc-45".parse::<TicketNumber>().unwrap(), n);
        assert_eq!(TicketNumber::new(TicketKind::Change, 1_234_567).unwrap().to_string(), "CHG-1234567");
        let task: TicketNumber = "task-000001".parse().unwrap();
        assert_eq!((task.kind(), task.seq(), task.to_string()), (TicketKind::Task, 1, "TASK-000001".to_owned()));
        for bad in ["INC000045", "XYZ-1", "INC-", "INC-0", "INC-+4", "INC--4", "INC-99999999999"] {
            assert!(bad.parse::<TicketNumber>().is_err(), "{bad}");
        }
    }
}

//! Who may do what: the permissions roles grant. Roles are rows (`roles.permissions`); the
//! permissions themselves are this closed set, so a misspelled one fails to compile.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum Permission {
    /// Open tickets and catalog requests.
    #[serde(rename = "ticket:create")]
    TicketCreate,
    /// Work tickets: see all of them, change any field, move them through their states.
    #[serde(rename = "ticket:update")]
    TicketUpdate,
    /// Set a ticket's assignee and team.
    #[serde(rename = "ticket:assign")]
    TicketAssign,
    /// Decide approvals in the app (an emailed link decides for the approver it names).
    #[serde(rename = "approval:decide")]
    ApprovalDecide,
    /// Author the service catalog and the change routing.
    #[serde(rename = "catalog:admin")]
    CatalogAdmin,
    /// Author playbooks.
    #[serde(rename = "playbook:admin")]
    PlaybookAdmin,
    /// Author SLA policies and business calendars.
    #[serde(rename = "sla:admin")]
    SlaAdmin,
    /// Manage users, teams and roles.
    #[serde(rename = "user:admin")]
    UserAdmin,
    /// Read the audit log.
    #[serde(rename = "audit:read")]
    AuditRead,
}

impl Permission {
    pub const ALL: [Permission; 9] = [
        Self::TicketCreate,
        Self::TicketUpdate,
        Self::TicketAssign,
        Self::ApprovalDecide,
        Self::CatalogAdmin,
        Self::PlaybookAdmin,
        Self::SlaAdmin,
        Self::UserAdmin,
        Self::AuditRead,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::TicketCreate => "ticket:create",
            Self::TicketUpdate => "ticket:update",
            Self::TicketAssign => "ticket:assign",
            Self::ApprovalDecide => "approval:decide",
            Self::CatalogAdmin => "catalog:admin",
            Self::PlaybookAdmin => "playbook:admin",
            Self::SlaAdmin => "sla:admin",
            Self::UserAdmin => "user:admin",
            Self::AuditRead => "audit:read",
        }
    }
}

impl fmt::Display for Permission {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, thiserror::Error)]
#[error("unknown permission `{0}`")]
pub struct UnknownPermission(pub String);

impl FromStr for Permission {
    type Err = UnknownPermission;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL.into_iter().find(|p| p.as_str() == s).ok_or_else(|| UnknownPermission(s.to_owned()))
    }
}

/// The permissions someone holds (from their roles).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Permissions(Vec<Permission>);

impl Permissions {
    pub fn new(mut list: Vec<Permission>) -> Self {
        list.sort();
        list.dedup();
        Self(list)
    }

    /// Reads stored names, dropping any this build does not know (a role row written by a
    /// newer version grants nothing here rather than failing every request).
    pub fn parse<S: AsRef<str>>(names: &[S]) -> Self {
        Self::new(names.iter().filter_map(|n| n.as_ref().parse().ok()).collect())
    }

    pub fn has(&self, p: Permission) -> bool {
        self.0.contains(&p)
    }

    pub fn iter(&self) -> impl Iterator<Item = Permission> + '_ {
        self.0.iter().copied()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_through_text_and_json() {
        for p in Permission::ALL {
            assert_eq!(p.as_str().parse::<Permission>().ok(), Some(p));
            assert_eq!(serde_json::to_value(p).ok(), Some(serde_json::Value::from(p.as_str())));
        }
        assert!("ticket:delete".parse::<Permission>().is_err());
    }

    #[test]
    fn unknown_stored_names_grant_nothing() {
        let held = Permissions::parse(&["ticket:create", "ticket:teleport", "ticket:create"]);
        assert!(held.has(Permission::TicketCreate));
        assert!(!held.has(Permission::TicketUpdate));
        assert_eq!(held.iter().count(), 1);
    }
}

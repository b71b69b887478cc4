//! Search attributes that make Archer's workflows findable in the Temporal Web UI
//! (for example `ArcherTenant = "acme" AND ArcherStatus = "new"`).

use temporalio_common::search_attributes::SearchAttributeKey;

pub const TENANT: SearchAttributeKey<String> = SearchAttributeKey::keyword("ArcherTenant");
pub const NUMBER: SearchAttributeKey<String> = SearchAttributeKey::keyword("ArcherNumber");
pub const KIND: SearchAttributeKey<String> = SearchAttributeKey::keyword("ArcherKind");
pub const PRIORITY: SearchAttributeKey<i64> = SearchAttributeKey::int("ArcherPriority");
pub const STATUS: SearchAttributeKey<String> = SearchAttributeKey::keyword("ArcherStatus");
/// The worst state of the ticket's SLA clocks: breached, warning, running, paused, met, cancelled.
pub const SLA_STATE: SearchAttributeKey<String> = SearchAttributeKey::keyword("ArcherSlaState");
/// The earliest upcoming breach instant of the ticket's running clocks.
pub const SLA_DUE: SearchAttributeKey<temporalio_common::search_attributes::Timestamp> =
    SearchAttributeKey::datetime("ArcherSlaDue");

/// The type of a search attribute, as the server registers it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttributeType {
    Keyword,
    Int,
    Datetime,
}

/// Every custom search attribute Archer uses, for registration on a namespace.
pub const ALL: &[(&str, AttributeType)] = &[
    ("ArcherTenant", AttributeType::Keyword),
    ("ArcherNumber", AttributeType::Keyword),
    ("ArcherKind", AttributeType::Keyword),
    ("ArcherPriority", AttributeType::Int),
    ("ArcherStatus", AttributeType::Keyword),
    ("ArcherSlaState", AttributeType::Keyword),
    ("ArcherSlaDue", AttributeType::Datetime),
];

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    #[test]
    fn keys_and_registration_list_agree() {
        let names = [
            super::TENANT.name(),
            super::NUMBER.name(),
            super::KIND.name(),
            super::PRIORITY.name(),
            super::STATUS.name(),
        ];
        for n in names {
            assert!(super::ALL.iter().any(|(name, _)| *name == n), "{n} is not registered");
        }
    }
}

//! Service catalog items as admins define them (one immutable version at a time): who may
//! request them, the form (a JSON Schema, validated by the API), the approval chain and the
//! playbook to run after approval.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::approval::ChainSpec;
use crate::sla::policy::BusinessDuration;

/// Who may request an item: everyone, or holders of one of `roles`, or members of one of
/// `teams`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct Audience {
    #[serde(default)]
    pub everyone: bool,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub roles: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub teams: Vec<Uuid>,
}

impl Default for Audience {
    fn default() -> Self {
        Audience { everyone: true, roles: Vec::new(), teams: Vec::new() }
    }
}

impl Audience {
    pub fn admits(&self, roles: &[String], teams: &[Uuid]) -> bool {
        self.everyone || self.roles.iter().any(|r| roles.contains(r)) || self.teams.iter().any(|t| teams.contains(t))
    }
}

/// One version of a catalog item.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct ItemSpec {
    #[serde(default)]
    pub description: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub icon: Option<String>,
    #[serde(default)]
    pub audience: Audience,
    /// The item's owner (an approver spec can name them).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner_id: Option<Uuid>,
    /// How long fulfilment should take once approved (shown to requesters).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fulfilment_target: Option<BusinessDuration>,
    /// JSON Schema (draft 2020-12) of the request form.
    #[cfg_attr(feature = "openapi", schema(value_type = Object))]
    pub form_schema: serde_json::Value,
    /// The approval chain a request runs first; none: straight to fulfilment.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub approval: Option<ChainSpec>,
    /// The playbook to run after approval (none until playbooks exist).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub playbook: Option<String>,
}

/// The change types the change routing knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum ChangeType {
    /// Pre-approved, low-risk, routine.
    Standard,
    Normal,
    Emergency,
}

impl ChangeType {
    pub fn as_str(self) -> &'static str {
        match self {
            ChangeType::Standard => "standard",
            ChangeType::Normal => "normal",
            ChangeType::Emergency => "emergency",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum Risk {
    Low,
    Medium,
    High,
}

impl Risk {
    pub fn as_str(self) -> &'static str {
        match self {
            Risk::Low => "low",
            Risk::Medium => "medium",
            Risk::High => "high",
        }
    }
}

/// How a change type is approved: automatically (recorded as an automatic approval), or by a
/// chain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum Route {
    AutoApprove { reason: String },
    Chain(ChainSpec),
}

/// Which approval each change type gets when it enters authorization. Tenant data, not code.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct ChangeRouting {
    pub standard: Route,
    pub normal: Route,
    pub emergency: Route,
}

impl ChangeRouting {
    pub fn route(&self, t: ChangeType) -> &Route {
        match t {
            ChangeType::Standard => &self.standard,
            ChangeType::Normal => &self.normal,
            ChangeType::Emergency => &self.emergency,
        }
    }

    /// The routing a tenant has until it configures its own: standard changes pre-approved;
    /// normal changes to a manager, then the CAB (two of its members); emergency changes to
    /// any two CAB members within four hours.
    pub fn default_routing() -> Self {
        use crate::approval::{ApproverSpec, Rule, StepSpec, Timeout};
        let step = |name: &str, role: &str, rule: Rule, timeout: Option<Timeout>| StepSpec {
            name: name.into(),
            approvers: vec![ApproverSpec::Role(role.into())],
            mode: crate::approval::Mode::Parallel,
            approve_when: rule,
            reject_when: None,
            timeout,
            on_timeout: crate::approval::OnTimeout::Reject,
        };
        ChangeRouting {
            standard: Route::AutoApprove { reason: "standard change: pre-approved".into() },
            normal: Route::Chain(ChainSpec {
                steps: vec![
                    step("Change manager", "manager", Rule::Any, None),
                    step("Change advisory board", "cab_member", Rule::Count(2), None),
                ],
            }),
            emergency: Route::Chain(ChainSpec {
                steps: vec![step(
                    "Emergency CAB",
                    "cab_member",
                    Rule::Count(2),
                    Some(Timeout {
                        after: BusinessDuration(4 * 3600),
                        reminders: vec![BusinessDuration(3600)],
                        clock: Default::default(),
                    }),
                )],
            }),
        }
    }

    /// Every problem of every chain, with pointers.
    pub fn validate(&self) -> Result<(), Vec<crate::approval::ChainError>> {
        let mut errors = Vec::new();
        for (name, route) in [("standard", &self.standard), ("normal", &self.normal), ("emergency", &self.emergency)] {
            match route {
                Route::Chain(c) => {
                    if let Err(errs) = c.validate() {
                        errors.extend(errs.into_iter().map(|mut e| {
                            e.pointer = format!("/{name}/chain{}", e.pointer);
                            e
                        }));
                    }
                }
                Route::AutoApprove { reason } if reason.trim().is_empty() => errors.push(crate::approval::ChainError {
                    pointer: format!("/{name}/auto_approve/reason"),
                    code: "required",
                    message: "say why it is approved automatically".into(),
                }),
                Route::AutoApprove { .. } => {}
            }
        }
        if errors.is_empty() { Ok(()) } else { Err(errors) }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn the_default_routing_is_valid_and_round_trips() {
        let r = ChangeRouting::default_routing();
        r.validate().unwrap();
        let json = serde_json::to_value(&r).unwrap();
        assert_eq!(serde_json::from_value::<ChangeRouting>(json).unwrap(), r);
    }

    #[test]
    fn audiences_admit_by_role_or_team() {
        let team = Uuid::now_v7();
        let a = Audience { everyone: false, roles: vec!["agent".into()], teams: vec![team] };
        assert!(a.admits(&["agent".into()], &[]));
        assert!(a.admits(&[], &[team]));
        assert!(!a.admits(&["requester".into()], &[]));
        assert!(Audience::default().admits(&[], &[]));
    }
}

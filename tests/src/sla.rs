//! SLA verbs for tests: policies, calendars and the recorded facts.

use serde_json::{Value, json};
use time::OffsetDateTime;
use uuid::Uuid;

use crate::{TestApp, TestUser};

/// A recorded warning or breach.
#[derive(Debug, Clone, PartialEq)]
pub struct Recorded {
    pub metric: String,
    pub cycle: i32,
    pub kind: String,
    pub at: OffsetDateTime,
    pub recorded_at: OffsetDateTime,
}

/// A duration in seconds, for bounds and messages.
pub fn secs(d: time::Duration) -> f64 {
    d.as_seconds_f64()
}

/// `{"1": p1, "2": p2, ...}` in seconds.
pub fn durations(p: [u64; 4]) -> Value {
    json!({"1": p[0], "2": p[1], "3": p[2], "4": p[3]})
}

impl TestApp {
    /// Creates an SLA policy through the API and asserts 201.
    pub async fn policy(&self, admin: &TestUser, body: Value) -> Value {
        let r = self.post(Some(&admin.token), "/api/v1/sla/policies", &body).await;
        assert_eq!(r.status, 201, "create policy: {}", r.body);
        r.json
    }

    /// A 24×7 policy for every ticket with the given resolution budgets (seconds, P1..P4), and an
    /// escalation at breach that notifies (in-app and email) the assignee.
    pub async fn resolution_policy(&self, admin: &TestUser, resolution: [u64; 4]) -> Value {
        self.policy(
            admin,
            json!({
                "name": "Test resolution",
                "spec": {
                    "targets": [{"metric": "resolution", "durations": durations(resolution), "warnings": []}],
                    "escalations": [{
                        "name": "Tell the assignee",
                        "metric": "resolution",
                        "when": "breach",
                        "actions": [{"type": "notify", "to": {"assignee": true}}]
                    }]
                }
            }),
        )
        .await
    }

    /// Recorded SLA facts of a ticket, in time order.
    pub async fn recorded(&self, ticket_id: &str) -> Vec<Recorded> {
        let id = Uuid::parse_str(ticket_id).expect("ticket id");
        sqlx::query_as::<_, (String, i32, String, OffsetDateTime, OffsetDateTime)>(
            "SELECT metric, cycle, kind, at, recorded_at FROM sla_events WHERE ticket_id = $1 ORDER BY at, id",
        )
        .bind(id)
        .fetch_all(&self.pool)
        .await
        .expect("sla events")
        .into_iter()
        .map(|(metric, cycle, kind, at, recorded_at)| Recorded { metric, cycle, kind, at, recorded_at })
        .collect()
    }

    /// Waits for a ticket's breach of `metric` and returns it.
    pub async fn breach(&self, ticket_id: &str, metric: &str, timeout: std::time::Duration) -> Recorded {
        let mut found = None;
        let deadline = tokio::time::Instant::now() + timeout;
        while tokio::time::Instant::now() < deadline {
            found = self.recorded(ticket_id).await.into_iter().find(|r| r.metric == metric && r.kind == "breach");
            if found.is_some() {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        found.unwrap_or_else(|| panic!("no {metric} breach of {ticket_id} within {timeout:?}"))
    }

    /// When the database says a ticket changed last (the instant its latest event carries).
    pub async fn updated_at(&self, ticket_id: &str) -> OffsetDateTime {
        sqlx::query_scalar("SELECT updated_at FROM tickets WHERE id = $1")
            .bind(Uuid::parse_str(ticket_id).expect("id"))
            .fetch_one(&self.pool)
            .await
            .expect("ticket")
    }

    pub async fn created_at(&self, ticket_id: &str) -> OffsetDateTime {
        sqlx::query_scalar("SELECT created_at FROM tickets WHERE id = $1")
            .bind(Uuid::parse_str(ticket_id).expect("id"))
            .fetch_one(&self.pool)
            .await
            .expect("ticket")
    }
}

//! Catalog items, requests, approvals and emailed decision links, for tests.

use std::time::Duration;

use reqwest::Method;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::smtp::ReceivedMail;
use crate::{PASSWORD, Resp, TestApp, TestTenant, TestUser, unique_slug};

/// The demo laptop form.
pub fn laptop_schema() -> Value {
    serde_json::from_str(archer_api::seed::LAPTOP_SCHEMA).expect("laptop schema")
}

/// A laptop request's answers that pass the form.
pub fn laptop_answers() -> Value {
    json!({
        "device_type": "laptop",
        "os": "linux",
        "needed_by": "2026-12-14",
        "justification": "New starter in the data team needs a development machine"
    })
}

/// A requester whose manager is the tenant's manager, three hardware approvers in a team, and
/// the demo laptop item (manager, then two of the three).
pub struct Laptop {
    pub t: TestTenant,
    pub employee: TestUser,
    pub approvers: Vec<TestUser>,
    pub item: Value,
}

/// Sets up a fresh tenant for [`Laptop`] requests.
pub async fn laptop(app: &TestApp) -> Laptop {
    let t = app.tenant().await;
    let employee = app.user(&t, "Erin Employee", &["requester"], Some(t.manager.id)).await;
    let mut approvers = Vec::new();
    for name in ["Hana One", "Hugo Two", "Hope Three"] {
        approvers.push(app.user(&t, name, &["approver"], None).await);
    }
    let team = app.team(&t.admin, "Hardware approvers", &approvers.iter().collect::<Vec<_>>()).await;
    let item = app.catalog_item(&t.admin, "Laptop", archer_api::seed::laptop_item(team).expect("laptop item")).await;
    Laptop { t, employee, approvers, item }
}

/// The approve and reject links of an approval email (from its text part).
pub fn decision_links(mail: &ReceivedMail) -> (String, String) {
    let links: Vec<String> = mail
        .text
        .split_whitespace()
        .filter(|w| w.contains("/approvals/decide?token="))
        .map(|w| w.trim_end_matches(['.', ',', ')', '>']).to_owned())
        .collect();
    assert_eq!(links.len(), 2, "expected an approve and a reject link in {}:\n{}", mail.subject, mail.text);
    let approve = mail
        .text
        .lines()
        .find_map(|l| l.trim().strip_prefix("Approve: "))
        .map(str::trim)
        .map(str::to_owned)
        .expect("an Approve: line");
    let reject = mail
        .text
        .lines()
        .find_map(|l| l.trim().strip_prefix("Reject: "))
        .map(str::trim)
        .map(str::to_owned)
        .expect("a Reject: line");
    (approve, reject)
}

/// The token of a decision link.
pub fn token_of(url: &str) -> String {
    url.split_once("token=").map(|(_, t)| t.to_owned()).expect("a token in the link")
}

/// Whether a mail is an approval request (or reminder) for `to` about `ticket`.
pub fn asks(mail: &ReceivedMail, to: &str, ticket: &str) -> bool {
    mail.to.iter().any(|t| t == to) && mail.text.contains(ticket) && mail.text.contains("/approvals/decide?token=")
}

impl TestApp {
    /// A user of `tenant` with `roles` (and a manager), logged in.
    pub async fn user(&self, tenant: &TestTenant, name: &str, roles: &[&str], manager: Option<Uuid>) -> TestUser {
        let local: String =
            name.to_lowercase().chars().map(|c| if c.is_ascii_alphanumeric() { c } else { '.' }).collect();
        let email = format!("{local}.{}@{}.example", unique_slug("u"), tenant.slug);
        let id = archer_api::seed::provision_user(&self.db, tenant.id, &email, name, PASSWORD, roles, manager)
            .await
            .expect("provision user");
        let token = self.login(&email, PASSWORD).await;
        TestUser { id, email, token }
    }

    /// A team with these members.
    pub async fn team(&self, admin: &TestUser, name: &str, members: &[&TestUser]) -> Uuid {
        let r = self.post(Some(&admin.token), "/api/v1/teams", &json!({"name": name})).await;
        assert_eq!(r.status, 201, "create team: {}", r.body);
        let id: Uuid = r.json["id"].as_str().and_then(|s| s.parse().ok()).expect("team id");
        for m in members {
            let r = self
                .send(Method::PUT, Some(&admin.token), &format!("/api/v1/teams/{id}/members/{}", m.id), None, &[])
                .await;
            assert!(r.status == 204 || r.status == 200, "add member: {}", r.body);
        }
        id
    }

    /// A catalog item (in a category of its own) with `spec`; returns the item.
    pub async fn catalog_item(&self, admin: &TestUser, name: &str, spec: Value) -> Value {
        let r = self
            .post(Some(&admin.token), "/api/v1/catalog/categories", &json!({"name": format!("{name} category")}))
            .await;
        assert_eq!(r.status, 201, "create category: {}", r.body);
        let category = r.json["id"].clone();
        let r = self
            .post(
                Some(&admin.token),
                "/api/v1/catalog/items",
                &json!({"category_id": category, "name": name, "spec": spec}),
            )
            .await;
        assert_eq!(r.status, 201, "create item: {}", r.body);
        r.json
    }

    /// Submits a request from the catalog.
    pub async fn submit(&self, user: &TestUser, item: &Value, fields: Value) -> Resp {
        self.post(Some(&user.token), "/api/v1/requests", &json!({"item": item["id"], "fields": fields})).await
    }

    /// The ticket's latest approval.
    pub async fn approval_of(&self, user: &TestUser, ticket: &str) -> Value {
        let r = self.get(Some(&user.token), &format!("/api/v1/tickets/{ticket}/approvals")).await;
        assert_eq!(r.status, 200, "approvals of {ticket}: {}", r.body);
        r.json.as_array().and_then(|a| a.last()).cloned().unwrap_or_else(|| panic!("{ticket} has no approval"))
    }

    /// Waits until the ticket's latest approval satisfies `check`; returns it.
    pub async fn approval_until(
        &self,
        user: &TestUser,
        ticket: &str,
        what: &str,
        check: impl Fn(&Value) -> bool,
    ) -> Value {
        let mut last = Value::Null;
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        loop {
            let r = self.get(Some(&user.token), &format!("/api/v1/tickets/{ticket}/approvals")).await;
            if let Some(a) = r.json.as_array().and_then(|a| a.last()) {
                if check(a) {
                    return a.clone();
                }
                last = a.clone();
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "timed out waiting for {ticket}'s approval: {what}; last: {last:#}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Waits for the ticket's status; returns the ticket.
    pub async fn ticket_status(&self, user: &TestUser, ticket: &str, status: &str) -> Value {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        loop {
            let r = self.get(Some(&user.token), &format!("/api/v1/tickets/{ticket}")).await;
            if r.json["status"] == status {
                return r.json;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "timed out waiting for {ticket} to be {status}: {}",
                r.body
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Waits for the approval email to `to` about `ticket` (the `nth`, counting from 1).
    pub async fn approval_mail(&self, to: &TestUser, ticket: &str) -> ReceivedMail {
        let (to, ticket) = (to.email.clone(), ticket.to_owned());
        self.mail.wait_for(move |m| asks(m, &to, &ticket), Duration::from_secs(60)).await
    }

    /// How many approval emails `to` has received about `ticket`.
    pub fn approval_mails(&self, to: &TestUser, ticket: &str) -> usize {
        self.mail.count(|m| asks(m, &to.email, ticket))
    }

    /// GETs a page without following redirects or sending a token.
    pub async fn page(&self, url: &str) -> (u16, String) {
        let r = self.http.get(url).send().await.expect("GET page");
        let status = r.status().as_u16();
        (status, r.text().await.expect("page body"))
    }

    /// POSTs the confirmation form of a decision link.
    pub async fn confirm(&self, url: &str, comment: Option<&str>, bearer: Option<&str>) -> (u16, String) {
        let action = format!("{}/approvals/decide", self.base);
        let mut form = vec![("token", token_of(url))];
        if let Some(c) = comment {
            form.push(("comment", c.to_owned()));
        }
        let mut req = self.http.post(action).form(&form);
        if let Some(b) = bearer {
            req = req.bearer_auth(b);
        }
        let r = req.send().await.expect("POST decision");
        let status = r.status().as_u16();
        (status, r.text().await.expect("page body"))
    }
}

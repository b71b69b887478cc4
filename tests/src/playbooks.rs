//! Playbooks for tests: publishing one, starting a manual run and watching a run through the
//! API, as an admin or agent would.

use std::time::Duration;

use serde_json::{Value, json};

use crate::{TestApp, TestUser};

impl TestApp {
    /// Saves `yaml` as a playbook and publishes it; returns the playbook's id and the version.
    pub async fn publish_playbook(&self, admin: &TestUser, yaml: &str) -> (String, i64) {
        let r = self.post(Some(&admin.token), "/api/v1/playbooks", &json!({"source": yaml})).await;
        assert_eq!(r.status, 201, "save: {}", r.body);
        let id = r.json["playbook_id"].as_str().expect("playbook_id").to_owned();
        let v = r.json["version"].as_i64().expect("version");
        let path = format!("/api/v1/playbooks/{id}/versions/{v}/publish");
        let p = self.post(Some(&admin.token), &path, &json!({})).await;
        assert_eq!(p.status, 200, "publish: {}", p.body);
        (id, v)
    }

    /// Starts a manual run of `playbook` on the ticket `number` with `inputs`; returns the
    /// run's id.
    pub async fn start_playbook(&self, user: &TestUser, number: &str, playbook: &str, inputs: Value) -> String {
        let path = format!("/api/v1/tickets/{number}/playbook-runs");
        let r = self.post(Some(&user.token), &path, &json!({"playbook": playbook, "inputs": inputs})).await;
        assert_eq!(r.status, 202, "start {playbook} on {number}: {}", r.body);
        r.json["id"].as_str().expect("run id").to_owned()
    }

    /// `GET /playbook-runs/{id}`.
    pub async fn playbook_run(&self, user: &TestUser, id: &str) -> Value {
        let r = self.get(Some(&user.token), &format!("/api/v1/playbook-runs/{id}")).await;
        assert_eq!(r.status, 200, "run {id}: {}", r.body);
        r.json
    }

    /// Polls `GET /playbook-runs/{id}` until `check` holds (at most 60 s); returns the run.
    pub async fn playbook_run_until(
        &self,
        user: &TestUser,
        id: &str,
        what: &str,
        check: impl Fn(&Value) -> bool,
    ) -> Value {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        loop {
            let run = self.playbook_run(user, id).await;
            if check(&run) {
                return run;
            }
            assert!(tokio::time::Instant::now() < deadline, "run {id}: timed out waiting for {what}: {run:#}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// The step `id` of a run as the API shows it.
pub fn step<'a>(run: &'a Value, id: &str) -> &'a Value {
    run["steps"]
        .as_array()
        .and_then(|s| s.iter().find(|s| s["id"] == id))
        .unwrap_or_else(|| panic!("no step {id}: {run:#}"))
}

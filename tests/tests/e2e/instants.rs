//! Issue 8, item 12: one change has one instant, used by the row, its audit row, the workflow
//! signal and every computation made from them.

use std::time::Duration;

use archer_tests::{eventually, spawn_app};
use serde_json::json;

#[tokio::test(flavor = "multi_thread")]
async fn a_change_has_one_instant_for_its_row_its_audit_its_signal_and_its_due_times() {
    let app = spawn_app().await;
    let t = app.tenant().await;
    app.resolution_policy(&t.admin, [3600, 3600, 3600, 3600]).await;
    let ticket = app.incident(&t.agent, "Paused and resumed").await;
    let number = ticket["number"].as_str().unwrap().to_owned();
    let path = format!("/api/v1/tickets/{number}");
    app.set_status(&t.agent, &number, "in_progress").await;
    app.set_status(&t.agent, &number, "waiting_on_customer").await;
    tokio::time::sleep(Duration::from_millis(700)).await;
    // the response to resuming already shows the due time the pause moved
    let resumed = app.patch(Some(&t.agent.token), &path, &json!({"status": "in_progress"})).await;
    assert_eq!(resumed.status, 200, "{}", resumed.body);
    let shown = resumed.json["sla"]["clocks"][0]["due_at"].as_str().unwrap().to_owned();

    // the audit rows carry the same instants as the rows they audit
    let differing: i64 = app
        .count(
            "SELECT count(*) FROM audit_log a JOIN tickets t ON a.entity_id = t.id::text
              WHERE a.action = 'tickets.update' AND a.id = (SELECT max(id) FROM audit_log b
                                                            WHERE b.entity_id = t.id::text AND b.action = 'tickets.update')
                AND a.at <> t.updated_at",
        )
        .await;
    assert_eq!(differing, 0, "the last change's audit row and the ticket disagree on its instant");

    // and the workflow, computing from the signals, arrives at exactly the same due time
    eventually(Duration::from_secs(30), "the workflow to apply the resume", || async {
        let sla = app.get(Some(&t.agent.token), &format!("{path}/sla")).await;
        let c = &sla.json["clocks"][0];
        sla.json["source"] == "workflow"
            && c["state"] == "running"
            && c["ongoing"]["pauses"].as_array().is_some_and(|p| p.len() == 1)
    })
    .await;
    let sla = app.get(Some(&t.agent.token), &format!("{path}/sla")).await;
    assert_eq!(sla.json["clocks"][0]["due_at"].as_str().unwrap(), shown, "response {shown} vs workflow: {}", sla.body);
    app.stop().await;
}

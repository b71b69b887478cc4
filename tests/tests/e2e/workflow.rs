//! A ticket's durable workflow: started by the relay, told every change, findable by ops.

use archer_tests::spawn_app;
use archer_tests::temporal::{replay_live, signal_names};
use temporalio_client::WorkflowExecutionStatus;

#[tokio::test(flavor = "multi_thread")]
async fn created_ticket_gets_a_workflow_that_hears_every_change_and_completes_on_close() {
    let app = spawn_app().await;
    let t = app.tenant().await;
    let ticket = app.incident(&t.requester, "Monitor flickers").await;
    let number = ticket["number"].as_str().unwrap().to_owned();
    let wf_id = format!("{}/{number}", t.slug);
    assert_eq!(ticket["workflow"]["id"], wf_id);

    let client = app.temporal().await;
    app.wait_for_status(&client, &wf_id, WorkflowExecutionStatus::Running).await;

    // every status change, plus a priority change, an assignment and public and internal comments
    app.set_status(&t.agent, &number, "in_progress").await;
    let r = app
        .patch(
            Some(&t.agent.token),
            &format!("/api/v1/tickets/{number}"),
            &serde_json::json!({"impact": 1, "urgency": 1}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let r = app
        .patch(
            Some(&t.agent.token),
            &format!("/api/v1/tickets/{number}"),
            &serde_json::json!({"assignee_id": t.agent.id}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let r = app
        .post(
            Some(&t.agent.token),
            &format!("/api/v1/tickets/{number}/comments"),
            &serde_json::json!({"body": "Looking into it"}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.body);
    let r = app
        .post(
            Some(&t.agent.token),
            &format!("/api/v1/tickets/{number}/comments"),
            &serde_json::json!({"body": "internal note", "internal": true}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.body);
    app.set_status(&t.agent, &number, "waiting_on_customer").await;
    app.set_status(&t.agent, &number, "in_progress").await;
    app.set_status(&t.agent, &number, "resolved").await;
    app.set_status(&t.requester, &number, "in_progress").await; // reopen
    app.set_status(&t.agent, &number, "resolved").await;
    app.set_status(&t.requester, &number, "closed").await;

    app.outbox_drained().await;
    app.wait_for_status(&client, &wf_id, WorkflowExecutionStatus::Completed).await;

    let signals = signal_names(&client, &wf_id).await;
    assert_eq!(
        signals,
        [
            "status_changed",
            "priority_changed",
            "assignment_changed",
            "comment_added",
            "status_changed",
            "status_changed",
            "status_changed",
            "status_changed",
            "status_changed",
            "status_changed",
        ],
        "the internal note is not a signal; everything else is, in order"
    );

    // ops can find it by tenant, number and final status
    let found = app
        .list_workflows(
            &client,
            &format!(
                "ArcherTenant = '{}' AND ArcherNumber = '{number}' AND ArcherStatus = 'closed' AND ArcherPriority = 1",
                t.slug
            ),
        )
        .await;
    assert_eq!(found.len(), 1, "{found:?}");

    replay_live(&client, &wf_id, "ticket/incident_full_lifecycle").await;
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn workflow_query_reports_the_live_ticket() {
    let app = spawn_app().await;
    let t = app.tenant().await;
    let ticket = app
        .create_ticket(
            &t.agent,
            serde_json::json!({"kind": "change", "title": "Patch the firewall", "impact": 2, "urgency": 3, "change_type": "normal", "risk": "medium"}),
        )
        .await;
    let number = ticket["number"].as_str().unwrap().to_owned();
    assert!(number.starts_with("CHG-"));
    let wf_id = format!("{}/{number}", t.slug);
    app.set_status(&t.agent, &number, "assess").await;
    app.outbox_drained().await;
    let client = app.temporal().await;
    archer_tests::eventually(std::time::Duration::from_secs(30), "the workflow to apply the change", || async {
        let live = app.workflow_ticket(&client, &wf_id).await;
        live.status == archer_orchestrator::Status::Assess && live.seq == 1
    })
    .await;
    app.set_status(&t.agent, &number, "cancelled").await;
    app.wait_for_status(&client, &wf_id, WorkflowExecutionStatus::Completed).await;
    replay_live(&client, &wf_id, "ticket/change_cancelled").await;
    app.stop().await;
}

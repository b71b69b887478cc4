//! Ticket numbers under concurrency: distinct and without gaps.

use std::collections::BTreeSet;

use archer_tests::spawn_app;
use futures::StreamExt;
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_hundred_parallel_creates_get_two_hundred_gap_free_numbers() {
    let app = spawn_app().await;
    let t = app.tenant().await;
    let results: Vec<(u16, String)> = futures::stream::iter(0..200)
        .map(|i| {
            let app = &app;
            let token = t.agent.token.clone();
            async move {
                let r = app
                    .post(
                        Some(&token),
                        "/api/v1/tickets",
                        &json!({"kind": "incident", "title": format!("burst {i}"), "impact": 3, "urgency": 3}),
                    )
                    .await;
                (r.status, r.json["number"].as_str().unwrap_or_default().to_owned())
            }
        })
        .buffer_unordered(200)
        .collect()
        .await;
    assert!(
        results.iter().all(|(s, _)| *s == 201),
        "{:?}",
        results.iter().filter(|(s, _)| *s != 201).collect::<Vec<_>>()
    );
    let numbers: BTreeSet<String> = results.into_iter().map(|(_, n)| n).collect();
    let expected: BTreeSet<String> = (1..=200).map(|n| format!("INC-{n:06}")).collect();
    assert_eq!(numbers, expected);

    // other kinds have their own sequence
    let req = app
        .create_ticket(&t.agent, json!({"kind": "service_request", "title": "new mouse", "impact": 4, "urgency": 4}))
        .await;
    assert_eq!(req["number"], "REQ-000001");
    // every ticket's workflow was started
    app.outbox_drained().await;
    let client = app.temporal().await;
    archer_tests::eventually(std::time::Duration::from_secs(60), "201 workflows to be visible", || async {
        app.list_workflows(&client, &format!("ArcherTenant = '{}'", t.slug)).await.len() == 201
    })
    .await;
    app.stop().await;
}

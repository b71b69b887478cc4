//! Recorded histories of every workflow replay against the current code, so a change that
//! would break running workflows fails here. Record new ones with
//! `ARCHER_TEST_RECORD_HISTORIES=1 ./dev test`.

use archer_tests::temporal::{histories_dir, replay_recorded, replay_recorded_with};

#[tokio::test]
async fn recorded_ticket_histories_replay_against_current_code() {
    let n = replay_recorded(&histories_dir().join("ticket")).await;
    assert!(n >= 3, "expected recorded histories in tests/histories/ticket, found {n}");
}

#[tokio::test]
async fn recorded_request_histories_replay_against_current_code() {
    let n = replay_recorded(&histories_dir().join("request")).await;
    assert!(n >= 2, "expected recorded histories in tests/histories/request, found {n}");
}

#[tokio::test]
async fn recorded_approval_chain_histories_replay_against_current_code() {
    // nine from before the `chain-effects-local` patch (scheduled activities), ten after
    // (`*.local_effects.json`: local activities, one of them falling back to a scheduled one)
    let n = replay_recorded(&histories_dir().join("approval_chain")).await;
    assert!(n >= 19, "expected recorded histories in tests/histories/approval_chain, found {n}");
}

#[tokio::test]
async fn recorded_playbook_histories_replay_against_current_code() {
    let n = replay_recorded(&histories_dir().join("playbook")).await;
    assert!(n >= 2, "expected recorded histories in tests/histories/playbook, found {n}");
}

/// Turning tracing on (`otlp_endpoint`) installs the Temporal SDK's OpenTelemetry plugin in the
/// worker: every recorded history, of every workflow type, replays under it too, so a worker
/// with tracing on (or switched on later) continues the running workflows.
#[tokio::test]
async fn recorded_histories_replay_with_tracing_on() {
    let mut n = 0;
    for kind in ["ticket", "request", "approval_chain", "playbook"] {
        n += replay_recorded_with(&histories_dir().join(kind), true).await;
    }
    assert!(n >= 26, "expected every recorded history, found {n}");
}

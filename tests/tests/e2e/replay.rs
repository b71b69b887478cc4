//! Recorded histories of the ticket workflow replay against the current code, so a change
//! that would break running workflows fails here. Record new ones with
//! `ARCHER_TEST_RECORD_HISTORIES=1 ./dev test`.

#[tokio::test]
async fn recorded_ticket_histories_replay_against_current_code() {
    let n = archer_tests::temporal::replay_recorded(&archer_tests::temporal::histories_dir()).await;
    assert!(n >= 2, "expected recorded histories in tests/histories/ticket, found {n}");
}

use serde_json::json;

use super::*;
use crate::playbook::parse;

const WF: &str = "acme/REQ-1/playbook/onboard/1";

fn pb(yaml: &str) -> Playbook {
    parse(yaml).unwrap_or_else(|e| panic!("{e}"))
}

fn scope() -> Scope {
    Scope {
        ticket: json!({"number": "REQ-1", "priority": 3}),
        request: Some(json!({"item": "new-starter", "fields": {"full_name": "Ada", "needs_vpn": false}})),
        inputs: json!({}),
        run: json!({"id": "r1", "number": 1, "workflow_id": WF}),
    }
}

fn started(moves: &[Move]) -> Vec<String> {
    moves.iter().filter_map(|m| if let Move::Start(s) = m { Some(s.step.clone()) } else { None }).collect()
}

fn skipped(moves: &[Move]) -> Vec<String> {
    moves.iter().filter_map(|m| if let Move::Skip { step, .. } = m { Some(step.clone()) } else { None }).collect()
}

const DIAMOND: &str = r#"
name: diamond
max_parallel: 2
steps:
  - { id: a, action: ticket.comment, with: { body: "start {{request.fields.full_name}}" } }
  - { id: b, action: ticket.comment, needs: [a], with: { body: "b" } }
  - { id: c, action: ticket.comment, needs: [a], with: { body: "c" } }
  - { id: d, action: ticket.comment, needs: [a], with: { body: "d" } }
  - { id: e, action: ticket.comment, needs: [b, c, d], with: { body: "{{steps.b.output.comment_id}}" } }
"#;

#[test]
fn dependants_wait_and_max_parallel_bounds_what_runs_at_once() {
    let p = pb(DIAMOND);
    let mut run = RunState::new(&p);
    let first = run.next(&p, &scope(), WF, Mode::Run);
    assert_eq!(started(&first), ["a"]);
    let Move::Start(a) = &first[0] else { panic!() };
    assert_eq!(a.input, json!({"body": "start Ada"}));
    assert_eq!(a.idempotency_key, format!("{WF}/a"));
    assert!(run.next(&p, &scope(), WF, Mode::Run).is_empty(), "nothing new while a runs");
    run.finish(&p, "a", Ok(json!({"comment_id": "c-a"})));
    assert_eq!(started(&run.next(&p, &scope(), WF, Mode::Run)), ["b", "c"], "two at a time");
    run.finish(&p, "b", Ok(json!({"comment_id": "c-b"})));
    assert_eq!(started(&run.next(&p, &scope(), WF, Mode::Run)), ["d"]);
    run.finish(&p, "c", Ok(json!({})));
    run.finish(&p, "d", Ok(json!({})));
    let last = run.next(&p, &scope(), WF, Mode::Run);
    let Move::Start(e) = &last[0] else { panic!() };
    assert_eq!(e.input, json!({"body": "c-b"}), "an output read by a later step");
    run.finish(&p, "e", Ok(json!({})));
    assert!(run.done(&p));
    assert_eq!(run.outcome(), None, "a finished run has no failure outcome");
}

#[test]
fn a_step_skipped_by_its_condition_lets_its_dependants_run() {
    let p = pb(r#"
name: t
triggers: [ { catalog_fulfilment: { item: x } } ]
steps:
  - { id: vpn, action: ticket.comment, when: "request.fields.needs_vpn", with: { body: v } }
  - { id: after, action: ticket.comment, needs: [vpn], with: { body: "vpn was {{steps.vpn.status}}" } }
  - { id: never, action: ticket.comment, unless: "ticket.priority == 3", with: { body: n } }
"#);
    let mut run = RunState::new(&p);
    let moves = run.next(&p, &scope(), WF, Mode::Run);
    assert_eq!(skipped(&moves), ["vpn", "never"]);
    assert_eq!(started(&moves), ["after"]);
    let Move::Start(after) = moves.iter().find(|m| matches!(m, Move::Start(_))).unwrap() else { panic!() };
    assert_eq!(after.input, json!({"body": "vpn was skipped"}));
}

#[test]
fn a_continued_failure_skips_its_dependants_transitively_and_the_run_goes_on() {
    let p = pb(r#"
name: t
steps:
  - { id: order, action: ticket.comment, on_failure: continue, with: { body: o } }
  - { id: track, action: ticket.comment, needs: [order], with: { body: t } }
  - { id: notify, action: ticket.comment, needs: [track], with: { body: n } }
  - { id: other, action: ticket.comment, with: { body: x } }
"#);
    let mut run = RunState::new(&p);
    assert_eq!(started(&run.next(&p, &scope(), WF, Mode::Run)), ["order", "other"]);
    run.finish(&p, "order", Err("vendor down".into()));
    let moves = run.next(&p, &scope(), WF, Mode::Run);
    assert_eq!(skipped(&moves), ["track", "notify"]);
    assert!(
        matches!(&run.steps["notify"], StepState::Skipped { reason, by_condition: false } if reason.contains("track"))
    );
    run.finish(&p, "other", Ok(json!({})));
    assert!(run.done(&p));
    assert_eq!(run.outcome(), None);
}

#[test]
fn a_failure_stops_new_steps_lets_running_ones_finish_and_fails_the_run() {
    let p = pb(r#"
name: t
steps:
  - { id: a, action: ticket.comment, with: { body: a } }
  - { id: b, action: ticket.comment, with: { body: b } }
  - { id: c, action: ticket.comment, needs: [a], with: { body: c } }
"#);
    let mut run = RunState::new(&p);
    assert_eq!(started(&run.next(&p, &scope(), WF, Mode::Run)), ["a", "b"]);
    run.finish(&p, "a", Err("boom".into()));
    assert!(run.next(&p, &scope(), WF, Mode::Run).is_empty());
    assert_eq!(run.outcome(), None, "b still runs");
    run.finish(&p, "b", Ok(json!({})));
    assert_eq!(run.outcome(), Some(Outcome::Failed { step: "a".into(), error: "boom".into() }));
    // an admin retries: a runs again in round 1 with the same key; c follows
    assert!(run.retry(&p));
    let again = run.next(&p, &scope(), WF, Mode::Run);
    let Move::Start(a) = &again[0] else { panic!() };
    assert_eq!((a.step.as_str(), a.round, a.idempotency_key.as_str()), ("a", 1, format!("{WF}/a").as_str()));
    run.finish(&p, "a", Ok(json!({})));
    assert_eq!(started(&run.next(&p, &scope(), WF, Mode::Run)), ["c"]);
}

#[test]
fn a_compensation_runs_only_on_failure_and_the_run_then_fails() {
    let p = pb(r#"
name: t
steps:
  - { id: order, action: ticket.comment, with: { body: o } }
  - { id: charge, action: ticket.comment, needs: [order], on_failure: { compensate: cancel_order }, with: { body: c } }
  - { id: cancel_order, action: ticket.comment, needs: [order], with: { body: "cancel {{steps.order.output.comment_id}}" } }
"#);
    let mut run = RunState::new(&p);
    assert_eq!(started(&run.next(&p, &scope(), WF, Mode::Run)), ["order"]);
    run.finish(&p, "order", Ok(json!({"comment_id": "k1"})));
    assert_eq!(started(&run.next(&p, &scope(), WF, Mode::Run)), ["charge"], "the compensation is not a normal step");
    run.finish(&p, "charge", Err("card declined".into()));
    let moves = run.next(&p, &scope(), WF, Mode::Run);
    let Move::Start(comp) = &moves[0] else { panic!("{moves:?}") };
    assert_eq!((comp.step.as_str(), comp.compensates.as_deref()), ("cancel_order", Some("charge")));
    assert_eq!(comp.input, json!({"body": "cancel k1"}));
    assert_eq!(run.outcome(), None);
    run.finish(&p, "cancel_order", Ok(json!({})));
    assert_eq!(run.outcome(), Some(Outcome::Failed { step: "charge".into(), error: "card declined".into() }));
}

#[test]
fn cancelling_skips_what_has_not_started() {
    let p = pb(DIAMOND);
    let mut run = RunState::new(&p);
    run.next(&p, &scope(), WF, Mode::Run);
    run.cancel("not needed any more");
    run.finish(&p, "a", Ok(json!({})));
    assert!(run.next(&p, &scope(), WF, Mode::Run).is_empty());
    assert_eq!(run.outcome(), Some(Outcome::Cancelled { reason: "not needed any more".into() }));
    assert!(matches!(&run.steps["e"], StepState::Skipped { .. }));
}

#[test]
fn a_missing_value_fails_the_step_before_it_starts() {
    let p = pb(r#"
name: t
triggers: [ { catalog_fulfilment: { item: x } } ]
steps:
  - { id: a, action: ticket.comment, with: { body: "{{request.fields.nope}}" } }
"#);
    let mut run = RunState::new(&p);
    let moves = run.next(&p, &scope(), WF, Mode::Run);
    assert!(matches!(&moves[0], Move::Fail { error, .. } if error.contains("request.fields.nope")));
    assert!(matches!(run.outcome(), Some(Outcome::Failed { .. })));
}

#[test]
fn secrets_never_leave_the_template() {
    let p = pb(r#"
name: t
steps:
  - { id: a, action: http.request, with: { connection: slack, path: /x, headers: { Authorization: "Bearer {{secrets.slack}}" } } }
"#);
    let mut run = RunState::new(&p);
    let Move::Start(a) = &run.next(&p, &scope(), WF, Mode::Run)[0] else { panic!() };
    assert_eq!(a.input["headers"]["Authorization"], json!("Bearer {{secrets.slack}}"));
}

#[test]
fn the_dry_run_plans_what_the_run_does() {
    let p = pb(r#"
name: t
triggers: [ { catalog_fulfilment: { item: x } } ]
steps:
  - { id: account, action: http.request, retry: { attempts: 5, initial_interval: 2s }, with: { connection: graph, path: /users, body: { name: "{{request.fields.full_name}}" } } }
  - { id: licences, action: http.request, needs: [account], with: { connection: graph, path: "/users/{{steps.account.output.body.id}}" } }
  - { id: hardware, action: http.request, on_failure: { compensate: undo }, with: { connection: vendor, path: /orders } }
  - { id: vpn, action: ticket.create_task, needs: [account], when: "request.fields.needs_vpn", with: { title: VPN } }
  - { id: tell, action: email.send, needs: [licences, hardware, vpn], with: { to: [m@x], subject: s, body: b } }
  - { id: undo, action: ticket.comment, with: { body: undo } }
"#);
    let plan = dry_run(&p, &scope(), WF);
    assert_eq!(plan.waves, vec![vec!["account", "hardware"], vec!["licences", "vpn"], vec!["tell"]]);
    let by_id = |id: &str| plan.steps.iter().find(|s| s.id == id).unwrap().clone();
    assert_eq!(by_id("vpn").decision, "skipped");
    assert_eq!(by_id("undo").decision, "compensation");
    assert_eq!(by_id("licences").input["path"], json!("/users/{{steps.account.output.body.id}}"));
    assert_eq!(by_id("account").input["body"], json!({"name": "Ada"}));

    // the run, each started step succeeding: the same steps start and skip, with the same inputs
    let mut run = RunState::new(&p);
    let mut ran = Vec::new();
    let mut skips = Vec::new();
    loop {
        let moves = run.next(&p, &scope(), WF, Mode::Run);
        if moves.is_empty() {
            break;
        }
        for m in moves {
            match m {
                Move::Start(s) => {
                    if s.step == "account" {
                        assert_eq!(s.input, by_id("account").input);
                        assert_eq!(s.retry.attempts, 5);
                        assert_eq!(s.retry.initial_interval, Duration::from_secs(2));
                    }
                    run.finish(&p, &s.step, Ok(json!({"body": {"id": 7}})));
                    ran.push(s.step);
                }
                Move::Skip { step, .. } => skips.push(step),
                Move::Fail { step, .. } => panic!("{step} failed"),
            }
        }
    }
    let planned_runs: Vec<String> = plan.steps.iter().filter(|s| s.decision == "run").map(|s| s.id.clone()).collect();
    let mut ran_sorted = ran.clone();
    ran_sorted.sort();
    let mut planned_sorted = planned_runs.clone();
    planned_sorted.sort();
    assert_eq!(ran_sorted, planned_sorted);
    assert_eq!(skips, ["vpn"]);
}

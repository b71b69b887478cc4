use super::*;

const ONBOARDING: &str = r#"name: onboarding
description: A new starter gets an account, licences, a laptop and access.
triggers:
  - catalog_fulfilment: { item: new-starter }
  - manual
max_parallel: 4
inputs:
  type: object
  properties:
    full_name: { type: string }
steps:
  - id: create_account
    action: http.request
    with:
      connection: graph
      path: /users
      body: { name: "{{request.fields.full_name}}" }
    retry:
      attempts: 5
      initial_interval: 1s
      max_interval: 1m
      non_retryable: [BadRequest]
    timeout: 30s
  - id: assign_licences
    action: http.request
    needs: [create_account]
    with:
      path: "/users/{{steps.create_account.output.id}}/licences"
  - id: order_hardware
    action: http.request
    with: { connection: vendor, path: /orders }
    on_failure: continue
  - id: access_task
    action: ticket.create_task
    needs: [create_account]
    when: "request.fields.needs_vpn == true"
    with: { team: network, title: "VPN for {{steps.create_account.output.upn}}" }
  - id: notify_manager
    action: email.send
    needs: [assign_licences, order_hardware, access_task]
    idempotency_key: "notify-{{steps.create_account.output.id}}"
    on_failure: { compensate: order_hardware }
    with: { template: welcome }
"#;

fn ids(wave: &[&Step]) -> Vec<String> {
    wave.iter().map(|s| s.id.value.clone()).collect()
}

fn errors(yaml: &str) -> Vec<PlaybookIssue> {
    match parse(yaml) {
        Ok(_) => panic!("expected errors"),
        Err(PlaybookErrors(issues)) => issues,
    }
}

fn only(yaml: &str, kind: IssueKind) -> PlaybookIssue {
    let issues = errors(yaml);
    assert_eq!(issues.len(), 1, "{issues:#?}");
    assert_eq!(issues[0].kind, kind, "{issues:#?}");
    issues[0].clone()
}

fn at(issue: &PlaybookIssue) -> (&str, u64, u64) {
    (issue.path.as_str(), issue.line, issue.column)
}

#[test]
fn onboarding_parses_into_waves() {
    let playbook = parse(ONBOARDING).expect("valid");
    assert_eq!(playbook.name.value, "onboarding");
    assert_eq!(playbook.max_parallel, Some(4));
    assert_eq!(playbook.triggers[0].value, Trigger::CatalogFulfilment { item: "new-starter".into() });
    assert_eq!(playbook.triggers[1].value, Trigger::Manual);
    let waves: Vec<Vec<String>> = playbook.waves().iter().map(|w| ids(w)).collect();
    assert_eq!(
        waves,
        vec![
            vec!["create_account".to_string(), "order_hardware".into()],
            vec!["assign_licences".into(), "access_task".into()],
            vec!["notify_manager".into()],
        ]
    );
    let notify = &playbook.steps[4].value;
    assert_eq!(
        notify.on_failure.as_ref().map(|o| o.value.clone()),
        Some(OnFailure::Compensate("order_hardware".into()))
    );
    assert_eq!(
        playbook.steps[3].value.when.as_ref().map(|w| w.value.as_str()),
        Some("request.fields.needs_vpn == true")
    );
}

#[test]
fn empty_name_is_located() {
    let issue = only("name: ''\nsteps: []\n", IssueKind::EmptyName);
    assert_eq!(at(&issue), ("/name", 1, 7));
}

#[test]
fn duplicate_step_id_is_located() {
    let yaml = "name: x\nsteps:\n  - id: a\n    action: wait\n  - id: a\n    action: wait\n";
    let issue = only(yaml, IssueKind::DuplicateStep);
    assert_eq!(at(&issue), ("/steps/1/id", 5, 9));
}

#[test]
fn missing_need_is_located() {
    let yaml = "name: x\nsteps:\n  - id: a\n    action: wait\n    needs: [a0, b]\n  - id: b\n    action: wait\n";
    let issue = only(yaml, IssueKind::MissingNeed);
    assert_eq!(at(&issue), ("/steps/0/needs/0", 5, 13));
    assert!(issue.message.contains("a0"));
}

#[test]
fn cycle_names_its_steps() {
    let yaml = "name: x\nsteps:\n  - id: start\n    action: wait\n  - id: a\n    action: wait\n    needs: [c]\n  - id: b\n    action: wait\n    needs: [a, start]\n  - id: c\n    action: wait\n    needs: [b]\n";
    let issue = only(yaml, IssueKind::Cycle);
    assert_eq!(at(&issue), ("/steps/1/needs", 5, 5));
    assert!(issue.message.contains("a -> c -> b -> a"), "{}", issue.message);
}

#[test]
fn unknown_action_is_located() {
    let yaml = "name: x\nsteps:\n  - id: a\n    action: slack.post\n";
    let issue = only(yaml, IssueKind::UnknownAction);
    assert_eq!(at(&issue), ("/steps/0/action", 4, 13));
}

#[test]
fn template_must_reference_a_dependency() {
    let yaml = "name: x\nsteps:\n  - id: a\n    action: wait\n  - id: b\n    action: wait\n  - id: c\n    action: wait\n    needs: [b]\n    with:\n      body: { text: \"{{ steps.a.output.id }}\" }\n      ok: \"{{steps.b.output.x}}\"\n";
    let issue = only(yaml, IssueKind::TemplateNotDependency);
    assert_eq!(at(&issue), ("/steps/2/with/body/text", 11, 13));
    assert!(issue.message.contains("`a`"), "{}", issue.message);
}

#[test]
fn transitive_dependency_may_be_referenced() {
    let yaml = "name: x\nsteps:\n  - id: a\n    action: wait\n  - id: b\n    action: wait\n    needs: [a]\n  - id: c\n    action: wait\n    needs: [b]\n    idempotency_key: \"{{steps.a.output.id}}\"\n";
    assert!(parse(yaml).is_ok());
}

#[test]
fn missing_compensation_is_located() {
    let yaml = "name: x\nsteps:\n  - id: a\n    action: wait\n    on_failure: { compensate: undo }\n";
    let issue = only(yaml, IssueKind::MissingCompensation);
    assert_eq!(at(&issue), ("/steps/0/on_failure/compensate", 5, 17));
}

#[test]
fn bad_durations_are_located() {
    let yaml = "name: x\nsteps:\n  - id: a\n    action: wait\n    timeout: soon\n    retry: { initial_interval: 1s, max_interval: 3 parsecs }\n";
    let issues = errors(yaml);
    let found: Vec<_> = issues.iter().map(|i| (i.kind, at(i))).collect();
    assert_eq!(
        found,
        vec![
            (IssueKind::BadDuration, ("/steps/0/timeout", 5, 14)),
            (IssueKind::BadDuration, ("/steps/0/retry/max_interval", 6, 50)),
        ]
    );
}

#[test]
fn all_errors_are_reported_together() {
    let yaml = "name: ''\nsteps:\n  - id: a\n    action: nope\n    needs: [ghost]\n  - id: a\n    action: wait\n";
    let kinds: Vec<IssueKind> = errors(yaml).iter().map(|i| i.kind).collect();
    assert_eq!(
        kinds,
        vec![IssueKind::EmptyName, IssueKind::DuplicateStep, IssueKind::UnknownAction, IssueKind::MissingNeed]
    );
}

#[test]
fn unknown_fields_are_refused_with_location() {
    let yaml = "name: x\nsteps:\n  - id: a\n    action: wait\n    retires: 3\n";
    let issue = only(yaml, IssueKind::Yaml);
    assert_eq!(at(&issue), ("/steps/0/retires", 5, 5), "{issue:?}");
    assert!(issue.message.contains("retires"), "{}", issue.message);
}

#[test]
fn unknown_on_failure_is_refused_with_path_and_location() {
    let yaml = "name: x\nsteps:\n  - id: a\n    action: wait\n    on_failure: stop\n";
    let issue = only(yaml, IssueKind::Yaml);
    assert_eq!(at(&issue), ("/steps/0/on_failure", 5, 17), "{issue:?}");
    assert!(issue.message.contains("unknown variant `stop`"), "{}", issue.message);
}

#[test]
fn alias_bomb_is_refused_quickly() {
    let mut yaml = String::from("a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n");
    for i in 1..10 {
        let p = i - 1;
        yaml.push_str(&format!("a{i}: &a{i} [*a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}]\n"));
    }
    let yaml = format!("name: x\nsteps: []\ninputs:\n  {}", yaml.replace('\n', "\n  "));
    let started = std::time::Instant::now();
    let issue = only(&yaml, IssueKind::Yaml);
    assert!(started.elapsed() < std::time::Duration::from_secs(2), "took {:?}", started.elapsed());
    assert!(issue.line > 0, "{issue:?}");
    assert!(
        issue.message.to_lowercase().contains("budget") || issue.message.to_lowercase().contains("alias"),
        "{}",
        issue.message
    );
}

#[test]
fn oversized_document_is_refused_before_parsing() {
    let yaml = format!("name: x\nsteps: []\ndescription: '{}'\n", "x".repeat(MAX_DOCUMENT_BYTES));
    let started = std::time::Instant::now();
    let issue = only(&yaml, IssueKind::TooLarge);
    assert!(started.elapsed() < std::time::Duration::from_millis(500));
    assert_eq!((issue.line, issue.column), (1, 1));
    assert!(issue.message.contains("at most 1048576"), "{}", issue.message);
}

#[test]
fn deep_nesting_is_refused() {
    let yaml = format!("name: x\nsteps: []\ninputs: {}1{}\n", "[".repeat(200), "]".repeat(200));
    let issue = only(&yaml, IssueKind::Yaml);
    assert!(issue.line > 0, "{issue:?}");
}

#[test]
fn template_references_are_extracted() {
    assert_eq!(step_references("{{ steps.a.output }} and {{ticket.id}} {{steps.b-2.output.x}}"), vec!["a", "b-2"]);
    assert!(step_references("{{steps.open").is_empty());
}

#[test]
fn wrong_types_are_refused_with_path_and_location() {
    let yaml = "name: x\nsteps:\n  - id: a\n    action: wait\n    needs: [b, [c]]\n  - id: b\n    action: wait\n";
    let issue = only(yaml, IssueKind::Yaml);
    assert_eq!(at(&issue), ("/steps/0/needs/1", 5, 16), "{issue:?}");
}

#[test]
fn budget_errors_inside_free_form_values_keep_user_keys_in_the_path() {
    let yaml = format!(
        "name: x\nsteps:\n  - id: a\n    action: wait\n    with:\n      value: {{ value: {}1{} }}\n",
        "[".repeat(80),
        "]".repeat(80)
    );
    let issue = only(&yaml, IssueKind::Yaml);
    assert!(issue.path.starts_with("/steps/0/with/value/value/0"), "{issue:?}");
    assert!(issue.message.contains("Depth"), "{}", issue.message);
}

#[test]
fn too_many_steps_are_refused_quickly() {
    let mut yaml = String::from("name: x\nsteps:\n  - { id: s0, action: wait }\n");
    for i in 1..=MAX_STEPS {
        yaml.push_str(&format!("  - {{ id: s{i}, action: wait, needs: [s{}] }}\n", i - 1));
    }
    let issue = only(&yaml, IssueKind::TooManySteps);
    assert_eq!(at(&issue), ("/steps", 3, 5));
}

#[test]
fn a_long_chain_makes_one_wave_per_step() {
    let mut yaml = String::from("name: x\nsteps:\n  - { id: s0, action: wait }\n");
    for i in 1..MAX_STEPS {
        yaml.push_str(&format!("  - {{ id: s{i}, action: wait, needs: [s{}, s{}] }}\n", i - 1, i - 1));
    }
    let started = std::time::Instant::now();
    let playbook = parse(&yaml).expect("valid");
    assert_eq!(playbook.waves().len(), MAX_STEPS);
    assert!(started.elapsed() < std::time::Duration::from_secs(2), "took {:?}", started.elapsed());
}

//! The summary of one `./dev bench` run: reads the `FIGURE <key> <value>` lines the benchmarks
//! printed (from the files named, or stdin) and prints issue 11's table, each Archer figure
//! beside the engine's figure from the same run, their ratio, and whether the goal holds.
//! A row whose figures were not measured in this run (a scenario not selected) says so.

use std::collections::HashMap;
use std::io::Read;

type Figures = HashMap<String, f64>;

fn read_figures() -> Figures {
    let mut text = String::new();
    let files: Vec<String> = std::env::args().skip(1).collect();
    if files.is_empty() {
        let _ = std::io::stdin().read_to_string(&mut text);
    }
    for f in &files {
        text.push_str(&std::fs::read_to_string(f).unwrap_or_default());
        text.push('\n');
    }
    parse(&text)
}

fn parse(text: &str) -> Figures {
    text.lines()
        .filter_map(|l| {
            let mut w = l.split_whitespace();
            (w.next()? == "FIGURE").then_some(())?;
            let key = w.next()?.to_owned();
            let value = w.next()?.parse().ok()?;
            Some((key, value))
        })
        .collect()
}

/// How a row's goal reads its figures.
enum Goal {
    /// Archer ≥ factor × engine.
    TimesEngineAtLeast(f64),
    /// Archer ≤ engine + margin.
    EnginePlusAtMost(f64),
    /// Archer ≤ a bound (no engine figure).
    Below(f64),
}

struct Row {
    name: &'static str,
    archer: &'static str,
    engine: Option<&'static str>,
    unit: &'static str,
    goal: Goal,
}

const ROWS: &[Row] = &[
    Row {
        name: "ticket create, 8 clients, sustained",
        archer: "create.sustained.rate",
        engine: Some("pg.counter_notify_tps"),
        unit: "/s",
        goal: Goal::TimesEngineAtLeast(0.5),
    },
    Row {
        name: "create p99 at half that rate",
        archer: "create.half.p99_ms",
        engine: None,
        unit: "ms",
        goal: Goal::Below(25.0),
    },
    Row {
        name: "outbox → workflow started",
        archer: "relay.starts_per_s",
        engine: Some("engine.starts_per_s"),
        unit: "/s",
        goal: Goal::TimesEngineAtLeast(0.9),
    },
    Row {
        name: "GET /tickets?limit=50",
        archer: "list.default.p99_ms",
        engine: None,
        unit: "ms",
        goal: Goal::Below(20.0),
    },
    Row {
        name: "?status=new&sort=-priority p99",
        archer: "list.new-by-priority.p99_ms",
        engine: None,
        unit: "ms",
        goal: Goal::Below(20.0),
    },
    Row {
        name: "?assignee=me p99",
        archer: "list.assignee-me.p99_ms",
        engine: None,
        unit: "ms",
        goal: Goal::Below(20.0),
    },
    Row {
        name: "?q=printer p99",
        archer: "list.search-printer.p99_ms",
        engine: None,
        unit: "ms",
        goal: Goal::Below(20.0),
    },
    Row {
        name: "cursor page 3 p99",
        archer: "list.cursor-page-3.p99_ms",
        engine: None,
        unit: "ms",
        goal: Goal::Below(20.0),
    },
    Row {
        name: "sort=sla_due_at p99",
        archer: "list.sla-due.p99_ms",
        engine: None,
        unit: "ms",
        goal: Goal::Below(20.0),
    },
    Row {
        name: "SLA breach lag, median",
        archer: "sla.lag_median_s",
        engine: Some("engine.timer_lag_median_s"),
        unit: "s",
        goal: Goal::EnginePlusAtMost(0.1),
    },
    Row {
        name: "SLA breach lag, p99",
        archer: "sla.lag_p99_s",
        engine: Some("engine.timer_lag_p99_s"),
        unit: "s",
        goal: Goal::EnginePlusAtMost(0.2),
    },
    Row {
        name: "worker peak memory",
        archer: "sla.worker_peak_mib",
        engine: Some("engine.worker_peak_mib"),
        unit: "MiB",
        goal: Goal::Below(200.0),
    },
    Row {
        name: "approval decision → next emails, p50",
        archer: "approvals.decision_to_email_p50_s",
        engine: None,
        unit: "s",
        goal: Goal::Below(0.2),
    },
    Row {
        name: "approval decision → next emails, p99",
        archer: "approvals.decision_to_email_p99_s",
        engine: None,
        unit: "s",
        goal: Goal::Below(0.2),
    },
];

fn goal_text(g: &Goal) -> String {
    match g {
        Goal::TimesEngineAtLeast(f) => format!("≥ {f} × engine"),
        Goal::EnginePlusAtMost(m) => format!("≤ engine + {m}"),
        Goal::Below(b) => format!("≤ {b}"),
    }
}

/// The row's cells: Archer, engine, ratio (Archer / engine), verdict.
fn cells(row: &Row, f: &Figures) -> [String; 4] {
    let num = |v: Option<f64>| v.map(|v| format!("{v:.3}")).unwrap_or_else(|| "—".into());
    let archer = f.get(row.archer).copied();
    let engine = row.engine.and_then(|k| f.get(k).copied());
    let ratio = archer.zip(engine).map(|(a, e)| format!("{:.2}", a / e)).unwrap_or_else(|| "—".into());
    let holds = match (&row.goal, archer, engine) {
        (Goal::TimesEngineAtLeast(x), Some(a), Some(e)) => Some(a >= x * e),
        (Goal::EnginePlusAtMost(m), Some(a), Some(e)) => Some(a <= e + m),
        (Goal::Below(b), Some(a), _) => Some(a <= *b),
        _ => None,
    };
    let verdict = match holds {
        Some(true) => "holds".to_owned(),
        Some(false) => "MISSES".to_owned(),
        None => "not measured in this run".to_owned(),
    };
    [format!("{} {}", num(archer), row.unit), format!("{} {}", num(engine), row.unit), ratio, verdict]
}

fn main() {
    let f = read_figures();
    println!();
    println!("  {:<38} {:>14} {:>14} {:>7}  {:<16} verdict", "figure", "Archer", "engine (same run)", "ratio", "goal");
    for row in ROWS {
        let [a, e, r, v] = cells(row, &f);
        println!("  {:<38} {a:>14} {e:>17} {r:>7}  {:<16} {v}", row.name, goal_text(&row.goal));
    }
    if let Some(n) = f.get("sla.tickets") {
        println!("  (SLA rows: {n} open tickets; the engine's: the same count of bare timers)");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_figures_and_judges_each_goal() {
        let f = parse(
            "noise\nFIGURE create.sustained.rate 700\nFIGURE pg.counter_notify_tps 1600\nFIGURE sla.lag_median_s 0.15\nFIGURE engine.timer_lag_median_s 0.07\nFIGURE bad x\n",
        );
        assert_eq!(f.len(), 4);
        assert_eq!(cells(&ROWS[0], &f)[3], "MISSES");
        assert_eq!(cells(&ROWS[0], &f)[2], "0.44");
        assert_eq!(cells(&ROWS[9], &f)[3], "holds");
        assert_eq!(cells(&ROWS[1], &f)[3], "not measured in this run");
    }

    #[test]
    fn judges_the_approval_rows_without_an_engine_figure() {
        let f = parse("FIGURE approvals.decision_to_email_p50_s 0.12\nFIGURE approvals.decision_to_email_p99_s 0.34\n");
        let p50 = ROWS.iter().find(|r| r.archer == "approvals.decision_to_email_p50_s").expect("p50 row");
        let p99 = ROWS.iter().find(|r| r.archer == "approvals.decision_to_email_p99_s").expect("p99 row");
        assert_eq!(cells(p50, &f), ["0.120 s".to_owned(), "— s".into(), "—".into(), "holds".into()]);
        assert_eq!(cells(p99, &f)[3], "MISSES");
        assert_eq!(cells(p99, &parse(""))[3], "not measured in this run");
    }
}

//! CEL conditions (`when`, `unless`, trigger `condition`), through the `cel` crate.
//!
//! CEL is sandboxed by design (no I/O, no side effects, no loops beyond its comprehension
//! macros) and this build has no clock either (`now()` does not exist; the crate's `chrono`
//! feature is off), so a condition gives the same answer on every replay. Its cost is bounded
//! here: at most [`MAX_LEN`] bytes, a parser nesting depth of [`MAX_DEPTH`], and at most
//! [`MAX_COMPREHENSIONS`] comprehension macros (`all`, `exists`, `exists_one`, `map`,
//! `filter`), over scopes whose size the store caps.

use cel::objects::Value as CelValue;
use cel::parser::Parser;
use cel::{Context, IdedExpr};

/// Longest accepted condition, in bytes.
pub const MAX_LEN: usize = 2048;
/// Deepest accepted nesting.
pub const MAX_DEPTH: u16 = 32;
/// Most comprehension macros in one condition.
pub const MAX_COMPREHENSIONS: usize = 2;
/// What a step condition may read.
pub const STEP_NAMES: &[&str] = &["ticket", "request", "inputs", "steps", "run"];
/// What a trigger condition may read.
pub const TRIGGER_NAMES: &[&str] = &["ticket"];
/// What a `ticket_changed` condition may read: the ticket after the change and `before` it.
pub const CHANGED_TRIGGER_NAMES: &[&str] = &["ticket", "before"];

/// A compiled condition.
#[derive(Debug, Clone)]
pub struct Condition {
    expr: IdedExpr,
}

impl Condition {
    /// Compiles `source`, refusing what is too long, too deep, too costly, or reads a name
    /// outside `names`.
    pub fn compile(source: &str, names: &[&str]) -> Result<Self, String> {
        if source.len() > MAX_LEN {
            return Err(format!("the condition is {} bytes; at most {MAX_LEN} are accepted", source.len()));
        }
        let comprehensions = [".all(", ".exists(", ".exists_one(", ".map(", ".filter("]
            .iter()
            .map(|m| source.matches(m).count())
            .sum::<usize>();
        if comprehensions > MAX_COMPREHENSIONS {
            return Err(format!(
                "at most {MAX_COMPREHENSIONS} comprehension macros are accepted; found {comprehensions}"
            ));
        }
        // The parser recurses per nesting level before its own limit applies, deeply enough to
        // overflow a thread's stack on debug builds: nesting is measured first, without parsing.
        let depth = nesting(source);
        if depth > usize::from(MAX_DEPTH) / 2 {
            return Err(format!("the condition nests {depth} levels deep; at most {} are accepted", MAX_DEPTH / 2));
        }
        let expr = Parser::new()
            .max_recursion_depth(MAX_DEPTH)
            .parse(source)
            .map_err(|e| format!("CEL does not compile: {}", one_line(&e.to_string())))?;
        let refs = expr.references();
        let mut unknown: Vec<&str> = refs.variables().into_iter().filter(|v| !names.contains(v)).collect();
        unknown.sort_unstable();
        if let Some(first) = unknown.first() {
            return Err(format!("`{first}` is not known here; a condition can read {}", names.join(", ")));
        }
        Ok(Self { expr })
    }

    /// Evaluates against `scope` (an object whose keys are the names); the answer must be a
    /// boolean.
    pub fn holds(&self, scope: &serde_json::Value) -> Result<bool, String> {
        let mut context = Context::default();
        if let serde_json::Value::Object(map) = scope {
            for (name, value) in map {
                context.add_variable(name.clone(), value.clone()).map_err(|e| e.to_string())?;
            }
        }
        match CelValue::resolve(&self.expr, &context) {
            Ok(CelValue::Bool(b)) => Ok(b),
            Ok(other) => Err(format!("the condition gave {other:?}, not true or false")),
            Err(e) => Err(format!("the condition failed: {e}")),
        }
    }
}

/// The deepest nesting of brackets outside string literals.
fn nesting(source: &str) -> usize {
    let (mut depth, mut deepest, mut quote) = (0usize, 0usize, None::<char>);
    let mut escaped = false;
    for c in source.chars() {
        if let Some(q) = quote {
            if escaped {
                escaped = false;
            } else if c == '\\' {
                escaped = true;
            } else if c == q {
                quote = None;
            }
            continue;
        }
        match c {
            '"' | '\'' => quote = Some(c),
            '(' | '[' | '{' => {
                depth += 1;
                deepest = deepest.max(depth);
            }
            ')' | ']' | '}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    deepest
}

fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn conditions_read_the_scope() {
        let c = Condition::compile("ticket.priority == 1 && request.fields.vpn == true", STEP_NAMES).unwrap();
        assert_eq!(c.holds(&json!({"ticket": {"priority": 1}, "request": {"fields": {"vpn": true}}})), Ok(true));
        assert_eq!(c.holds(&json!({"ticket": {"priority": 2}, "request": {"fields": {"vpn": true}}})), Ok(false));
    }

    #[test]
    fn syntax_errors_unknown_names_and_costs_are_refused() {
        assert!(Condition::compile("ticket.priority ==", STEP_NAMES).unwrap_err().contains("does not compile"));
        assert!(Condition::compile("secrets.x == 'a'", STEP_NAMES).unwrap_err().contains("`secrets` is not known"));
        let costly = "[1,2].all(a, [1].all(b, [1].exists(c, true)))";
        assert!(Condition::compile(costly, STEP_NAMES).unwrap_err().contains("comprehension"));
        let deep = format!("{}true{}", "(".repeat(100), ")".repeat(100));
        assert!(Condition::compile(&deep, STEP_NAMES).is_err());
        assert!(Condition::compile(&"a".repeat(3000), STEP_NAMES).is_err());
        // long chains and unary towers within the size limit neither crash nor hang
        let chain = vec!["ticket.priority == 1"; 80].join(" && ");
        assert!(chain.len() < MAX_LEN);
        let _ = Condition::compile(&chain, STEP_NAMES);
        let _ = Condition::compile(&format!("{}true", "!".repeat(2000)), STEP_NAMES);
        let _ = Condition::compile(&format!("{}1", "-".repeat(2000)), STEP_NAMES);
        let _ = Condition::compile(&format!("ticket{}", ".a".repeat(1000)), STEP_NAMES);
    }

    #[test]
    fn a_condition_must_answer_yes_or_no() {
        let c = Condition::compile("ticket.priority", STEP_NAMES).unwrap();
        assert!(c.holds(&json!({"ticket": {"priority": 1}})).is_err());
    }

    #[test]
    fn no_clock_exists() {
        assert!(Condition::compile("now() > 0", STEP_NAMES).map(|c| c.holds(&json!({}))).unwrap().is_err());
    }
}

//! Templates in a step's `with`: `{{ticket.priority}}`, `{{request.fields.full_name}}`,
//! `{{steps.create_account.output.body.id}}`, `{{secrets.slack}}`.
//!
//! A placeholder is a dotted path into the run's scope, nothing more: no helpers, no logic
//! (conditions are CEL, in `when`/`unless`). A string that is exactly one placeholder becomes
//! the value it names, keeping its JSON type (a number stays a number, an object an object);
//! elsewhere the value is written into the text. Handlebars, used for emails, can do neither of
//! the two things this needs (typed values, and leaving `{{secrets.*}}` for the activity to fill
//! in so no secret enters a workflow's history), and a dotted-path lookup is small enough to
//! own.

use serde_json::Value;

/// The roots a template may name.
pub const ROOTS: &[&str] = &["ticket", "request", "inputs", "steps", "run", "secrets"];

/// One `{{...}}` placeholder: its dotted path, split.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Placeholder {
    pub path: Vec<String>,
}

impl Placeholder {
    pub fn root(&self) -> &str {
        self.path.first().map_or("", String::as_str)
    }

    pub fn text(&self) -> String {
        self.path.join(".")
    }
}

/// What is left as written when rendering.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// A run: everything but `secrets.*` is filled in; a missing value is an error.
    Run,
    /// A dry run: step outputs do not exist yet, so `steps.*` stays as written too.
    Plan,
}

/// A templated text, read once: literal text and placeholders (with how they were written).
enum Piece<'a> {
    Text(&'a str),
    Placeholder(Placeholder, &'a str),
}

/// Splits `text` into pieces, or says why it is malformed (an unclosed `{{`, an empty or
/// non-path placeholder). Every reader of templates goes through here.
fn pieces(text: &str) -> Result<Vec<Piece<'_>>, String> {
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(open) = rest.find("{{") {
        let after = &rest[open + 2..];
        let close = after.find("}}").ok_or_else(|| "a `{{` is not closed by `}}`".to_owned())?;
        out.push(Piece::Text(&rest[..open]));
        out.push(Piece::Placeholder(parse_path(after[..close].trim())?, &rest[open..open + 2 + close + 2]));
        rest = &after[close + 2..];
    }
    out.push(Piece::Text(rest));
    Ok(out)
}

/// `text` with each placeholder replaced by what `fill` gives for it (`None`: kept as written).
fn substitute(
    text: &str,
    mut fill: impl FnMut(&Placeholder) -> Result<Option<String>, String>,
) -> Result<String, String> {
    let mut out = String::with_capacity(text.len());
    for piece in pieces(text)? {
        match piece {
            Piece::Text(t) => out.push_str(t),
            Piece::Placeholder(p, raw) => match fill(&p)? {
                Some(v) => out.push_str(&v),
                None => out.push_str(raw),
            },
        }
    }
    Ok(out)
}

/// The placeholders in `text`, or why it is malformed.
pub fn placeholders(text: &str) -> Result<Vec<Placeholder>, String> {
    Ok(pieces(text)?
        .into_iter()
        .filter_map(|piece| match piece {
            Piece::Placeholder(p, _) => Some(p),
            Piece::Text(_) => None,
        })
        .collect())
}

fn parse_path(inner: &str) -> Result<Placeholder, String> {
    let path: Vec<String> = inner.split('.').map(str::to_owned).collect();
    let valid = |s: &String| !s.is_empty() && s.chars().all(|c| c.is_alphanumeric() || c == '_' || c == '-');
    if !path.iter().all(valid) {
        return Err(format!("`{{{{{inner}}}}}` is not a path (write e.g. `{{{{ticket.priority}}}}`)"));
    }
    Ok(Placeholder { path })
}

/// Every string inside `value`, rendered against `scope` (an object with the roots).
pub fn render(value: &Value, scope: &Value, mode: Mode) -> Result<Value, String> {
    Ok(match value {
        Value::String(s) => render_str(s, scope, mode)?,
        Value::Array(items) => Value::Array(items.iter().map(|v| render(v, scope, mode)).collect::<Result<_, _>>()?),
        Value::Object(map) => Value::Object(
            map.iter().map(|(k, v)| Ok((k.clone(), render(v, scope, mode)?))).collect::<Result<_, String>>()?,
        ),
        other => other.clone(),
    })
}

fn kept(p: &Placeholder, mode: Mode) -> bool {
    p.root() == "secrets" || (mode == Mode::Plan && p.root() == "steps")
}

/// Renders one string: a lone placeholder keeps its value's type.
pub fn render_str(text: &str, scope: &Value, mode: Mode) -> Result<Value, String> {
    let trimmed = text.trim();
    if trimmed.starts_with("{{") && trimmed.ends_with("}}") && trimmed.matches("{{").count() == 1 {
        let p = parse_path(trimmed[2..trimmed.len() - 2].trim())?;
        if kept(&p, mode) {
            return Ok(Value::String(text.to_owned()));
        }
        return lookup(scope, &p).cloned();
    }
    let out = substitute(text, |p| {
        if kept(p, mode) {
            return Ok(None);
        }
        Ok(Some(match lookup(scope, p)? {
            Value::String(s) => s.clone(),
            Value::Null => String::new(),
            other => other.to_string(),
        }))
    })?;
    Ok(Value::String(out))
}

/// The value a placeholder names; a missing one is an error naming the path.
pub fn lookup<'a>(scope: &'a Value, p: &Placeholder) -> Result<&'a Value, String> {
    let mut at = scope;
    for (i, key) in p.path.iter().enumerate() {
        let next = match at {
            Value::Object(map) => map.get(key),
            Value::Array(items) => key.parse::<usize>().ok().and_then(|i| items.get(i)),
            _ => None,
        };
        at = next.ok_or_else(|| format!("`{}` has no value (`{}` is missing)", p.text(), p.path[..=i].join(".")))?;
    }
    Ok(at)
}

/// Fills in `{{secrets.NAME}}` placeholders with `secret(NAME)`; used by activities only.
pub fn fill_secrets(text: &str, secret: impl Fn(&str) -> Result<String, String>) -> Result<String, String> {
    substitute(text, |p| match p.path.as_slice() {
        [root, name] if root == "secrets" => secret(name).map(Some),
        _ => Ok(None),
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use serde_json::json;

    use super::*;

    fn scope() -> Value {
        json!({"ticket": {"priority": 2, "number": "REQ-7"}, "request": {"fields": {"name": "Ada", "tags": ["a"]}},
               "steps": {"mk": {"output": {"id": 42}}}})
    }

    #[test]
    fn a_lone_placeholder_keeps_its_type() {
        assert_eq!(render_str("{{ticket.priority}}", &scope(), Mode::Run), Ok(json!(2)));
        assert_eq!(render_str("{{request.fields.tags}}", &scope(), Mode::Run), Ok(json!(["a"])));
        assert_eq!(render_str("{{steps.mk.output.id}}", &scope(), Mode::Run), Ok(json!(42)));
    }

    #[test]
    fn text_gets_values_written_in() {
        let v = render_str("P{{ticket.priority}} {{ticket.number}} for {{request.fields.name}}", &scope(), Mode::Run);
        assert_eq!(v, Ok(json!("P2 REQ-7 for Ada")));
    }

    #[test]
    fn secrets_stay_and_plans_keep_step_outputs() {
        assert_eq!(render_str("Bearer {{secrets.slack}}", &scope(), Mode::Run), Ok(json!("Bearer {{secrets.slack}}")));
        assert_eq!(
            render_str("/u/{{steps.mk.output.id}}", &scope(), Mode::Plan),
            Ok(json!("/u/{{steps.mk.output.id}}"))
        );
        assert_eq!(render_str("/u/{{steps.mk.output.id}}", &scope(), Mode::Run), Ok(json!("/u/42")));
    }

    #[test]
    fn a_missing_value_names_its_path() {
        let e = render_str("{{request.fields.nope}}", &scope(), Mode::Run).err().unwrap_or_default();
        assert!(e.contains("request.fields.nope"), "{e}");
    }

    #[test]
    fn malformed_placeholders_are_refused() {
        assert!(placeholders("{{ticket.priority").is_err());
        assert!(placeholders("{{ a b }}").is_err());
        assert!(placeholders("{{}}").is_err());
        assert_eq!(placeholders("{{ inputs.x }} and {{run.id}}").map(|v| v.len()), Ok(2));
    }

    #[test]
    fn secrets_are_filled_in_only_by_name() {
        let filled = fill_secrets("Bearer {{secrets.slack}} {{ticket.x}}", |n| Ok(format!("<{n}>")));
        assert_eq!(filled, Ok("Bearer <slack> {{ticket.x}}".to_owned()));
    }
}

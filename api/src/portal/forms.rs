//! A catalog item's form, generated from its JSON Schema, and the answers a posted form gives.
//!
//! Each property becomes a field in the schema's order: an `enum` a select, a `boolean` a
//! checkbox, an array of `enum` items checkboxes, `format: date` a date input, a long or
//! unbounded string (`maxLength` over 200) a text area, anything else a text input. Titles are
//! labels, descriptions hints.
//!
//! Conditional fields: a field that `if`/`then` requires (in `allOf` or at the top) shows only
//! while the `if` holds (`data-show-when="device_type=laptop"`); one that `dependentRequired`
//! ties to another shows once that one has a value; a property of a `oneOf` branch shows while
//! the branch's `const` holds. `portal.js` applies them; without JavaScript every field shows
//! and the server's validator says which do not belong.
//!
//! The answers are checked by the API's own validator (the portal posts through the same
//! handler), and each error is shown beside its field in words a requester reads.

use serde_json::{Map, Value, json};

use crate::error::FieldError;

/// What a field shows while a condition holds: `field=value[|value]`, or `field` (has a value).
fn conditions(schema: &Value) -> Map<String, Value> {
    let mut out = Map::new();
    let mut branches: Vec<&Value> = vec![schema];
    if let Some(all) = schema.get("allOf").and_then(Value::as_array) {
        branches.extend(all.iter());
    }
    for b in branches {
        let (Some(cond), Some(then)) = (b.get("if"), b.get("then")) else { continue };
        let Some(rule) = rule_of(cond) else { continue };
        for name in then.get("required").and_then(Value::as_array).into_iter().flatten().filter_map(Value::as_str) {
            out.entry(name.to_owned()).or_insert(Value::String(rule.clone()));
        }
    }
    if let Some(deps) = schema.get("dependentRequired").and_then(Value::as_object) {
        for (on, names) in deps {
            for name in names.as_array().into_iter().flatten().filter_map(Value::as_str) {
                out.entry(name.to_owned()).or_insert(Value::String(on.clone()));
            }
        }
    }
    if let Some(one_of) = schema.get("oneOf").and_then(Value::as_array) {
        for branch in one_of {
            let Some(rule) = rule_of(branch) else { continue };
            let Some(key) = rule.split('=').next() else { continue };
            for name in branch.get("properties").and_then(Value::as_object).into_iter().flat_map(|p| p.keys()) {
                if name != key {
                    out.entry(name.clone()).or_insert(Value::String(rule.clone()));
                }
            }
        }
    }
    out
}

/// `field=value|value` for a condition on one property's `const` or `enum`.
fn rule_of(cond: &Value) -> Option<String> {
    let props = cond.get("properties")?.as_object()?;
    let (name, p) = props.iter().next()?;
    let values: Vec<String> = if let Some(c) = p.get("const") {
        vec![text_of(c)]
    } else {
        p.get("enum")?.as_array()?.iter().map(text_of).collect()
    };
    Some(format!("{name}={}", values.join("|")))
}

/// A JSON value as the form writes it.
pub(super) fn text_of(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

/// The form's fields, in the schema's order, with the values posted (or the defaults) and
/// each field's error: what `templates/portal/item.html.hbs` renders.
pub(super) fn fields(schema: &Value, posted: &[(String, String)], errors: &[(String, String)]) -> Vec<Value> {
    let required: Vec<&str> =
        schema.get("required").and_then(Value::as_array).into_iter().flatten().filter_map(Value::as_str).collect();
    let shows = conditions(schema);
    let Some(props) = schema.get("properties").and_then(Value::as_object) else { return Vec::new() };
    let fresh = posted.is_empty();
    props
        .iter()
        .map(|(name, p)| {
            let values: Vec<&str> = posted.iter().filter(|(k, _)| k == name).map(|(_, v)| v.as_str()).collect();
            let default = p.get("default").map(text_of).unwrap_or_default();
            let value = values
                .first()
                .map(|v| (*v).to_owned())
                .unwrap_or_else(|| if fresh { default.clone() } else { String::new() });
            let kind = kind_of(p);
            let options: Vec<Value> = options_of(p)
                .into_iter()
                .map(|o| {
                    let selected = values.contains(&o.as_str()) || (fresh && o == default);
                    json!({"value": o, "label": humanize(&o), "selected": selected})
                })
                .collect();
            let error = errors.iter().find(|(f, _)| f == name).map(|(_, m)| m.clone());
            let hint = p.get("description").and_then(Value::as_str);
            let described: Vec<String> =
                [hint.map(|_| format!("f-{name}-hint")), error.as_ref().map(|_| format!("f-{name}-error"))]
                    .into_iter()
                    .flatten()
                    .collect();
            json!({
                "name": name,
                "id": format!("f-{name}"),
                "label": p.get("title").and_then(Value::as_str).unwrap_or(name),
                "hint": hint,
                "describedby": if described.is_empty() { Value::Null } else { Value::String(described.join(" ")) },
                "kind": kind,
                "is_select": kind == "select",
                "is_checkbox": kind == "checkbox",
                "is_checkboxes": kind == "checkboxes",
                "is_textarea": kind == "textarea",
                "input_type": if kind == "date" { "date" } else if kind == "number" { "number" } else { "text" },
                "required": required.contains(&name.as_str()),
                "conditional": shows.get(name).is_some(),
                "value": value,
                "checked": kind == "checkbox" && (value == "true"),
                "options": options,
                "error": error,
                "show_when": shows.get(name).cloned(),
            })
        })
        .collect()
}

fn kind_of(p: &Value) -> &'static str {
    let ty = p.get("type").and_then(Value::as_str).unwrap_or("string");
    if p.get("enum").is_some() {
        return "select";
    }
    match ty {
        "boolean" => "checkbox",
        "integer" | "number" => "number",
        "array" if p.pointer("/items/enum").is_some() => "checkboxes",
        _ if p.get("format").and_then(Value::as_str) == Some("date") => "date",
        _ if p.get("maxLength").and_then(Value::as_u64).is_none_or(|m| m > 200) => "textarea",
        _ => "text",
    }
}

fn options_of(p: &Value) -> Vec<String> {
    p.get("enum")
        .or_else(|| p.pointer("/items/enum"))
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .map(text_of)
        .collect()
}

/// `"needs_review"` → `"Needs review"`, for option labels.
pub(super) fn humanize(s: &str) -> String {
    let spaced = s.replace(['_', '-'], " ");
    let mut chars = spaced.chars();
    match chars.next() {
        Some(c) => c.to_uppercase().collect::<String>() + chars.as_str(),
        None => String::new(),
    }
}

/// The answers a posted form gives: each property of the schema that was sent with a value,
/// typed as the schema says (a value that does not parse is kept as text, so the validator
/// names it). Blank fields are left out.
pub(super) fn answers(schema: &Value, posted: &[(String, String)]) -> Value {
    let mut out = Map::new();
    let Some(props) = schema.get("properties").and_then(Value::as_object) else { return Value::Object(out) };
    for (name, p) in props {
        let values: Vec<&str> =
            posted.iter().filter(|(k, v)| k == name && !v.trim().is_empty()).map(|(_, v)| v.as_str()).collect();
        let Some(first) = values.first() else { continue };
        let ty = p.get("type").and_then(Value::as_str).unwrap_or("string");
        let v = match ty {
            "boolean" => Value::Bool(*first == "true"),
            "integer" => {
                first.trim().parse::<i64>().map(Value::from).unwrap_or_else(|_| Value::String(first.to_string()))
            }
            "number" => first
                .trim()
                .parse::<f64>()
                .ok()
                .and_then(|n| serde_json::Number::from_f64(n).map(Value::Number))
                .unwrap_or_else(|| Value::String(first.to_string())),
            "array" => Value::Array(values.iter().map(|v| Value::String(v.to_string())).collect()),
            _ => Value::String(first.to_string()),
        };
        out.insert(name.clone(), v);
    }
    Value::Object(out)
}

/// Each error as `(field, message)` in a requester's words; errors about the form as a whole
/// (or a field it does not have) come back with an empty field name.
pub(super) fn messages(schema: &Value, errors: &[FieldError]) -> Vec<(String, String)> {
    errors
        .iter()
        .map(|e| {
            let name = e.pointer.strip_prefix("/fields/").unwrap_or_default().split('/').next().unwrap_or_default();
            let name = name.replace("~1", "/").replace("~0", "~");
            let p = schema.pointer(&format!("/properties/{}", name.replace('~', "~0").replace('/', "~1")));
            let Some(p) = p else { return (String::new(), e.detail.clone()) };
            let label = p.get("title").and_then(Value::as_str).unwrap_or(&name);
            let n = |k: &str| p.get(k).and_then(Value::as_u64).unwrap_or(0);
            let message = match e.code.as_str() {
                "required" | "dependentRequired" => format!("{label} is required."),
                "minLength" => format!("Enter at least {} characters.", n("minLength")),
                "maxLength" => format!("Enter at most {} characters.", n("maxLength")),
                "pattern" => match p.get("description").and_then(Value::as_str) {
                    Some(d) => format!("This is not in the expected format: {d}"),
                    None => "This is not in the expected format.".to_owned(),
                },
                "enum" | "const" => "Choose one of the options.".to_owned(),
                "format" => format!("Enter a valid {}.", p.get("format").and_then(Value::as_str).unwrap_or("value")),
                "type" => "This value is not of the right kind.".to_owned(),
                "minimum" => format!("Enter at least {}.", p.get("minimum").cloned().unwrap_or_default()),
                "maximum" => format!("Enter at most {}.", p.get("maximum").cloned().unwrap_or_default()),
                _ => e.detail.clone(),
            };
            (name, message)
        })
        .collect()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn laptop() -> Value {
        serde_json::from_str(include_str!("../../../schemas/catalog/laptop.schema.json")).unwrap()
    }

    #[test]
    fn the_laptop_form_shows_the_os_only_for_laptops_and_the_asset_tag_only_for_replacements() {
        let f = fields(&laptop(), &[], &[]);
        let names: Vec<&str> = f.iter().map(|f| f["name"].as_str().unwrap()).collect();
        assert_eq!(names, ["device_type", "os", "replacement", "asset_tag", "needed_by", "justification"]);
        assert_eq!(f[1]["show_when"], "device_type=laptop");
        assert_eq!(f[3]["show_when"], "replacement=true");
        assert!(f[0]["show_when"].is_null());
        assert_eq!(f[0]["kind"], "select");
        assert_eq!(f[2]["kind"], "checkbox");
        assert_eq!(f[4]["kind"], "date");
        assert_eq!(f[5]["kind"], "textarea");
        assert_eq!(f[0]["options"][0], json!({"value": "laptop", "label": "Laptop", "selected": false}));
    }

    #[test]
    fn dependent_required_and_one_of_branches_are_conditions_too() {
        let schema = json!({
            "type": "object",
            "properties": {"kind": {"enum": ["a", "b"]}, "x": {"type": "string"}, "y": {"type": "string"}, "z": {"type": "string"}},
            "dependentRequired": {"x": ["y"]},
            "oneOf": [{"properties": {"kind": {"const": "b"}, "z": {"type": "string"}}}]
        });
        let f = fields(&schema, &[], &[]);
        assert_eq!(f[2]["show_when"], "x");
        assert_eq!(f[3]["show_when"], "kind=b");
    }

    #[test]
    fn answers_are_typed_by_the_schema_and_blanks_left_out() {
        let schema = json!({"type": "object", "properties": {
            "n": {"type": "integer"}, "b": {"type": "boolean"}, "s": {"type": "string"}, "e": {"type": "string"},
            "tags": {"type": "array", "items": {"enum": ["x", "y"]}}, "bad": {"type": "integer"}
        }});
        let posted: Vec<(String, String)> = [
            ("n", "42"),
            ("b", "true"),
            ("s", "hi"),
            ("e", "  "),
            ("tags", "x"),
            ("tags", "y"),
            ("bad", "forty"),
            ("_csrf", "t"),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        assert_eq!(
            answers(&schema, &posted),
            json!({"n": 42, "b": true, "s": "hi", "tags": ["x", "y"], "bad": "forty"})
        );
    }

    #[test]
    fn errors_are_worded_for_people_and_land_beside_their_field() {
        let errors = vec![
            FieldError::new("/fields/justification", "minLength", "\"short\" is shorter than 20 characters"),
            FieldError::new("/fields/os", "required", "os is required"),
            FieldError::new("/fields", "not", "something about the whole form"),
        ];
        let m = messages(&laptop(), &errors);
        assert_eq!(m[0], ("justification".into(), "Enter at least 20 characters.".into()));
        assert_eq!(m[1], ("os".into(), "Operating system is required.".into()));
        assert_eq!(m[2], (String::new(), "something about the whole form".into()));
    }
}

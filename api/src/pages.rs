//! HTML pages Archer renders itself: the confirmation pages behind emailed approval links.
//!
//! Opening a decision link (a GET) only shows [`CONFIRM`]; the POST of that page's form to
//! `/approvals/decide` decides and answers with [`DONE`], or with [`PROBLEM`] when the link
//! cannot be used (mail scanners and link previews fetch GETs, so a GET must never decide).
//!
//! The templates live in `templates/pages/` (see `templates/README.md` for the data each takes)
//! and are compiled in with `include_str!`. Rendering is strict (a field a template uses but the
//! data lacks is an error, except under `{{#if}}`) and HTML-escapes every `{{value}}`.

use std::fmt;
use std::sync::Arc;

use handlebars::Handlebars;

/// The confirmation page a decision link opens: what is being decided, and the form that
/// decides it.
pub const CONFIRM: &str = "approval_confirm";
/// The page after a decision was recorded (or found recorded already).
pub const DONE: &str = "approval_done";
/// The page for a link that cannot be used: expired, used, invalid, superseded, for a closed
/// step or for another approver.
pub const PROBLEM: &str = "approval_problem";

/// Embeds `templates/pages/<name>.html.hbs` as `(name, source)`.
macro_rules! embed {
    ($name:literal) => {
        ($name, include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/../templates/pages/", $name, ".html.hbs")))
    };
}

/// Embeds `templates/portal/<name>.html.hbs` as `("portal/<name>", source)`.
macro_rules! portal {
    ($name:literal) => {
        (
            concat!("portal/", $name),
            include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/../templates/portal/", $name, ".html.hbs")),
        )
    };
}

/// Every page template: the decision-link pages and the portal's.
pub const EMBEDDED: &[(&str, &str)] = &[
    embed!("approval_confirm"),
    embed!("approval_done"),
    embed!("approval_problem"),
    portal!("login"),
    portal!("home"),
    portal!("catalog"),
    portal!("item"),
    portal!("tickets"),
    portal!("ticket"),
    portal!("approvals"),
    portal!("queue"),
    portal!("error"),
    portal!("admin_catalog"),
    portal!("admin_item"),
    portal!("admin_playbooks"),
    portal!("admin_audit"),
    portal!("admin_sla"),
    portal!("admin_people"),
    portal!("admin_routing"),
    portal!("admin_playbook"),
];

/// The portal's layout, a partial every portal page is written inside
/// (`{{#> portal/layout}}...{{/portal/layout}}`).
const LAYOUT: (&str, &str) = portal!("layout");

/// What a page that failed to render shows instead (the failure is logged).
pub const FALLBACK_ERROR: &str = "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>Error - Archer</title></head><body><main><h1>Something went wrong</h1><p>Something went wrong on our side. Try again in a moment.</p></main></body></html>";

/// Why a page could not be rendered.
#[derive(Debug, thiserror::Error)]
pub enum PageError {
    /// An embedded template does not parse (the unit tests rule this out).
    #[error("page template {name} does not parse: {message}")]
    Parse { name: &'static str, message: String },
    /// No page template has this name.
    #[error("no page template named {0:?}")]
    Unknown(String),
    /// The data lacks a field the template needs, or is otherwise unusable.
    #[error("page template {name} does not render: {message}")]
    Render { name: String, message: String },
}

/// The page templates, compiled once. Cheap to clone (the compiled templates are shared).
#[derive(Clone)]
pub struct Pages {
    registry: Arc<Handlebars<'static>>,
}

impl fmt::Debug for Pages {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Pages").field("names", &EMBEDDED.iter().map(|(name, _)| *name).collect::<Vec<_>>()).finish()
    }
}

impl Pages {
    /// Compiles the embedded page templates, strict and HTML-escaping.
    pub fn new() -> Result<Pages, PageError> {
        let mut registry = Handlebars::new();
        registry.set_strict_mode(true);
        registry.register_escape_fn(handlebars::html_escape);
        registry
            .register_partial(LAYOUT.0, LAYOUT.1)
            .map_err(|e| PageError::Parse { name: LAYOUT.0, message: e.to_string() })?;
        for (name, source) in EMBEDDED {
            registry
                .register_template_string(name, source)
                .map_err(|e| PageError::Parse { name, message: e.to_string() })?;
        }
        Ok(Pages { registry: Arc::new(registry) })
    }

    /// Renders page `name` ([`CONFIRM`], [`DONE`] or [`PROBLEM`]) with `data` to a full HTML
    /// document.
    pub fn render(&self, name: &str, data: &serde_json::Value) -> Result<String, PageError> {
        if !self.registry.has_template(name) {
            return Err(PageError::Unknown(name.to_owned()));
        }
        self.registry
            .render(name, data)
            .map_err(|e| PageError::Render { name: name.to_owned(), message: e.to_string() })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use serde_json::json;

    fn confirm() -> serde_json::Value {
        json!({
            "decision": "reject",
            "decision_label": "Reject",
            "ticket": {"number": "REQ-000012", "title": "Laptop for a new starter"},
            "requester": {"name": "Riley Requester"},
            "step": {"name": "Manager approval"},
            "approver": {"name": "Morgan Manager"},
            "on_behalf_of": "Avery Approver",
            "fields": [
                {"label": "Device", "value": "laptop"},
                {"label": "Justification", "value": "Starts Monday in sales"}
            ],
            "token": "eyJqdGkiOiIwMTkzIn0.c2lnbmF0dXJl",
            "comment_required": true,
            "comment": "Not in the budget",
            "error": "A comment is required to reject."
        })
    }

    fn done() -> serde_json::Value {
        json!({
            "decision": "approved",
            "ticket": {"number": "REQ-000012", "title": "Laptop for a new starter"},
            "step": {"name": "Manager approval"},
            "decided_at": "2026-11-23 18:00:00 UTC",
            "already": false
        })
    }

    fn problem() -> serde_json::Value {
        json!({
            "title": "This link has expired",
            "message": "This approval link expired at 2026-11-30 18:00:00 UTC. Ask the requester to send the request again.",
            "ticket": {"number": "REQ-000012", "title": "Laptop for a new starter"}
        })
    }

    /// The start tag of the element with id `id` (`<textarea id="comment" ...>`).
    fn tag<'a>(html: &'a str, id: &str) -> &'a str {
        let at = html.find(&format!(" id=\"{id}\"")).unwrap_or_else(|| panic!("no #{id} in:\n{html}"));
        let start = html[..at].rfind('<').unwrap();
        let end = at + html[at..].find('>').unwrap();
        &html[start..=end]
    }

    /// The text from the start tag of `#id` to the next closing tag.
    fn element<'a>(html: &'a str, id: &str) -> &'a str {
        let start = html.find(tag(html, id)).unwrap();
        let end = start + html[start..].find("</").unwrap();
        &html[start..end]
    }

    fn check_document(name: &str, html: &str) {
        assert!(html.starts_with("<!DOCTYPE html>\n<html lang=\"en\">"), "{name}:\n{html}");
        assert!(html.trim_end().ends_with("</html>"), "{name}:\n{html}");
        assert!(!html.contains("{{") && !html.contains("<script"), "{name}:\n{html}");
        assert_eq!(html.matches(" id=\"title\"").count(), 1, "{name}:\n{html}");
    }

    #[test]
    fn every_page_renders_its_sample() {
        let pages = Pages::new().unwrap();
        let mut names: Vec<_> = EMBEDDED.iter().map(|(name, _)| *name).filter(|n| !n.starts_with("portal/")).collect();
        names.sort_unstable();
        assert_eq!(names, [CONFIRM, DONE, PROBLEM]);

        let html = pages.render(CONFIRM, &confirm()).unwrap();
        check_document(CONFIRM, &html);
        assert!(element(&html, "decision").contains("Reject"), "{html}");
        for needle in [
            "REQ-000012",
            "Laptop for a new starter",
            "Riley Requester",
            "Manager approval",
            "Morgan Manager",
            "Avery Approver",
            "Device",
            "Starts Monday in sales",
        ] {
            assert!(html.contains(needle), "lacks {needle:?}:\n{html}");
        }
        assert!(element(&html, "error").contains("A comment is required to reject."), "{html}");
        assert!(element(&html, "comment").ends_with(">Not in the budget"), "{html}");
        assert!(element(&html, "confirm").ends_with(">Confirm: Reject"), "{html}");
        assert!(html.contains("<label for=\"comment\""), "{html}");

        // The optional parts may be left out.
        let mut data = confirm();
        for key in ["on_behalf_of", "comment", "error"] {
            data.as_object_mut().unwrap().remove(key);
        }
        data["fields"] = json!([]);
        data["decision"] = json!("approve");
        data["decision_label"] = json!("Approve");
        data["comment_required"] = json!(false);
        let html = pages.render(CONFIRM, &data).unwrap();
        check_document(CONFIRM, &html);
        assert!(!html.contains("id=\"error\"") && !html.contains("Avery") && !html.contains("Answers"), "{html}");
        assert!(element(&html, "decision").contains("Approve"), "{html}");
        assert!(element(&html, "confirm").ends_with(">Confirm: Approve"), "{html}");
        assert!(html.contains("></textarea>"), "{html}");

        let html = pages.render(DONE, &done()).unwrap();
        check_document(DONE, &html);
        assert_eq!(
            element(&html, "outcome"),
            format!("{}You approved REQ-000012 at 2026-11-23 18:00:00 UTC.", tag(&html, "outcome"))
        );
        let mut data = done();
        data["already"] = json!(true);
        data["decision"] = json!("rejected");
        let html = pages.render(DONE, &data).unwrap();
        let outcome = element(&html, "outcome");
        assert!(outcome.contains("You rejected REQ-000012 at 2026-11-23 18:00:00 UTC."), "{html}");
        assert!(outcome.contains("recorded earlier") && outcome.contains("nothing has changed"), "{html}");

        let html = pages.render(PROBLEM, &problem()).unwrap();
        check_document(PROBLEM, &html);
        assert!(element(&html, "title").ends_with(">This link has expired"), "{html}");
        assert!(element(&html, "message").contains("expired at 2026-11-30 18:00:00 UTC."), "{html}");
        assert!(html.contains("REQ-000012"), "{html}");
        let mut data = problem();
        data.as_object_mut().unwrap().remove("ticket");
        let html = pages.render(PROBLEM, &data).unwrap();
        assert!(!html.contains("REQ-000012"), "{html}");
    }

    #[test]
    fn missing_data_and_unknown_pages_are_errors() {
        let pages = Pages::new().unwrap();
        for (name, mut data, key) in [
            (CONFIRM, confirm(), "token"),
            (CONFIRM, confirm(), "decision"),
            (CONFIRM, confirm(), "decision_label"),
            (DONE, done(), "decided_at"),
            (PROBLEM, problem(), "message"),
        ] {
            data.as_object_mut().unwrap().remove(key);
            assert!(matches!(pages.render(name, &data), Err(PageError::Render { .. })), "{name} without {key}");
        }
        assert!(matches!(pages.render("nope", &problem()), Err(PageError::Unknown(_))));
    }

    #[test]
    fn values_are_html_escaped() {
        let pages = Pages::new().unwrap();
        let hostile = "<script>alert(1)</script> & \"quotes\" 'too'";
        let escaped = "&lt;script&gt;alert(1)&lt;/script&gt; &amp; &quot;quotes&quot; &#x27;too&#x27;";
        let mut data = confirm();
        data["ticket"]["title"] = json!(hostile);
        data["token"] = json!("\"><script>x</script>");
        data["comment"] = json!("</textarea><script>x</script>");
        let mut done = done();
        done["ticket"]["title"] = json!(hostile);
        let mut problem = problem();
        problem["title"] = json!(hostile);
        problem["ticket"]["title"] = json!(hostile);
        for (name, data) in [(CONFIRM, data), (DONE, done), (PROBLEM, problem)] {
            let html = pages.render(name, &data).unwrap();
            assert!(html.contains(escaped), "{name}:\n{html}");
            assert!(!html.contains("<script"), "{name}:\n{html}");
        }
    }

    #[test]
    fn the_confirm_form_posts_the_token() {
        let pages = Pages::new().unwrap();
        let html = pages.render(CONFIRM, &confirm()).unwrap();
        assert_eq!(html.matches("<form").count(), 1, "{html}");
        assert!(html.contains("<form method=\"post\" action=\"/approvals/decide\""), "{html}");
        assert!(
            html.contains("<input type=\"hidden\" name=\"token\" value=\"eyJqdGkiOiIwMTkzIn0.c2lnbmF0dXJl\">"),
            "{html}"
        );
        let form = &html[html.find("<form").unwrap()..html.find("</form>").unwrap()];
        assert!(form.contains("name=\"token\""), "{html}");
        assert!(tag(form, "comment").starts_with("<textarea id=\"comment\" name=\"comment\""), "{html}");
        assert!(tag(form, "confirm").starts_with("<button type=\"submit\""), "{html}");
    }

    #[test]
    fn the_comment_is_required_only_when_asked() {
        let pages = Pages::new().unwrap();
        let mut data = confirm();
        let html = pages.render(CONFIRM, &data).unwrap();
        assert!(tag(&html, "comment").contains(" required"), "{html}");
        assert!(html.contains(">Comment (required to reject)</label>"), "{html}");
        data["comment_required"] = json!(false);
        let html = pages.render(CONFIRM, &data).unwrap();
        assert!(!tag(&html, "comment").contains("required"), "{html}");
        assert!(html.contains(">Comment (optional)</label>"), "{html}");
    }
}

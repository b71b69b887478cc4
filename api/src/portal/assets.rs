//! The portal's static files, compiled into the binary: one stylesheet, `portal.js` (countdowns
//! and conditional form fields) and htmx (from the npm registry, pinned in
//! `web/package-lock.json`; `api/build.rs` brings it). Nothing is loaded from elsewhere.

use axum::extract::Path;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

/// `(name, content type, bytes)` of every file under `/portal/static/`.
const FILES: &[(&str, &str, &[u8])] = &[
    ("archer.css", "text/css; charset=utf-8", include_bytes!("../../../web/static/archer.css")),
    ("portal.js", "text/javascript; charset=utf-8", include_bytes!("../../../web/static/portal.js")),
    (
        "htmx.min.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../../../web/node_modules/htmx.org/dist/htmx.min.js"),
    ),
];

/// A static file; cached for an hour (a new binary may change them).
pub(super) async fn serve(Path(file): Path<String>) -> Response {
    match FILES.iter().find(|(name, _, _)| *name == file) {
        Some((_, kind, bytes)) => {
            let mut resp = (StatusCode::OK, *bytes).into_response();
            let h = resp.headers_mut();
            h.insert(header::CONTENT_TYPE, HeaderValue::from_static(kind));
            h.insert(header::CACHE_CONTROL, HeaderValue::from_static("public, max-age=3600"));
            h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
            resp
        }
        None => (StatusCode::NOT_FOUND, "no such file").into_response(),
    }
}

//! The admin dashboard: the built single-page app in `PARLEY_WEB_ADMIN_DIR`, served at `/`.
//!
//! This is the app's default service, so every explicit route (the API, health probes, docs,
//! webhook callbacks) wins over it. Paths that belong to those areas never fall back to the
//! dashboard: an unknown `/api/...` path still answers the JSON 404. For everything else, an
//! existing file is served as is, and a path without a file extension (a client-side route
//! such as `/bots/bot_123`) gets `index.html` when a browser asks for a page (`Accept:
//! text/html`), so reloading a page works; API clients still get the JSON 404 there.

use std::path::{Component, Path, PathBuf};

use actix_web::http::header::{self, ContentType};
use actix_web::http::{Method, StatusCode};
use actix_web::{HttpRequest, HttpResponse, web};

use crate::state::AppState;

/// Prefixes that belong to the server, never to the dashboard.
const RESERVED: [&str; 6] = [
    "/api/",
    "/api",
    "/healthz",
    "/readyz",
    "/docs",
    "/openapi.json",
];

fn reserved(path: &str) -> bool {
    RESERVED.iter().any(|p| {
        path == *p
            || (path.starts_with(p) && (p.ends_with('/') || path[p.len()..].starts_with('/')))
    })
}

/// The file under `root` that `path` names, refusing anything that could leave `root`.
fn resolve(root: &Path, path: &str) -> Option<PathBuf> {
    let rel = Path::new(path.trim_start_matches('/'));
    let mut out = root.to_path_buf();
    for c in rel.components() {
        match c {
            Component::Normal(part) => out.push(part),
            Component::CurDir => {}
            // `..`, a root or a drive prefix: not a dashboard file.
            _ => return None,
        }
    }
    Some(out)
}

/// Whether the client asked for a page, as browsers do when they navigate.
fn wants_html(req: &HttpRequest) -> bool {
    req.headers()
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("text/html"))
}

fn content_type(path: &Path) -> &'static str {
    match path.extension().and_then(|e| e.to_str()).unwrap_or("") {
        "html" => "text/html; charset=utf-8",
        "js" | "mjs" => "text/javascript; charset=utf-8",
        "css" => "text/css; charset=utf-8",
        "json" | "map" => "application/json",
        "svg" => "image/svg+xml",
        "png" => "image/png",
        "jpg" | "jpeg" => "image/jpeg",
        "ico" => "image/x-icon",
        "webp" => "image/webp",
        "woff2" => "font/woff2",
        "txt" => "text/plain; charset=utf-8",
        _ => "application/octet-stream",
    }
}

const NOT_BUILT: &str = r#"<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Parley: dashboard not built</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>body{font:16px/1.5 system-ui,sans-serif;max-width:40rem;margin:4rem auto;padding:0 1rem;color:#111}
code{background:#f1f1f1;padding:.1rem .3rem;border-radius:4px}</style></head>
<body><h1>The dashboard is not built</h1>
<p>Parley is running, and its API answers under <code>/api/v1</code>
(reference at <a href="/docs/">/docs/</a>), but the dashboard's files are not in
<code>PARLEY_WEB_ADMIN_DIR</code>.</p>
<p>Build it with <code>make run</code>, or with
<code>cd web-admin &amp;&amp; npm ci &amp;&amp; npm run build</code>, or point
<code>PARLEY_WEB_ADMIN_DIR</code> at a built copy.</p></body></html>"#;

/// Serves the dashboard, or the JSON 404 for paths it does not own.
pub(super) async fn serve(req: HttpRequest, state: web::Data<AppState>) -> HttpResponse {
    let path = req.path();
    let not_found = super::errors::route_not_found_response;
    if reserved(path) || !matches!(*req.method(), Method::GET | Method::HEAD) {
        return super::errors::route_not_found_response();
    }
    let root = &state.settings().web_admin_dir;
    let index = root.join("index.html");
    let Some(file) = resolve(root, path) else {
        return not_found();
    };
    let (file, is_index) = if tokio::fs::metadata(&file).await.is_ok_and(|m| m.is_file()) {
        let is_index = file == index;
        (file, is_index)
    } else if file.extension().is_none() && (path == "/" || wants_html(&req)) {
        (index, true)
    } else {
        return not_found();
    };
    match tokio::fs::read(&file).await {
        Ok(bytes) => {
            // Vite names assets by content hash, so they never change; index.html must be
            // fetched again after every build.
            let cache = if is_index {
                "no-cache"
            } else if path.starts_with("/assets/") {
                "public, max-age=31536000, immutable"
            } else {
                "public, max-age=300"
            };
            HttpResponse::Ok()
                .insert_header((header::CONTENT_TYPE, content_type(&file)))
                .insert_header((header::CACHE_CONTROL, cache))
                .insert_header(("x-content-type-options", "nosniff"))
                .body(bytes)
        }
        Err(_) if is_index => HttpResponse::build(StatusCode::NOT_FOUND)
            .content_type(ContentType::html())
            .body(NOT_BUILT),
        Err(_) => not_found(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_paths_are_reserved() {
        for p in [
            "/api",
            "/api/v1/bot/list",
            "/healthz",
            "/readyz",
            "/docs",
            "/docs/index.html",
            "/openapi.json",
        ] {
            assert!(reserved(p), "{p}");
        }
        for p in [
            "/",
            "/bots",
            "/apiary",
            "/docsite",
            "/assets/x.js",
            "/healthzone",
        ] {
            assert!(!reserved(p), "{p}");
        }
    }

    #[test]
    fn paths_cannot_leave_the_root() {
        let root = Path::new("/srv/dist");
        assert_eq!(
            resolve(root, "/assets/a.js"),
            Some(PathBuf::from("/srv/dist/assets/a.js"))
        );
        assert_eq!(resolve(root, "/../etc/passwd"), None);
        assert_eq!(resolve(root, "/assets/../../x"), None);
    }
}

//! Server-side HTML: an escape helper and the page layout every console page shares.
//! Pages are skeletons (labelled forms, empty tables); `console.js` fills them from the
//! JSON API with DOM text nodes, so stored data never reaches the page as markup.

use actix_web::http::header;
use actix_web::HttpResponse;

use super::session::Session;

/// Escapes text for HTML element content and quoted attribute values.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            _ => out.push(c),
        }
    }
    out
}

/// Content Security Policy: everything from this origin, nothing inline, no framing.
const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

/// An HTML answer with the console's security headers.
pub fn page_response(status: actix_web::http::StatusCode, html: String) -> HttpResponse {
    HttpResponse::build(status)
        .content_type("text/html; charset=utf-8")
        .insert_header((header::CONTENT_SECURITY_POLICY, CSP))
        .insert_header((header::X_FRAME_OPTIONS, "DENY"))
        .insert_header((header::X_CONTENT_TYPE_OPTIONS, "nosniff"))
        .insert_header((header::REFERRER_POLICY, "same-origin"))
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .body(html)
}

/// The navigation entries: (path, label, page key).
const NAV: &[(&str, &str, &str)] = &[
    ("/", "Dashboard", "dashboard"),
    ("/jobs", "Jobs", "jobs"),
    ("/executions", "Executions", "executions"),
    ("/executors", "Executors", "executors"),
];

fn head(title: &str, csrf: Option<&str>) -> String {
    let csrf_meta = csrf
        .map(|t| format!(r#"<meta name="csrf-token" content="{}">"#, escape(t)))
        .unwrap_or_default();
    format!(
        r#"<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
{csrf_meta}
<title>{} · cronhook</title>
<link rel="stylesheet" href="/assets/ui/console.css">
<script src="/assets/ui/console.js" defer></script>
</head>"#,
        escape(title)
    )
}

/// A logged-in page: header with navigation and logout, `body` in `<main>`.
/// `section` picks the highlighted navigation entry; `page` tells the script what to load.
pub fn layout(session: &Session, title: &str, section: &str, page: &str, body: &str) -> String {
    let nav: String = NAV
        .iter()
        .map(|(href, label, key)| {
            let current = if *key == section {
                r#" aria-current="page""#
            } else {
                ""
            };
            format!(r#"<a href="{href}"{current}>{label}</a>"#)
        })
        .collect();
    let csrf = escape(&session.csrf_token);
    format!(
        r##"{head}
<body data-page="{page}">
<a class="skip" href="#main">Skip to content</a>
<header class="top">
  <a class="brand" href="/">cronhook</a>
  <nav aria-label="Main">{nav}</nav>
  <form class="logout" method="post" action="/logout">
    <input type="hidden" name="csrf_token" value="{csrf}">
    <span class="user" title="Logged in as">{user}</span>
    <button type="submit" class="secondary">Log out</button>
  </form>
</header>
<main id="main" tabindex="-1">
<h1>{title}</h1>
<p id="flash" class="flash" role="status" aria-live="polite" hidden></p>
{body}
</main>
<dialog id="confirm-dialog" aria-labelledby="confirm-title">
  <form method="dialog">
    <h2 id="confirm-title">Confirm</h2>
    <p id="confirm-text"></p>
    <div class="actions">
      <button value="cancel" class="secondary" id="confirm-cancel">Cancel</button>
      <button value="ok" id="confirm-ok">Confirm</button>
    </div>
  </form>
</dialog>
</body>
</html>"##,
        head = head(title, Some(&session.csrf_token)),
        page = escape(page),
        user = escape(&session.username),
        title = escape(title),
    )
}

/// The login page (no session yet): its form carries the double-submit CSRF token.
pub fn login_page(csrf: &str, username: &str, error: Option<&str>) -> String {
    let error = error
        .map(|e| {
            format!(
                r#"<p class="error" id="login-error" role="alert">{}</p>"#,
                escape(e)
            )
        })
        .unwrap_or_default();
    format!(
        r#"{head}
<body data-page="login" class="login-page">
<main id="main" class="login-box">
<h1>cronhook</h1>
<form method="post" action="/login" id="login-form">
  <input type="hidden" name="csrf_token" value="{csrf}">
  {error}
  <label for="username">User name</label>
  <input id="username" name="username" autocomplete="username" required value="{username}">
  <label for="password">Password</label>
  <input id="password" name="password" type="password" autocomplete="current-password" required>
  <button type="submit" id="login-submit">Log in</button>
</form>
</main>
</body>
</html>"#,
        head = head("Log in", None),
        csrf = escape(csrf),
        username = escape(username),
    )
}

#[cfg(test)]
mod tests {
    use super::escape;

    #[test]
    fn escapes_markup_and_quotes() {
        assert_eq!(
            escape(r#"<a href="x" onclick='y'>&</a>"#),
            "&lt;a href=&quot;x&quot; onclick=&#39;y&#39;&gt;&amp;&lt;/a&gt;"
        );
    }
}

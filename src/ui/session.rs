//! Console login sessions and CSRF tokens.
//!
//! A session is a random cookie value; the database keeps only its SHA-256, so sessions
//! survive restarts and are honoured by every node of a cluster. Each session has its
//! own CSRF token: pages carry it in a `<meta>` tag and hidden form fields, and every
//! state-changing request must send it back (form field or `X-CSRF-Token` header).
//! Before login, the login form uses a double-submit cookie instead.

use actix_web::cookie::{time::Duration as CookieDuration, Cookie, SameSite};
use actix_web::{web, HttpRequest};

use crate::auth::{generate_secret, sha256_hex};
use crate::db::{self, Db};
use crate::error::{AppError, AppResult};
use crate::state::AppState;
use crate::time::now_ms;

pub const SESSION_COOKIE: &str = "cronhook_session";
pub const LOGIN_CSRF_COOKIE: &str = "cronhook_login_csrf";
pub const CSRF_HEADER: &str = "X-CSRF-Token";
pub const CSRF_FIELD: &str = "csrf_token";
/// A session lasts this long from login, however busy.
pub const SESSION_TTL_MS: i64 = 12 * 3600 * 1000;

/// The logged-in user of a request.
#[derive(Debug, Clone)]
pub struct Session {
    pub username: String,
    pub csrf_token: String,
    token_sha256: String,
}

fn db_of(req: &HttpRequest) -> AppResult<Db> {
    req.app_data::<web::Data<AppState>>()
        .map(|state| state.db.clone())
        .ok_or_else(|| AppError::Internal("app state missing".into()))
}

/// The session named by the request's cookie, if it exists and has not expired.
pub async fn from_request(req: &HttpRequest) -> AppResult<Option<Session>> {
    let Some(cookie) = req.cookie(SESSION_COOKIE) else {
        return Ok(None);
    };
    let digest = sha256_hex(cookie.value());
    let db = db_of(req)?;
    let found = db
        .run(false, move |conn| {
            db::console::find_session(conn, &digest, now_ms()).map_err(AppError::from)
        })
        .await?;
    Ok(found.map(|(row, username)| Session {
        username,
        csrf_token: row.csrf_token,
        token_sha256: row.token_sha256,
    }))
}

/// Whether a method can change state (and so needs the CSRF token).
pub fn is_unsafe_method(req: &HttpRequest) -> bool {
    !matches!(req.method().as_str(), "GET" | "HEAD" | "OPTIONS")
}

/// Constant-time comparison, so the token cannot be guessed byte by byte from timings.
pub fn tokens_match(given: &str, expected: &str) -> bool {
    given.len() == expected.len()
        && given
            .bytes()
            .zip(expected.bytes())
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0
}

/// For API requests made with a session: state-changing ones need the header.
pub fn require_csrf_header(req: &HttpRequest, session: &Session) -> AppResult<()> {
    if !is_unsafe_method(req) {
        return Ok(());
    }
    let given = req
        .headers()
        .get(CSRF_HEADER)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if tokens_match(given, &session.csrf_token) {
        Ok(())
    } else {
        Err(AppError::Forbidden(format!(
            "missing or wrong {CSRF_HEADER} header: console requests that change state must carry the page's CSRF token"
        )))
    }
}

/// For HTML form posts: the token travels as a form field.
pub fn require_csrf_field(given: Option<&str>, expected: &str) -> AppResult<()> {
    match given {
        Some(given) if tokens_match(given, expected) => Ok(()),
        _ => Err(AppError::Forbidden(format!(
            "missing or wrong {CSRF_FIELD}: reload the page and try again"
        ))),
    }
}

/// Starts a session for `user_id`; returns the cookie value (only the client keeps it).
pub async fn create(db: &Db, user_id: String) -> AppResult<String> {
    let token = generate_secret();
    let row = db::console::SessionRow {
        token_sha256: sha256_hex(&token),
        user_id,
        csrf_token: generate_secret(),
        created_at: now_ms(),
        expires_at: now_ms() + SESSION_TTL_MS,
    };
    db.run(true, move |conn| {
        db::console::delete_expired_sessions(conn, row.created_at)?;
        db::console::insert_session(conn, &row).map_err(AppError::from)
    })
    .await?;
    Ok(token)
}

pub async fn destroy(db: &Db, session: &Session) -> AppResult<()> {
    let digest = session.token_sha256.clone();
    db.run(true, move |conn| {
        db::console::delete_session(conn, &digest).map_err(AppError::from)
    })
    .await
}

/// `Secure` when the node is reached over HTTPS (its public URL says so).
fn secure(req: &HttpRequest) -> bool {
    req.app_data::<web::Data<AppState>>()
        .and_then(|s| s.settings.public_url.clone())
        .is_some_and(|url| url.starts_with("https://"))
        || req.connection_info().scheme() == "https"
}

fn base_cookie<'a>(req: &HttpRequest, name: &'a str, value: String) -> Cookie<'a> {
    Cookie::build(name, value)
        .path("/")
        .http_only(true)
        .same_site(SameSite::Strict)
        .secure(secure(req))
        .finish()
}

pub fn session_cookie(req: &HttpRequest, token: String) -> Cookie<'static> {
    let mut cookie = base_cookie(req, SESSION_COOKIE, token);
    cookie.set_max_age(CookieDuration::milliseconds(SESSION_TTL_MS));
    cookie
}

pub fn login_csrf_cookie(req: &HttpRequest, token: String) -> Cookie<'static> {
    let mut cookie = base_cookie(req, LOGIN_CSRF_COOKIE, token);
    cookie.set_max_age(CookieDuration::hours(1));
    cookie
}

/// A cookie that tells the browser to forget `name`.
pub fn expired_cookie(req: &HttpRequest, name: &'static str) -> Cookie<'static> {
    let mut cookie = base_cookie(req, name, String::new());
    cookie.make_removal();
    cookie
}

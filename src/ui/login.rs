//! `/login` and `/logout`: password check (argon2), session start and end, and the
//! per user-name-and-address rate limit on failed logins.

use actix_web::http::{header, StatusCode};
use actix_web::{web, HttpRequest, HttpResponse};
use serde::Deserialize;

use super::html::{login_page, page_response};
use super::session::{self, require_csrf_field, LOGIN_CSRF_COOKIE, SESSION_COOKIE};
use crate::auth::{burn_password_check, generate_secret, verify_password};
use crate::db;
use crate::error::AppResult;
use crate::routes::State;
use crate::time::now_ms;

/// Failed logins allowed per user name and client address within the window.
pub const MAX_FAILURES: usize = 5;
pub const FAILURE_WINDOW_MS: i64 = 15 * 60 * 1000;

fn see_other(location: &str) -> HttpResponse {
    HttpResponse::SeeOther()
        .insert_header((header::LOCATION, location))
        .finish()
}

/// A login form with a fresh double-submit token (cookie + hidden field).
fn login_form(
    req: &HttpRequest,
    status: StatusCode,
    username: &str,
    error: Option<&str>,
) -> HttpResponse {
    let token = generate_secret();
    let mut response = page_response(status, login_page(&token, username, error));
    let _ = response.add_cookie(&session::login_csrf_cookie(req, token));
    response
}

pub async fn show(req: HttpRequest) -> AppResult<HttpResponse> {
    if session::from_request(&req).await?.is_some() {
        return Ok(see_other("/"));
    }
    Ok(login_form(&req, StatusCode::OK, "", None))
}

#[derive(Debug, Deserialize)]
pub struct LoginForm {
    #[serde(default)]
    username: String,
    #[serde(default)]
    password: String,
    csrf_token: Option<String>,
}

enum Outcome {
    LoggedIn {
        user_id: String,
    },
    /// `known`: the user name exists (only then is it logged: an unknown "name" may be
    /// a password typed into the wrong field).
    Refused {
        known: bool,
    },
    Limited {
        retry_after_s: i64,
    },
}

pub async fn submit(
    req: HttpRequest,
    state: State,
    form: web::Form<LoginForm>,
) -> AppResult<HttpResponse> {
    let form = form.into_inner();
    let expected = req
        .cookie(LOGIN_CSRF_COOKIE)
        .map(|c| c.value().to_string())
        .unwrap_or_default();
    // A stale or forged form: refused (403), with a fresh form to try again.
    if expected.is_empty() || require_csrf_field(form.csrf_token.as_deref(), &expected).is_err() {
        return Ok(login_form(
            &req,
            StatusCode::FORBIDDEN,
            form.username.trim(),
            Some("The login form expired or did not come from this site. Please try again."),
        ));
    }
    let username = form.username.trim().to_string();
    // The peer address, not X-Forwarded-For: a header the client writes cannot buy retries.
    let address = req
        .peer_addr()
        .map(|a| a.ip().to_string())
        .unwrap_or_default();
    let key = format!("{username}|{address}");
    let password = form.password;
    let outcome = check_login(&state, key, username, password).await?;
    let username = form.username.trim();
    match outcome {
        Outcome::LoggedIn { user_id } => {
            let token = session::create(&state.db, user_id).await?;
            log::info!("console: {username:?} logged in");
            let mut response = see_other("/");
            let _ = response.add_cookie(&session::session_cookie(&req, token));
            let _ = response.add_cookie(&session::expired_cookie(&req, LOGIN_CSRF_COOKIE));
            Ok(response)
        }
        Outcome::Refused { known } => {
            if known {
                log::warn!("console: failed login for {username:?}");
            } else {
                log::warn!("console: failed login for an unknown user name");
            }
            Ok(login_form(
                &req,
                StatusCode::UNAUTHORIZED,
                username,
                Some("Wrong user name or password."),
            ))
        }
        Outcome::Limited { retry_after_s } => {
            log::warn!(
                "console: login rate limited ({MAX_FAILURES} failures within {} minutes)",
                FAILURE_WINDOW_MS / 60_000
            );
            let mut response = login_form(
                &req,
                StatusCode::TOO_MANY_REQUESTS,
                username,
                Some(&format!(
                    "Too many failed logins. Try again in {} minute(s).",
                    (retry_after_s + 59) / 60
                )),
            );
            response.headers_mut().insert(
                header::RETRY_AFTER,
                header::HeaderValue::from(retry_after_s),
            );
            Ok(response)
        }
    }
}

/// The rate limit, then the password. The argon2 check runs on the blocking pool but
/// outside any database connection, so logins never hold up the scheduler's writes.
async fn check_login(
    state: &State,
    key: String,
    username: String,
    password: String,
) -> AppResult<Outcome> {
    let now = now_ms();
    let since = now - FAILURE_WINDOW_MS;
    let (failures, user) = {
        let key = key.clone();
        state
            .db
            .run(false, move |conn| -> AppResult<_> {
                let failures = db::console::login_failures_since(conn, &key, since)?;
                let user = db::console::find_user_by_name(conn, &username)?;
                Ok((failures, user))
            })
            .await?
    };
    if failures.len() >= MAX_FAILURES {
        let oldest = failures.first().copied().unwrap_or(now);
        let retry_after_s = ((oldest + FAILURE_WINDOW_MS - now) / 1000).max(1);
        return Ok(Outcome::Limited { retry_after_s });
    }
    let known = user.is_some();
    let user = web::block(move || match user {
        Some(user) if verify_password(&password, &user.password_hash) => Some(user),
        Some(_) => None,
        None => {
            burn_password_check(&password);
            None
        }
    })
    .await?;
    state
        .db
        .run(true, move |conn| -> AppResult<Outcome> {
            match user {
                Some(user) => {
                    db::console::clear_login_failures(conn, &key, since)?;
                    Ok(Outcome::LoggedIn { user_id: user.id })
                }
                None => {
                    db::console::record_login_failure(conn, &key, now)?;
                    Ok(Outcome::Refused { known })
                }
            }
        })
        .await
}

#[derive(Debug, Deserialize)]
pub struct LogoutForm {
    csrf_token: Option<String>,
}

pub async fn logout(
    req: HttpRequest,
    state: State,
    form: web::Form<LogoutForm>,
) -> AppResult<HttpResponse> {
    let Some(current) = session::from_request(&req).await? else {
        return Ok(see_other("/login"));
    };
    require_csrf_field(form.csrf_token.as_deref(), &current.csrf_token)?;
    session::destroy(&state.db, &current).await?;
    let mut response = see_other("/login");
    let _ = response.add_cookie(&session::expired_cookie(&req, SESSION_COOKIE));
    Ok(response)
}

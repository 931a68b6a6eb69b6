//! Who may call what: admin endpoints take a bearer token or a web console session
//! (with its CSRF token on anything that changes state); executor endpoints
//! (write-back, heartbeat) are HMAC-signed with the signing secret. Console users'
//! passwords are stored as argon2 hashes.

use std::collections::HashSet;
use std::sync::{Arc, OnceLock, RwLock};

use actix_web::dev::Payload;
use actix_web::{web, FromRequest, HttpRequest};
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;
use futures_util::future::LocalBoxFuture;
use rand::{Rng, RngCore};
use sha2::{Digest, Sha256};

use crate::db::{self, Db, DbError};
use crate::error::AppError;
use crate::time::now_ms;

/// Key under which a generated signing secret is stored in `settings`.
const SIGNING_SECRET_KEY: &str = "signing_secret";

pub fn sha256_hex(value: &str) -> String {
    hex::encode(Sha256::digest(value.as_bytes()))
}

/// A random token: 32 bytes, hex.
pub fn generate_secret() -> String {
    let mut bytes = [0u8; 32];
    rand::thread_rng().fill_bytes(&mut bytes);
    hex::encode(bytes)
}

/// Accepted admin token digests and the executor signing secret.
#[derive(Clone)]
pub struct AuthState {
    admin_token_digests: Arc<RwLock<HashSet<String>>>,
    signing_secret: Arc<Vec<u8>>,
}

impl std::fmt::Debug for AuthState {
    // Never print secrets, not even in debug output.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AuthState { .. }")
    }
}

/// What start-up generated and must show the operator once.
#[derive(Debug, Default)]
pub struct GeneratedSecrets {
    pub admin_token: Option<String>,
    pub signing_secret: Option<String>,
    /// Password of the console's `admin` user, generated at first start.
    pub admin_password: Option<String>,
}

impl AuthState {
    /// Loads the token digests and the signing secret; on first start with nothing
    /// configured, generates them (the caller prints them once).
    pub fn initialise(
        db: &Db,
        configured_token: Option<&str>,
        configured_secret: Option<&str>,
    ) -> Result<(AuthState, GeneratedSecrets), DbError> {
        let mut conn = db.write()?;
        let mut generated = GeneratedSecrets::default();
        let mut digests: HashSet<String> = db::schema::api_tokens::table
            .select(db::schema::api_tokens::token_sha256)
            .load::<String>(&mut *conn)
            .map_err(DbError::Query)?
            .into_iter()
            .collect();
        match configured_token {
            Some(token) => {
                digests.insert(sha256_hex(token));
            }
            None if digests.is_empty() => {
                let token = generate_secret();
                let digest = sha256_hex(&token);
                db::tokens::insert(
                    &mut conn,
                    &uuid::Uuid::new_v4().to_string(),
                    "generated at first start",
                    &digest,
                    now_ms(),
                )?;
                digests.insert(digest);
                generated.admin_token = Some(token);
            }
            None => {}
        }
        let secret = match configured_secret {
            Some(secret) => secret.to_string(),
            None => {
                let candidate = generate_secret();
                let stored =
                    db::settings::get_or_insert(&mut conn, SIGNING_SECRET_KEY, &candidate)?;
                if stored == candidate {
                    generated.signing_secret = Some(candidate);
                }
                stored
            }
        };
        let state = AuthState {
            admin_token_digests: Arc::new(RwLock::new(digests)),
            signing_secret: Arc::new(secret.into_bytes()),
        };
        Ok((state, generated))
    }

    pub fn signing_secret(&self) -> &[u8] {
        &self.signing_secret
    }

    fn accepts_token(&self, token: &str) -> bool {
        let digest = sha256_hex(token);
        self.admin_token_digests
            .read()
            .map(|set| set.contains(&digest))
            .unwrap_or(false)
    }

    /// Checks a signed executor request over its raw body.
    pub fn verify_signature(&self, req: &HttpRequest, body: &[u8]) -> Result<(), AppError> {
        let header = req
            .headers()
            .get(cronhook_sdk::protocol::SIGNATURE_HEADER)
            .and_then(|h| h.to_str().ok());
        cronhook_sdk::protocol::verify(
            &self.signing_secret,
            header,
            body,
            chrono::Utc::now().timestamp(),
        )
        .map_err(|e| AppError::Unauthorized(e.to_string()))
    }
}

use diesel::prelude::*;

/// Name of the console user created at first start.
pub const CONSOLE_ADMIN: &str = "admin";

/// An argon2id PHC string for `password`, with a fresh random salt.
pub fn hash_password(password: &str) -> Result<String, AppError> {
    let mut salt = [0u8; 16];
    rand::thread_rng().fill_bytes(&mut salt);
    let salt = SaltString::encode_b64(&salt).map_err(|e| AppError::Internal(e.to_string()))?;
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|hash| hash.to_string())
        .map_err(|e| AppError::Internal(format!("password hashing: {e}")))
}

/// Whether `password` matches the stored PHC string. A malformed hash matches nothing.
pub fn verify_password(password: &str, phc: &str) -> bool {
    PasswordHash::new(phc)
        .map(|hash| {
            Argon2::default()
                .verify_password(password.as_bytes(), &hash)
                .is_ok()
        })
        .unwrap_or(false)
}

/// Checks a password for a user that does not exist, so an unknown name takes as long
/// to refuse as a wrong password (no user enumeration by timing).
pub fn burn_password_check(password: &str) {
    static DUMMY: OnceLock<String> = OnceLock::new();
    let phc = DUMMY.get_or_init(|| hash_password("not a real password").unwrap_or_default());
    let _ = verify_password(password, phc);
}

/// A password for the first `admin`: 20 letters and digits.
fn generate_password() -> String {
    rand::thread_rng()
        .sample_iter(&rand::distributions::Alphanumeric)
        .take(20)
        .map(char::from)
        .collect()
}

/// Makes sure the console can be logged into: creates `admin` on first start (with
/// `configured` or a generated password, returned so the caller prints it once), and
/// when a password is configured, makes the stored one match it.
pub fn ensure_console_admin(db: &Db, configured: Option<&str>) -> Result<Option<String>, AppError> {
    let mut conn = db.write()?;
    let now = now_ms();
    match db::console::find_user_by_name(&mut conn, CONSOLE_ADMIN)? {
        Some(user) => {
            if let Some(password) = configured {
                if !verify_password(password, &user.password_hash) {
                    db::console::set_password(&mut conn, &user.id, &hash_password(password)?, now)?;
                }
            }
            Ok(None)
        }
        None if db::console::count_users(&mut conn)? > 0 && configured.is_none() => Ok(None),
        None => {
            let generated = configured.is_none().then(generate_password);
            let password = configured.or(generated.as_deref()).unwrap_or_default();
            let inserted = db::console::insert_user(
                &mut conn,
                &db::console::UserRow {
                    id: uuid::Uuid::now_v7().to_string(),
                    username: CONSOLE_ADMIN.into(),
                    password_hash: hash_password(password)?,
                    created_at: now,
                    updated_at: now,
                },
            );
            match inserted {
                Ok(()) => Ok(generated),
                // Another node starting at the same moment created it (and shows its password).
                Err(diesel::result::Error::DatabaseError(
                    diesel::result::DatabaseErrorKind::UniqueViolation,
                    _,
                )) => Ok(None),
                Err(e) => Err(e.into()),
            }
        }
    }
}

/// Extractor that admits requests with a valid admin bearer token, or with a console
/// session cookie — plus, for anything but GET/HEAD, the session's CSRF token in the
/// `X-CSRF-Token` header.
pub struct Admin;

impl FromRequest for Admin {
    type Error = AppError;
    type Future = LocalBoxFuture<'static, Result<Admin, AppError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let req = req.clone();
        Box::pin(async move { check_admin(&req).await })
    }
}

async fn check_admin(req: &HttpRequest) -> Result<Admin, AppError> {
    if req
        .headers()
        .contains_key(actix_web::http::header::AUTHORIZATION)
    {
        return check_bearer(req);
    }
    match crate::ui::session::from_request(req).await? {
        Some(session) => {
            crate::ui::session::require_csrf_header(req, &session)?;
            Ok(Admin)
        }
        None => check_bearer(req),
    }
}

fn check_bearer(req: &HttpRequest) -> Result<Admin, AppError> {
    let auth = req
        .app_data::<web::Data<AuthState>>()
        .ok_or_else(|| AppError::Internal("auth state missing".into()))?;
    let header = req
        .headers()
        .get(actix_web::http::header::AUTHORIZATION)
        .ok_or_else(|| {
            AppError::Unauthorized("missing Authorization: Bearer <admin token>".into())
        })?;
    let token = header
        .to_str()
        .ok()
        .and_then(|h| h.strip_prefix("Bearer "))
        .map(str::trim)
        .ok_or_else(|| {
            AppError::Unauthorized("Authorization header must be `Bearer <admin token>`".into())
        })?;
    if auth.accepts_token(token) {
        Ok(Admin)
    } else {
        Err(AppError::Unauthorized("admin token not recognised".into()))
    }
}

//! Who may call what: admin endpoints take a bearer token; executor endpoints
//! (write-back, heartbeat) are HMAC-signed with the signing secret.

use std::collections::HashSet;
use std::future::{ready, Ready};
use std::sync::{Arc, RwLock};

use actix_web::dev::Payload;
use actix_web::{web, FromRequest, HttpRequest};
use rand::RngCore;
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

/// Extractor that admits only requests with a valid admin bearer token.
pub struct Admin;

impl FromRequest for Admin {
    type Error = AppError;
    type Future = Ready<Result<Admin, AppError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        ready(check_admin(req))
    }
}

fn check_admin(req: &HttpRequest) -> Result<Admin, AppError> {
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

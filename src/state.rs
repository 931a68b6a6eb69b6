//! What every request handler can reach.

use crate::auth::AuthState;
use crate::configuration::Settings;
use crate::db::Db;
use crate::scheduler::SchedulerHandle;

#[derive(Clone)]
pub struct AppState {
    pub db: Db,
    pub settings: Settings,
    pub scheduler: SchedulerHandle,
}

impl AppState {
    pub fn auth_data(auth: AuthState) -> actix_web::web::Data<AuthState> {
        actix_web::web::Data::new(auth)
    }
}

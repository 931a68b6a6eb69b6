//! `/api/v1/cron/preview`: the next fire times of an expression in a zone, and its explanation.

use actix_web::{web, HttpResponse};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::auth::Admin;
use crate::domain::trigger::parse_time_zone;
use crate::error::{AppError, AppResult, Problem};
use crate::schedule::cron::CronExpr;

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct PreviewQuery {
    expression: String,
    time_zone: Option<String>,
    after: Option<DateTime<Utc>>,
    count: Option<usize>,
}

#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Preview {
    pub expression: String,
    pub time_zone: String,
    pub explanation: String,
    pub next: Vec<String>,
}

#[utoipa::path(
    get,
    path = "/api/v1/cron/preview",
    tag = "cron",
    operation_id = "preview_cron",
    summary = "Next fire times of a Quartz cron expression, and its explanation",
    params(PreviewQuery),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The preview", body = Preview),
        (status = 400, description = "Malformed input; `detail` names the field", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "Missing or wrong bearer token", body = Problem, content_type = "application/problem+json")
    )
)]
pub async fn preview(_: Admin, query: web::Query<PreviewQuery>) -> AppResult<HttpResponse> {
    let query = query.into_inner();
    let expr =
        CronExpr::parse(&query.expression).map_err(|e| AppError::invalid("expression", e))?;
    let zone_name = query.time_zone.unwrap_or_else(|| "UTC".into());
    let zone = parse_time_zone("time_zone", &zone_name)?;
    let count = query.count.unwrap_or(5);
    if !(1..=100).contains(&count) {
        return Err(AppError::invalid("count", "must be between 1 and 100"));
    }
    let next = next_times(&expr, zone, query.after.unwrap_or_else(Utc::now), count);
    Ok(HttpResponse::Ok().json(Preview {
        expression: expr.source().to_string(),
        time_zone: zone_name,
        explanation: expr.explain(),
        next: next
            .iter()
            .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
            .collect(),
    }))
}

/// Up to `count` instants strictly after `after`.
pub fn next_times(
    expr: &CronExpr,
    zone: chrono_tz::Tz,
    after: DateTime<Utc>,
    count: usize,
) -> Vec<DateTime<Utc>> {
    std::iter::successors(expr.next_after(after, zone), |t| expr.next_after(*t, zone))
        .take(count)
        .collect()
}

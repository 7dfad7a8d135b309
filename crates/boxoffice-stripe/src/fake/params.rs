//! Stripe's parameter rules, shared by the endpoints: form and query decoding, refusing
//! unknown parameters (a request the double cannot interpret is more likely a client bug
//! than something to ignore), required parameters, amounts, and cursor pagination of
//! newest-first lists.

use axum::body::Bytes;
use serde_json::{Value, json};

use super::api::Outcome;
use crate::form::Form;

pub(super) fn form_body(body: &Bytes) -> Result<Form, String> {
    Form::decode(body).map_err(|e| format!("Invalid request body: {e}"))
}

pub(super) fn query_params(query: Option<String>) -> Result<Form, String> {
    Form::decode(query.unwrap_or_default().as_bytes()).map_err(|e| format!("Invalid query string: {e}"))
}

/// Refuses parameters the endpoint does not know, as Stripe does.
pub(super) fn check_params(params: &Form, allowed: &[&str]) -> Result<(), Outcome> {
    match params.top_level_keys().find(|key| !allowed.contains(key)) {
        Some(unknown) => Err(Outcome::invalid(
            format!("Received unknown parameter: {unknown}"),
            "parameter_unknown",
            Some(unknown),
        )),
        None => Ok(()),
    }
}

pub(super) fn required<'a>(params: &'a Form, key: &str) -> Result<&'a str, Outcome> {
    params.get(key).filter(|v| !v.is_empty()).ok_or_else(|| {
        Outcome::invalid(
            format!("Missing required param: {key}."),
            "parameter_missing",
            Some(key),
        )
    })
}

pub(super) fn parse_amount(value: &str, param: &str) -> Result<i64, Outcome> {
    match value.parse::<i64>() {
        Ok(amount) if (1..=99_999_999).contains(&amount) => Ok(amount),
        Ok(_) => Err(Outcome::invalid(
            "Amount must be between 1 and 99999999.",
            "amount_too_small",
            Some(param),
        )),
        Err(_) => Err(Outcome::invalid(
            format!("Invalid integer: {value}"),
            "parameter_invalid_integer",
            Some(param),
        )),
    }
}

/// Stripe's cursor pagination over a newest-first list.
pub(super) fn paginate(newest_first: Vec<Value>, params: &Form, url: &str) -> Outcome {
    let limit = match params.get("limit").map(str::parse::<usize>) {
        None => 10,
        Some(Ok(limit)) if (1..=100).contains(&limit) => limit,
        Some(_) => {
            return Outcome::invalid(
                "Invalid limit: must be an integer between 1 and 100",
                "parameter_invalid_integer",
                Some("limit"),
            );
        }
    };
    let start = match params.get("starting_after") {
        None => 0,
        Some(after) => match newest_first.iter().position(|item| item["id"].as_str() == Some(after)) {
            Some(index) => index + 1,
            None => return Outcome::missing("object", after, "starting_after"),
        },
    };
    let rest = newest_first.len().saturating_sub(start);
    let data: Vec<Value> = newest_first.into_iter().skip(start).take(limit).collect();
    Outcome::ok(json!({ "object": "list", "data": data, "has_more": rest > limit, "url": url }))
}

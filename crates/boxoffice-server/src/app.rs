//! The whole application's router: the JSON API (`http`) and the pages (`pages`) side by
//! side, the answers for requests that match no route, and the layers every request
//! passes through.
//!
//! Assembled here, above both, so that neither module has to know the other: the pages
//! build on the API's plumbing (its error type, extractors and middleware), and the API
//! knows nothing of pages.

use axum::Router;
use axum::handler::Handler;
use axum::response::{IntoResponse, Response};

use crate::http::api_error::ApiError;
use crate::state::AppState;
use crate::{http, pages};

/// The API, the pages, the fallbacks and the request layers around them all.
pub fn router(state: AppState) -> Router {
    // An address that matches no route (or no method of one) is answered with the API's
    // JSON error, or the friendly error page for a browser that asked for a page: the
    // pages' error layer wraps these fallbacks, not the API's routes.
    let error_pages = || axum::middleware::from_fn_with_state(state.clone(), pages::html_errors);
    let app = Router::new()
        .merge(http::router(state.clone()))
        .merge(pages::router(state.clone()))
        .fallback(no_route.layer(error_pages()))
        .method_not_allowed_fallback(no_method.layer(error_pages()));
    http::with_request_layers(app, state)
}

async fn no_route() -> Response {
    ApiError::not_found("route").into_response()
}

async fn no_method() -> Response {
    ApiError::method_not_allowed().into_response()
}

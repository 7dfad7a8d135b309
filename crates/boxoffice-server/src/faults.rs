//! Fault injection for tests of what boxoffice does when a handler panics (a bug we have
//! not written yet): the next request panics inside the handler stack, inside the layer
//! that catches panics.
//!
//! Compiled in only with the cargo feature `faults`, which no release build enables; this
//! crate's tests turn it on through its `[dev-dependencies]` (and it turns on
//! boxoffice-core's `faults`, see `boxoffice_core::faults`). Without the feature
//! [`InjectFaults::inject_faults`] adds nothing to the router. With it, a request costs
//! one relaxed atomic load.

use axum::Router;

/// Adds the panic injection to a router.
pub trait InjectFaults {
    /// With the `faults` feature, a middleware that panics when a test armed
    /// `panic_next_request`; without it, the router unchanged.
    fn inject_faults(self) -> Self;
}

impl<S: Clone + Send + Sync + 'static> InjectFaults for Router<S> {
    fn inject_faults(self) -> Self {
        #[cfg(feature = "faults")]
        let router = self.layer(axum::middleware::from_fn(armed::inject));
        #[cfg(not(feature = "faults"))]
        let router = self;
        router
    }
}

#[cfg(feature = "faults")]
pub use armed::panic_next_request;

/// The middleware and its switch, present only with the `faults` feature.
#[cfg(feature = "faults")]
mod armed {
    use std::sync::atomic::{AtomicBool, Ordering};

    use axum::extract::Request;
    use axum::middleware::Next;
    use axum::response::Response;

    static PANIC_NEXT_REQUEST: AtomicBool = AtomicBool::new(false);

    /// The next request to any route panics inside its handler stack, as a bug would.
    pub fn panic_next_request() {
        PANIC_NEXT_REQUEST.store(true, Ordering::SeqCst);
    }

    pub(super) async fn inject(request: Request, next: Next) -> Response {
        if PANIC_NEXT_REQUEST.load(Ordering::Relaxed) && PANIC_NEXT_REQUEST.swap(false, Ordering::SeqCst) {
            panic!(
                "injected fault: a handler panicked while serving {}",
                request.uri().path()
            );
        }
        next.run(request).await
    }
}

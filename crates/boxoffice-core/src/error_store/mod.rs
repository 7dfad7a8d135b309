//! The pure core of the error store (SPEC §7): what happens to an error between its arrival
//! (the JSON API, a Sentry envelope, the server's own failures) and the database.
//!
//! The order is fixed: [scrub](scrub) first, then [group](grouping). Scrubbing comes first so
//! that personal data and secrets never reach anything that lasts or travels — the stored
//! payload, the group title, the alert, the copy forwarded to Sentry — and so that grouping
//! sees the same text whether or not a client scrubbed before sending. Grouping then turns
//! the scrubbed event into a versioned fingerprint and a title, so occurrences of one bug
//! count in one group.
//!
//! Everything here is a pure function over text and JSON: no I/O, no clock, no database.
//! The input is hostile (anyone holding a public DSN key can send it), so nothing here
//! panics, recurses without bound or does more than linear work.

pub mod alerts;
pub mod batch;
pub mod grouping;
pub mod reports;
pub mod scrub;
pub mod sentry_event;

pub use grouping::{Fingerprint, Frame, GROUPING_VERSION, fingerprint, normalize_message, title};
pub use scrub::{scrub_text, scrub_value};
pub use sentry_event::prepare_sentry_event;

/// The longest message, error type or stack trace kept, in bytes, whatever the source
/// (the JSON API, a Sentry event, boxoffice's own failures); the rest is cut.
pub const MAX_ERROR_TEXT: usize = 16 * 1024;

/// `text` cut to [`MAX_ERROR_TEXT`] bytes at a character boundary, saying so.
pub fn cut_text(text: &str) -> String {
    if text.len() <= MAX_ERROR_TEXT {
        return text.to_owned();
    }
    let mut end = MAX_ERROR_TEXT;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}… [cut]", text.get(..end).unwrap_or_default())
}

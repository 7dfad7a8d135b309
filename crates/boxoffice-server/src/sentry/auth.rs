//! The Sentry public key of a request, and the DSN that carries it.
//!
//! SDKs authenticate with the public key of their DSN only (no secret since protocol 7): the
//! server SDKs in `X-Sentry-Auth: Sentry sentry_key=…, sentry_version=7, sentry_client=…`,
//! the browser SDK in the query string (`?sentry_version=7&sentry_key=…`) so that its POST
//! stays a CORS "simple request" without a preflight. The key is public; it identifies the
//! project and is checked against the project id in the path, nothing more.

/// Longest public key accepted; boxoffice's keys and Sentry's (32 hex digits) are far shorter.
const MAX_KEY_LEN: usize = 128;

/// An organization's DSN, `http://<public_key>@<host>/<project_id>` as SPEC §7 has it;
/// `host` may carry a port.
pub fn dsn(public_key: &str, host: &str, project_id: u64) -> String {
    format!("http://{public_key}@{host}/{project_id}")
}

/// The parts of a DSN that authenticate an envelope.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParsedDsn {
    /// The public key (the URL's user part).
    pub public_key: String,
    /// The numeric project id (the URL's last path segment).
    pub project_id: u64,
}

/// Parses a DSN such as an envelope header's `dsn`, which Sentry accepts as authentication
/// in place of `X-Sentry-Auth`. A legacy secret (`key:secret@`) is ignored. `None` when the
/// DSN is not of the form `scheme://key[:secret]@host[/path]/project_id[/]`.
pub fn parse_dsn(dsn: &str) -> Option<ParsedDsn> {
    let (scheme, rest) = dsn.trim().split_once("://")?;
    if scheme.is_empty() || !scheme.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'+') {
        return None;
    }
    let (userinfo, host_and_path) = rest.split_once('@')?;
    let public_key = userinfo.split_once(':').map_or(userinfo, |(key, _secret)| key);
    let (host, path) = host_and_path.split_once('/')?;
    if host.is_empty() {
        return None;
    }
    let project = path.trim_end_matches('/').rsplit('/').next()?;
    if project.is_empty() || !project.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some(ParsedDsn {
        public_key: valid_key(public_key)?.to_owned(),
        project_id: project.parse().ok()?,
    })
}

/// The `sentry_key` of a request: from the auth header, else from the query string.
///
/// `auth_header` is `X-Sentry-Auth`, or, when a request has none, a legacy
/// `Authorization: Sentry …` header: the value is `Sentry ` (optional, any case) followed by
/// comma-separated `name=value` pairs. A header without a usable key falls back to the
/// query string, whose pairs are `&`-separated. Keys must be 1 to 128 ASCII letters or
/// digits; anything else is no key, so a hostile value never reaches a lookup or a log.
pub fn sentry_key(auth_header: Option<&str>, query: Option<&str>) -> Option<String> {
    auth_header
        .and_then(key_from_header)
        .or_else(|| query.and_then(key_from_query))
        .map(str::to_owned)
}

fn key_from_header(value: &str) -> Option<&str> {
    let value = value.trim();
    let pairs = match value.get(..7) {
        Some(scheme) if scheme.eq_ignore_ascii_case("sentry ") => &value[7..],
        _ => value,
    };
    pairs.split(',').find_map(|pair| {
        let (name, value) = pair.split_once('=')?;
        if name.trim() != "sentry_key" {
            return None;
        }
        // Some old clients quote values.
        let value = value.trim();
        let value = value
            .strip_prefix('"')
            .and_then(|v| v.strip_suffix('"'))
            .unwrap_or(value);
        valid_key(value)
    })
}

fn key_from_query(query: &str) -> Option<&str> {
    let query = query.strip_prefix('?').unwrap_or(query);
    query.split('&').find_map(|pair| match pair.split_once('=') {
        // A valid key has no character that needs percent-decoding.
        Some(("sentry_key", value)) => valid_key(value),
        _ => None,
    })
}

fn valid_key(key: &str) -> Option<&str> {
    (!key.is_empty() && key.len() <= MAX_KEY_LEN && key.bytes().all(|b| b.is_ascii_alphanumeric())).then_some(key)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn key_from_the_official_sdks_headers() {
        // Python and Rust, verbatim from the captured requests.
        let python = "Sentry sentry_key=abc123publickey, sentry_version=7, sentry_client=sentry.python/2.75.0";
        assert_eq!(sentry_key(Some(python), None).as_deref(), Some("abc123publickey"));
        let rust = "Sentry sentry_key=rustkey, sentry_version=7, sentry_timestamp=1795777229.01977, \
                    sentry_client=sentry.rust/0.49.5";
        assert_eq!(sentry_key(Some(rust), None).as_deref(), Some("rustkey"));
    }

    #[test]
    fn key_from_the_browser_sdks_query_string() {
        let query = "sentry_version=7&sentry_key=browserkey&sentry_client=sentry.javascript.browser%2F11.12.0";
        assert_eq!(sentry_key(None, Some(query)).as_deref(), Some("browserkey"));
        assert_eq!(
            sentry_key(None, Some(&format!("?{query}"))).as_deref(),
            Some("browserkey")
        );
    }

    #[test]
    fn header_variants() {
        for header in [
            "sentry sentry_key=k1, sentry_version=7",
            "SENTRY sentry_version=7,sentry_key=k1",
            "sentry_key=k1",
            "  Sentry  sentry_version=7 ,  sentry_key = k1  ",
            "Sentry sentry_key=\"k1\", sentry_version=7",
            "Sentry sentry_version=7, sentry_client=x, sentry_key=k1, sentry_secret=s",
        ] {
            assert_eq!(sentry_key(Some(header), None).as_deref(), Some("k1"), "{header}");
        }
    }

    #[test]
    fn header_wins_and_falls_back_to_the_query() {
        assert_eq!(
            sentry_key(Some("Sentry sentry_key=h"), Some("sentry_key=q")).as_deref(),
            Some("h")
        );
        assert_eq!(
            sentry_key(Some("Sentry sentry_version=7"), Some("sentry_key=q")).as_deref(),
            Some("q")
        );
        assert_eq!(
            sentry_key(Some("Bearer abc"), Some("sentry_key=q")).as_deref(),
            Some("q")
        );
    }

    #[test]
    fn no_key_or_an_invalid_one() {
        let long = "a".repeat(MAX_KEY_LEN + 1);
        let long_header = format!("Sentry sentry_key={long}");
        let long_query = format!("sentry_key={long}");
        for (header, query) in [
            (None, None),
            (Some(""), Some("")),
            (Some("Sentry"), Some("?")),
            (Some("Bearer sentry_key=abc"), None),
            (Some("Sentry sentry_key="), Some("sentry_key=")),
            (Some("Sentry sentry_key=a b"), Some("sentry_key=a%20b")),
            (Some("Sentry sentry_key=ab'c"), Some("sentry_key=ab\"c")),
            (Some("Sentry xsentry_key=abc"), Some("xsentry_key=abc&sentry_keyx=abc")),
            (Some("Sentry sentry_key=ключ"), Some("sentry_key=ключ")),
            (Some(long_header.as_str()), Some(long_query.as_str())),
        ] {
            assert_eq!(sentry_key(header, query), None, "{header:?} {query:?}");
        }
        let max = "a".repeat(MAX_KEY_LEN);
        assert_eq!(sentry_key(None, Some(&format!("sentry_key={max}"))), Some(max));
    }

    #[test]
    fn multibyte_header_prefixes_do_not_panic() {
        for header in ["é", "Sentré x", "日本語のヘッダ=1", "Sentry\u{0}sentry_key=x"] {
            let _ = sentry_key(Some(header), Some(header));
        }
    }

    #[test]
    fn dsn_round_trip() {
        let dsn = dsn("abc123publickey", "127.0.0.1:18933", 42);
        assert_eq!(dsn, "http://abc123publickey@127.0.0.1:18933/42");
        assert_eq!(
            parse_dsn(&dsn),
            Some(ParsedDsn {
                public_key: "abc123publickey".into(),
                project_id: 42
            })
        );
    }

    #[test]
    fn dsn_variants() {
        let parsed = |s: &str| parse_dsn(s).map(|d| (d.public_key, d.project_id));
        assert_eq!(parsed("https://k@o1.ingest.sentry.io/7/"), Some(("k".into(), 7)));
        assert_eq!(
            parsed("https://k:secret@sentry.example/prefix/path/9"),
            Some(("k".into(), 9))
        );
        assert_eq!(
            parsed("https://e12d836b15bb49d7bbf99e64295d995b:@sentry.io/42").map(|p| p.1),
            Some(42)
        );
        for bad in [
            "",
            "k@host/1",
            "http://host/1",
            "http://k@host",
            "http://k@/1",
            "http://k@host/",
            "http://k@host/abc",
            "http://k@host/99999999999999999999999",
            "http://@host/1",
            "ht tp://k@host/1",
        ] {
            assert_eq!(parse_dsn(bad), None, "{bad}");
        }
    }
}

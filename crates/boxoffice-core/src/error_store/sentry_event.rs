//! Sentry events (SPEC §7): the payload of one `event` item of an envelope sent by an
//! official Sentry SDK (browser, Python, Rust, …), turned into an [`ErrorReport`].
//!
//! The order is the error store's: the whole event is scrubbed first, and only the scrubbed
//! event is read for the type, message, frames, tags and the stored payload. Scrubbing here
//! is [`scrub_value`] plus what Sentry's shapes call for on top of it:
//!
//! - client addresses are removed, keys and all, wherever they appear (`user.ip_address`,
//!   also `{{auto}}`; `request.env.REMOTE_ADDR`; `X-Forwarded-For`, `X-Real-Ip`, … headers,
//!   as object entries or `[name, value]` pairs; `sdk.client_ip`), and an SDK's request to
//!   infer one (`sdk.settings.infer_ip`) is answered `never`;
//! - the password of a URL (`postgres://app:pw@db/app`) is filtered in every string.
//!
//! The event is hostile input: every field may have any type, nesting is cut at
//! [`MAX_DEPTH`] (and the cut-off part is taken apart without recursion), and the stored
//! payload is bounded by [`MAX_PAYLOAD_BYTES`].

use serde_json::{Map, Value, json};

use super::cut_text as cut;
use super::grouping::{self, Frame};
use super::reports::ErrorReport;
use super::scrub::{FILTERED, MAX_DEPTH, TOO_DEEP, is_client_address_key, scrub_value};
use crate::clock::Timestamp;
use crate::failures::Severity;

/// The largest stored payload, in bytes of JSON. A larger event loses its breadcrumbs,
/// then its frames' variables and source lines, then its `extra`, and at last everything
/// but a summary, and says so with `"_boxoffice_truncated": true`.
pub const MAX_PAYLOAD_BYTES: usize = 256 * 1024;

/// The key that marks a payload whose bulky parts were dropped.
pub const TRUNCATED_KEY: &str = "_boxoffice_truncated";

/// The longest component, request id, release or environment, in characters.
const MAX_LABEL_CHARS: usize = 200;

/// The frame fields that hold variables and source code: bulky, and dropped first from frames.
const FRAME_BULK_KEYS: &[&str] = &["vars", "pre_context", "context_line", "post_context"];

/// Turns the payload of a Sentry `event` item into a report for `scope`.
///
/// `event_id` (32 lowercase hex, normalized by the caller) replaces the payload's own.
/// Pure and total: no I/O, no clock, and no panic whatever the payload holds; a payload
/// that is not a JSON object is treated as an empty event.
///
/// - severity: `level` (`fatal` is `critical`), `error` when absent or unknown;
/// - type and message: the last entry of `exception.values` (the exception raised; Sentry
///   lists chained exceptions innermost last), else `logentry.formatted`,
///   `logentry.message` or `message` (a string or an object of that shape); an exception
///   without a value takes the log message;
/// - fingerprint: the event's `fingerprint` (its strings; `{{ default }}` stands for the
///   derived one), else derived from the type, the message and the top in-app frames of
///   the raised exception's stack trace (or, without one, of the event's or the crashed
///   thread's);
/// - component: the tag `component`, else `logger`; request id: the tag `request_id` or
///   `x-request-id`; release and environment: the event's fields.
pub fn prepare_sentry_event(scope: String, event_id: String, payload: Value, received_at: Timestamp) -> ErrorReport {
    let mut event = match payload {
        object @ Value::Object(_) => object,
        other => {
            dismantle(vec![other]);
            Value::Object(Map::new())
        }
    };
    bound_depth(&mut event);
    forget_client_addresses(&mut event);
    scrub_value(&mut event);
    let mut event = match event {
        Value::Object(map) => map,
        _ => Map::new(),
    };
    refuse_ip_inference(&mut event);

    let severity = text(event.get("level"))
        .and_then(|level| Severity::parse(&level.to_ascii_lowercase()))
        .unwrap_or(Severity::Error);
    let exception = raised_exception(&event);
    let error_type = exception.and_then(|e| text(e.get("type"))).map(cut);
    let message = exception
        .and_then(|e| text(e.get("value")))
        .or_else(|| log_message(&event))
        .map(cut)
        .unwrap_or_default();
    let frames = grouping_frames(exception, &event);
    let explicit: Option<Vec<String>> = event
        .get("fingerprint")
        .and_then(Value::as_array)
        .map(|parts| parts.iter().filter_map(Value::as_str).map(cut).collect());
    let fingerprint = grouping::fingerprint(explicit.as_deref(), error_type.as_deref(), &message, &frames);
    let title = grouping::title(error_type.as_deref(), &message);
    let component = tag(&event, &["component"])
        .or_else(|| text(event.get("logger")).map(str::to_owned))
        .map(|c| cut_chars(&c));
    let request_id = tag(&event, &["request_id", "x_request_id"]).map(|r| cut_chars(&r));
    let release = text(event.get("release")).map(cut_chars);
    let environment = text(event.get("environment")).map(cut_chars);

    let platform = text(event.get("platform")).map(cut_chars);
    event.insert("event_id".to_owned(), Value::String(event_id.clone()));
    let payload = bounded_payload(event, || {
        json!({
            "event_id": event_id,
            "level": severity.as_str(),
            "platform": platform,
            "release": release,
            "environment": environment,
            "exception": {"values": [{
                "type": error_type.as_deref().map(cut_chars),
                "value": message,
            }]},
            TRUNCATED_KEY: true,
        })
    });

    let message = if message.is_empty() {
        grouping::title(error_type.as_deref(), "")
    } else {
        message
    };
    ErrorReport {
        event_id,
        scope,
        fingerprint,
        title,
        severity,
        component,
        message,
        request_id,
        payload,
        release,
        environment,
        received_at,
    }
}

/// Replaces every array or object nested [`MAX_DEPTH`] deep or deeper with [`TOO_DEEP`],
/// as [`scrub_value`] would, but without recursion, and takes the cut-off parts apart
/// without recursion too (dropping a deep `Value` recurses once per level).
fn bound_depth(root: &mut Value) {
    let mut cut_off = Vec::new();
    let mut pending: Vec<(&mut Value, usize)> = vec![(root, 0)];
    while let Some((value, depth)) = pending.pop() {
        if depth >= MAX_DEPTH && (value.is_array() || value.is_object()) {
            cut_off.push(std::mem::replace(value, Value::String(TOO_DEEP.to_owned())));
            continue;
        }
        match value {
            Value::Array(items) => pending.extend(items.iter_mut().map(|item| (item, depth + 1))),
            Value::Object(map) => pending.extend(map.values_mut().map(|item| (item, depth + 1))),
            _ => {}
        }
    }
    dismantle(cut_off);
}

/// Drops values of any depth without recursion.
fn dismantle(mut pending: Vec<Value>) {
    while let Some(value) = pending.pop() {
        match value {
            Value::Array(items) => pending.extend(items),
            Value::Object(map) => pending.extend(map.into_iter().map(|(_, item)| item)),
            _ => {}
        }
    }
}

/// Removes client addresses (keys and `[name, value]` pairs) and filters URL passwords,
/// everywhere. Runs after [`bound_depth`], so what it drops is shallow.
fn forget_client_addresses(root: &mut Value) {
    let mut pending = vec![root];
    while let Some(value) = pending.pop() {
        match value {
            Value::String(text) => {
                if let Some(scrubbed) = scrub_url_credentials(text) {
                    *text = scrubbed;
                }
            }
            Value::Array(items) => {
                items.retain(|item| !is_client_address_pair(item));
                pending.extend(items.iter_mut());
            }
            Value::Object(map) => {
                map.retain(|key, _| !is_client_address_key(key));
                pending.extend(map.values_mut());
            }
            _ => {}
        }
    }
}

/// `["X-Forwarded-For", "…"]`: Sentry's list form of headers, cookies, tags and env.
fn is_client_address_pair(item: &Value) -> bool {
    matches!(item.as_array().map(Vec::as_slice), Some([Value::String(name), _]) if is_client_address_key(name))
}

/// `scheme://user:password@host` → `scheme://user:[filtered]@host`. `None` when nothing
/// changed.
fn scrub_url_credentials(text: &str) -> Option<String> {
    const SCHEME_END: &str = "://";
    if !text.contains(SCHEME_END) {
        return None;
    }
    let bytes = text.as_bytes();
    let mut out = String::new();
    let mut done = 0;
    let mut search = 0;
    while let Some(found) = text.get(search..).and_then(|rest| rest.find(SCHEME_END)) {
        let start = search + found + SCHEME_END.len();
        let mut end = start;
        while let Some(&b) = bytes.get(end) {
            if b.is_ascii_whitespace() || matches!(b, b'/' | b'?' | b'#' | b'"' | b'\'' | b'`' | b'<' | b'>') {
                break;
            }
            end += 1;
        }
        let authority = text.get(start..end).unwrap_or_default();
        if let Some(at) = authority.rfind('@')
            && let Some(colon) = authority.get(..at).and_then(|userinfo| userinfo.find(':'))
        {
            let (password_start, password_end) = (start + colon + 1, start + at);
            let password = text.get(password_start..password_end).unwrap_or_default();
            if !password.is_empty()
                && password != FILTERED
                && let Some(before) = text.get(done..password_start)
            {
                out.push_str(before);
                out.push_str(FILTERED);
                done = password_end;
            }
        }
        search = end;
    }
    if done == 0 {
        return None;
    }
    out.push_str(text.get(done..).unwrap_or_default());
    Some(out)
}

/// The browser SDK asks Sentry to infer the sender's address (`infer_ip: "auto"`); the
/// stored event (and any copy forwarded to Sentry) says `never`.
fn refuse_ip_inference(event: &mut Map<String, Value>) {
    if let Some(settings) = event
        .get_mut("sdk")
        .and_then(|sdk| sdk.get_mut("settings"))
        .and_then(Value::as_object_mut)
        && settings.contains_key("infer_ip")
    {
        settings.insert("infer_ip".to_owned(), Value::String("never".to_owned()));
    }
}

/// A non-empty string, trimmed.
fn text(value: Option<&Value>) -> Option<&str> {
    value.and_then(Value::as_str).map(str::trim).filter(|s| !s.is_empty())
}

/// A tag-like value: a non-empty string, a number or a boolean.
fn scalar(value: &Value) -> Option<String> {
    match value {
        Value::String(s) => Some(s.trim().to_owned()).filter(|s| !s.is_empty()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// The exception that was raised: the last object in `exception.values` (or in a bare
/// `exception` list, the legacy form).
fn raised_exception(event: &Map<String, Value>) -> Option<&Map<String, Value>> {
    let values = match event.get("exception")? {
        Value::Array(items) => items,
        Value::Object(exception) => exception.get("values")?.as_array()?,
        _ => return None,
    };
    values.iter().rev().find_map(Value::as_object)
}

/// `logentry.formatted`, `logentry.message`, else `message` (a string or the same object).
fn log_message(event: &Map<String, Value>) -> Option<&str> {
    fn read(value: Option<&Value>) -> Option<&str> {
        match value? {
            Value::String(s) => Some(s.trim()).filter(|s| !s.is_empty()),
            entry @ Value::Object(_) => text(entry.get("formatted")).or_else(|| text(entry.get("message"))),
            _ => None,
        }
    }
    read(event.get("logentry")).or_else(|| read(event.get("message")))
}

/// The frames of a stack trace holder (an exception, a thread, the event), if any.
fn frames_of(holder: &Value) -> Option<&Vec<Value>> {
    holder
        .get("stacktrace")?
        .get("frames")?
        .as_array()
        .filter(|frames| !frames.is_empty())
}

/// The raised exception's stack trace, else the event's, else the crashed (or current, or
/// first) thread's.
fn stack_frames<'a>(exception: Option<&'a Map<String, Value>>, event: &'a Map<String, Value>) -> Option<&'a [Value]> {
    let of_map = |map: &'a Map<String, Value>| {
        map.get("stacktrace")
            .and_then(|trace| trace.get("frames"))
            .and_then(Value::as_array)
            .filter(|frames| !frames.is_empty())
    };
    if let Some(frames) = exception.and_then(of_map).or_else(|| of_map(event)) {
        return Some(frames);
    }
    let threads = match event.get("threads")? {
        Value::Array(items) => items,
        Value::Object(threads) => threads.get("values")?.as_array()?,
        _ => return None,
    };
    let flagged = |flag: &str| {
        threads
            .iter()
            .filter(|thread| thread.get(flag) == Some(&Value::Bool(true)))
            .find_map(frames_of)
    };
    flagged("crashed")
        .or_else(|| flagged("current"))
        .or_else(|| threads.iter().find_map(frames_of))
        .map(Vec::as_slice)
}

/// The top frames for grouping, newest first: the in-app ones, or all when none is marked
/// in-app; only frames that name a module, function or file.
fn grouping_frames(exception: Option<&Map<String, Value>>, event: &Map<String, Value>) -> Vec<Frame> {
    let Some(frames) = stack_frames(exception, event) else {
        return Vec::new();
    };
    let in_app = |frame: &Value| frame.get("in_app") == Some(&Value::Bool(true));
    let any_in_app = frames.iter().any(in_app);
    frames
        .iter()
        .rev()
        .filter(|frame| !any_in_app || in_app(frame))
        .filter_map(|frame| {
            let field = |name: &str| text(frame.get(name)).map(cut);
            let frame = Frame {
                module: field("module"),
                function: field("function"),
                filename: field("filename").or_else(|| field("abs_path")),
            };
            (frame.module.is_some() || frame.function.is_some() || frame.filename.is_some()).then_some(frame)
        })
        .take(grouping::GROUPING_FRAMES)
        .collect()
}

/// The first tag among `names` (compared lower-cased, `-` as `_`), from `tags` as an object
/// or as a list of `[name, value]` pairs.
fn tag(event: &Map<String, Value>, names: &[&str]) -> Option<String> {
    let wanted = |key: &str| key.len() <= 64 && names.contains(&key.to_ascii_lowercase().replace('-', "_").as_str());
    match event.get("tags")? {
        Value::Object(tags) => tags
            .iter()
            .filter(|(key, _)| wanted(key))
            .find_map(|(_, value)| scalar(value)),
        Value::Array(pairs) => pairs.iter().find_map(|pair| match pair.as_array()?.as_slice() {
            [Value::String(key), value] if wanted(key) => scalar(value),
            _ => None,
        }),
        _ => None,
    }
}

/// The payload to store: the scrubbed event if it fits in [`MAX_PAYLOAD_BYTES`], else the
/// event without its bulky parts, else `summary`.
fn bounded_payload(event: Map<String, Value>, summary: impl FnOnce() -> Value) -> String {
    let mut event = Value::Object(event);
    let serialized = event.to_string();
    if serialized.len() <= MAX_PAYLOAD_BYTES {
        return serialized;
    }
    let drops: [fn(&mut Map<String, Value>); 3] = [
        |event| {
            event.remove("breadcrumbs");
        },
        |event| strip_frame_bulk(event),
        |event| {
            event.remove("extra");
        },
    ];
    for drop_part in drops {
        if let Value::Object(map) = &mut event {
            map.insert(TRUNCATED_KEY.to_owned(), Value::Bool(true));
            drop_part(map);
        }
        let serialized = event.to_string();
        if serialized.len() <= MAX_PAYLOAD_BYTES {
            return serialized;
        }
    }
    summary().to_string()
}

/// Removes variables and source lines from every frame of every stack trace.
fn strip_frame_bulk(event: &mut Map<String, Value>) {
    let mut pending: Vec<&mut Value> = event.values_mut().collect();
    while let Some(value) = pending.pop() {
        match value {
            Value::Object(map) => {
                if let Some(Value::Array(frames)) = map.get_mut("frames") {
                    for frame in frames.iter_mut().filter_map(Value::as_object_mut) {
                        for key in FRAME_BULK_KEYS {
                            frame.remove(*key);
                        }
                    }
                }
                pending.extend(map.values_mut());
            }
            Value::Array(items) => pending.extend(items.iter_mut()),
            _ => {}
        }
    }
}

/// `text` cut to [`MAX_LABEL_CHARS`] characters.
fn cut_chars(text: &str) -> String {
    match text.char_indices().nth(MAX_LABEL_CHARS) {
        Some((end, _)) => text.get(..end).unwrap_or_default().to_owned(),
        None => text.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use super::*;
    use crate::error_store::scrub::{CARD, EMAIL, IP, TOKEN};

    /// The `event` item payloads of `/work/shared/sentry-sample-envelopes.txt`, verbatim.
    const PYTHON_EVENT: &str = r##"{"level":"error","exception":{"values":[{"mechanism":{"type":"generic","handled":true},"module":null,"type":"ValueError","value":"payment provider declined order 1234","stacktrace":{"frames":[{"filename":"client.py","abs_path":"/srv/app/client.py","function":"<module>","module":"__main__","lineno":8,"pre_context":["sentry_sdk.set_tag(\"component\", \"payments\")","sentry_sdk.set_user({\"id\": \"u-1\", \"email\": \"alice@example.com\"})","def charge_card(order_id, card=\"4111111111111111\", password=\"hunter2\"):","    raise ValueError(\"payment provider declined order %s\" % order_id)","try:"],"context_line":"    charge_card(1234)","post_context":["except Exception as e:","    print(\"event id\", sentry_sdk.capture_exception(e))","sentry_sdk.flush(timeout=5)"],"vars":{"__name__":"'__main__'","__doc__":"None","__package__":"None","__loader__":"<_frozen_importlib_external.SourceFileLoader object at 0x7f36ff0dec50>","__spec__":"None","__annotations__":{},"__builtins__":"<module 'builtins' (built-in)>","__file__":"'/srv/app/client.py'","__cached__":"None","sentry_sdk":"<module 'sentry_sdk' from '/srv/venv/lib/python3.11/site-packages/sentry_sdk/__init__.py'>"},"in_app":true},{"filename":"client.py","abs_path":"/srv/app/client.py","function":"charge_card","module":"__main__","lineno":6,"pre_context":["import sentry_sdk, sys","sentry_sdk.init(dsn=\"http://abc123publickey@127.0.0.1:%s/42\" % sys.argv[1], release=\"boxoffice-test@0.1.0\", environment=\"test\", send_default_pii=False)","sentry_sdk.set_tag(\"component\", \"payments\")","sentry_sdk.set_user({\"id\": \"u-1\", \"email\": \"alice@example.com\"})","def charge_card(order_id, card=\"4111111111111111\", password=\"hunter2\"):"],"context_line":"    raise ValueError(\"payment provider declined order %s\" % order_id)","post_context":["try:","    charge_card(1234)","except Exception as e:","    print(\"event id\", sentry_sdk.capture_exception(e))","sentry_sdk.flush(timeout=5)"],"vars":{"order_id":"1234","card":"'4111111111111111'","password":"[Filtered]"},"in_app":true}]}}]},"event_id":"1f8fe342500647838aae632658958965","timestamp":"2026-11-27T10:56:05.309836Z","contexts":{"trace":{"trace_id":"f0f578aae5de4af083210c183f19e521","span_id":"a57d9dd8609b3031","parent_span_id":null},"runtime":{"name":"CPython","version":"3.11.7","build":"3.11.7 (main, May  9 2026, 07:35:25) [GCC 12.2.0]"}},"user":{"id":"u-1","email":"alice@example.com"},"transaction_info":{},"tags":{"component":"payments"},"breadcrumbs":{"values":[]},"extra":{"sys.argv":["client.py","18933"]},"modules":{"urllib3":"2.8.0","pip":"23.2.1","certifi":"2026.10.19.post1","setuptools":"65.5.0","sentry-sdk":"2.75.0"},"release":"boxoffice-test@0.1.0","environment":"test","server_name":"vm","sdk":{"name":"sentry.python","version":"2.75.0","packages":[{"name":"pypi:sentry-sdk","version":"2.75.0"}],"integrations":["argv","atexit","dedupe","excepthook","logging","modules","stdlib","threading"]},"platform":"python","_meta":{"exception":{"values":{"0":{"stacktrace":{"frames":{"1":{"vars":{"password":{"":{"rem":[["!config","s"]]}}}}}}}}}}}"##;
    const BROWSER_EVENT: &str = r##"{"exception":{"values":[{"type":"TypeError","value":"card.number is undefined","stacktrace":{"frames":[{"filename":"node:internal/main/run_main_module","function":"?","in_app":true,"lineno":28,"colno":49},{"filename":"node:internal/modules/run_main","function":"Function.executeUserEntryPoint [as runMain]","in_app":true,"lineno":164,"colno":12},{"filename":"node:internal/modules/cjs/loader","function":"Module._load","in_app":true,"lineno":1091,"colno":12},{"filename":"node:internal/modules/cjs/loader","function":"Module.load","in_app":true,"lineno":1266,"colno":32},{"filename":"node:internal/modules/cjs/loader","function":"Module._extensions..js","in_app":true,"lineno":1623,"colno":10},{"filename":"node:internal/modules/cjs/loader","function":"Module._compile","in_app":true,"lineno":1521,"colno":14},{"filename":"/srv/web/run.js","function":"Object.<anonymous>","in_app":true,"lineno":11,"colno":7},{"filename":"/srv/web/run.js","function":"payWithCard","in_app":true,"lineno":10,"colno":32}]},"mechanism":{"type":"generic","handled":true}}]},"level":"error","event_id":"89ada979d2af4f4380bd79e458285158","platform":"javascript","request":{"url":"http://localhost:8080/checkout?email=bob@example.com","headers":{"User-Agent":"Mozilla/5.0 (linux) AppleWebKit/537.36 (KHTML, like Gecko) jsdom/29.1.1"}},"contexts":{"trace":{"trace_id":"15c9fbcee5754ebd9ab00f2bfb0282b7","span_id":"9e06f012a987b34a"},"culture":{"locale":"en-US","timezone":"UTC","calendar":"gregory"}},"timestamp":1795776968.175,"environment":"test","release":"boxoffice-web@0.1.0","sdk":{"integrations":["EventFilters","FunctionToString","ConversationId","BrowserApiErrors","Breadcrumbs","Console","GlobalHandlers","LinkedErrors","Dedupe","HttpContext","CultureContext","BrowserSession"],"name":"sentry.javascript.browser","version":"11.12.0","packages":[{"name":"npm:@sentry/browser","version":"11.12.0"}],"settings":{"infer_ip":"auto"}},"tags":{"component":"checkout"}}"##;
    const RUST_EVENT: &str = r##"{"event_id":"031e88201ca24ca08464a5440c030ead","platform":"native","timestamp":1795777229.0206378,"server_name":"vm","release":"boxoffice@0.1.0","environment":"test","contexts":{"device":{"type":"device","arch":"x86_64"},"os":{"type":"os","name":"Linux","version":"6.18.44-fc-v669","kernel_version":"#1 SMP PREEMPT_DYNAMIC @0"},"rust":{"type":"runtime","name":"rustc","version":"1.95.0","channel":"stable"},"trace":{"type":"trace","span_id":"051354dc62ff4c3b","trace_id":"e2d68268dc71c8873f9a9e8a7708bd6c"}},"exception":{"values":[{"type":"PaymentDeclined","value":"payment declined for order 1234"}]},"tags":{"component":"payments","scrubbed":"yes"},"sdk":{"name":"sentry.rust","version":"0.49.5","integrations":["attach-stacktrace","contexts","panic","process-stacktrace"],"packages":[{"name":"cargo:sentry","version":"0.49.5"}]}}"##;

    const ID: &str = "0123456789abcdef0123456789abcdef";

    fn parse(raw: &str) -> Value {
        serde_json::from_str(raw).expect("sample payload is JSON")
    }

    fn prepare(payload: Value) -> ErrorReport {
        prepare_sentry_event(
            "org:org_test".to_owned(),
            ID.to_owned(),
            payload,
            Timestamp::from_millis(1_795_776_968_000),
        )
    }

    fn stored(report: &ErrorReport) -> Value {
        serde_json::from_str(&report.payload).expect("the payload is JSON")
    }

    /// None of `secrets` appears in what is stored or shown.
    fn assert_absent(report: &ErrorReport, secrets: &[&str]) {
        for secret in secrets {
            for (field, text) in [
                ("payload", &report.payload),
                ("message", &report.message),
                ("title", &report.title),
            ] {
                assert!(!text.contains(secret), "{secret:?} is in the {field}: {text}");
            }
        }
    }

    fn frame(module: &str, function: &str, line: u32, in_app: bool) -> Value {
        json!({"module": module, "function": function, "filename": format!("{module}.py"), "lineno": line, "in_app": in_app})
    }

    fn python_error(error_type: &str, message: &str, frames: Vec<Value>) -> Value {
        json!({
            "level": "error",
            "platform": "python",
            "event_id": "ffffffffffffffffffffffffffffffff",
            "exception": {"values": [{"type": error_type, "value": message, "stacktrace": {"frames": frames}}]},
        })
    }

    #[test]
    fn python_sample() {
        let report = prepare(parse(PYTHON_EVENT));
        assert_eq!(report.scope, "org:org_test");
        assert_eq!(report.event_id, ID);
        assert_eq!(report.severity, Severity::Error);
        assert_eq!(report.message, "payment provider declined order 1234");
        assert_eq!(report.title, "ValueError: payment provider declined order <n>");
        assert_eq!(report.component.as_deref(), Some("payments"));
        assert_eq!(report.release.as_deref(), Some("boxoffice-test@0.1.0"));
        assert_eq!(report.environment.as_deref(), Some("test"));
        assert_eq!(report.request_id, None);
        assert_eq!(report.received_at, Timestamp::from_millis(1_795_776_968_000));
        // The SDK filtered the `password` variable but sent the card and the e-mail.
        assert_absent(&report, &["alice@example.com", "4111111111111111", "hunter2"]);
        let payload = stored(&report);
        assert_eq!(payload["event_id"], ID);
        assert_eq!(payload["user"], json!({"id": "u-1", "email": EMAIL}));
        let frames = &payload["exception"]["values"][0]["stacktrace"]["frames"];
        assert_eq!(frames[1]["vars"]["card"], format!("'{CARD}'"));
        assert_eq!(frames[1]["vars"]["password"], FILTERED);
        assert_eq!(frames[1]["vars"]["order_id"], "1234");
        assert_eq!(payload.get(TRUNCATED_KEY), None);
        // Grouped by the frame that raised (`charge_card`), then its caller.
        let expected = grouping::fingerprint(
            None,
            Some("ValueError"),
            "payment provider declined order 1234",
            &[
                Frame {
                    module: Some("__main__".into()),
                    function: Some("charge_card".into()),
                    filename: Some("client.py".into()),
                },
                Frame {
                    module: Some("__main__".into()),
                    function: Some("<module>".into()),
                    filename: Some("client.py".into()),
                },
            ],
        );
        assert_eq!(report.fingerprint, expected);
    }

    #[test]
    fn browser_sample() {
        let report = prepare(parse(BROWSER_EVENT));
        assert_eq!(report.severity, Severity::Error);
        assert_eq!(report.title, "TypeError: card.number is undefined");
        assert_eq!(report.component.as_deref(), Some("checkout"));
        assert_eq!(report.release.as_deref(), Some("boxoffice-web@0.1.0"));
        assert_absent(&report, &["bob@example.com"]);
        let payload = stored(&report);
        assert_eq!(
            payload["request"]["url"],
            format!("http://localhost:8080/checkout?email={EMAIL}")
        );
        assert_eq!(payload["sdk"]["settings"]["infer_ip"], "never");
        let frames: Vec<Frame> = ["payWithCard", "Object.<anonymous>", "Module._compile"]
            .iter()
            .zip(["/srv/web/run.js", "/srv/web/run.js", "node:internal/modules/cjs/loader"])
            .map(|(function, filename)| Frame {
                module: None,
                function: Some((*function).into()),
                filename: Some(filename.into()),
            })
            .collect();
        let expected = grouping::fingerprint(None, Some("TypeError"), "card.number is undefined", &frames);
        assert_eq!(report.fingerprint, expected);
    }

    #[test]
    fn rust_sample_and_panic() {
        let report = prepare(parse(RUST_EVENT));
        assert_eq!(report.severity, Severity::Error, "no level means error");
        assert_eq!(report.title, "PaymentDeclined: payment declined for order <n>");
        assert_eq!(report.message, "payment declined for order 1234");
        assert_eq!(report.component.as_deref(), Some("payments"));
        assert_eq!(report.release.as_deref(), Some("boxoffice@0.1.0"));
        assert_eq!(report.environment.as_deref(), Some("test"));
        assert_eq!(
            report.fingerprint,
            grouping::fingerprint(None, Some("PaymentDeclined"), "payment declined for order 1234", &[])
        );

        let mut panic = parse(RUST_EVENT);
        panic["level"] = json!("fatal");
        panic["exception"] = json!({"values": [{
            "type": "panic",
            "value": "called `Option::unwrap()` on a `None` value",
            "mechanism": {"type": "panic", "handled": false},
            "stacktrace": {"frames": [
                {"function": "std::rt::lang_start", "in_app": false},
                {"function": "boxoffice::main", "module": "boxoffice", "in_app": true},
                {"function": "core::panicking::panic", "in_app": false},
            ]},
        }]});
        let report = prepare(panic);
        assert_eq!(report.severity, Severity::Critical);
        assert_eq!(report.title, "panic: called `<str>` on a `<str>` value");
        let main = Frame {
            module: Some("boxoffice".into()),
            function: Some("boxoffice::main".into()),
            filename: None,
        };
        assert_eq!(
            report.fingerprint,
            grouping::fingerprint(
                None,
                Some("panic"),
                "called `Option::unwrap()` on a `None` value",
                &[main]
            )
        );
    }

    #[test]
    fn messages_without_an_exception() {
        let cases = [
            (json!({"message": "  plain text  "}), "plain text"),
            (
                json!({"message": {"formatted": "formatted 1", "message": "formatted %s"}}),
                "formatted 1",
            ),
            (
                json!({"logentry": {"message": "template %s", "params": [1]}}),
                "template %s",
            ),
            (
                json!({"logentry": {"formatted": "log 2"}, "message": "ignored"}),
                "log 2",
            ),
            (
                json!({"exception": {"values": [{"type": "E"}]}, "logentry": {"formatted": "why"}}),
                "why",
            ),
        ];
        for (payload, expected) in cases {
            assert_eq!(prepare(payload).message, expected);
        }
        let report = prepare(json!({"level": "warning", "logger": "app.checkout"}));
        assert_eq!(report.severity, Severity::Warning);
        assert_eq!(report.message, "(no message)");
        assert_eq!(report.title, "(no message)");
        assert_eq!(report.component.as_deref(), Some("app.checkout"));
        let report = prepare(json!({"exception": {"values": [{"type": "KeyError"}]}}));
        assert_eq!(report.message, "KeyError");
        assert_eq!(report.title, "KeyError");
        assert_eq!(prepare(json!({"level": "LOUD"})).severity, Severity::Error);
        assert_eq!(prepare(json!({"level": "Info"})).severity, Severity::Info);
    }

    #[test]
    fn planted_personal_data_and_secrets_never_reach_the_report() {
        let mut event = parse(PYTHON_EVENT);
        event["exception"]["values"][0]["value"] = json!(
            "declined for jane.doe@example.com from 198.51.100.23 via 2001:db8::7334 \
             with card 4242424242424242, order ref 4242424242424241, Bearer sk_live_abcdef123456"
        );
        event["exception"]["values"][0]["stacktrace"]["frames"][1]["vars"] = json!({
            "card_no": "4242 4242 4242 4242",
            "password": "hunter2-var",
            "headers": {"Authorization": "Bearer tok_frame_123456"},
        });
        event["user"] = json!({"id": "u-1", "email": "jane.doe@example.com", "ip_address": "{{auto}}"});
        event["request"] = json!({
            "url": "https://shop.test/pay?email=jane.doe%40example.com&token=url-secret-0",
            "method": "POST",
            "query_string": "a=b&token=qs-secret-1",
            "cookies": "sessionid=cookie-secret-3; theme=dark",
            "headers": {
                "Authorization": "Bearer sk_live_header123456",
                "Cookie": "sessionid=cookie-secret-4",
                "X-Forwarded-For": "192.0.2.44, 192.0.2.45",
                "X-Real-Ip": "192.0.2.46",
                "User-Agent": "Mozilla/5.0",
            },
            "data": {"password": "hunter2-data", "quantity": 2, "card": 4_242_424_242_424_242u64},
            "env": {"REMOTE_ADDR": "10.20.30.40", "SERVER_NAME": "web1"},
        });
        event["sdk"]["client_ip"] = json!("192.0.2.47");
        event["tags"] = json!([
            ["component", "checkout"],
            ["password", "tag-secret-5"],
            ["request_id", "req-42"]
        ]);
        event["extra"] = json!({
            "dsn": "postgres://app:db-secret-6@db:5432/app",
            "note": "user 203.0.113.9 said api_key=extra-secret-7",
        });
        event["breadcrumbs"] = json!({"values": [
            {"category": "http", "data": {"url": "/login?password=crumb-secret-8", "from": "jane.doe@example.com"}},
            {"message": "auth with Bearer crumb_token_123456"},
        ]});
        let report = prepare(event);
        assert_absent(
            &report,
            &[
                "jane.doe",
                "example.com",
                "198.51.100.23",
                "2001:db8::7334",
                "4242424242424242",
                "4242 4242 4242 4242",
                "sk_live",
                "tok_frame",
                "hunter2",
                "{{auto}}",
                "ip_address",
                "client_ip",
                "192.0.2.",
                "10.20.30.40",
                "REMOTE_ADDR",
                "X-Forwarded-For",
                "X-Real-Ip",
                "url-secret",
                "qs-secret",
                "cookie-secret",
                "tag-secret",
                "db-secret",
                "203.0.113.9",
                "extra-secret",
                "crumb-secret",
                "crumb_token",
            ],
        );
        assert_eq!(
            report.message,
            format!(
                "declined for {EMAIL} from {IP} via {IP} with card {CARD}, order ref 4242424242424241, Bearer {TOKEN}"
            )
        );
        assert!(report.payload.contains("4242424242424241"), "a non-Luhn number stays");
        assert_eq!(report.component.as_deref(), Some("checkout"));
        assert_eq!(report.request_id.as_deref(), Some("req-42"));
        let payload = stored(&report);
        assert_eq!(payload["user"], json!({"id": "u-1", "email": EMAIL}));
        assert_eq!(payload["request"]["env"], json!({"SERVER_NAME": "web1"}));
        assert_eq!(payload["request"]["cookies"], FILTERED);
        assert_eq!(payload["request"]["headers"]["Cookie"], FILTERED);
        assert_eq!(payload["request"]["headers"]["User-Agent"], "Mozilla/5.0");
        assert_eq!(payload["request"]["query_string"], format!("a=b&token={FILTERED}"));
        assert_eq!(
            payload["extra"]["dsn"],
            format!("postgres://app:{FILTERED}@db:5432/app")
        );
        assert_eq!(payload["tags"][1], json!(["password", FILTERED]));
    }

    #[test]
    fn list_forms_of_headers_query_strings_cookies_and_tags() {
        let report = prepare(json!({
            "message": "boom",
            "request": {
                "headers": [
                    ["Authorization", "Basic dXNlcjpwYXNz"],
                    ["X-Api-Key", "hdr-secret-1"],
                    ["X-Forwarded-For", "192.0.2.1"],
                    ["x-real-ip", "192.0.2.2"],
                    ["Accept", "text/html"],
                ],
                "query_string": [["token", "qs-secret-2"], ["page", "2"], ["email", "x@example.org"]],
                "cookies": [["sid", "cookie-secret-3"]],
                "env": [["REMOTE_ADDR", "192.0.2.3"], ["HTTP_X_FORWARDED_FOR", "192.0.2.4"]],
            },
            "tags": [["x-request-id", "abc-1"], ["component", 7], ["secret", "tag-secret-4"]],
        }));
        assert_absent(
            &report,
            &[
                "dXNlcjpwYXNz",
                "hdr-secret",
                "qs-secret",
                "cookie-secret",
                "192.0.2.",
                "tag-secret",
                "x@example.org",
            ],
        );
        assert_eq!(report.request_id.as_deref(), Some("abc-1"));
        assert_eq!(report.component.as_deref(), Some("7"));
        let payload = stored(&report);
        assert_eq!(
            payload["request"]["headers"],
            json!([
                ["Authorization", FILTERED],
                ["X-Api-Key", FILTERED],
                ["Accept", "text/html"]
            ])
        );
        assert_eq!(
            payload["request"]["query_string"],
            json!([["token", FILTERED], ["page", "2"], ["email", EMAIL]])
        );
        assert_eq!(payload["request"]["env"], json!([]));
    }

    #[test]
    fn chained_exceptions_use_the_last() {
        let report = prepare(json!({"exception": {"values": [
            {"type": "KeyError", "value": "'user_7'", "stacktrace": {"frames": [frame("app.db", "load", 3, true)]}},
            {"type": "RuntimeError", "value": "lookup failed", "stacktrace": {"frames": [frame("app.views", "show", 9, true)]}},
        ]}}));
        assert_eq!(report.title, "RuntimeError: lookup failed");
        let show = Frame {
            module: Some("app.views".into()),
            function: Some("show".into()),
            filename: Some("app.views.py".into()),
        };
        assert_eq!(
            report.fingerprint,
            grouping::fingerprint(None, Some("RuntimeError"), "lookup failed", &[show])
        );
        // The legacy bare list form too.
        let legacy = prepare(json!({"exception": [{"type": "A", "value": "a"}, {"type": "B", "value": "b"}]}));
        assert_eq!(legacy.title, "B: b");
    }

    #[test]
    fn grouping_ignores_ids_numbers_and_line_numbers() {
        let first = prepare(python_error(
            "ValueError",
            "order 1234 declined after 5003ms at 2026-11-27T10:56:05Z",
            vec![frame("app.main", "run", 10, true), frame("app.pay", "charge", 42, true)],
        ));
        let second = prepare(python_error(
            "ValueError",
            "order 98 declined after 12ms at 2026-12-01T00:00:00Z",
            vec![frame("app.main", "run", 11, true), frame("app.pay", "charge", 57, true)],
        ));
        assert_eq!(first.fingerprint, second.fingerprint);
        assert_eq!(first.title, second.title);
        let other_type = prepare(python_error(
            "KeyError",
            "order 1234 declined after 5003ms at 2026-11-27T10:56:05Z",
            vec![frame("app.main", "run", 10, true), frame("app.pay", "charge", 42, true)],
        ));
        assert_ne!(first.fingerprint, other_type.fingerprint);
        let other_frame = prepare(python_error(
            "ValueError",
            "order 1234 declined after 5003ms at 2026-11-27T10:56:05Z",
            vec![frame("app.main", "run", 10, true), frame("app.pay", "refund", 42, true)],
        ));
        assert_ne!(first.fingerprint, other_frame.fingerprint);
    }

    #[test]
    fn in_app_frames_only_unless_none_is_in_app() {
        let with_library = |library: &str| {
            prepare(python_error(
                "E",
                "m",
                vec![frame("app.main", "run", 1, true), frame(library, "call", 2, false)],
            ))
            .fingerprint
        };
        assert_eq!(with_library("requests"), with_library("urllib3"));
        let without_in_app = |library: &str| {
            prepare(python_error(
                "E",
                "m",
                vec![
                    json!({"function": "run"}),
                    json!({"function": library, "in_app": "yes"}),
                ],
            ))
            .fingerprint
        };
        assert_ne!(without_in_app("requests"), without_in_app("urllib3"));
    }

    #[test]
    fn explicit_fingerprints() {
        let with = |fingerprint: Value, message: &str| {
            let mut event = python_error("E", message, vec![frame("app", "f", 1, true)]);
            event["fingerprint"] = fingerprint;
            prepare(event).fingerprint
        };
        let derived = with(Value::Null, "order 1");
        let eu = with(json!(["{{ default }}", "eu"]), "order 1");
        assert_ne!(eu, derived);
        assert_eq!(eu, with(json!(["{{default}}", "eu"]), "order 2"));
        assert_ne!(eu, with(json!(["{{ default }}", "us"]), "order 1"));
        assert_ne!(eu, with(json!(["{{ default }}", "eu"]), "other message"));
        let custom = with(json!(["checkout-failures", 5, null]), "order 1");
        assert_eq!(custom, with(json!(["checkout-failures"]), "something else entirely"));
        assert_eq!(
            custom,
            grouping::fingerprint(Some(&["checkout-failures".to_owned()]), Some("Z"), "", &[])
        );
        assert_eq!(with(json!([1, 2]), "order 1"), derived, "no string: derived");
        assert_eq!(with(json!("checkout"), "order 1"), derived, "not a list: derived");
    }

    #[test]
    fn labels_are_cut_and_typed() {
        let long = "r".repeat(1000);
        let report = prepare(json!({
            "message": "m".repeat(100_000),
            "release": long,
            "environment": 5,
            "logger": {"name": "x"},
            "tags": {"component": ["x"], "Request-Id": "rid"},
        }));
        assert_eq!(report.release.as_deref().map(str::len), Some(MAX_LABEL_CHARS));
        assert_eq!(report.environment, None);
        assert_eq!(report.component, None);
        assert_eq!(report.request_id.as_deref(), Some("rid"));
        assert!(report.message.len() <= crate::error_store::MAX_ERROR_TEXT + 16);
        assert!(report.message.ends_with("[cut]"));
        assert!(report.title.chars().count() <= grouping::MAX_TITLE_CHARS);
    }

    #[test]
    fn oversized_payloads_lose_bulk_in_order() {
        let mut event = parse(PYTHON_EVENT);
        event["breadcrumbs"] = json!({"values": vec![json!({"message": "x".repeat(1000)}); 400]});
        let report = prepare(event.clone());
        assert!(report.payload.len() <= MAX_PAYLOAD_BYTES);
        let payload = stored(&report);
        assert_eq!(payload[TRUNCATED_KEY], true);
        assert_eq!(payload.get("breadcrumbs"), None);
        assert!(
            payload["exception"]["values"][0]["stacktrace"]["frames"][1]
                .get("vars")
                .is_some()
        );
        assert!(payload.get("extra").is_some());

        event["exception"]["values"][0]["stacktrace"]["frames"][1]["vars"]["blob"] = json!("v".repeat(300_000));
        let payload = stored(&prepare(event.clone()));
        let frame = &payload["exception"]["values"][0]["stacktrace"]["frames"][1];
        assert_eq!(frame.get("vars"), None);
        assert_eq!(frame.get("context_line"), None);
        assert_eq!(frame["function"], "charge_card");
        assert!(payload.get("extra").is_some());

        event["extra"] = json!({"blob": "e".repeat(300_000)});
        let payload = stored(&prepare(event.clone()));
        assert_eq!(payload.get("extra"), None);
        assert_eq!(payload["user"]["id"], "u-1");

        event["contexts"] = json!({"blob": "c".repeat(300_000)});
        let report = prepare(event);
        assert!(report.payload.len() <= MAX_PAYLOAD_BYTES);
        let payload = stored(&report);
        assert_eq!(payload[TRUNCATED_KEY], true);
        assert_eq!(payload["event_id"], ID);
        assert_eq!(payload["exception"]["values"][0]["type"], "ValueError");
        assert_eq!(payload["release"], "boxoffice-test@0.1.0");

        // A summary stays within the bound even when every character is escaped.
        let report = prepare(
            json!({"exception": {"values": [{"type": "\u{1}".repeat(50_000), "value": "\u{2}".repeat(50_000)}]}, "extra": "\u{3}".repeat(100_000)}),
        );
        assert!(report.payload.len() <= MAX_PAYLOAD_BYTES);
    }

    #[test]
    fn scrubbing_the_stored_payload_again_changes_nothing() {
        for raw in [PYTHON_EVENT, BROWSER_EVENT, RUST_EVENT] {
            let report = prepare(parse(raw));
            let again = prepare(stored(&report));
            assert_eq!(again.payload, report.payload);
            assert_eq!(again.fingerprint, report.fingerprint);
        }
    }

    #[test]
    fn url_credentials() {
        let cases = [
            (
                "postgres://app:pw@db:5432/x",
                Some("postgres://app:[filtered]@db:5432/x"),
            ),
            (
                "a https://u:p@h/ b http://v:q@i c",
                Some("a https://u:[filtered]@h/ b http://v:[filtered]@i c"),
            ),
            ("redis://:pw@cache", Some("redis://:[filtered]@cache")),
            ("https://user@host/a:b@c", None),
            ("https://host/?next=a:b@c", None),
            ("https://u:[filtered]@h", None),
            ("no url here", None),
            ("://:@", None),
            ("é://é:é@é", Some("é://é:[filtered]@é")),
        ];
        for (input, expected) in cases {
            assert_eq!(scrub_url_credentials(input).as_deref(), expected, "{input}");
        }
    }

    #[test]
    fn hostile_payloads_do_not_panic() {
        // Built by hand: `json!` would serialize (recursively) what it wraps.
        let wrap = |key: &str, value: Value| Value::Object(Map::from_iter([(key.to_owned(), value)]));
        let mut deep_objects = json!("jane@example.com");
        let mut deep_arrays = json!("jane@example.com");
        let mut deep_exception = json!({"type": "T", "value": "v"});
        for _ in 0..10_000 {
            deep_objects = wrap("a", deep_objects);
            deep_arrays = Value::Array(vec![deep_arrays]);
            deep_exception = wrap("values", Value::Array(vec![deep_exception]));
        }
        let payloads = vec![
            json!({"exception": 5}),
            json!({"exception": {"values": [{"stacktrace": {"frames": "x"}}]}}),
            json!({"exception": {"values": [{"stacktrace": {"frames": [5, null, "x", [], {"in_app": 1}]}}]}}),
            json!({"exception": {"values": [5, {"type": 5, "value": ["x"]}, null]}}),
            json!({"exception": {"values": []}, "threads": {"values": [{"crashed": true, "stacktrace": 5}]}}),
            json!({"threads": [{"stacktrace": {"frames": [{"function": "f"}]}}]}),
            json!({"level": 5, "message": 5, "logentry": [], "fingerprint": {"a": 1}, "tags": "x", "release": []}),
            json!({"request": {"headers": [[5, 6], ["a"], [], "x"]}, "tags": [[1, 2], ["component"], 5]}),
            json!({"sdk": {"settings": 5}, "user": "x"}),
            json!({"sdk": 5}),
            json!([1, 2, 3]),
            json!("just a string"),
            json!(null),
            json!({"message": "\u{0}\u{fffd}é".repeat(10_000)}),
            json!({"extra": vec![json!(4_242_424_242_424_242u64); 100_000]}),
            json!({"exception": {"values": vec![json!({"type": "E"}); 100_000]}}),
            wrap("extra", deep_objects),
            wrap("extra", deep_arrays),
            wrap("exception", deep_exception),
        ];
        for payload in payloads {
            let report = prepare(payload);
            let stored = stored(&report);
            assert_eq!(stored["event_id"], ID);
            assert!(report.payload.len() <= MAX_PAYLOAD_BYTES);
            assert!(!report.payload.contains("jane@example.com"));
            assert!(!report.payload.contains("4242424242424242"));
        }
        let report =
            prepare(json!({"exception": {"values": [{"type": "T", "value": "v", "stacktrace": {"frames": "x"}}]}}));
        assert_eq!(report.title, "T: v");
    }
}

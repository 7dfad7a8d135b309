//! Stripe's request encoding: `application/x-www-form-urlencoded` with nested keys written
//! in brackets (`metadata[order_id]=ord_1`, `expand[]=latest_charge`). Both the client
//! (encoding) and the test double (decoding) use this module, so they agree by construction.

use std::collections::BTreeMap;

/// An ordered list of form fields. Order is kept because Stripe's own libraries keep it and
/// it makes request bodies reproducible in tests and logs.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Form {
    pairs: Vec<(String, String)>,
}

impl Form {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds `key=value`.
    pub fn push(&mut self, key: impl Into<String>, value: impl Into<String>) -> &mut Self {
        self.pairs.push((key.into(), value.into()));
        self
    }

    /// Adds `key=value` when there is a value.
    pub fn push_opt(&mut self, key: impl Into<String>, value: Option<impl Into<String>>) -> &mut Self {
        if let Some(value) = value {
            self.push(key, value);
        }
        self
    }

    /// Adds every entry of a map as `parent[key]=value`.
    pub fn push_map<'a>(&mut self, parent: &str, map: impl IntoIterator<Item = (&'a String, &'a String)>) -> &mut Self {
        for (key, value) in map {
            self.push(nested_key(parent, key), value.clone());
        }
        self
    }

    pub fn pairs(&self) -> &[(String, String)] {
        &self.pairs
    }

    pub fn is_empty(&self) -> bool {
        self.pairs.is_empty()
    }

    /// The urlencoded body (or query string).
    pub fn encode(&self) -> String {
        // Encoding a list of string pairs cannot fail; the fallback only satisfies the type.
        serde_urlencoded::to_string(&self.pairs).unwrap_or_default()
    }

    /// Parses a urlencoded body or query string. Keys stay flat (`metadata[a]`); use
    /// [`Form::map`] to read a nested map.
    pub fn decode(input: &[u8]) -> Result<Self, serde_urlencoded::de::Error> {
        let pairs: Vec<(String, String)> = serde_urlencoded::from_bytes(input)?;
        Ok(Self { pairs })
    }

    /// The last value of `key`, as Stripe takes repeated scalar parameters.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.pairs.iter().rev().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
    }

    /// Every `parent[key]=value` entry as a map of `key` to `value`.
    pub fn map(&self, parent: &str) -> BTreeMap<String, String> {
        self.pairs
            .iter()
            .filter_map(|(k, v)| {
                let inner = k.strip_prefix(parent)?.strip_prefix('[')?.strip_suffix(']')?;
                Some((inner.to_owned(), v.clone()))
            })
            .collect()
    }

    /// The top-level parameter names (`metadata[a]` counts as `metadata`).
    pub fn top_level_keys(&self) -> impl Iterator<Item = &str> {
        self.pairs.iter().map(|(k, _)| k.split('[').next().unwrap_or(k))
    }
}

/// `parent[child]`.
pub fn nested_key(parent: &str, child: &str) -> String {
    format!("{parent}[{child}]")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nested_keys_use_brackets_and_round_trip() {
        let metadata: BTreeMap<String, String> = [
            ("order_id".to_owned(), "ord 1&2".to_owned()),
            ("hold_id".to_owned(), "hld_9".to_owned()),
        ]
        .into();
        let mut form = Form::new();
        form.push("amount", "2500")
            .push("currency", "eur")
            .push_map("metadata", &metadata)
            .push_opt("description", None::<String>);
        assert_eq!(
            form.pairs(),
            &[
                ("amount".to_owned(), "2500".to_owned()),
                ("currency".to_owned(), "eur".to_owned()),
                ("metadata[hold_id]".to_owned(), "hld_9".to_owned()),
                ("metadata[order_id]".to_owned(), "ord 1&2".to_owned()),
            ]
        );
        let encoded = form.encode();
        assert_eq!(
            encoded,
            "amount=2500&currency=eur&metadata%5Bhold_id%5D=hld_9&metadata%5Border_id%5D=ord+1%262"
        );
        let decoded = Form::decode(encoded.as_bytes()).expect("decodes");
        assert_eq!(decoded, form);
        assert_eq!(decoded.map("metadata"), metadata);
        assert_eq!(decoded.get("amount"), Some("2500"));
        assert_eq!(
            decoded.top_level_keys().collect::<Vec<_>>(),
            ["amount", "currency", "metadata", "metadata"]
        );
        // Stripe also accepts unescaped brackets, as curl sends them.
        let raw = Form::decode(b"metadata[a]=1&created[gte]=5").expect("decodes");
        assert_eq!(raw.map("metadata").get("a").map(String::as_str), Some("1"));
        assert_eq!(raw.get("created[gte]"), Some("5"));
    }
}

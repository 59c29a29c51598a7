//! Values that must never be printed: [`Secret`] (tokens, passwords, keys, header values) and
//! [`SecretUrl`] (URLs that can carry credentials: webhook paths, `?token=` queries, signed
//! URLs, `user:password@`). Both redact themselves in `Debug` and `Display`; the value is
//! reached only through `expose()`, by the code that sends it.
//!
//! A `Redactor` (inside the crate) is the safety net behind them: every message a destination produces (send
//! errors, connect-check reports, log fields) passes through the redactor built from that
//! sink's config, which cuts out every secret value and every secret part of its URLs — so
//! even a destination that echoes the request (path, query, form body) back in its error
//! answer cannot make a secret reach a log, an error or `kmswatch validate --connect`.

use serde::{Deserialize, Serialize};
use std::fmt;

/// What replaces a secret in text.
pub const REDACTED: &str = "<redacted>";

/// A secret (token, client secret, HMAC key, header value): deserialized from a plain string,
/// never printed.
///
/// `Debug` and `Display` show `<redacted>`; [`Secret::expose`] gives the value to the one place
/// that sends it. Write `token: "${HEC_TOKEN}"` in the config: the binary interpolates
/// environment variables before the sinks see the config. Serializing writes the value (a
/// config written back must still work); never log a serialized config.
#[derive(Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    /// A secret from its value.
    pub fn new(value: impl Into<String>) -> Secret {
        Secret(value.into())
    }
    /// The value, for the request that needs it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(REDACTED)
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(REDACTED)
    }
}

/// A URL that may carry credentials. It prints as `scheme://host[:port]`, with
/// `<redacted>@` in place of any userinfo and `/<redacted>` in place of any path, query or
/// fragment (`https://hooks.slack.com/<redacted>`); a value that does not parse prints as
/// `<redacted URL>`. [`SecretUrl::expose`] gives the full URL to the request that needs it.
///
/// Deserialized from (and serialized to) a plain string; [`SecretUrl::parse`] checks it.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct SecretUrl(String);

impl SecretUrl {
    /// A URL from its text (not checked: see [`SecretUrl::parse`]).
    pub fn new(value: impl Into<String>) -> SecretUrl {
        SecretUrl(value.into())
    }

    /// The full URL, for the request that needs it.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// The parsed URL: `http` or `https` with a host. The error names the redacted form
    /// only.
    pub fn parse(&self) -> Result<reqwest::Url, String> {
        let u = reqwest::Url::parse(&self.0).map_err(|e| {
            format!("is not a valid URL ({e}; the value is not shown: it may carry credentials)")
        })?;
        if !matches!(u.scheme(), "http" | "https") {
            return Err(format!("{self} must be an http:// or https:// URL"));
        }
        if u.host_str().is_none_or(str::is_empty) {
            return Err(format!("{self} has no host"));
        }
        Ok(u)
    }

    /// The printable form (what `Display` writes).
    pub fn redacted(&self) -> String {
        let Ok(u) = reqwest::Url::parse(&self.0) else {
            return "<redacted URL>".to_string();
        };
        let mut out = format!("{}://", u.scheme());
        if !u.username().is_empty() || u.password().is_some() {
            out.push_str(REDACTED);
            out.push('@');
        }
        out.push_str(u.host_str().unwrap_or(""));
        if let Some(p) = u.port() {
            out.push_str(&format!(":{p}"));
        }
        let has_path = !matches!(u.path(), "" | "/");
        if has_path || u.query().is_some() || u.fragment().is_some() {
            out.push('/');
            out.push_str(REDACTED);
        }
        out
    }

    /// The parts of this URL that must not be printed: userinfo, path (and each segment),
    /// query (and each pair and value), fragment — raw and percent-decoded — and the whole
    /// text when it has any of them. A URL with none (`https://splunk:8088`) has none.
    pub(crate) fn secret_parts(&self) -> Vec<String> {
        let Ok(u) = reqwest::Url::parse(&self.0) else {
            return vec![self.0.clone()];
        };
        let mut out = vec![u.username().to_string()];
        out.extend(u.password().map(str::to_string));
        if !matches!(u.path(), "" | "/") {
            out.push(u.path().to_string());
            out.extend(u.path_segments().into_iter().flatten().map(str::to_string));
        }
        // As they read decoded (`pa%20ss` is `pa ss`).
        let decoded: Vec<String> = out.iter().map(|p| percent_decode(p)).collect();
        out.extend(decoded);
        if let Some(q) = u.query() {
            out.push(q.to_string());
            for (k, v) in u.query_pairs() {
                out.push(v.to_string());
                out.push(format!("{k}={v}"));
            }
            out.extend(q.split('&').map(str::to_string));
        }
        out.extend(u.fragment().map(str::to_string));
        out.retain(|p| !p.is_empty());
        if !out.is_empty() {
            out.push(self.0.clone());
            out.push(u.as_str().to_string());
        }
        out
    }
}

impl fmt::Debug for SecretUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.redacted())
    }
}

impl fmt::Display for SecretUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.redacted())
    }
}

/// `%XX` sequences decoded (invalid ones kept as they are).
fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while let Some(&c) = b.get(i) {
        let hex = b
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (c, hex) {
            (b'%', Some(v)) => {
                out.push(v);
                i += 3;
            }
            _ => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Shortest text the redactor cuts out: shorter path segments or values (`v1`, `api`) are
/// not worth mangling messages for, and are not secrets.
const MIN_NEEDLE: usize = 4;

/// Cuts a sink's secrets out of text (see the module docs).
#[derive(Clone, Default)]
pub(crate) struct Redactor {
    /// Longest first, so a secret is cut whole before any part of it.
    needles: Vec<String>,
}

impl fmt::Debug for Redactor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Redactor({} values)", self.needles.len())
    }
}

/// Every byte but the unreserved ones (`A-Z a-z 0-9 - _ . ~`) as `%XX`.
pub(crate) fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(b as char)
            }
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// Percent-encoded and `application/x-www-form-urlencoded` forms of a value.
fn encodings(s: &str) -> [String; 2] {
    let pct = percent_encode(s);
    let form = pct.replace("%20", "+");
    [pct, form]
}

impl Redactor {
    /// Adds a secret value (and its URL encodings).
    pub fn secret(&mut self, s: &str) -> &mut Redactor {
        self.push(s.to_string());
        for e in encodings(s) {
            self.push(e);
        }
        self
    }

    /// Adds the secret parts of a URL (not those that are also part of its printed form,
    /// such as a path segment that repeats the host name: that text is public anyway).
    pub fn url(&mut self, u: &SecretUrl) -> &mut Redactor {
        let shown = u.redacted();
        for p in u.secret_parts() {
            if !shown.contains(p.as_str()) {
                self.secret(&p);
            }
        }
        self
    }

    fn push(&mut self, s: String) {
        if s.chars().count() < MIN_NEEDLE || self.needles.contains(&s) {
            return;
        }
        let at = self
            .needles
            .iter()
            .position(|n| n.len() < s.len())
            .unwrap_or(self.needles.len());
        self.needles.insert(at, s);
    }

    /// `text` with every secret replaced by `<redacted>`.
    pub fn scrub(&self, text: &str) -> String {
        let mut out = text.to_string();
        for n in &self.needles {
            if out.contains(n.as_str()) {
                out = out.replace(n.as_str(), REDACTED);
            }
        }
        out
    }

    /// A send error with its message scrubbed.
    pub fn error(&self, mut e: crate::SendError) -> crate::SendError {
        e.message = self.scrub(&e.message);
        if let Some(u) = e.unacked.as_mut() {
            u.channel = self.scrub(&u.channel);
        }
        e
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_print_scheme_host_port_only() {
        for (raw, shown) in [
            ("https://splunk:8088", "https://splunk:8088"),
            ("https://splunk:8088/", "https://splunk:8088"),
            (
                "https://hooks.slack.com/services/T0/B0/XXXX",
                "https://hooks.slack.com/<redacted>",
            ),
            ("http://h:9/?token=abc", "http://h:9/<redacted>"),
            ("https://u:p@h/x#frag", "https://<redacted>@h/<redacted>"),
            ("https://u@h", "https://<redacted>@h"),
            ("not a url with secret", "<redacted URL>"),
        ] {
            let u = SecretUrl::new(raw);
            assert_eq!(u.to_string(), shown, "{raw}");
            assert_eq!(format!("{u:?}"), shown, "{raw}");
        }
        assert!(SecretUrl::new("ftp://h/x").parse().is_err());
        assert!(SecretUrl::new("https://").parse().is_err());
        assert!(SecretUrl::new("mailto:a@b.c").parse().is_err());
        assert!(SecretUrl::new("https://h/x").parse().is_ok());
        let e = SecretUrl::new("hooks/secretpath").parse().unwrap_err();
        assert!(!e.contains("secretpath"), "{e}");
    }

    #[test]
    fn redactor_cuts_every_part_and_encoding() {
        let mut r = Redactor::default();
        r.url(&SecretUrl::new(
            "https://user:pa%20ss@h/services/T0SECRET?token=q%2Ftok&x=1",
        ))
        .secret("s3cr3t~value&more=");
        // A URL without secret parts adds nothing, and a path segment that repeats the host
        // does not mangle the printed form.
        r.url(&SecretUrl::new("http://127.0.0.1:8088/"));
        let proxied = SecretUrl::new("https://splunk.example.com/splunk/hec?token=zzzzzz");
        let mut p = Redactor::default();
        p.url(&proxied);
        assert_eq!(
            p.scrub(&format!(
                "HEC {proxied} answered for /splunk/hec?token=zzzzzz"
            )),
            "HEC https://splunk.example.com/<redacted> answered for <redacted>?<redacted>"
        );
        let text = "GET /services/T0SECRET?token=q%2Ftok as user pa ss, token q/tok, \
                    form client_secret=s3cr3t~value%26more%3D and s3cr3t~value&more= at h \
                    via http://127.0.0.1:8088/";
        let out = r.scrub(text);
        for s in [
            "T0SECRET",
            "q%2Ftok",
            "q/tok",
            "pa ss",
            "s3cr3t",
            "value%26more",
        ] {
            assert!(!out.contains(s), "{s} in {out}");
        }
        assert!(out.contains(" at h via http://127.0.0.1:8088/"), "{out}");
    }
}

//! Untrusted text on a terminal: the one place that renders log data for people.
//!
//! Audit logs are written by whoever can call the cloud APIs (or put a file in a monitored
//! bucket): a key name, a principal, a user agent or a file name can hold ESC/CSI/OSC
//! sequences, BEL, backspace or carriage returns that, printed raw, recolour or rewrite the
//! operator's terminal, set its title, hide lines or (on some terminals) answer back. Every
//! human-readable output path of the binary (the `scan` table, `normalize`/`scan` summaries
//! and rejections, `rules test` output, error messages, the `--log-format text` log lines)
//! passes such text through [`escape`] (or [`Escaped`]); JSON output stays JSON (serde
//! escapes C0 control characters itself).
//!
//! What is made visible: every control character (C0 `U+0000`–`U+001F`, DEL, C1
//! `U+0080`–`U+009F`, whose `U+009B` is a one-character CSI on some terminals) and the Unicode
//! bidirectional controls (`U+061C`, `U+200E`, `U+200F`, `U+202A`–`U+202E`, `U+2066`–`U+2069`)
//! that reorder what is shown. C0 and DEL print as `\xNN` (`\n`, `\r`, `\t` by name), the
//! others as `\u{NNNN}`. Backslashes are left alone: names such as `DOMAIN\user` stay readable,
//! at the price of `\x1b` typed literally into a name looking like an escaped ESC.

use std::borrow::Cow;
use std::fmt::{self, Write as _};

/// Whether `c` must not reach a terminal as it is.
fn is_hazard(c: char) -> bool {
    c.is_control()
        || matches!(
            c,
            '\u{061c}' | '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}'
        )
}

fn write_escaped(out: &mut impl fmt::Write, s: &str, keep_newlines: bool) -> fmt::Result {
    let mut rest = s;
    while let Some(i) = rest.find(|c: char| is_hazard(c) && !(keep_newlines && c == '\n')) {
        out.write_str(&rest[..i])?;
        let c = rest[i..].chars().next().unwrap_or_default();
        match c {
            '\n' => out.write_str("\\n")?,
            '\r' => out.write_str("\\r")?,
            '\t' => out.write_str("\\t")?,
            c if u32::from(c) < 0x80 => write!(out, "\\x{:02x}", u32::from(c))?,
            c => write!(out, "\\u{{{:x}}}", u32::from(c))?,
        }
        rest = &rest[i + c.len_utf8()..];
    }
    out.write_str(rest)
}

/// `s` with every control character and bidirectional control made visible (see the module
/// docs); borrowed when there is nothing to escape.
pub fn escape(s: &str) -> Cow<'_, str> {
    if !s.contains(is_hazard) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 8);
    // Writing to a String cannot fail.
    let _ = write_escaped(&mut out, s, false);
    Cow::Owned(out)
}

/// Like [`escape`], but line breaks are kept: for multi-line messages of our own (an error
/// chain, a list of rule load errors) that quote untrusted text.
pub fn escape_lines(s: &str) -> Cow<'_, str> {
    if !s.contains(|c: char| is_hazard(c) && c != '\n') {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 8);
    let _ = write_escaped(&mut out, s, true);
    Cow::Owned(out)
}

/// Displays a `&str` escaped, without an intermediate allocation:
/// `eprintln!("rejected: {}", Escaped(&location))`.
#[derive(Debug, Clone, Copy)]
pub struct Escaped<'a>(pub &'a str);

impl fmt::Display for Escaped<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_escaped(f, self.0, false)
    }
}

/// Field formatting of `--log-format text` log lines: every field value — and the message —
/// goes through [`escape`].
///
/// tracing-subscriber 0.3.23's default text formatter (`DefaultFields`) escapes ESC, BEL, BS,
/// FF, DEL and C1 in the message and in errors, and `&str` fields are printed with `Debug`
/// (escaped by Rust), but a field recorded with `%` (`origin = %origin`: `Display`, the
/// runtime's usual form) is written raw, and CR, VT and the other C0 characters pass
/// everywhere. With this formatter a log line never carries a raw control character from a
/// field; the JSON format needs nothing (serde escapes them).
#[derive(Debug, Clone, Copy, Default)]
pub struct TextFields;

impl<'writer> tracing_subscriber::fmt::FormatFields<'writer> for TextFields {
    fn format_fields<R: tracing_subscriber::field::RecordFields>(
        &self,
        mut writer: tracing_subscriber::fmt::format::Writer<'writer>,
        fields: R,
    ) -> fmt::Result {
        let mut v = FieldVisitor {
            writer: &mut writer,
            first: true,
            result: Ok(()),
            scratch: String::new(),
        };
        fields.record(&mut v);
        v.result
    }
}

struct FieldVisitor<'a, 'writer> {
    writer: &'a mut tracing_subscriber::fmt::format::Writer<'writer>,
    first: bool,
    result: fmt::Result,
    scratch: String,
}

impl FieldVisitor<'_, '_> {
    fn write(&mut self, field: &tracing::field::Field, value: fmt::Arguments<'_>) {
        if self.result.is_err() {
            return;
        }
        self.scratch.clear();
        if self.scratch.write_fmt(value).is_err() {
            self.result = Err(fmt::Error);
            return;
        }
        let sep = if self.first { "" } else { " " };
        self.first = false;
        let text = escape(&self.scratch);
        self.result = match field.name() {
            "message" => write!(self.writer, "{sep}{text}"),
            name => write!(
                self.writer,
                "{sep}{}={text}",
                name.strip_prefix("r#").unwrap_or(name)
            ),
        };
    }
}

impl tracing::field::Visit for FieldVisitor<'_, '_> {
    fn record_str(&mut self, field: &tracing::field::Field, value: &str) {
        if field.name() == "message" {
            self.write(field, format_args!("{value}"));
        } else {
            self.write(field, format_args!("{value:?}"));
        }
    }

    fn record_error(
        &mut self,
        field: &tracing::field::Field,
        value: &(dyn std::error::Error + 'static),
    ) {
        let mut text = value.to_string();
        let mut source = value.source();
        while let Some(s) = source {
            text.push_str(": ");
            text.push_str(&s.to_string());
            source = s.source();
        }
        self.write(field, format_args!("{text}"));
    }

    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn fmt::Debug) {
        self.write(field, format_args!("{value:?}"));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    const HOSTILE: &str =
        "key\x1b[2J\x1b]0;owned\x07\u{9b}31m\x08\x08\r\x0b\u{202e}gnp.exe\x7f\tend\n";

    fn has_raw_control(s: &str) -> bool {
        s.chars().any(is_hazard)
    }

    #[test]
    fn every_control_character_is_made_visible() {
        let e = escape(HOSTILE);
        assert!(!has_raw_control(&e), "{e:?}");
        assert_eq!(
            e,
            "key\\x1b[2J\\x1b]0;owned\\x07\\u{9b}31m\\x08\\x08\\r\\x0b\\u{202e}gnp.exe\\x7f\\tend\\n"
        );
        // Every C0, DEL, C1 code point, one by one.
        for c in (0u32..0x20).chain(0x7f..0xa0).filter_map(char::from_u32) {
            let s = c.to_string();
            assert!(!has_raw_control(&escape(&s)), "U+{:04X}", u32::from(c));
            assert_eq!(Escaped(&s).to_string(), escape(&s));
        }
        assert!(matches!(escape("arn:aws:kms:…/key/é"), Cow::Borrowed(_)));
        assert_eq!(escape_lines("a\x1b\nb\r"), "a\\x1b\nb\\r");
    }

    #[derive(Clone, Default)]
    struct Buf(Arc<Mutex<Vec<u8>>>);
    impl std::io::Write for Buf {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0
                .lock()
                .map_err(|_| std::io::Error::other("poisoned"))?
                .extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    fn log_with(fields: Option<TextFields>) -> String {
        let buf = Buf::default();
        let out = buf.clone();
        let builder = tracing_subscriber::fmt()
            .with_ansi(false)
            .with_writer(move || out.clone());
        let dispatch = match fields {
            Some(f) => tracing::Dispatch::new(builder.fmt_fields(f).finish()),
            None => tracing::Dispatch::new(builder.finish()),
        };
        tracing::dispatcher::with_default(&dispatch, || {
            let err = std::io::Error::other(HOSTILE);
            tracing::warn!(origin = %HOSTILE, principal = ?HOSTILE, name = HOSTILE, error = &err as &(dyn std::error::Error + 'static), "bad object {}", HOSTILE);
        });
        let bytes = buf.0.lock().expect("log buffer").clone();
        String::from_utf8(bytes).expect("utf-8 log")
    }

    #[test]
    fn text_log_lines_carry_no_raw_control_characters() {
        // What tracing-subscriber does on its own: a `%` field is written raw.
        let default = log_with(None);
        assert!(default.contains('\x1b'), "{default:?}");
        let line = log_with(Some(TextFields));
        let body = line.strip_suffix('\n').expect("one line");
        assert!(!has_raw_control(body), "{line:?}");
        assert!(
            body.contains("origin=key\\x1b[2J") && body.contains("bad object key\\x1b"),
            "{body}"
        );
        assert!(body.contains("name=\"key\\u{1b}[2J"), "{body}");
        assert!(body.contains("error=key\\x1b[2J"), "{body}");
    }
}

//! JSON text helpers: records are written with `format!` for speed; every value that is not
//! a fixed identifier goes through [`s`].

/// A JSON string literal (quoted and escaped).
pub fn s(v: &str) -> String {
    let mut o = String::with_capacity(v.len() + 2);
    o.push('"');
    for c in v.chars() {
        match c {
            '"' => o.push_str("\\\""),
            '\\' => o.push_str("\\\\"),
            '\n' => o.push_str("\\n"),
            '\r' => o.push_str("\\r"),
            '\t' => o.push_str("\\t"),
            c if (c as u32) < 0x20 => o.push_str(&format!("\\u{:04x}", c as u32)),
            c => o.push(c),
        }
    }
    o.push('"');
    o
}

#[cfg(test)]
mod tests {
    #[test]
    fn escapes_round_trip() {
        let v = "a \"b\" \\ c\n\u{1}";
        let back: String = serde_json::from_str(&super::s(v)).unwrap_or_default();
        assert_eq!(back, v);
    }
}

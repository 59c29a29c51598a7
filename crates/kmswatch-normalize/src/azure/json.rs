//! Small borrowed JSON readers for the nested parts of Azure records (no `serde_json::Value`).

use serde::de::{Deserialize, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use std::borrow::Cow;
use std::fmt;
use std::marker::PhantomData;

/// A scalar as text: strings (borrowed when unescaped), numbers (`403`, `403.0` → `"403"`) and
/// booleans; `None` for null, objects and arrays (which are skipped).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Text<'a>(pub Option<Cow<'a, str>>);

impl<'a> Text<'a> {
    /// The text, when non-empty after trimming.
    pub fn get(self) -> Option<Cow<'a, str>> {
        self.0.filter(|s| !s.trim().is_empty())
    }
}

struct TextVisitor<'a>(PhantomData<&'a ()>);

impl<'de: 'a, 'a> Visitor<'de> for TextVisitor<'a> {
    type Value = Text<'a>;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Self::Value, E> {
        Ok(Text(Some(Cow::Borrowed(v))))
    }
    fn visit_str<E>(self, v: &str) -> Result<Self::Value, E> {
        Ok(Text(Some(Cow::Owned(v.to_string()))))
    }
    fn visit_string<E>(self, v: String) -> Result<Self::Value, E> {
        Ok(Text(Some(Cow::Owned(v))))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Self::Value, E> {
        Ok(Text(Some(Cow::Owned(v.to_string()))))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Self::Value, E> {
        Ok(Text(Some(Cow::Owned(v.to_string()))))
    }
    fn visit_f64<E>(self, v: f64) -> Result<Self::Value, E> {
        let s = if v.fract() == 0.0 && v.abs() < 1e15 {
            format!("{}", v as i64)
        } else {
            v.to_string()
        };
        Ok(Text(Some(Cow::Owned(s))))
    }
    fn visit_bool<E>(self, v: bool) -> Result<Self::Value, E> {
        Ok(Text(Some(Cow::Borrowed(if v { "true" } else { "false" }))))
    }
    fn visit_unit<E>(self) -> Result<Self::Value, E> {
        Ok(Text(None))
    }
    fn visit_none<E>(self) -> Result<Self::Value, E> {
        Ok(Text(None))
    }
    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        Text::deserialize(d)
    }
    fn visit_map<A: MapAccess<'de>>(self, mut a: A) -> Result<Self::Value, A::Error> {
        while a.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
        Ok(Text(None))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut a: A) -> Result<Self::Value, A::Error> {
        while a.next_element::<IgnoredAny>()?.is_some() {}
        Ok(Text(None))
    }
}

impl<'de: 'a, 'a> Deserialize<'de> for Text<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(TextVisitor(PhantomData))
    }
}

/// A JSON object's scalar members as `(name, text)` pairs, in order (nested values skipped).
/// Used for token claims. Anything that is not an object reads as empty.
#[derive(Debug, Default, Clone)]
pub struct Pairs<'a>(pub Vec<(Cow<'a, str>, Cow<'a, str>)>);

struct PairsVisitor<'a>(PhantomData<&'a ()>);

impl<'de: 'a, 'a> Visitor<'de> for PairsVisitor<'a> {
    type Value = Pairs<'a>;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON object")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut a: A) -> Result<Self::Value, A::Error> {
        let mut out = Vec::new();
        while let Some(k) = a.next_key::<Text<'a>>()? {
            let v: Text<'a> = a.next_value()?;
            if let (Some(k), Some(v)) = (k.0, v.0) {
                out.push((k, v));
            }
        }
        Ok(Pairs(out))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut a: A) -> Result<Self::Value, A::Error> {
        while a.next_element::<IgnoredAny>()?.is_some() {}
        Ok(Pairs::default())
    }
    fn visit_borrowed_str<E>(self, _: &'de str) -> Result<Self::Value, E> {
        Ok(Pairs::default())
    }
    fn visit_str<E>(self, _: &str) -> Result<Self::Value, E> {
        Ok(Pairs::default())
    }
    fn visit_i64<E>(self, _: i64) -> Result<Self::Value, E> {
        Ok(Pairs::default())
    }
    fn visit_u64<E>(self, _: u64) -> Result<Self::Value, E> {
        Ok(Pairs::default())
    }
    fn visit_f64<E>(self, _: f64) -> Result<Self::Value, E> {
        Ok(Pairs::default())
    }
    fn visit_bool<E>(self, _: bool) -> Result<Self::Value, E> {
        Ok(Pairs::default())
    }
    fn visit_unit<E>(self) -> Result<Self::Value, E> {
        Ok(Pairs::default())
    }
}

impl<'de: 'a, 'a> Deserialize<'de> for Pairs<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(PairsVisitor(PhantomData))
    }
}

/// `{"value": "...", "localizedValue": "..."}` (Activity Log REST/SDK), or a bare string.
#[derive(Debug, Default, Clone)]
pub struct Localized<'a>(pub Option<Cow<'a, str>>);

struct LocalizedVisitor<'a>(PhantomData<&'a ()>);

impl<'de: 'a, 'a> Visitor<'de> for LocalizedVisitor<'a> {
    type Value = Localized<'a>;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a string or an object with `value`")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut a: A) -> Result<Self::Value, A::Error> {
        let mut out = None;
        while let Some(k) = a.next_key::<Text<'a>>()? {
            if k.0.as_deref() == Some("value") {
                out = a.next_value::<Text<'a>>()?.get();
            } else {
                a.next_value::<IgnoredAny>()?;
            }
        }
        Ok(Localized(out))
    }
    fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Self::Value, E> {
        Ok(Localized(Text(Some(Cow::Borrowed(v))).get()))
    }
    fn visit_str<E>(self, v: &str) -> Result<Self::Value, E> {
        Ok(Localized(Text(Some(Cow::Owned(v.to_string()))).get()))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut a: A) -> Result<Self::Value, A::Error> {
        while a.next_element::<IgnoredAny>()?.is_some() {}
        Ok(Localized(None))
    }
    fn visit_unit<E>(self) -> Result<Self::Value, E> {
        Ok(Localized(None))
    }
    fn visit_i64<E>(self, _: i64) -> Result<Self::Value, E> {
        Ok(Localized(None))
    }
    fn visit_u64<E>(self, _: u64) -> Result<Self::Value, E> {
        Ok(Localized(None))
    }
    fn visit_f64<E>(self, _: f64) -> Result<Self::Value, E> {
        Ok(Localized(None))
    }
    fn visit_bool<E>(self, _: bool) -> Result<Self::Value, E> {
        Ok(Localized(None))
    }
}

impl<'de: 'a, 'a> Deserialize<'de> for Localized<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(LocalizedVisitor(PhantomData))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_shapes() {
        let t: Text = serde_json::from_str(r#""abc""#).unwrap();
        assert!(matches!(t.0, Some(Cow::Borrowed("abc"))));
        let t: Text = serde_json::from_str(r#""a\"b""#).unwrap();
        assert_eq!(t.0.as_deref(), Some("a\"b"));
        let t: Text = serde_json::from_str("403.0").unwrap();
        assert_eq!(t.0.as_deref(), Some("403"));
        let t: Text = serde_json::from_str("200").unwrap();
        assert_eq!(t.0.as_deref(), Some("200"));
        let t: Text = serde_json::from_str(r#"{"a":[1,{"b":2}]}"#).unwrap();
        assert_eq!(t.0, None);
        let t: Text = serde_json::from_str("null").unwrap();
        assert_eq!(t.0, None);
        let t: Text = serde_json::from_str(r#""  ""#).unwrap();
        assert_eq!(t.get(), None);
    }

    #[test]
    fn pairs_and_localized() {
        let p: Pairs = serde_json::from_str(r#"{"a":"x","n":1,"o":{"z":"y"},"u":null}"#).unwrap();
        assert_eq!(p.0.len(), 2);
        assert_eq!(p.0[0], (Cow::Borrowed("a"), Cow::Borrowed("x")));
        assert_eq!(p.0[1].1, "1");
        let p: Pairs = serde_json::from_str(r#""not an object""#).unwrap();
        assert!(p.0.is_empty());
        let l: Localized = serde_json::from_str(
            r#"{"value":"Microsoft.KeyVault/vaults/delete","localizedValue":"Delete Key Vault"}"#,
        )
        .unwrap();
        assert_eq!(l.0.as_deref(), Some("Microsoft.KeyVault/vaults/delete"));
        let l: Localized = serde_json::from_str(r#""Succeeded""#).unwrap();
        assert_eq!(l.0.as_deref(), Some("Succeeded"));
        let l: Localized = serde_json::from_str(r#"{"value":""}"#).unwrap();
        assert_eq!(l.0, None);
    }
}

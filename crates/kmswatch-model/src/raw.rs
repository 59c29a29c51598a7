//! [`Raw`]: the provider's original record as JSON text.

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::value::RawValue;
use std::fmt;

/// The provider's original record, as JSON text (`Event::raw`).
///
/// Serialized as the JSON value itself, not as a string. Unlike `Box<RawValue>`, building one
/// from text the normalizer has already checked costs a copy, not a second parse: the
/// normalizer validates each record once, while delimiting it ([`Raw::from_checked`]).
/// [`Raw::from_string`] validates. Serializing re-reads the text as a `RawValue` (only
/// findings' evidence and `normalize` output pay that); text that is not JSON after all —
/// only possible through a wrong [`Raw::from_checked`] — is written as a JSON string rather
/// than as broken JSON.
#[derive(Clone, PartialEq, Eq)]
pub struct Raw(Box<str>);

impl Raw {
    /// Validate `json` and keep it.
    pub fn from_string(json: String) -> Result<Raw, serde_json::Error> {
        Ok(Raw::from(RawValue::from_string(json)?))
    }

    /// Keep JSON text that the caller has already checked to be one valid JSON value (the
    /// normalizer's strict scan). Not checked again here.
    pub fn from_checked(json: Box<str>) -> Raw {
        Raw(json)
    }

    /// The JSON text.
    pub fn get(&self) -> &str {
        &self.0
    }
}

impl From<Box<RawValue>> for Raw {
    fn from(v: Box<RawValue>) -> Raw {
        Raw(v.into())
    }
}

impl fmt::Debug for Raw {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Raw").field(&self.get()).finish()
    }
}

impl fmt::Display for Raw {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.get())
    }
}

impl Serialize for Raw {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match serde_json::from_str::<&RawValue>(self.get()) {
            Ok(v) => v.serialize(s),
            Err(_) => s.serialize_str(self.get()),
        }
    }
}

impl<'de> Deserialize<'de> for Raw {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Raw, D::Error> {
        Box::<RawValue>::deserialize(d).map(Raw::from)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serializes_as_the_value_and_round_trips() {
        let r = Raw::from_string(r#"{"a":[1,"x"]}"#.to_string()).expect("valid");
        let s = serde_json::to_string(&serde_json::json!({ "raw": r })).expect("ser");
        assert_eq!(s, r#"{"raw":{"a":[1,"x"]}}"#);
        #[derive(Deserialize)]
        struct W {
            raw: Raw,
        }
        let w: W = serde_json::from_str(&s).expect("de");
        assert_eq!(w.raw.get(), r#"{"a":[1,"x"]}"#);
    }

    #[test]
    fn invalid_text_is_refused_or_written_as_a_string() {
        assert!(Raw::from_string("{\"a\":".to_string()).is_err());
        let bad = Raw::from_checked("{\"a\":".into());
        assert_eq!(serde_json::to_string(&bad).expect("ser"), r#""{\"a\":""#);
    }
}

//! Enrichment: the `kmswatch.*` fields rules can use, computed once per event before matching.
//!
//! | field | meaning |
//! |---|---|
//! | `kmswatch.off_hours` | `true` when the event time falls outside business hours in the calendar of the event's account (`cloud.account.uid`: AWS account, Azure subscription, GCP project), else the default calendar: not a working day, a holiday, or outside `[start, end)` local time. Absent when no calendar is configured. |
//! | `kmswatch.first_seen` | `true` the first time a principal (`actor.user.uid`) performs a cryptographic operation (Encrypt, Decrypt, ReEncrypt, GenerateDataKey, Sign, Verify, GenerateMac, VerifyMac, WrapKey, UnwrapKey) with a key (`kms.key.uid`) within the lookback (default 30 days), `false` when it did so before within the lookback, after a learning period (`first_seen_learning_days`, default 7) counted from the first event the baseline saw, during which it is always `false`. Decided at arrival, per day: the state is one entry per (principal, key) pair (a 64-bit hash -> last day seen). Absent for other operations or when the principal or key is unknown. |
//! | `kmswatch.principal_known` | `false` only when an identity inventory is configured and neither `actor.user.uid` nor `actor.user.name` is in it (case-insensitively); `true` when one is; absent when no inventory is configured or the event names no principal. |

use crate::pattern::{Folded, FoldedRef};
use crate::Enrichment;
use chrono::{Datelike, NaiveDate, NaiveTime, Offset, TimeZone, Weekday};
use chrono_tz::Tz;
use hashbrown::{HashMap, HashSet};
use kmswatch_model::{Event, KmsOperation};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// A business calendar: when people work in one account/subscription/project.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CalendarConfig {
    /// IANA time zone (`Europe/Paris`, `America/New_York`). Default `UTC`.
    #[serde(default = "default_tz")]
    pub time_zone: String,
    /// Working days (`mon` .. `sun`). Default Monday to Friday.
    #[serde(default = "default_days")]
    pub working_days: Vec<String>,
    /// Start of working hours, local `HH:MM` (inclusive). Default `08:00`.
    #[serde(default = "default_start")]
    pub work_start: String,
    /// End of working hours, local `HH:MM` (exclusive). Default `18:00`.
    #[serde(default = "default_end")]
    pub work_end: String,
    /// Holidays, local dates `YYYY-MM-DD` (the whole day is off hours).
    #[serde(default)]
    pub holidays: Vec<String>,
}

fn default_tz() -> String {
    "UTC".to_string()
}
fn default_days() -> Vec<String> {
    ["mon", "tue", "wed", "thu", "fri"]
        .iter()
        .map(|s| s.to_string())
        .collect()
}
fn default_start() -> String {
    "08:00".to_string()
}
fn default_end() -> String {
    "18:00".to_string()
}

impl Default for CalendarConfig {
    fn default() -> Self {
        CalendarConfig {
            time_zone: default_tz(),
            working_days: default_days(),
            work_start: default_start(),
            work_end: default_end(),
            holidays: Vec::new(),
        }
    }
}

/// A configuration error: what is wrong and where in the config.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {reason}")]
pub struct ConfigError {
    /// The config field (`calendars.111122223333.time_zone`).
    pub field: String,
    /// What is wrong.
    pub reason: String,
}

/// A compiled calendar.
#[derive(Debug, Clone)]
pub(crate) struct Calendar {
    tz: Tz,
    days: [bool; 7],
    start: NaiveTime,
    end: NaiveTime,
    holidays: HashSet<NaiveDate>,
    /// The last UTC minute answered (epoch minutes) and its answer, kept only when the
    /// minute has one whole-minute UTC offset throughout (then the answer is the same for
    /// every instant of it, as working hours are whole minutes).
    last: Option<(i64, bool)>,
}

impl Calendar {
    pub(crate) fn compile(c: &CalendarConfig, at: &str) -> Result<Calendar, ConfigError> {
        let e = |f: &str, reason: String| ConfigError {
            field: format!("{at}.{f}"),
            reason,
        };
        let tz: Tz = c.time_zone.parse().map_err(|_| {
            e(
                "time_zone",
                format!("unknown IANA time zone {:?}", c.time_zone),
            )
        })?;
        let mut days = [false; 7];
        for d in &c.working_days {
            let wd: Weekday = d
                .parse()
                .map_err(|_| e("working_days", format!("{d:?} is not a weekday (mon..sun)")))?;
            if let Some(slot) = days.get_mut(wd.num_days_from_monday() as usize) {
                *slot = true;
            }
        }
        let time = |f: &str, s: &str| {
            NaiveTime::parse_from_str(s, "%H:%M")
                .map_err(|_| e(f, format!("{s:?} is not a local time HH:MM")))
        };
        let start = time("work_start", &c.work_start)?;
        let end = time("work_end", &c.work_end)?;
        let mut holidays = HashSet::new();
        for h in &c.holidays {
            holidays.insert(
                NaiveDate::parse_from_str(h, "%Y-%m-%d")
                    .map_err(|_| e("holidays", format!("{h:?} is not a date YYYY-MM-DD")))?,
            );
        }
        Ok(Calendar {
            tz,
            days,
            start,
            end,
            holidays,
            last: None,
        })
    }

    /// [`Calendar::off_hours`], answered from the last minute's answer when `t` falls in it
    /// (events come in time order, many per minute; the time zone conversion is the cost).
    pub(crate) fn off_hours_cached(&mut self, t: i64) -> bool {
        let minute = t.div_euclid(60_000);
        if let Some((m, off)) = self.last {
            if m == minute {
                return off;
            }
        }
        let off = self.off_hours(t);
        self.last = self.uniform_minute(minute).then_some((minute, off));
        off
    }

    /// Whether the UTC offset is the same whole number of minutes at both ends of `minute`
    /// (no transition inside it, no seconds in the offset as some historical LMT offsets have).
    fn uniform_minute(&self, minute: i64) -> bool {
        let offset = |ms: i64| {
            chrono::DateTime::from_timestamp_millis(ms).map(|utc| {
                self.tz
                    .offset_from_utc_datetime(&utc.naive_utc())
                    .fix()
                    .local_minus_utc()
            })
        };
        let Some(first) = minute.checked_mul(60_000) else {
            return false;
        };
        match (offset(first), offset(first.saturating_add(59_999))) {
            (Some(a), Some(b)) => a == b && a % 60 == 0,
            _ => false,
        }
    }

    /// Whether epoch-ms `t` is outside business hours.
    pub(crate) fn off_hours(&self, t: i64) -> bool {
        let Some(utc) = chrono::DateTime::from_timestamp_millis(t) else {
            return false;
        };
        let local = self.tz.from_utc_datetime(&utc.naive_utc());
        let date = local.date_naive();
        let working_day = self
            .days
            .get(local.weekday().num_days_from_monday() as usize)
            .copied()
            .unwrap_or(false);
        if !working_day || self.holidays.contains(&date) {
            return true;
        }
        let time = local.time();
        if self.start <= self.end {
            !(time >= self.start && time < self.end)
        } else {
            // Night shift spanning midnight (22:00-06:00).
            !(time >= self.start || time < self.end)
        }
    }
}

/// Operations that count as using a key for `kmswatch.first_seen`.
pub fn is_crypto_operation(op: KmsOperation) -> bool {
    matches!(
        op,
        KmsOperation::Encrypt
            | KmsOperation::Decrypt
            | KmsOperation::ReEncrypt
            | KmsOperation::GenerateDataKey
            | KmsOperation::Sign
            | KmsOperation::Verify
            | KmsOperation::GenerateMac
            | KmsOperation::VerifyMac
            | KmsOperation::WrapKey
            | KmsOperation::UnwrapKey
    )
}

/// FNV-1a 64: a fixed hash, the same on every machine and run (state snapshots rely on it).
pub(crate) fn fnv1a(parts: &[&[u8]]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for p in parts {
        for b in *p {
            h ^= u64::from(*b);
            h = h.wrapping_mul(0x0000_0100_0000_01b3);
        }
        // Separator so ("ab","c") and ("a","bc") differ.
        h ^= 0xff;
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

/// Folded-multiply hash, eight bytes at a time: a fixed hash like [`fnv1a`] (the same on every
/// machine and run) and about eight times faster on the strings it is used for (principals,
/// key names, event ids of 30–150 bytes).
pub(crate) fn fold64(parts: &[&[u8]]) -> u64 {
    const K: u64 = 0x9e37_79b9_7f4a_7c15;
    const S: u64 = 0xa076_1d64_78bd_642f;
    fn mix(a: u64, b: u64) -> u64 {
        let r = u128::from(a) * u128::from(b);
        (r as u64) ^ ((r >> 64) as u64)
    }
    let mut h = S;
    for p in parts {
        let mut words = p.chunks_exact(8);
        for w in &mut words {
            let mut b = [0u8; 8];
            b.copy_from_slice(w);
            h = mix(h ^ u64::from_le_bytes(b), K);
        }
        // The last 0-7 bytes, read in place (copying them into a zeroed word first would
        // stall the load on the byte stores): two overlapping 4-byte reads, or three bytes,
        // cover them all; with the length mixed in below, no two tails read the same.
        let rest = words.remainder();
        let tail = match (rest.first_chunk::<4>(), rest.last_chunk::<4>()) {
            (Some(a), Some(b)) => {
                u64::from(u32::from_le_bytes(*a)) | (u64::from(u32::from_le_bytes(*b)) << 32)
            }
            _ => match (rest.first(), rest.get(rest.len() / 2), rest.last()) {
                (Some(a), Some(m), Some(z)) => {
                    u64::from(*a) | (u64::from(*m) << 8) | (u64::from(*z) << 16)
                }
                _ => 0,
            },
        };
        h = mix(h ^ tail, K);
        // The length closes the part, so ("ab","c") and ("a","bc") differ.
        h = mix(h ^ p.len() as u64, S);
    }
    h
}

/// The hash of the engine's internal fingerprints: the duplicate set (`metadata.uid` and
/// time) and the first-seen baseline ((principal, key)). Both are kept in snapshots, so the
/// state records which hash wrote them and a restored state keeps it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum KeyHash {
    /// [`fnv1a`], one byte at a time: states written before the hash was recorded.
    #[default]
    Fnv1a,
    /// [`fold64`]: every new state.
    Fold64,
}

impl KeyHash {
    /// The hash of a fresh state.
    pub const CURRENT: KeyHash = KeyHash::Fold64;

    pub(crate) fn hash(self, parts: &[&[u8]]) -> u64 {
        match self {
            KeyHash::Fnv1a => fnv1a(parts),
            KeyHash::Fold64 => fold64(parts),
        }
    }
}

/// Hasher for maps keyed by an [`fnv1a`] hash (already a hash: one multiply spreads it over
/// the bits the table uses), much cheaper per event than the default SipHash.
#[derive(Debug, Clone, Copy, Default)]
pub struct HashKeyHasher(u64);

impl std::hash::Hasher for HashKeyHasher {
    fn finish(&self) -> u64 {
        let h = self.0.wrapping_mul(0x9e37_79b9_7f4a_7c15);
        h ^ (h >> 29)
    }
    fn write(&mut self, bytes: &[u8]) {
        self.0 = fnv1a(&[bytes]) ^ self.0.rotate_left(5);
    }
    fn write_u64(&mut self, v: u64) {
        self.0 = v ^ self.0.rotate_left(5);
    }
}

/// A map keyed by an [`fnv1a`] hash.
pub type HashKeyMap<V> =
    std::collections::HashMap<u64, V, std::hash::BuildHasherDefault<HashKeyHasher>>;

/// The identity inventory: principals known to be active.
#[derive(Debug, Clone, Default)]
pub struct Inventory {
    principals: HashSet<Folded>,
}

/// Why the identity inventory could not be read.
#[derive(Debug, thiserror::Error)]
pub enum InventoryError {
    /// The file could not be read (retrying may help).
    #[error("identity inventory {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// A JSON line is not an object with a principal.
    #[error("identity inventory {path}:{line}: {reason}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// 1-based line.
        line: usize,
        /// What is wrong.
        reason: String,
    },
}

impl Inventory {
    /// Read an inventory file: JSON lines (each an object whose `uid`, `email`, `upn`, `name`,
    /// `arn` or `principal` string values are principals, or a bare JSON string) or CSV/plain
    /// text (every non-empty cell of every row; a header row with such names is skipped
    /// naturally since it matches no principal). Lines starting with `#` are comments.
    pub fn load(path: &Path) -> Result<Inventory, InventoryError> {
        let text = std::fs::read_to_string(path).map_err(|source| InventoryError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        Inventory::parse(&text).map_err(|(line, reason)| InventoryError::Invalid {
            path: path.to_path_buf(),
            line,
            reason,
        })
    }

    /// Parse inventory text (see [`Inventory::load`]); errors carry the 1-based line.
    pub fn parse(text: &str) -> Result<Inventory, (usize, String)> {
        let mut inv = Inventory::default();
        for (i, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            if line.starts_with('{') || line.starts_with('"') {
                let v: serde_json::Value =
                    serde_json::from_str(line).map_err(|e| (i + 1, format!("not JSON: {e}")))?;
                match &v {
                    serde_json::Value::String(s) => inv.add(s),
                    serde_json::Value::Object(o) => {
                        let mut any = false;
                        for k in ["uid", "email", "upn", "name", "arn", "principal", "id"] {
                            if let Some(s) = o.get(k).and_then(|v| v.as_str()) {
                                inv.add(s);
                                any = true;
                            }
                        }
                        if !any {
                            return Err((
                                i + 1,
                                "no uid/email/upn/name/arn/principal/id string".to_string(),
                            ));
                        }
                    }
                    _ => return Err((i + 1, "expected an object or a string".to_string())),
                }
            } else {
                for cell in line.split(',') {
                    inv.add(cell.trim().trim_matches('"'));
                }
            }
        }
        Ok(inv)
    }

    fn add(&mut self, s: &str) {
        if !s.is_empty() {
            self.principals.insert(Folded(s.to_string()));
        }
    }

    /// Whether `principal` is in the inventory (case-insensitively).
    pub fn contains(&self, principal: &str) -> bool {
        self.principals.contains(&FoldedRef(principal))
    }

    /// Number of principals.
    pub fn len(&self) -> usize {
        self.principals.len()
    }

    /// Whether it is empty.
    pub fn is_empty(&self) -> bool {
        self.principals.is_empty()
    }
}

/// First-seen baseline state: (principal, key) hash -> last day seen (days since epoch).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct FirstSeenState {
    /// Entries.
    pub last_day: HashKeyMap<i32>,
    /// Day of the last purge of entries older than the lookback.
    pub purged_day: i32,
    /// Day of the first event the baseline saw (start of its learning period).
    #[serde(default)]
    pub first_day: Option<i32>,
}

/// The enricher: calendars, inventory and the first-seen baseline.
#[derive(Debug)]
pub(crate) struct Enricher {
    default_cal: Option<Calendar>,
    calendars: HashMap<String, Calendar>,
    inventory: Option<Inventory>,
    lookback_days: i32,
    learning_days: i32,
    pub(crate) first_seen: FirstSeenState,
    /// Inventory answers by (uid, name) fingerprint ([`fold64`]): principals recur, and one
    /// word-at-a-time hash is much cheaper than two case-folded lookups. Emptied when it
    /// reaches [`KNOWN_CACHE_MAX`] entries.
    known_cache: HashKeyMap<bool>,
}

/// Set `slot` to `v`, reusing its buffer.
/// Bound of the inventory answer cache (about 1.2 MB when full).
const KNOWN_CACHE_MAX: usize = 65_536;

impl Enricher {
    pub(crate) fn new(
        default_cal: Option<&CalendarConfig>,
        calendars: &BTreeMap<String, CalendarConfig>,
        inventory: Option<Inventory>,
        lookback_days: u32,
        learning_days: u32,
    ) -> Result<Enricher, ConfigError> {
        let default_cal = match default_cal {
            Some(c) => Some(Calendar::compile(c, "calendar")?),
            None => None,
        };
        let mut cals = HashMap::new();
        for (acct, c) in calendars {
            cals.insert(
                acct.clone(),
                Calendar::compile(c, &format!("calendars.{acct}"))?,
            );
        }
        Ok(Enricher {
            default_cal,
            calendars: cals,
            inventory,
            lookback_days: i32::try_from(lookback_days).unwrap_or(i32::MAX),
            learning_days: i32::try_from(learning_days).unwrap_or(i32::MAX),
            first_seen: FirstSeenState::default(),
            known_cache: HashKeyMap::default(),
        })
    }

    pub(crate) fn enrich(&mut self, e: &Event, hash: KeyHash) -> Enrichment {
        let cal = match e
            .cloud
            .account
            .uid
            .as_deref()
            .and_then(|a| self.calendars.get_mut(a))
        {
            Some(c) => Some(c),
            None => self.default_cal.as_mut(),
        };
        let off_hours = cal.map(|c| c.off_hours_cached(e.time));
        let principal_known = match &self.inventory {
            None => None,
            Some(inv) => {
                let uid = e.actor.user.uid.as_deref();
                let name = e.actor.user.name.as_deref();
                if uid.is_none() && name.is_none() {
                    None
                } else {
                    // A name equal to the uid (GCP, many AWS principals) is hashed once.
                    let same = uid.is_some() && uid == name;
                    let present = [
                        u8::from(uid.is_some()),
                        if same { 2 } else { u8::from(name.is_some()) },
                    ];
                    let fp = fold64(&[
                        &present,
                        uid.unwrap_or("").as_bytes(),
                        if same {
                            b""
                        } else {
                            name.unwrap_or("").as_bytes()
                        },
                    ]);
                    if let Some(known) = self.known_cache.get(&fp) {
                        Some(*known)
                    } else {
                        // The name is looked up only when it differs from the uid (GCP and
                        // many AWS principals have the same for both).
                        let known = uid.is_some_and(|u| inv.contains(u))
                            || name.is_some_and(|n| uid != Some(n) && inv.contains(n));
                        if self.known_cache.len() >= KNOWN_CACHE_MAX {
                            self.known_cache.clear();
                        }
                        self.known_cache.insert(fp, known);
                        Some(known)
                    }
                }
            }
        };
        Enrichment {
            off_hours,
            first_seen: self.first_seen(e, hash),
            principal_known,
        }
    }

    fn first_seen(&mut self, e: &Event, hash: KeyHash) -> Option<bool> {
        if !is_crypto_operation(e.kms.operation) {
            return None;
        }
        let principal = e.actor.user.uid.as_deref()?;
        let key = e.kms.key.as_ref().map(|k| k.uid.as_str())?;
        let day = i32::try_from(e.time.div_euclid(86_400_000)).unwrap_or(0);
        let h = hash.hash(&[principal.as_bytes(), key.as_bytes()]);
        let state = &mut self.first_seen;
        let lookback = self.lookback_days;
        let first = match state.last_day.get_mut(&h) {
            Some(last) => {
                let first = day.saturating_sub(*last) > lookback;
                if day > *last {
                    *last = day;
                }
                first
            }
            None => {
                state.last_day.insert(h, day);
                true
            }
        };
        // During the learning period the baseline is built but nothing is "first seen": on
        // day one every pair is new, and that is not news.
        let start = *state.first_day.get_or_insert(day);
        let first = first && day.saturating_sub(start) >= self.learning_days;
        if day > state.purged_day {
            state.purged_day = day;
            let cutoff = day.saturating_sub(lookback);
            state.last_day.retain(|_, d| *d >= cutoff);
        }
        Some(first)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    /// `fold64(["abcdefgh-ijk"])`, computed independently (a Python transcription).
    const FOLD64_SAMPLE: u64 = 0x102d_8628_5504_37a9;
    /// `fold64(["abcdefgh-i"])` (a tail shorter than four bytes).
    const FOLD64_SHORT_TAIL: u64 = 0x52a5_c3c4_e897_fdd1;

    #[test]
    fn fold64_is_fixed_and_separates_parts() {
        // Values are kept in snapshots: they must not change between releases.
        assert_eq!(fold64(&[b"alice", b"key/1"]), fold64(&[b"alice", b"key/1"]));
        assert_eq!(fold64(&[]), 0xa076_1d64_78bd_642f);
        assert_eq!(fold64(&[b"abcdefgh-ijk"]), FOLD64_SAMPLE);
        assert_eq!(fold64(&[b"abcdefgh-i"]), FOLD64_SHORT_TAIL);
        // Every tail length, every byte position: a change anywhere changes the hash.
        for len in 0..24usize {
            let base: Vec<u8> = (0..len).map(|i| b'a' + (i % 26) as u8).collect();
            let h = fold64(&[&base]);
            for at in 0..len {
                let mut other = base.clone();
                other[at] ^= 0x20;
                assert_ne!(fold64(&[&other]), h, "len {len}, byte {at}");
            }
            let mut longer = base.clone();
            longer.push(0);
            assert_ne!(fold64(&[&longer]), h, "len {len} and a NUL more");
        }
        assert_ne!(fold64(&[b"ab", b"c"]), fold64(&[b"a", b"bc"]));
        assert_ne!(fold64(&[b"abc"]), fold64(&[b"abc", b""]));
        assert_ne!(fold64(&[b"a\0"]), fold64(&[b"a"]));
        assert_ne!(fold64(&[b"12345678"]), fold64(&[b"12345679"]));
        // No collisions over many similar keys.
        let mut seen = std::collections::HashSet::new();
        for i in 0..100_000u32 {
            let uid = format!("arn:aws:iam::111122223333:user/u{i}");
            assert!(seen.insert(fold64(&[uid.as_bytes(), b"key/1"])), "{uid}");
        }
        assert_eq!(KeyHash::default(), KeyHash::Fnv1a, "older snapshots");
        assert_eq!(KeyHash::Fnv1a.hash(&[b"x"]), fnv1a(&[b"x"]));
        assert_eq!(KeyHash::CURRENT.hash(&[b"x"]), fold64(&[b"x"]));
    }

    fn ms(s: &str) -> i64 {
        chrono::DateTime::parse_from_rfc3339(s)
            .unwrap()
            .timestamp_millis()
    }

    #[test]
    fn calendar_across_dst_and_holiday() {
        let cal = Calendar::compile(
            &CalendarConfig {
                time_zone: "Europe/Paris".into(),
                holidays: vec!["2025-04-21".into()],
                ..CalendarConfig::default()
            },
            "calendar",
        )
        .unwrap();
        // Friday 2025-03-28, 07:30 UTC = 08:30 CET (winter, UTC+1): working.
        assert!(!cal.off_hours(ms("2025-03-28T07:30:00Z")));
        // Monday 2025-03-31 (after the 30 March DST change, UTC+2): 06:30 UTC = 08:30 CEST.
        assert!(!cal.off_hours(ms("2025-03-31T06:30:00Z")));
        // Same UTC clock time before the change was 07:30 local: off hours.
        assert!(cal.off_hours(ms("2025-03-28T06:30:00Z")));
        // 16:30 UTC on the Monday after DST = 18:30 local: off hours; before DST 17:30: working.
        assert!(cal.off_hours(ms("2025-03-31T16:30:00Z")));
        assert!(!cal.off_hours(ms("2025-03-28T16:30:00Z")));
        // Easter Monday holiday at noon; a Saturday at noon.
        assert!(cal.off_hours(ms("2025-04-21T10:00:00Z")));
        assert!(cal.off_hours(ms("2025-03-29T11:00:00Z")));
        assert!(Calendar::compile(
            &CalendarConfig {
                time_zone: "Mars/Olympus".into(),
                ..CalendarConfig::default()
            },
            "calendar"
        )
        .is_err());
    }

    #[test]
    fn cached_calendar_answers_like_the_uncached_one() {
        // Across a DST change and in Paris' LMT era (offset +0:09:21, before 1911), in and out
        // of time order: the cache never answers differently from the conversion.
        let mut cal = Calendar::compile(
            &CalendarConfig {
                time_zone: "Europe/Paris".into(),
                work_start: "08:00".into(),
                ..CalendarConfig::default()
            },
            "calendar",
        )
        .unwrap();
        let mut times = Vec::new();
        for base in [ms("2025-03-31T05:50:00Z"), ms("1900-01-02T07:45:00Z")] {
            for i in 0..2400i64 {
                // 0.5 s steps, then the same span backwards.
                times.push(base + i * 500);
            }
            for i in (0..2400i64).rev() {
                times.push(base + i * 500 + 250);
            }
        }
        let mut changes = 0;
        let mut prev = None;
        for t in times {
            let want = cal.off_hours(t);
            assert_eq!(cal.off_hours_cached(t), want, "{t}");
            if prev.is_some_and(|p| p != want) {
                changes += 1;
            }
            prev = Some(want);
        }
        // Both spans cross 08:00 local (twice each: forwards and backwards).
        assert!(changes >= 4, "{changes}");
    }

    #[test]
    fn inventory_formats() {
        let inv = Inventory::parse(
            "# people\nalice@example.com,Alice\n{\"upn\": \"Bob@Contoso.com\"}\n\"arn:aws:iam::111122223333:role/app\"\n",
        )
        .unwrap();
        assert!(inv.contains("ALICE@example.com"));
        assert!(inv.contains("bob@contoso.com"));
        assert!(inv.contains("arn:aws:iam::111122223333:role/app"));
        assert!(!inv.contains("mallory@example.com"));
        assert_eq!(Inventory::parse("{\"x\": 1}").unwrap_err().0, 1);
    }
}

//! A Splunk HTTP Event Collector, as documented: token auth (`Authorization: Splunk <token>`),
//! gzip bodies, batched event objects, `X-Splunk-Request-Channel`, `ackId` and
//! `/services/collector/ack` polling, the health endpoint, 503 busy and the HEC error codes.

use super::{body_of, Handler, Reply, Req, Server};
use serde::Deserialize;
use serde_json::{json, Value};
use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// One scripted failure of the next event request.
#[derive(Debug, Clone)]
pub enum Fail {
    /// 503 `{"text":"Server is busy","code":9}`.
    Busy,
    /// Close the connection without an answer.
    Reset,
    /// Answer normally but after this long.
    Slow(Duration),
    /// Accept the events but never acknowledge this request's ackId (and do not index them).
    LoseAck,
    /// Refuse with this HTTP status and HEC code (text from the documented table) and, when
    /// given, a `Retry-After` of that many seconds. Nothing is indexed.
    Answer(u16, i64, Option<u64>),
    /// Accept and index (or queue for ack) normally, but answer code 24 "HEC queue is
    /// approaching its capacity limit" (HTTP 200: the data was taken).
    NearCapacity,
}

/// The documented text of an HEC status code.
pub fn code_text(code: i64) -> &'static str {
    match code {
        0 => "Success",
        1 | 22 => "Token disabled",
        2 => "Token is required",
        3 => "Invalid authorization",
        4 | 21 => "Invalid token",
        5 => "No data",
        6 => "Invalid data format",
        7 => "Incorrect index",
        8 => "Internal server error",
        9 => "Server is busy",
        10 => "Data channel is missing",
        11 => "Invalid data channel",
        12 => "Event field is required",
        13 => "Event field cannot be blank",
        14 => "ACK is disabled",
        15 => "Error in handling indexed fields",
        16 => "Query string authorization is not enabled",
        17 => "HEC is healthy",
        18 => "HEC is unhealthy, queues are full",
        19 => "HEC is unhealthy, ack service unavailable",
        20 => "HEC is unhealthy, queues are full, ack service unavailable",
        23 => "Server is shutting down",
        24 => "HEC queue is approaching its capacity limit",
        25 => "HEC ACK is approaching its capacity limit",
        26 => "HEC queue is at capacity and cannot process any more requests",
        27 => "HEC ACK channel is at capacity and cannot process any more requests",
        _ => "Unknown",
    }
}

#[derive(Default)]
pub struct HecState {
    pub token: String,
    pub ack_enabled: bool,
    /// Polls of an ackId answered `false` before `true`.
    pub ack_after_polls: u32,
    /// Accept events (200 with an `ackId`) but answer every ack poll `false`, as a Splunk
    /// whose indexers are stuck does. Switched off, pending acks are answered again.
    pub never_ack: bool,
    /// Indexes the token may write to (empty = any).
    pub allowed_indexes: Vec<String>,
    /// Event uids (`event.finding_info.uid` or `event.id`) rejected as invalid data (code 6).
    pub reject_uids: Vec<String>,
    pub script: VecDeque<Fail>,
    /// Every request received.
    pub requests: Vec<super::Req>,
    /// Indexed events (the HEC envelope objects), in order.
    pub indexed: Vec<Value>,
    /// channel -> next ackId
    next_ack: HashMap<String, u64>,
    /// (channel, ackId) -> (events, polls so far, lost)
    pending: HashMap<(String, u64), (Vec<Value>, u32, bool)>,
    pub event_requests: usize,
    pub events_per_request: Vec<usize>,
    /// Keep only each event's uid, as a JSON string (benchmarks): events are still gunzipped,
    /// parsed and checked (event field, index, rejected uids).
    pub light: bool,
}

#[derive(serde::Deserialize)]
struct LiteEnv {
    event: Option<LiteEvent>,
    index: Option<String>,
}

#[derive(serde::Deserialize)]
struct LiteEvent {
    finding_info: Option<LiteInfo>,
    id: Option<String>,
}

#[derive(serde::Deserialize)]
struct LiteInfo {
    uid: String,
}

pub type State = Arc<Mutex<HecState>>;

fn err(status: u16, text: &str, code: i64) -> Reply {
    Reply::json(status, json!({"text": text, "code": code}))
}

pub fn uid_of(event: &Value) -> Option<String> {
    if let Value::String(uid) = event {
        return Some(uid.clone()); // light mode
    }
    let e = event.get("event")?;
    e.pointer("/finding_info/uid")
        .or_else(|| e.get("id"))
        .and_then(Value::as_str)
        .map(str::to_string)
}

fn handle(st: &State, r: Req) -> Reply {
    let mut s = st.lock().unwrap();
    s.requests.push(r.clone());
    if r.method == "GET" && r.path.starts_with("/services/collector/health") {
        return err(200, "HEC is healthy", 17);
    }
    match r.header("authorization") {
        None => return err(401, "Token is required", 2),
        Some(a) => match a.strip_prefix("Splunk ") {
            None => return err(401, "Invalid authorization", 3),
            Some(t) if t != s.token => return err(403, "Invalid token", 4),
            Some(_) => {}
        },
    }
    let channel = r.header("x-splunk-request-channel").map(str::to_string);
    match r.path.as_str() {
        "/services/collector/event" | "/services/collector/event/1.0" => {
            s.event_requests += 1;
            let fail = s.script.pop_front();
            let mut delay = Duration::ZERO;
            let mut lose = false;
            let mut near_capacity = false;
            match fail {
                Some(Fail::Answer(status, code, ra)) => {
                    let mut rep = err(status, code_text(code), code);
                    if let Some(ra) = ra {
                        rep.headers.push(("Retry-After".into(), ra.to_string()));
                    }
                    return rep;
                }
                Some(Fail::NearCapacity) => near_capacity = true,
                Some(Fail::Busy) => return err(503, "Server is busy", 9),
                Some(Fail::Reset) => return Reply::reset(),
                Some(Fail::Slow(d)) => delay = d,
                Some(Fail::LoseAck) => lose = true,
                None => {}
            }
            if s.ack_enabled && channel.is_none() {
                return err(400, "Data channel is missing", 10);
            }
            let light = s.light;
            let reject = s.reject_uids.clone();
            let allowed = s.allowed_indexes.clone();
            drop(s); // parse without holding the state
            let body = body_of(&r);
            if body.is_empty() {
                return err(400, "No data", 5);
            }
            let mut events = Vec::new();
            let mut stream = serde_json::Deserializer::from_slice(&body);
            let mut i = 0usize;
            loop {
                let bad = Reply::json(
                    400,
                    json!({"text": "Invalid data format", "code": 6, "invalid-event-number": i}),
                );
                let v = if light {
                    match serde::Deserialize::deserialize(&mut stream) {
                        Ok(LiteEnv {
                            event: Some(e),
                            index,
                        }) => {
                            // Light mode keeps only the uid (as a JSON string).
                            if let Some(idx) = &index {
                                if !allowed.is_empty() && !allowed.contains(idx) {
                                    return Reply::json(
                                        400,
                                        json!({"text": "Incorrect index", "code": 7, "invalid-event-number": i}),
                                    );
                                }
                            }
                            let uid = e.finding_info.map(|f| f.uid).or(e.id).unwrap_or_default();
                            if reject.contains(&uid) {
                                return bad;
                            }
                            events.push(Value::String(uid));
                            i += 1;
                            continue;
                        }
                        Ok(LiteEnv { event: None, .. }) => json!({}),
                        Err(e) if e.is_eof() => break,
                        Err(_) => return bad,
                    }
                } else {
                    match Value::deserialize(&mut stream) {
                        Ok(v) => v,
                        Err(e) if e.is_eof() => break,
                        Err(_) => return bad,
                    }
                };
                match v.get("event") {
                    None => {
                        return Reply::json(
                            400,
                            json!({"text": "Event field is required", "code": 12, "invalid-event-number": i}),
                        )
                    }
                    Some(Value::Null) => {
                        return Reply::json(
                            400,
                            json!({"text": "Event field cannot be blank", "code": 13, "invalid-event-number": i}),
                        )
                    }
                    _ => {}
                }
                if uid_of(&v).is_some_and(|u| reject.contains(&u)) {
                    return bad;
                }
                if let Some(idx) = v.get("index").and_then(Value::as_str) {
                    if !allowed.is_empty() && !allowed.iter().any(|a| a == idx) {
                        return Reply::json(
                            400,
                            json!({"text": "Incorrect index", "code": 7, "invalid-event-number": i}),
                        );
                    }
                }
                events.push(v);
                i += 1;
            }
            let mut s = st.lock().unwrap();
            s.events_per_request.push(events.len());
            let (text, code) = if near_capacity {
                (code_text(24), 24)
            } else {
                ("Success", 0)
            };
            let mut reply = if s.ack_enabled {
                let ch = channel.unwrap_or_default();
                let id = {
                    let n = s.next_ack.entry(ch.clone()).or_insert(0);
                    let id = *n;
                    *n += 1;
                    id
                };
                s.pending.insert((ch, id), (events, 0, lose));
                Reply::json(200, json!({"text": text, "code": code, "ackId": id}))
            } else {
                s.indexed.extend(events);
                Reply::json(200, json!({"text": text, "code": code}))
            };
            reply.delay = delay;
            reply
        }
        "/services/collector/ack" => {
            if !s.ack_enabled {
                return err(400, "ACK is disabled", 14);
            }
            let Some(ch) = channel else {
                return err(400, "Data channel is missing", 10);
            };
            let Ok(v) = serde_json::from_slice::<Value>(&body_of(&r)) else {
                return err(400, "Invalid data format", 6);
            };
            let Some(ids) = v.get("acks").and_then(Value::as_array) else {
                return err(400, "Invalid data format", 6);
            };
            let need = s.ack_after_polls;
            let never = s.never_ack;
            let mut out = serde_json::Map::new();
            for id in ids.iter().filter_map(Value::as_u64) {
                let key = (ch.clone(), id);
                let done = match s.pending.get_mut(&key) {
                    Some((_, polls, lost)) => {
                        *polls += 1;
                        !never && !*lost && *polls > need
                    }
                    None => false,
                };
                if done {
                    if let Some((evs, _, _)) = s.pending.remove(&key) {
                        s.indexed.extend(evs);
                    }
                }
                out.insert(id.to_string(), Value::Bool(done));
            }
            Reply::json(200, json!({ "acks": out }))
        }
        _ => Reply::empty(404),
    }
}

pub async fn start(token: &str, ack: bool) -> (Server, State) {
    let st: State = Arc::new(Mutex::new(HecState {
        token: token.to_string(),
        ack_enabled: ack,
        ..HecState::default()
    }));
    let s2 = st.clone();
    let h: Handler = Arc::new(move |r| handle(&s2, r));
    (Server::start(h).await, st)
}

/// Uids of the indexed events.
pub fn indexed_uids(st: &State) -> Vec<String> {
    st.lock()
        .unwrap()
        .indexed
        .iter()
        .filter_map(uid_of)
        .collect()
}

//! Azure Monitor Logs Ingestion API plus the Entra ID token endpoint and IMDS, as documented:
//! client-credentials form body, bearer tokens that expire (or are revoked), a 1 MB body limit
//! answered with 413, 429/503 with `Retry-After`, 204 on success.

use super::{body_of, Handler, Reply, Req, Server};
use serde_json::{json, Value};
use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Instant;

pub const TENANT: &str = "8a6f1c2e-4b3d-4e5f-9a1b-2c3d4e5f6a7b";
pub const CLIENT_ID: &str = "0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0";
pub const SECRET: &str = "s3cr3t~value&more=";
pub const DCR: &str = "dcr-00112233445566778899aabbccddeeff";

#[derive(Debug, Clone)]
pub enum Fail {
    /// 429 with `Retry-After: <secs>`.
    TooMany(u32),
    /// 503 with `Retry-After: <secs>`.
    Unavailable(u32),
    Reset,
    /// Never answer (the client's request timeout must end the request).
    Hang,
    /// Answer normally (lets a script fail a later request).
    Pass,
}

pub struct AzState {
    /// Largest accepted body (after decompression), bytes.
    pub max_body: usize,
    /// `expires_in` told to clients.
    pub expires_in: u64,
    /// Tokens really die this long after issue (revocation), when set.
    pub revoke_after: Option<std::time::Duration>,
    tokens: HashMap<String, Instant>,
    issued: u64,
    pub token_requests: Vec<Req>,
    pub imds_requests: Vec<Req>,
    pub ingest_requests: Vec<Req>,
    pub script: VecDeque<Fail>,
    /// stream -> rows
    pub rows: HashMap<String, Vec<Value>>,
    pub statuses: Vec<u16>,
}

pub type State = Arc<Mutex<AzState>>;

fn form(body: &[u8]) -> HashMap<String, String> {
    let s = String::from_utf8_lossy(body);
    s.split('&')
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (decode(k), decode(v)))
        .collect()
}

fn decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < b.len() => {
                let h = std::str::from_utf8(&b[i + 1..i + 3]).unwrap();
                out.push(u8::from_str_radix(h, 16).unwrap());
                i += 2;
            }
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8(out).unwrap()
}

fn issue(s: &mut AzState) -> Reply {
    s.issued += 1;
    let tok = format!("tok-{}", s.issued);
    s.tokens.insert(tok.clone(), Instant::now());
    Reply::json(
        200,
        json!({"token_type": "Bearer", "expires_in": s.expires_in, "ext_expires_in": s.expires_in, "access_token": tok}),
    )
}

fn handle(st: &State, r: Req) -> Reply {
    let mut s = st.lock().unwrap();
    if r.path == format!("/{TENANT}/oauth2/v2.0/token") {
        s.token_requests.push(r.clone());
        if r.method != "POST"
            || r.header("content-type") != Some("application/x-www-form-urlencoded")
        {
            return Reply::json(400, json!({"error": "invalid_request"}));
        }
        let f = form(&r.body);
        let ok = f.get("grant_type").map(String::as_str) == Some("client_credentials")
            && f.get("client_id").map(String::as_str) == Some(CLIENT_ID)
            && f.get("scope").map(String::as_str) == Some("https://monitor.azure.com//.default");
        if !ok {
            return Reply::json(400, json!({"error": "invalid_request"}));
        }
        if f.get("client_secret").map(String::as_str) != Some(SECRET) {
            return Reply::json(
                401,
                json!({"error": "invalid_client", "error_description": "AADSTS7000215: Invalid client secret provided."}),
            );
        }
        return issue(&mut s);
    }
    if r.path == "/metadata/identity/oauth2/token" {
        s.imds_requests.push(r.clone());
        if r.header("metadata") != Some("true")
            || !r.query.contains("api-version=2018-02-01")
            || !r
                .query
                .contains("resource=https%3A%2F%2Fmonitor.azure.com%2F")
        {
            return Reply::json(400, json!({"error": "invalid_request"}));
        }
        s.issued += 1;
        let tok = format!("mi-{}", s.issued);
        s.tokens.insert(tok.clone(), Instant::now());
        // IMDS gives expires_in as a string.
        return Reply::json(
            200,
            json!({"access_token": tok, "expires_in": s.expires_in.to_string(), "token_type": "Bearer", "resource": "https://monitor.azure.com/"}),
        );
    }
    let prefix = format!("/dataCollectionRules/{DCR}/streams/");
    if let Some(stream) = r.path.strip_prefix(&prefix) {
        s.ingest_requests.push(r.clone());
        let reply = (|| {
            if r.method != "POST" || r.query != "api-version=2023-01-01" {
                return Reply::empty(404);
            }
            let tok = r
                .header("authorization")
                .and_then(|a| a.strip_prefix("Bearer "));
            let valid = tok
                .and_then(|t| s.tokens.get(t))
                .is_some_and(|at| s.revoke_after.is_none_or(|d| at.elapsed() < d));
            if !valid {
                return Reply::json(
                    401,
                    json!({"error": {"code": "InvalidToken", "message": "The provided token is expired or invalid."}}),
                );
            }
            match s.script.pop_front() {
                Some(Fail::TooMany(secs)) => {
                    let mut r = Reply::json(429, json!({"error": {"code": "TooManyRequests"}}));
                    r.headers.push(("Retry-After".into(), secs.to_string()));
                    return r;
                }
                Some(Fail::Unavailable(secs)) => {
                    let mut r = Reply::json(503, json!({"error": {"code": "ServiceUnavailable"}}));
                    r.headers.push(("Retry-After".into(), secs.to_string()));
                    return r;
                }
                Some(Fail::Reset) => return Reply::reset(),
                Some(Fail::Hang) => return Reply::hang(),
                Some(Fail::Pass) | None => {}
            }
            if r.header("content-type") != Some("application/json") {
                return Reply::json(415, json!({"error": {"code": "UnsupportedMediaType"}}));
            }
            let body = body_of(&r);
            if body.len() > s.max_body || r.body.len() > s.max_body {
                return Reply::json(
                    413,
                    json!({"error": {"code": "ContentLengthLimitExceeded", "message": "Maximum request body size is 1 MB"}}),
                );
            }
            let Ok(Value::Array(rows)) = serde_json::from_slice::<Value>(&body) else {
                return Reply::json(400, json!({"error": {"code": "InvalidPayload"}}));
            };
            s.rows.entry(stream.to_string()).or_default().extend(rows);
            Reply::empty(204)
        })();
        s.statuses.push(reply.status);
        return reply;
    }
    Reply::empty(404)
}

pub async fn start() -> (Server, State) {
    let st: State = Arc::new(Mutex::new(AzState {
        max_body: 1_048_576,
        expires_in: 3599,
        revoke_after: None,
        tokens: HashMap::new(),
        issued: 0,
        token_requests: vec![],
        imds_requests: vec![],
        ingest_requests: vec![],
        script: VecDeque::new(),
        rows: HashMap::new(),
        statuses: vec![],
    }));
    let s2 = st.clone();
    let h: Handler = Arc::new(move |r| handle(&s2, r));
    (Server::start(h).await, st)
}

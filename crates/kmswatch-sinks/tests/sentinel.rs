//! The Sentinel sink against a Logs Ingestion API + Entra ID test server: exact token and
//! ingestion requests, token caching and refresh after a 401, the 1 MB limit (cutting and
//! 413 splitting), 429/503 with Retry-After, managed identity, audit records to their stream.
#![allow(clippy::unwrap_used)]

mod common;

use common::azure::{self, Fail, CLIENT_ID, DCR, SECRET, TENANT};
use common::{finding, findings, sink};
use kmswatch_sinks::{Outgoing, SinkSet};
use serde_json::{json, Value};
use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

fn cfg(url: &str, extra: Value) -> kmswatch_sinks::SinkConfig {
    let mut v = json!({
        "type": "sentinel", "endpoint": url, "dcr_immutable_id": DCR,
        "auth": {"kind": "client_secret", "tenant_id": TENANT, "client_id": CLIENT_ID,
                 "client_secret": SECRET, "authority": url},
        "batch": {"max_events": 50, "timeout_ms": 20},
        "retry": {"max_attempts": 5, "initial_backoff_ms": 20, "max_backoff_ms": 3000, "request_timeout_ms": 2000}
    });
    if let (Some(o), Value::Object(e)) = (v.as_object_mut(), extra) {
        o.extend(e);
    }
    sink(v)
}

async fn deliver_all(set: &Arc<SinkSet>, items: Vec<Outgoing>) {
    let mut hs = Vec::new();
    for it in items {
        let set = set.clone();
        hs.push(tokio::spawn(async move { set.deliver(Arc::new(it)).await }));
    }
    for h in hs {
        h.await.unwrap().unwrap();
    }
}

fn row_ids(st: &azure::State, stream: &str) -> BTreeSet<String> {
    st.lock()
        .unwrap()
        .rows
        .get(stream)
        .map(|rows| {
            rows.iter()
                .filter_map(|r| r["FindingId"].as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

/// `n` findings of about 8 kB each (300 of them make three bodies under 1 MB).
fn big_findings(n: usize) -> Vec<Outgoing> {
    (0..n)
        .map(|i| {
            let mut f = finding(&format!("f-{i:06}"), "rule-0", "high");
            f.message = "x".repeat(8_000);
            Outgoing::Finding(f)
        })
        .collect()
}

fn ids(n: usize) -> BTreeSet<String> {
    (0..n).map(|i| format!("f-{i:06}")).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exact_requests_token_cached_rows_and_audit_stream() {
    let (srv, st) = azure::start().await;
    let spool = tempfile::tempdir().unwrap();
    let set = Arc::new(SinkSet::from_config(&[cfg(&srv.url(), json!({}))], spool.path()).unwrap());
    let mut items: Vec<Outgoing> = findings(120).into_iter().map(Outgoing::Finding).collect();
    items.push(Outgoing::Audit(
        json!({"id": "audit-1", "time": 1_714_564_800_000i64, "action": "DisableKey", "mode": "dry_run"}),
    ));
    deliver_all(&set, items).await;
    assert_eq!(row_ids(&st, "Custom-KmswatchFindings_CL"), ids(120));
    let s = st.lock().unwrap();
    // One token for every request (cached).
    assert_eq!(s.token_requests.len(), 1);
    let t = &s.token_requests[0];
    assert_eq!(t.method, "POST");
    let form = String::from_utf8_lossy(&t.body).to_string();
    assert!(form.contains("grant_type=client_credentials"));
    assert!(form.contains("scope=https%3A%2F%2Fmonitor.azure.com%2F%2F.default"));
    assert!(form.contains("client_secret=s3cr3t~value%26more%3D"));
    assert!(s.ingest_requests.len() >= 3, "batches of at most 50 rows");
    for r in &s.ingest_requests {
        assert_eq!(r.header("authorization"), Some("Bearer tok-1"));
        assert_eq!(r.header("content-type"), Some("application/json"));
        assert_eq!(r.query, "api-version=2023-01-01");
        assert!(r.body.len() < 1_000_000);
    }
    let audit = &s.rows["Custom-KmswatchAudit_CL"];
    assert_eq!(audit.len(), 1);
    assert_eq!(audit[0]["RecordId"], "audit-1");
    assert_eq!(audit[0]["TimeGenerated"], "2024-05-01T12:00:00.000Z");
    let row = &s.rows["Custom-KmswatchFindings_CL"][0];
    assert_eq!(row["TimeGenerated"], "2024-05-01T12:00:00.123Z");
    assert_eq!(row["Severity"], "High");
    assert_eq!(row["Principal"], "mallory");
    assert_eq!(row["PrincipalKind"], "human");
    assert_eq!(row["Cloud"], "AWS");
    assert_eq!(row["Account"], "111122223333");
    assert_eq!(row["Techniques"], json!(["T1485"]));
    assert_eq!(row["Finding"]["class_uid"], 2004);
    for col in [
        "FindingId",
        "RuleId",
        "RuleTitle",
        "Message",
        "KeyId",
        "Count",
        "StartTime",
        "EndTime",
    ] {
        assert!(!row[col].is_null(), "column {col}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bodies_stay_under_the_limit_and_413_splits() {
    let (srv, st) = azure::start().await;
    // A server whose limit is lower than ours: it answers 413 and the sink halves the body.
    st.lock().unwrap().max_body = 150_000;
    let spool = tempfile::tempdir().unwrap();
    let set = Arc::new(
        SinkSet::from_config(
            &[cfg(
                &srv.url(),
                json!({"batch": {"max_events": 500, "max_bytes": 5_000_000, "timeout_ms": 100}}),
            )],
            spool.path(),
        )
        .unwrap(),
    );
    let big = big_findings(300);
    deliver_all(&set, big).await;
    assert_eq!(row_ids(&st, "Custom-KmswatchFindings_CL"), ids(300));
    let s = st.lock().unwrap();
    assert!(s.statuses.contains(&413), "the server refused large bodies");
    assert!(
        s.ingest_requests.iter().all(|r| r.body.len() <= 1_000_000),
        "no body over 1 MB"
    );
    let accepted: usize = s.statuses.iter().filter(|c| **c == 204).count();
    assert!(accepted >= 300 * 8_000 / 150_000);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retry_after_429_and_503_is_honoured() {
    let (srv, st) = azure::start().await;
    st.lock().unwrap().script = vec![Fail::TooMany(1), Fail::Reset, Fail::Unavailable(1)].into();
    let spool = tempfile::tempdir().unwrap();
    let set = Arc::new(SinkSet::from_config(&[cfg(&srv.url(), json!({}))], spool.path()).unwrap());
    let start = Instant::now();
    deliver_all(
        &set,
        findings(10).into_iter().map(Outgoing::Finding).collect(),
    )
    .await;
    assert!(
        start.elapsed() >= Duration::from_secs(2),
        "two Retry-After: 1 waits"
    );
    assert_eq!(row_ids(&st, "Custom-KmswatchFindings_CL"), ids(10));
    assert!(set.metrics()[0].retried >= 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_token_401_refreshes() {
    let (srv, st) = azure::start().await;
    // The token says it lives an hour but dies after 1 s.
    st.lock().unwrap().revoke_after = Some(Duration::from_millis(1000));
    let spool = tempfile::tempdir().unwrap();
    let set = Arc::new(SinkSet::from_config(&[cfg(&srv.url(), json!({}))], spool.path()).unwrap());
    deliver_all(
        &set,
        findings(5).into_iter().map(Outgoing::Finding).collect(),
    )
    .await;
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let more: Vec<_> = (5..10)
        .map(|i| Outgoing::Finding(finding(&format!("f-{i:06}"), "rule-0", "high")))
        .collect();
    deliver_all(&set, more).await;
    assert_eq!(row_ids(&st, "Custom-KmswatchFindings_CL"), ids(10));
    let s = st.lock().unwrap();
    assert_eq!(s.token_requests.len(), 2, "refreshed once after the 401");
    assert!(s.statuses.contains(&401));
    assert!(s
        .ingest_requests
        .iter()
        .any(|r| r.header("authorization") == Some("Bearer tok-2")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_refreshed_before_expiry() {
    let (srv, st) = azure::start().await;
    st.lock().unwrap().expires_in = 2; // refresh at max(2 - skew, 1) = 1 s
    let spool = tempfile::tempdir().unwrap();
    let set = Arc::new(SinkSet::from_config(&[cfg(&srv.url(), json!({}))], spool.path()).unwrap());
    deliver_all(
        &set,
        findings(3).into_iter().map(Outgoing::Finding).collect(),
    )
    .await;
    tokio::time::sleep(Duration::from_millis(1100)).await;
    deliver_all(
        &set,
        vec![Outgoing::Finding(finding("late", "rule-0", "high"))],
    )
    .await;
    let s = st.lock().unwrap();
    assert_eq!(s.token_requests.len(), 2);
    assert!(!s.statuses.contains(&401), "refreshed before it expired");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn managed_identity_and_check_connect() {
    let (srv, st) = azure::start().await;
    let spool = tempfile::tempdir().unwrap();
    let c = cfg(
        &srv.url(),
        json!({"auth": {"kind": "managed_identity", "endpoint": format!("{}/metadata/identity/oauth2/token", srv.url())}}),
    );
    let set = Arc::new(SinkSet::from_config(&[c], spool.path()).unwrap());
    let rep = set.check_connect().await;
    assert!(rep[0].result.is_ok(), "{:?}", rep[0].result);
    deliver_all(
        &set,
        findings(4).into_iter().map(Outgoing::Finding).collect(),
    )
    .await;
    assert_eq!(row_ids(&st, "Custom-KmswatchFindings_CL"), ids(4));
    let s = st.lock().unwrap();
    assert_eq!(s.imds_requests.len(), 1);
    assert!(s
        .ingest_requests
        .iter()
        .all(|r| r.header("authorization") == Some("Bearer mi-1")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_secret_is_a_config_error() {
    let (srv, _st) = azure::start().await;
    let spool = tempfile::tempdir().unwrap();
    let mut c = json!({
        "type": "sentinel", "endpoint": srv.url(), "dcr_immutable_id": DCR,
        "auth": {"kind": "client_secret", "tenant_id": TENANT, "client_id": CLIENT_ID,
                 "client_secret": "wrong", "authority": srv.url()}
    });
    let set = SinkSet::from_config(&[sink(c.take())], spool.path()).unwrap();
    let rep = set.check_connect().await;
    let e = rep[0].result.as_ref().unwrap_err();
    assert_eq!(e.class, kmswatch_sinks::ErrorClass::Config);
    assert!(e.message.contains("invalid_client"), "{}", e.message);
    assert!(!format!("{:?}", sink(json!({
        "type": "sentinel", "endpoint": "https://x", "dcr_immutable_id": DCR,
        "auth": {"kind": "client_secret", "tenant_id": TENANT, "client_id": CLIENT_ID, "client_secret": "hunter2"}
    })))
    .contains("hunter2"), "secrets are redacted in Debug");
}

#[test]
fn deploy_files_match_columns() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy/sentinel");
    let dcr: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("dcr.json")).unwrap()).unwrap();
    let decl = &dcr["resources"][0]["properties"]["streamDeclarations"];
    let f = Outgoing::Finding(finding("x", "rule-0", "high"));
    let a = Outgoing::Audit(json!({"id": "a"}));
    for (stream, table, item) in [
        (
            "Custom-KmswatchFindings_CL",
            "table-KmswatchFindings_CL.json",
            &f,
        ),
        ("Custom-KmswatchAudit_CL", "table-KmswatchAudit_CL.json", &a),
    ] {
        let row = kmswatch_sinks::format::sentinel_row(item).unwrap();
        let sent: BTreeSet<String> = row.as_object().unwrap().keys().cloned().collect();
        let declared: BTreeSet<String> = decl[stream]["columns"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["name"].as_str().unwrap().to_string())
            .collect();
        assert_eq!(sent, declared, "{stream}");
        let t: Value =
            serde_json::from_str(&std::fs::read_to_string(dir.join(table)).unwrap()).unwrap();
        let cols = t["properties"]["schema"]["columns"].as_array().unwrap();
        let in_table: BTreeSet<String> = cols
            .iter()
            .map(|c| c["name"].as_str().unwrap().to_string())
            .collect();
        assert_eq!(in_table, declared, "{table}");
        for c in cols {
            let name = c["name"].as_str().unwrap();
            let v = &row[name];
            let ok = match c["type"].as_str().unwrap() {
                "string" => v.is_string() || v.is_null(),
                "datetime" => v.as_str().is_some_and(|s| s.ends_with('Z')),
                "int" | "long" => v.is_u64() || v.is_i64(),
                "dynamic" => v.is_object() || v.is_array(),
                _ => false,
            };
            assert!(ok, "{table}: column {name} has value {v}");
        }
    }
}

/// A Logs Ingestion request that hangs is ended by `retry.request_timeout_ms` and retried
/// with back-off; the bodies Azure already took (a batch is cut into bodies under 1 MB) are
/// not sent again, so a hanging body cannot make the others repeat.
#[tokio::test(flavor = "current_thread")]
async fn hanging_request_times_out_and_accepted_bodies_are_not_resent() {
    let (srv, st) = azure::start().await;
    // The first body is taken, the second hangs twice, then is taken.
    st.lock().unwrap().script = vec![Fail::Pass, Fail::Hang, Fail::Hang].into();
    let spool = tempfile::tempdir().unwrap();
    let set = Arc::new(
        SinkSet::from_config(
            &[cfg(
                &srv.url(),
                json!({"batch": {"max_events": 500, "max_bytes": 5_000_000, "timeout_ms": 300, "max_in_flight": 1},
                       "retry": {"max_attempts": 5, "initial_backoff_ms": 50, "max_backoff_ms": 200, "request_timeout_ms": 700}}),
            )],
            spool.path(),
        )
        .unwrap(),
    );
    let big = big_findings(300);
    let start = Instant::now();
    deliver_all(&set, big).await;
    let took = start.elapsed();
    assert!(
        took >= Duration::from_millis(1400) && took < Duration::from_secs(10),
        "two hanging requests ended by the 700 ms timeout: {took:?}"
    );
    assert_eq!(row_ids(&st, "Custom-KmswatchFindings_CL"), ids(300));
    let rows = st.lock().unwrap().rows["Custom-KmswatchFindings_CL"].len();
    assert_eq!(rows, 300, "no body was sent twice");
    let m = &set.metrics()[0];
    assert_eq!(m.retried, 2);
    assert_eq!(m.spooled, 0);
}

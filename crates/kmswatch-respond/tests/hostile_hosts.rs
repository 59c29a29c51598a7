//! No request ever goes to a host a log record chose.
//!
//! A capturing TLS server on 127.0.0.1 (rustls, a certificate signed by a CA made here) and
//! the `test-hooks` redirect that sends *every* connection of the responders to it, whatever
//! host it was meant for: reqwest clients (Azure, GCP) resolve every name to it, and AWS SDK
//! clients reach it as their HTTPS proxy (`CONNECT host:443`). The server records, per
//! connection, the host it was asked for (CONNECT target, TLS SNI, HTTP `Host`) and the
//! `Authorization` it was sent. It answers the read-only describe calls of the legitimate test
//! keys (so the checks after describe — provenance, corroboration — run too) and 403 to
//! anything else.
//!
//! Findings naming hostile hosts in every field the responder reads (the key id, and so the
//! vault; the evidence events' region, account, key, event id; the grant id in their raw
//! record; the log origins) go through `Responder::on_finding` in dry_run, approve and
//! enforce, with allow lists that exclude the key and that include it: the server must see no
//! connection at all. The same with legitimate names: they reach it, with their credentials,
//! and only when the allow list includes the key.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use kmswatch_model::{Finding, Origin, Provider};
use kmswatch_respond::aws::AwsConfig;
use kmswatch_respond::azure::AzureConfig;
use kmswatch_respond::config::{ActionSpec, KeyMatch, Playbook};
use kmswatch_respond::gcp::GcpConfig;
use kmswatch_respond::http::Secret;
use kmswatch_respond::provenance::{ProvenanceConfig, Require, TrustedLocation};
use kmswatch_respond::testhook::Redirect;
use kmswatch_respond::testutil::finding;
use kmswatch_respond::{ActionKind, Mode, Outcome, RespondConfig, Responder};
use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};
use std::sync::{Arc, Mutex};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;

/// The legitimate endpoints of the clouds the tests may reach (the server's certificate names
/// them).
const LEGIT: &[&str] = &[
    "kv-legit.vault.azure.net",
    "login.microsoftonline.com",
    "cloudkms.googleapis.com",
    "logging.googleapis.com",
    "oauth2.googleapis.com",
    "kms.us-east-1.amazonaws.com",
    "cloudtrail.us-east-1.amazonaws.com",
    "sts.us-east-1.amazonaws.com",
];
const AZURE_TOKEN: &str = "azure-bearer-token-do-not-leak";
const GCP_TOKEN: &str = "gcp-bearer-token-do-not-leak";

/// One connection the server accepted.
#[derive(Debug, Clone, Default)]
struct Conn {
    connect: Option<String>,
    sni: Option<String>,
    host: Option<String>,
    authorization: Option<String>,
}

impl Conn {
    fn names(&self) -> Vec<&str> {
        [&self.connect, &self.sni, &self.host]
            .into_iter()
            .flatten()
            .map(|n| n.split(':').next().unwrap_or(n))
            .collect()
    }
}

type Log = Arc<Mutex<Vec<Conn>>>;

/// The capturing server; returns its redirect (address and CA) and the log.
async fn capture() -> (Redirect, Log) {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let ca_key = KeyPair::generate().unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = CertifiedIssuer::self_signed(ca_params, ca_key).unwrap();
    let leaf_key = KeyPair::generate().unwrap();
    let leaf = CertificateParams::new(LEGIT.iter().map(|s| s.to_string()).collect::<Vec<_>>())
        .unwrap()
        .signed_by(&leaf_key, &ca)
        .unwrap();
    let config = Arc::new(
        rustls::ServerConfig::builder()
            .with_no_client_auth()
            .with_single_cert(
                vec![leaf.der().clone()],
                rustls::pki_types::PrivateKeyDer::Pkcs8(leaf_key.serialize_der().into()),
            )
            .unwrap(),
    );
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let log: Log = Arc::default();
    let l = log.clone();
    tokio::spawn(async move {
        loop {
            let Ok((sock, _)) = listener.accept().await else {
                return;
            };
            let i = {
                let mut g = l.lock().unwrap();
                g.push(Conn::default());
                g.len() - 1
            };
            let (l, config) = (l.clone(), config.clone());
            tokio::spawn(async move {
                let _ = serve_conn(sock, i, &l, config).await;
            });
        }
    });
    (
        Redirect {
            addr,
            ca_pem: ca.pem(),
        },
        log,
    )
}

async fn serve_conn(
    sock: tokio::net::TcpStream,
    i: usize,
    log: &Log,
    config: Arc<rustls::ServerConfig>,
) -> std::io::Result<()> {
    let set = |f: &dyn Fn(&mut Conn)| f(&mut log.lock().unwrap()[i]);
    let mut sock = BufReader::new(sock);
    // An HTTP proxy request (AWS SDK) or a TLS ClientHello (reqwest).
    if sock.fill_buf().await?.first() == Some(&b'C') {
        let mut line = String::new();
        sock.read_line(&mut line).await?;
        let target = line
            .split_whitespace()
            .nth(1)
            .unwrap_or_default()
            .to_string();
        set(&|c| c.connect = Some(target.clone()));
        loop {
            let mut h = String::new();
            if sock.read_line(&mut h).await? <= 2 {
                break;
            }
        }
        sock.get_mut()
            .write_all(b"HTTP/1.1 200 Connection established\r\n\r\n")
            .await?;
    }
    let start =
        tokio_rustls::LazyConfigAcceptor::new(rustls::server::Acceptor::default(), sock).await?;
    let sni = start.client_hello().server_name().map(str::to_string);
    set(&|c| c.sni = sni.clone());
    let mut tls = start.into_stream(config).await?;
    let mut head = Vec::new();
    let mut buf = [0u8; 4096];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < 65_536 {
        let n = tls.read(&mut buf).await?;
        if n == 0 {
            break;
        }
        head.extend_from_slice(&buf[..n]);
    }
    let text = String::from_utf8_lossy(&head).into_owned();
    let request_line = text.lines().next().unwrap_or_default().to_string();
    let mut target = String::new();
    let mut host = String::new();
    for l in text.lines() {
        if let Some((k, v)) = l.split_once(':') {
            let v = v.trim().to_string();
            match k.trim().to_ascii_lowercase().as_str() {
                "host" => {
                    host = v.clone();
                    set(&|c| c.host = Some(v.clone()));
                }
                "authorization" => set(&|c| c.authorization = Some(v.clone())),
                "x-amz-target" => target = v,
                _ => {}
            }
        }
    }
    let (status, body) = answer(&host, &request_line, &target);
    tls.write_all(
        format!(
            "HTTP/1.1 {status} X\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
            body.len()
        )
        .as_bytes(),
    )
    .await?;
    tls.shutdown().await
}

/// The describe calls of the legitimate test keys succeed (an enabled key); anything else is
/// 403.
fn answer(host: &str, request_line: &str, target: &str) -> (u16, String) {
    let path = request_line.split_whitespace().nth(1).unwrap_or_default();
    let get = request_line.starts_with("GET ");
    let gcp_key = "/v1/projects/kmswatch-demo/locations/global/keyRings/r/cryptoKeys/k";
    let body = match host.split(':').next().unwrap_or_default() {
        "kv-legit.vault.azure.net" if get && path.starts_with("/keys/cmk?") => serde_json::json!({
            "key": {"kid": "https://kv-legit.vault.azure.net/keys/cmk/0123456789abcdef0123456789abcdef"},
            "attributes": {"enabled": true},
        }),
        "cloudkms.googleapis.com" if get && path == gcp_key => serde_json::json!({
            "name": &gcp_key[4..],
            "primary": {"name": format!("{}/cryptoKeyVersions/1", &gcp_key[4..]), "state": "ENABLED"},
        }),
        "cloudkms.googleapis.com"
            if get && path.starts_with(&format!("{gcp_key}/cryptoKeyVersions?")) =>
        {
            serde_json::json!({"cryptoKeyVersions": [{"name": format!("{}/cryptoKeyVersions/1", &gcp_key[4..]), "state": "ENABLED"}]})
        }
        "kms.us-east-1.amazonaws.com" => match target {
            "TrentService.DescribeKey" => serde_json::json!({"KeyMetadata": {
                "KeyId": KEY_ID,
                "Arn": format!("arn:aws:kms:us-east-1:111122223333:key/{KEY_ID}"),
                "AWSAccountId": "111122223333",
                "Enabled": true,
                "KeyState": "Enabled",
                "KeyManager": "CUSTOMER",
            }}),
            "TrentService.ListAliases" => serde_json::json!({"Aliases": [], "Truncated": false}),
            "TrentService.ListResourceTags" => serde_json::json!({"Tags": [], "Truncated": false}),
            _ => return forbidden(),
        },
        _ => return forbidden(),
    };
    (200, body.to_string())
}

fn forbidden() -> (u16, String) {
    (
        403,
        r#"{"error":{"code":"Forbidden","message":"capture server"},"__type":"AccessDeniedException","message":"capture server"}"#.into(),
    )
}

const KEY_ID: &str = "1234abcd-12ab-34cd-56ef-1234567890ab";

/// The responders with their real endpoints (no override: every name is the real one); with
/// `provenance`, the hostile origins are checked before corroboration, without it the
/// hostile evidence fields reach corroboration.
fn config(dir: &std::path::Path, mode: Mode, allow: KeyMatch, provenance: bool) -> RespondConfig {
    RespondConfig {
        mode,
        journal_path: dir.join(format!("{mode:?}-{}-{provenance}.jsonl", allow.ids.len())),
        playbooks: vec![Playbook {
            name: "contain".into(),
            rules: vec![],
            min_level: None,
            tags: vec![],
            providers: vec![],
            actions: vec![
                ActionSpec {
                    kind: ActionKind::Disable,
                    rotation_period_days: None,
                },
                ActionSpec {
                    kind: ActionKind::RevokeGrant,
                    rotation_period_days: None,
                },
            ],
            mode: None,
        }],
        allow,
        rate_wait_max_ms: 0,
        provenance: if provenance {
            ProvenanceConfig {
                require: Require::CloudtrailDigest,
                trusted_locations: vec![TrustedLocation {
                    source: None,
                    location: "s3://*/AWSLogs/*".into(),
                }],
                ..Default::default()
            }
        } else {
            ProvenanceConfig::default()
        },
        aws: Some(AwsConfig {
            region: Some("us-east-1".into()),
            ..Default::default()
        }),
        azure: Some(AzureConfig {
            static_token: Some(Secret(AZURE_TOKEN.into())),
            max_retries: Some(0),
            ..Default::default()
        }),
        gcp: Some(GcpConfig {
            static_token: Some(Secret(GCP_TOKEN.into())),
            max_retries: Some(0),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// A finding about `key`, its evidence event and raw record carrying hostile text too.
fn hostile_finding(provider: Provider, key: &str, n: usize) -> Finding {
    let mut f = finding("kms_anything", 4, &[(provider, key)]);
    f.finding_info.uid = format!("hostile-{n}");
    let o = Origin {
        source: "cloudtrail".into(),
        location: "s3://attacker.example/AWSLogs/111122223333/CloudTrail/eu-west-1/2024/03/05/111122223333_CloudTrail_eu-west-1_20240305T1015Z_x.json.gz".into(),
    };
    f.kmswatch.origins = vec![o.clone()];
    f.kmswatch
        .group
        .insert("grant_id".into(), "../../grant@attacker.example".into());
    let e = &mut f.evidences[0];
    e.metadata.uid = "x\" OR insertId:\"y".into();
    e.cloud.region = Some("eu-west-1.attacker.example".into());
    e.cloud.account.uid = Some("attacker.example".into());
    e.kms.origin = Some(o);
    e.raw = kmswatch_model::Raw::from_string(
        serde_json::json!({
            "eventID": "x",
            "awsRegion": "attacker.example",
            "requestParameters": {"keyId": "https://x.vault.attacker.example/keys/k", "grantId": "x.attacker.example"},
        })
        .to_string(),
    )
    .unwrap();
    f
}

fn hostile_keys() -> Vec<(Provider, String)> {
    let mut v: Vec<(Provider, String)> = [
        "https://x.vault.attacker.example/keys/k",
        "https://localhost?x.vault.azure.net/keys/k",
        "https://kv.vault.x@host/keys/k",
        "https://kv-legit.vault.azure.net@attacker.example/keys/k",
        "https://kv-legit.vault.azure.net:8443/keys/k",
        "https://kv-legit.vault.azure.net.attacker.example/keys/k",
        "https://a.b.vault.azure.net/keys/k",
        "https://kv-legit.vault.azure.net/keys/k?x=https://attacker.example/",
        "https://kv-legit.vault.azure.net/keys/k%2F..%2F..%2Fattacker.example",
        "http://kv-legit.vault.azure.net/keys/k",
    ]
    .iter()
    .map(|k| (Provider::Azure, k.to_string()))
    .collect();
    for k in [
        format!("arn:aws:kms:eu-west-1.attacker.example:111122223333:key/{KEY_ID}"),
        format!("arn:aws:kms:attacker.example:111122223333:key/{KEY_ID}"),
        format!("arn:aws:kms:us-east-1#@attacker.example:111122223333:key/{KEY_ID}"),
        "https://kms.attacker.example/".into(),
    ] {
        v.push((Provider::Aws, k));
    }
    for k in [
        "projects/kmswatch-demo/locations/global/keyRings/r/cryptoKeys/k/../../../../attacker",
        "//attacker.example/projects/kmswatch-demo/locations/global/keyRings/r/cryptoKeys/k",
        "projects/kmswatch-demo@attacker.example/locations/global/keyRings/r/cryptoKeys/k",
    ] {
        v.push((Provider::Gcp, k.to_string()));
    }
    v
}

fn legit_keys() -> Vec<(Provider, String)> {
    vec![
        (
            Provider::Azure,
            "https://kv-legit.vault.azure.net/keys/cmk".into(),
        ),
        (
            Provider::Aws,
            format!("arn:aws:kms:us-east-1:111122223333:key/{KEY_ID}"),
        ),
        (
            Provider::Gcp,
            "projects/kmswatch-demo/locations/global/keyRings/r/cryptoKeys/k".into(),
        ),
    ]
}

/// Every finding in every mode, allow list and provenance setting; the outcomes seen.
async fn run_all(
    redirect: &Redirect,
    keys: &[(Provider, String)],
    allows: &[KeyMatch],
) -> Vec<kmswatch_respond::Outcome> {
    let dir = tempfile::tempdir().unwrap();
    let mut n = 0;
    let mut outcomes = Vec::new();
    for mode in [Mode::DryRun, Mode::Approve, Mode::Enforce] {
        for allow in allows {
            for provenance in [true, false] {
                let cfg = config(dir.path(), mode, allow.clone(), provenance);
                let r = Responder::new_redirected(cfg, redirect.clone()).unwrap();
                for (p, k) in keys {
                    n += 1;
                    let f = hostile_finding(*p, k, n);
                    let mut out = r.on_finding(&f).await;
                    assert!(!out.is_empty(), "{k}: some record");
                    // Approve mode: an approval runs the checks again.
                    for pending in r.pending() {
                        out.extend(r.approve(&pending.action_id, "alice").await.unwrap());
                    }
                    outcomes.extend(out.iter().filter_map(|o| o.audit()).map(|a| a.outcome));
                }
            }
        }
    }
    outcomes
}

fn allow_none() -> KeyMatch {
    KeyMatch {
        ids: vec!["arn:aws:kms:*:000000000000:key/*".into()],
        ..Default::default()
    }
}

fn allow_all() -> KeyMatch {
    KeyMatch {
        ids: vec!["*".into()],
        ..Default::default()
    }
}

#[tokio::test]
async fn hostile_names_never_reach_the_network() {
    common::fake_aws_env();
    let (redirect, log) = capture().await;
    let outcomes = run_all(
        &redirect,
        &hostile_keys(),
        &[allow_none(), allow_all(), KeyMatch::default()],
    )
    .await;
    let seen = log.lock().unwrap().clone();
    assert!(
        seen.is_empty(),
        "hostile findings made {} connection(s): {seen:#?}",
        seen.len()
    );
    assert!(
        outcomes.iter().all(|o| *o == Outcome::Refused),
        "refused before any call: {outcomes:?}"
    );

    // A legitimate key that the allow list excludes: decided before any call.
    run_all(&redirect, &legit_keys(), &[allow_none()]).await;
    let seen = log.lock().unwrap().clone();
    assert!(seen.is_empty(), "excluded keys were described: {seen:#?}");

    // Legitimate keys the allow list includes: they reach the (captured) clouds with their
    // credentials, and nothing else is contacted.
    let outcomes = run_all(&redirect, &legit_keys(), &[allow_all()]).await;
    // Described, then: dry run; pending and, approved, stopped by the hostile origin or the
    // hostile evidence; enforce stopped the same way. Never applied.
    for want in [
        Outcome::DryRun,
        Outcome::Pending,
        Outcome::UnverifiedOrigin,
        Outcome::NotCorroborated,
    ] {
        assert!(outcomes.contains(&want), "{want:?} in {outcomes:?}");
    }
    assert!(!outcomes.contains(&Outcome::Applied), "{outcomes:?}");
    let seen = log.lock().unwrap().clone();
    for c in &seen {
        for name in c.names() {
            assert!(LEGIT.contains(&name), "unexpected host {name}: {c:#?}");
        }
    }
    let reached = |host: &str| {
        seen.iter()
            .filter(|c| c.names().contains(&host))
            .collect::<Vec<_>>()
    };
    let azure = reached("kv-legit.vault.azure.net");
    assert!(!azure.is_empty(), "the Azure key was described: {seen:#?}");
    assert!(azure
        .iter()
        .all(|c| c.authorization.as_deref() == Some(&*format!("Bearer {AZURE_TOKEN}"))));
    let gcp = reached("cloudkms.googleapis.com");
    assert!(!gcp.is_empty(), "{seen:#?}");
    assert!(gcp
        .iter()
        .all(|c| c.authorization.as_deref() == Some(&*format!("Bearer {GCP_TOKEN}"))));
    let aws = reached("kms.us-east-1.amazonaws.com");
    assert!(!aws.is_empty(), "{seen:#?}");
    assert!(aws.iter().all(
        |c| c.connect.as_deref() == Some("kms.us-east-1.amazonaws.com:443")
            && c.authorization
                .as_deref()
                .is_some_and(|a| a.starts_with("AWS4-HMAC-SHA256 "))
    ));
    // The bearer tokens went nowhere else.
    for c in &seen {
        if let Some(a) = &c.authorization {
            if a.contains(AZURE_TOKEN) {
                assert_eq!(c.sni.as_deref(), Some("kv-legit.vault.azure.net"));
            }
            if a.contains(GCP_TOKEN) {
                assert!(c
                    .sni
                    .as_deref()
                    .is_some_and(|s| s.ends_with(".googleapis.com")));
            }
        }
    }
}

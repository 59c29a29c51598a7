use super::*;
use crate::{scan, Options};
use kmswatch_model::Event;

fn normalizer() -> Normalizer {
    Normalizer::new(Options::default()).unwrap()
}

fn run_bytes(n: &Normalizer, b: &[u8]) -> Result<Outcome, RecordError> {
    let (fields, _) = scan::object_fields(b, 0).expect("test record scans");
    normalize(
        n,
        &Record {
            bytes: b,
            fields: &fields,
            strict: false,
            checked: None,
            nested: &[],
        },
    )
}

fn run(json: &str) -> Result<Outcome, RecordError> {
    run_bytes(&normalizer(), json.as_bytes())
}

fn event(json: &str) -> (Event, bool) {
    match run(json) {
        Ok(Outcome::Event { event, related }) => (*event, related),
        other => panic!("expected an event, got {other:?}"),
    }
}

fn skip(json: &str) -> SkipReason {
    match run(json) {
        Ok(Outcome::Skip(r)) => r,
        other => panic!("expected a skip, got {other:?}"),
    }
}

fn eventbridge(json: &str) -> Result<Outcome, RecordError> {
    let b = json.as_bytes();
    let (fields, _) = scan::object_fields(b, 0).unwrap();
    normalize_eventbridge(
        &normalizer(),
        &Record {
            bytes: b,
            fields: &fields,
            strict: false,
            checked: None,
            nested: &[],
        },
    )
}

const KEY: &str = "arn:aws:kms:us-east-1:111122223333:key/0a1b2c3d-1111-2222-3333-444455556666";

const DECRYPT: &str = r#"{"eventVersion":"1.08","userIdentity":{"type":"IAMUser","principalId":"AIDAKMSWATCHEXAMPLE1","arn":"arn:aws:iam::111122223333:user/alice","accountId":"111122223333","accessKeyId":"AKIAKMSWATCHEXAMPLE","userName":"alice","sessionContext":{"attributes":{"mfaAuthenticated":"true","creationDate":"2024-03-04T09:00:00Z"}}},"eventTime":"2024-03-04T10:15:30Z","eventSource":"kms.amazonaws.com","eventName":"Decrypt","awsRegion":"us-east-1","sourceIPAddress":"198.51.100.7","userAgent":"aws-cli/2.15.0","requestParameters":{"encryptionAlgorithm":"SYMMETRIC_DEFAULT","encryptionContext":{"app":"billing"}},"responseElements":null,"requestID":"req-0001","eventID":"evt-0001","readOnly":true,"resources":[{"accountId":"111122223333","type":"AWS::KMS::Key","ARN":"arn:aws:kms:us-east-1:111122223333:key/0a1b2c3d-1111-2222-3333-444455556666"}],"eventType":"AwsApiCall","managementEvent":true,"recipientAccountId":"111122223333","eventCategory":"Management"}"#;

#[test]
fn kms_decrypt_fields() {
    let (ev, related) = event(DECRYPT);
    assert!(!related);
    assert_eq!(ev.time, 1_709_547_330_000);
    assert_eq!(ev.metadata.uid, "evt-0001");
    assert_eq!(ev.metadata.product.name, "CloudTrail");
    assert_eq!(ev.metadata.product.vendor_name, "AWS");
    assert_eq!(ev.metadata.log_format, "aws_cloudtrail");
    assert_eq!(ev.cloud.region.as_deref(), Some("us-east-1"));
    assert_eq!(ev.cloud.account.uid.as_deref(), Some("111122223333"));
    assert_eq!(ev.api.operation, "Decrypt");
    assert_eq!(ev.api.service.name, "kms.amazonaws.com");
    assert_eq!(ev.api.request.as_ref().unwrap().uid, "req-0001");
    assert_eq!(ev.status, Status::Success);
    assert_eq!(ev.status_detail, None);
    assert_eq!(
        ev.actor.user.uid.as_deref(),
        Some("arn:aws:iam::111122223333:user/alice")
    );
    assert_eq!(ev.actor.user.name.as_deref(), Some("alice"));
    assert_eq!(ev.actor.user.type_.as_deref(), Some("IAMUser"));
    assert_eq!(
        ev.actor.user.account.as_ref().unwrap().uid.as_deref(),
        Some("111122223333")
    );
    assert_eq!(ev.actor.kind, ActorKind::Human);
    let session = ev.actor.session.as_ref().unwrap();
    assert_eq!(session.is_mfa, Some(true));
    assert_eq!(session.issuer, None);
    assert_eq!(ev.actor.invoked_by, None);
    assert_eq!(ev.src_endpoint.ip.as_deref(), Some("198.51.100.7"));
    assert_eq!(
        ev.http_request.user_agent.as_deref(),
        Some("aws-cli/2.15.0")
    );
    assert_eq!(ev.kms.operation, KmsOperation::Decrypt);
    let key = ev.kms.key.as_ref().unwrap();
    assert_eq!(key.uid, KEY);
    assert_eq!(key.account_uid.as_deref(), Some("111122223333"));
    assert!(!ev.kms.cross_account);
    assert_eq!(ev.raw.get(), DECRYPT);
}

#[test]
fn serialized_field_names() {
    let (ev, _) = event(DECRYPT);
    let v = serde_json::to_value(&ev).unwrap();
    assert_eq!(v["kms"]["operation"], "Decrypt");
    assert_eq!(v["kms"]["key"]["uid"], KEY);
    assert_eq!(v["actor"]["kind"], "human");
    assert_eq!(v["cloud"]["provider"], "AWS");
    assert_eq!(v["raw"]["eventID"], "evt-0001");
}

#[test]
fn cross_account_decrypt() {
    let rec = DECRYPT
        .replace(
            r#""arn":"arn:aws:iam::111122223333:user/alice","accountId":"111122223333""#,
            r#""arn":"arn:aws:iam::444455556666:user/mallory","accountId":"444455556666""#,
        )
        .replace(r#""userName":"alice""#, r#""userName":"mallory""#);
    let (ev, _) = event(&rec);
    assert!(ev.kms.cross_account);
    assert_eq!(ev.cloud.account.uid.as_deref(), Some("111122223333"));
    assert_eq!(
        ev.actor.user.account.unwrap().uid.as_deref(),
        Some("444455556666")
    );
}

#[test]
fn access_denied_is_failure() {
    let rec = DECRYPT.replace(
        r#""requestID""#,
        r#""errorCode":"AccessDenied","errorMessage":"not authorized","requestID""#,
    );
    let (ev, _) = event(&rec);
    assert_eq!(ev.status, Status::Failure);
    assert_eq!(ev.status_detail.as_deref(), Some("AccessDenied"));
}

#[test]
fn logstash_timestamp_without_event_time() {
    let rec = DECRYPT.replace(
        r#""eventTime":"2024-03-04T10:15:30Z""#,
        r#""@timestamp":"2024-03-04T10:15:30.250Z","@version":"1""#,
    );
    let (ev, _) = event(&rec);
    assert_eq!(ev.time, 1_709_547_330_250);
}

#[test]
fn missing_and_bad_time_are_rejected() {
    let rec = DECRYPT.replace(r#""eventTime":"2024-03-04T10:15:30Z","#, "");
    let err = run(&rec).unwrap_err();
    assert_eq!(err.reason, RejectReason::MissingField);
    assert!(err.detail.contains("eventTime"), "{}", err.detail);
    let rec = DECRYPT.replace("2024-03-04T10:15:30Z", "yesterday");
    let err = run(&rec).unwrap_err();
    assert_eq!(err.reason, RejectReason::BadValue);
    assert!(err.detail.contains("yesterday"), "{}", err.detail);
}

#[test]
fn missing_event_name_is_rejected() {
    let rec = DECRYPT.replace(r#""eventName":"Decrypt","#, "");
    assert_eq!(run(&rec).unwrap_err().reason, RejectReason::MissingField);
}

#[test]
fn kept_record_with_bad_json_is_rejected() {
    // The scanner does not check literals; serde does, on kept records.
    let rec = DECRYPT.replace(r#""readOnly":true"#, r#""readOnly":tru"#);
    assert_eq!(run(&rec).unwrap_err().reason, RejectReason::MalformedJson);
    let rec = DECRYPT.replace(r#""eventName":"Decrypt""#, r#""eventName":7"#);
    assert_eq!(run(&rec).unwrap_err().reason, RejectReason::BadValue);
}

#[test]
fn invalid_utf8_is_rejected() {
    let mut b = DECRYPT.as_bytes().to_vec();
    let at = DECRYPT.find("billing").unwrap();
    b[at] = 0xff;
    let err = run_bytes(&normalizer(), &b).unwrap_err();
    assert_eq!(err.reason, RejectReason::InvalidUtf8);
}

#[test]
fn odd_sub_objects_do_not_reject() {
    let rec = DECRYPT.replace(
        r#""resources":[{"accountId""#,
        r#""resources":"weird","x":[{"accountId""#,
    );
    let (ev, _) = event(&rec);
    assert!(ev.kms.key.is_none());
}

#[test]
fn digest_is_skipped() {
    let d = r#"{"awsAccountId":"111122223333","digestStartTime":"2024-03-04T09:00:00Z","digestEndTime":"2024-03-04T10:00:00Z","digestS3Bucket":"b","digestS3Object":"o","logFiles":[]}"#;
    assert_eq!(skip(d), SkipReason::Digest);
}

#[test]
fn other_services_are_skipped() {
    let rec = DECRYPT
        .replace("kms.amazonaws.com", "ec2.amazonaws.com")
        .replace("\"Decrypt\"", "\"DescribeInstances\"");
    assert_eq!(skip(&rec), SkipReason::NotKms);
    let start = r#"{"eventTime":"2024-03-04T10:15:30Z","eventSource":"cloudtrail.amazonaws.com","eventName":"StartLogging"}"#;
    assert_eq!(skip(start), SkipReason::NotKms);
}

#[test]
fn not_cloudtrail_is_unknown_format() {
    let err = run(r#"{"hello":"world"}"#).unwrap_err();
    assert_eq!(err.reason, RejectReason::UnknownFormat);
}

const STOP_LOGGING: &str = r#"{"eventVersion":"1.08","userIdentity":{"type":"AssumedRole","principalId":"AROAKMSWATCHEXAMPLE:ci-deploy","arn":"arn:aws:sts::111122223333:assumed-role/deployer/ci-deploy","accountId":"111122223333","sessionContext":{"sessionIssuer":{"type":"Role","principalId":"AROAKMSWATCHEXAMPLE","arn":"arn:aws:iam::111122223333:role/deployer","accountId":"111122223333","userName":"deployer"},"attributes":{"creationDate":"2024-03-04T10:00:00Z","mfaAuthenticated":"false"}}},"eventTime":"2024-03-04T10:20:00Z","eventSource":"cloudtrail.amazonaws.com","eventName":"StopLogging","awsRegion":"us-east-1","sourceIPAddress":"203.0.113.9","userAgent":"boto3/1.34","requestParameters":{"name":"arn:aws:cloudtrail:us-east-1:111122223333:trail/org-trail"},"responseElements":null,"requestID":"req-0002","eventID":"evt-0002","readOnly":false,"eventType":"AwsApiCall","recipientAccountId":"111122223333"}"#;

#[test]
fn stop_logging_is_related_logging_change() {
    let (ev, related) = event(STOP_LOGGING);
    assert!(related);
    assert_eq!(ev.kms.operation, KmsOperation::LoggingChange);
    assert_eq!(ev.api.service.name, "cloudtrail.amazonaws.com");
    assert!(ev.kms.key.is_none());
    assert_eq!(ev.actor.kind, ActorKind::Service);
    assert_eq!(ev.actor.user.name.as_deref(), Some("ci-deploy"));
    let s = ev.actor.session.unwrap();
    assert_eq!(
        s.issuer.as_deref(),
        Some("arn:aws:iam::111122223333:role/deployer")
    );
    assert_eq!(s.is_mfa, Some(false));
}

const COPY_OBJECT: &str = r#"{"eventVersion":"1.09","userIdentity":{"type":"AssumedRole","principalId":"AROAKMSWATCHEXAMPLE:attacker","arn":"arn:aws:sts::111122223333:assumed-role/app/attacker","accountId":"111122223333"},"eventTime":"2024-03-04T11:00:00Z","eventSource":"s3.amazonaws.com","eventName":"CopyObject","awsRegion":"us-east-1","sourceIPAddress":"203.0.113.66","userAgent":"aws-cli/2.15.0","requestParameters":{"bucketName":"kmswatch-demo-data","key":"reports/q1.csv","x-amz-copy-source":"kmswatch-demo-data/reports/q1.csv","x-amz-server-side-encryption":"aws:kms","x-amz-server-side-encryption-aws-kms-key-id":"arn:aws:kms:us-east-1:999988887777:key/attacker-0000-1111"},"responseElements":null,"additionalEventData":{"SSEKMSKeyId":"arn:aws:kms:us-east-1:999988887777:key/attacker-0000-1111"},"requestID":"req-0003","eventID":"evt-0003","readOnly":false,"eventType":"AwsApiCall","managementEvent":false,"recipientAccountId":"111122223333","eventCategory":"Data"}"#;

#[test]
fn s3_copy_under_another_accounts_key_is_related() {
    let (ev, related) = event(COPY_OBJECT);
    assert!(related);
    assert_eq!(ev.kms.operation, KmsOperation::Other);
    assert_eq!(ev.api.operation, "CopyObject");
    let key = ev.kms.key.as_ref().unwrap();
    assert_eq!(
        key.uid,
        "arn:aws:kms:us-east-1:999988887777:key/attacker-0000-1111"
    );
    assert_eq!(key.account_uid.as_deref(), Some("999988887777"));
    assert!(ev.kms.cross_account);
}

#[test]
fn s3_key_from_additional_event_data() {
    let rec = COPY_OBJECT.replace(
        r#","x-amz-server-side-encryption-aws-kms-key-id":"arn:aws:kms:us-east-1:999988887777:key/attacker-0000-1111""#,
        "",
    );
    let rec = rec.replace("CopyObject", "PutObject");
    let (ev, related) = event(&rec);
    assert!(related);
    assert_eq!(
        ev.kms.key.unwrap().uid,
        "arn:aws:kms:us-east-1:999988887777:key/attacker-0000-1111"
    );
}

#[test]
fn s3_without_kms_key_is_skipped() {
    let get = COPY_OBJECT.replace("CopyObject", "GetObject");
    assert_eq!(skip(&get), SkipReason::NotKms);
    // The field name only as an object key: found by the cheap check, then not a key.
    let odd = r#"{"eventTime":"2024-03-04T11:00:00Z","eventSource":"s3.amazonaws.com","eventName":"PutObject","awsRegion":"us-east-1","requestParameters":{"bucketName":"b","key":"SSEKMSKeyId.txt"},"recipientAccountId":"111122223333"}"#;
    assert_eq!(skip(odd), SkipReason::NotKms);
    let plain = r#"{"eventTime":"2024-03-04T11:00:00Z","eventSource":"s3.amazonaws.com","eventName":"PutObject","requestParameters":{"bucketName":"b","key":"k"}}"#;
    assert_eq!(skip(plain), SkipReason::NotKms);
}

fn kms_call(name: &str, params: &str, extra: &str) -> String {
    format!(
        r#"{{"userIdentity":{{"type":"IAMUser","principalId":"AIDAEXAMPLE","arn":"arn:aws:iam::111122223333:user/alice","accountId":"111122223333","userName":"alice"}},"eventTime":"2024-03-04T10:15:30Z","eventSource":"kms.amazonaws.com","eventName":"{name}","awsRegion":"eu-west-1","requestParameters":{params},"eventID":"e","recipientAccountId":"111122223333"{extra}}}"#
    )
}

#[test]
fn schedule_key_deletion_window() {
    let (ev, _) = event(&kms_call(
        "ScheduleKeyDeletion",
        r#"{"keyId":"0a1b2c3d","pendingWindowInDays":7}"#,
        "",
    ));
    assert_eq!(ev.kms.operation, KmsOperation::ScheduleKeyDeletion);
    assert_eq!(ev.kms.pending_window_days, Some(7));
    assert_eq!(
        ev.kms.key.unwrap().uid,
        "arn:aws:kms:eu-west-1:111122223333:key/0a1b2c3d"
    );
    let (ev, _) = event(&kms_call(
        "ScheduleKeyDeletion",
        r#"{"keyId":"0a1b2c3d","pendingWindowInDays":"30"}"#,
        "",
    ));
    assert_eq!(ev.kms.pending_window_days, Some(30));
    let (ev, _) = event(&kms_call(
        "ScheduleKeyDeletion",
        r#"{"keyId":"0a1b2c3d"}"#,
        "",
    ));
    assert_eq!(ev.kms.pending_window_days, None);
}

#[test]
fn alias_reference_becomes_alias_arn() {
    let (ev, _) = event(&kms_call("Encrypt", r#"{"keyId":"alias/payments"}"#, ""));
    let key = ev.kms.key.unwrap();
    assert_eq!(key.uid, "arn:aws:kms:eu-west-1:111122223333:alias/payments");
    assert_eq!(key.account_uid.as_deref(), Some("111122223333"));
}

#[test]
fn resources_key_arn_beats_alias() {
    let (ev, _) = event(&kms_call(
        "DeleteAlias",
        r#"{"aliasName":"alias/payments"}"#,
        r#","resources":[{"ARN":"arn:aws:kms:eu-west-1:111122223333:alias/payments","accountId":"111122223333"},{"ARN":"arn:aws:kms:eu-west-1:111122223333:key/k1","accountId":"111122223333"}]"#,
    ));
    assert_eq!(
        ev.kms.key.unwrap().uid,
        "arn:aws:kms:eu-west-1:111122223333:key/k1"
    );
    let (ev, _) = event(&kms_call(
        "DeleteAlias",
        r#"{"aliasName":"alias/payments"}"#,
        "",
    ));
    assert_eq!(
        ev.kms.key.unwrap().uid,
        "arn:aws:kms:eu-west-1:111122223333:alias/payments"
    );
}

#[test]
fn create_key_uses_response_key_metadata() {
    let (ev, _) = event(&kms_call(
        "CreateKey",
        r#"{"keySpec":"SYMMETRIC_DEFAULT"}"#,
        r#","responseElements":{"keyMetadata":{"keyId":"new1","arn":"arn:aws:kms:eu-west-1:111122223333:key/new1"}},"resources":[{"type":"AWS::KMS::Key","ARN":"arn:aws:kms:eu-west-1:222222222222:key/doc-oddity"}]"#,
    ));
    assert_eq!(ev.kms.operation, KmsOperation::CreateKey);
    assert_eq!(
        ev.kms.key.unwrap().uid,
        "arn:aws:kms:eu-west-1:111122223333:key/new1"
    );
}

#[test]
fn service_event_key_from_details() {
    let rec = r#"{"userIdentity":{"accountId":"111122223333","invokedBy":"AWS Internal"},"eventTime":"2024-03-04T10:15:30Z","eventSource":"kms.amazonaws.com","eventName":"RotateKey","awsRegion":"eu-west-1","requestParameters":null,"responseElements":null,"eventID":"e","eventType":"AwsServiceEvent","recipientAccountId":"111122223333","serviceEventDetails":{"rotationType":"AUTOMATIC","keyId":"k9"}}"#;
    let (ev, related) = event(rec);
    assert!(!related);
    assert_eq!(ev.kms.operation, KmsOperation::RotateKey);
    assert_eq!(ev.actor.kind, ActorKind::CloudService);
    assert_eq!(ev.actor.invoked_by.as_deref(), Some("AWS Internal"));
    assert_eq!(ev.actor.user.uid, None);
    assert_eq!(
        ev.kms.key.unwrap().uid,
        "arn:aws:kms:eu-west-1:111122223333:key/k9"
    );
    assert!(!ev.kms.cross_account);
}

#[test]
fn sso_session_name_is_the_person() {
    let rec = r#"{"userIdentity":{"type":"AssumedRole","principalId":"AROAEXAMPLE:jane@example.com","arn":"arn:aws:sts::111122223333:assumed-role/AWSReservedSSO_KeyAdmins_0123456789abcdef/jane@example.com","accountId":"111122223333","sessionContext":{"sessionIssuer":{"type":"Role","principalId":"AROAEXAMPLE","arn":"arn:aws:iam::111122223333:role/aws-reserved/sso.amazonaws.com/AWSReservedSSO_KeyAdmins_0123456789abcdef","accountId":"111122223333","userName":"AWSReservedSSO_KeyAdmins_0123456789abcdef"}}},"eventTime":"2024-03-04T10:15:30Z","eventSource":"kms.amazonaws.com","eventName":"DisableKey","awsRegion":"eu-west-1","requestParameters":{"keyId":"k1"},"eventID":"e","recipientAccountId":"111122223333"}"#;
    let (ev, _) = event(rec);
    assert_eq!(ev.actor.kind, ActorKind::Human);
    assert_eq!(ev.actor.user.name.as_deref(), Some("jane@example.com"));
    assert_eq!(ev.actor.user.type_.as_deref(), Some("AssumedRole"));
    assert_eq!(ev.kms.operation, KmsOperation::DisableKey);
}

#[test]
fn human_role_patterns_apply() {
    let n = Normalizer::new(Options {
        human_role_patterns: vec!["deploy*".into()],
        ..Options::default()
    })
    .unwrap();
    match run_bytes(&n, STOP_LOGGING.as_bytes()).unwrap() {
        Outcome::Event { event, .. } => assert_eq!(event.actor.kind, ActorKind::Human),
        o => panic!("{o:?}"),
    }
}

#[test]
fn root_and_identity_center_names() {
    let root = r#"{"userIdentity":{"type":"Root","principalId":"111122223333","arn":"arn:aws:iam::111122223333:root","accountId":"111122223333"},"eventTime":"2024-03-04T10:15:30Z","eventSource":"kms.amazonaws.com","eventName":"PutKeyPolicy","awsRegion":"eu-west-1","requestParameters":{"keyId":"k1","policyName":"default"},"eventID":"e","recipientAccountId":"111122223333"}"#;
    let (ev, _) = event(root);
    assert_eq!(ev.actor.kind, ActorKind::Root);
    assert_eq!(ev.actor.user.name.as_deref(), Some("root"));
    assert_eq!(ev.kms.operation, KmsOperation::UpdateKeyPolicy);
    let idc = r#"{"userIdentity":{"type":"IdentityCenterUser","accountId":"111122223333","onBehalfOf":{"userId":"94482488-3041-7026-18f3-be45837cd0e4","identityStoreArn":"arn:aws:identitystore::111122223333:identitystore/d-9067642ac7"},"credentialId":"c"},"eventTime":"2024-03-04T10:15:30Z","eventSource":"kms.amazonaws.com","eventName":"ListKeys","awsRegion":"eu-west-1","eventID":"e"}"#;
    let (ev, _) = event(idc);
    assert_eq!(ev.actor.kind, ActorKind::Human);
    assert_eq!(
        ev.actor.user.name.as_deref(),
        Some("94482488-3041-7026-18f3-be45837cd0e4")
    );
    assert_eq!(ev.cloud.account.uid.as_deref(), Some("111122223333"));
}

#[test]
fn missing_user_identity_is_anonymous() {
    let rec = r#"{"eventTime":"2024-03-04T10:15:30Z","eventSource":"kms.amazonaws.com","eventName":"Decrypt","eventID":"e"}"#;
    let (ev, _) = event(rec);
    assert_eq!(ev.actor.kind, ActorKind::Anonymous);
    assert!(ev.actor.user.uid.is_none());
}

#[test]
fn escaped_strings_are_decoded() {
    let rec = kms_call("Decrypt", r#"{"keyId":"alias\/esc\u0061ped"}"#, "");
    let (ev, _) = event(&rec);
    assert_eq!(
        ev.kms.key.unwrap().uid,
        "arn:aws:kms:eu-west-1:111122223333:alias/escaped"
    );
}

#[test]
fn escaped_strings_in_user_identity_are_decoded() {
    let rec = DECRYPT.replace(
        r#""arn":"arn:aws:iam::111122223333:user/alice""#,
        r#""arn":"arn:aws:iam::111122223333:user\/al\u0069ce""#,
    );
    let (ev, _) = event(&rec);
    assert_eq!(
        ev.actor.user.uid.as_deref(),
        Some("arn:aws:iam::111122223333:user/alice")
    );
    let rec = DECRYPT.replace(
        r#""awsRegion":"us-east-1""#,
        r#""awsRegion":"us-east\u002d1""#,
    );
    let (ev, _) = event(&rec);
    assert_eq!(ev.cloud.region.as_deref(), Some("us-east-1"));
}

const EB_ROTATION: &str = r#"{"version":"0","id":"eb-0001","detail-type":"KMS CMK Rotation","source":"aws.kms","account":"111122223333","time":"2024-03-04T00:00:05Z","region":"us-east-1","resources":["arn:aws:kms:us-east-1:111122223333:key/0a1b2c3d-1111-2222-3333-444455556666"],"detail":{"key-id":"0a1b2c3d-1111-2222-3333-444455556666"}}"#;

#[test]
fn eventbridge_kms_events() {
    for (dt, op) in [
        ("KMS CMK Rotation", KmsOperation::RotateKey),
        ("KMS CMK Deletion", KmsOperation::DestroyKeyVersion),
        (
            "KMS Imported Key Material Expiration",
            KmsOperation::DeleteImportedKeyMaterial,
        ),
    ] {
        let rec = EB_ROTATION.replace("KMS CMK Rotation", dt);
        let Ok(Outcome::Event { event, related }) = eventbridge(&rec) else {
            panic!("{dt}");
        };
        assert!(!related);
        assert_eq!(event.kms.operation, op, "{dt}");
        assert_eq!(event.api.operation, dt);
        assert_eq!(event.metadata.uid, "eb-0001");
        assert_eq!(event.time, 1_709_510_405_000);
        assert_eq!(event.actor.kind, ActorKind::CloudService);
        assert_eq!(event.cloud.account.uid.as_deref(), Some("111122223333"));
        assert_eq!(event.kms.key.as_ref().unwrap().uid, KEY);
        assert_eq!(event.raw.get(), rec);
    }
}

#[test]
fn eventbridge_key_from_detail_when_no_resources() {
    let rec = EB_ROTATION.replace(
        r#""resources":["arn:aws:kms:us-east-1:111122223333:key/0a1b2c3d-1111-2222-3333-444455556666"]"#,
        r#""resources":[]"#,
    );
    let Ok(Outcome::Event { event, .. }) = eventbridge(&rec) else {
        panic!()
    };
    assert_eq!(event.kms.key.unwrap().uid, KEY);
}

#[test]
fn eventbridge_other_events_are_skipped() {
    let other = EB_ROTATION.replace("KMS CMK Rotation", "KMS Something New");
    assert!(matches!(
        eventbridge(&other),
        Ok(Outcome::Skip(SkipReason::NotAuditRecord))
    ));
    let ec2 = EB_ROTATION
        .replace("aws.kms", "aws.ec2")
        .replace("KMS CMK Rotation", "EC2 Instance State-change Notification");
    assert!(matches!(
        eventbridge(&ec2),
        Ok(Outcome::Skip(SkipReason::NotAuditRecord))
    ));
    let no_time = EB_ROTATION.replace(r#""time":"2024-03-04T00:00:05Z","#, "");
    assert_eq!(
        eventbridge(&no_time).unwrap_err().reason,
        RejectReason::MissingField
    );
}

#[test]
fn eventbridge_api_call_envelope_and_dispatch() {
    let env = format!(
        r#"{{"version":"0","id":"eb-2","detail-type":"AWS API Call via CloudTrail","source":"aws.kms","account":"111122223333","time":"2024-03-04T10:15:31Z","region":"us-east-1","resources":[],"detail":{DECRYPT}}}"#
    );
    let Ok(Outcome::Event { event, .. }) = eventbridge(&env) else {
        panic!()
    };
    assert_eq!(event.metadata.uid, "evt-0001");
    assert_eq!(event.raw.get(), DECRYPT);
    // An aws.kms EventBridge event handed to the CloudTrail entry point is still read.
    let Ok(Outcome::Event { event, .. }) = run(EB_ROTATION) else {
        panic!()
    };
    assert_eq!(event.kms.operation, KmsOperation::RotateKey);
}

/// Every example of the AWS KMS developer guide normalizes: KMS records to events with an
/// operation and (for operations on a key) a key ARN; the EC2 ones are skipped.
#[test]
fn developer_guide_examples_normalize() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../../shared/data/aws/aws-kms-developer-guide-examples");
    let Ok(text) = std::fs::read_to_string(dir.join("kms_cloudtrail_examples.extracted.jsonl"))
    else {
        println!("skipping: {} not present", dir.display());
        return;
    };
    let n = normalizer();
    let no_key = [
        "ConnectCustomKeyStore",
        "CreateCustomKeyStore",
        "DeleteCustomKeyStore",
        "DescribeCustomKeyStores",
        "DisconnectCustomKeyStore",
        "UpdateCustomKeyStore",
        "GenerateRandom",
        "ListAliases",
    ];
    let (mut events, mut skipped) = (0, 0);
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let b = line.as_bytes();
        let (outer, _) = scan::object_fields(b, 0).unwrap();
        let inner = outer.iter().find(|(k, _)| *k == b"event").unwrap().1;
        let (fields, _) = scan::object_fields(inner, 0).unwrap();
        let rec = Record {
            bytes: inner,
            fields: &fields,
            strict: false,
            checked: None,
            nested: &[],
        };
        match normalize(&n, &rec) {
            Ok(Outcome::Event { event, related }) => {
                assert!(!related);
                events += 1;
                let name = event.api.operation.as_str();
                assert!(!event.metadata.uid.is_empty(), "{name}");
                if !no_key.contains(&name) {
                    let key = event
                        .kms
                        .key
                        .as_ref()
                        .unwrap_or_else(|| panic!("{name}: no key"));
                    assert!(
                        identity::is_key_arn(&key.uid) || identity::is_alias_arn(&key.uid),
                        "{name}: {}",
                        key.uid
                    );
                }
                assert_ne!(event.actor.kind, ActorKind::Unknown, "{name}");
            }
            Ok(Outcome::Skip(r)) => {
                assert_eq!(r, SkipReason::NotKms);
                skipped += 1;
            }
            Err(e) => panic!("{line}: {e}"),
        }
    }
    assert!(
        events >= 65 && skipped == 2,
        "{events} events, {skipped} skipped"
    );

    let eb = std::fs::read_to_string(dir.join("kms_eventbridge_examples.extracted.jsonl"))
        .unwrap_or_default();
    let mut eb_events = 0;
    for line in eb.lines().filter(|l| !l.trim().is_empty()) {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        let inner = serde_json::to_string(&v["event"]).unwrap();
        let Ok(Outcome::Event { event, .. }) = eventbridge(&inner) else {
            panic!("{line}")
        };
        assert_ne!(event.kms.operation, KmsOperation::Other);
        eb_events += 1;
    }
    assert_eq!(eb_events, 3);
}

// ---- kms.policy and kms.grantees ----

/// A PutKeyPolicy on a key of 111122223333 whose `policy` is the JSON string of `doc`.
fn put_key_policy(doc: &str) -> Event {
    let policy = serde_json::to_string(doc).unwrap();
    event(&kms_call(
        "PutKeyPolicy",
        &format!(r#"{{"keyId":"0a1b2c3d","policyName":"default","policy":{policy}}}"#),
        "",
    ))
    .0
}

const OWNER_STATEMENT: &str = r#"{"Sid":"Enable IAM User Permissions","Effect":"Allow","Principal":{"AWS":"arn:aws:iam::111122223333:root"},"Action":"kms:*","Resource":"*"}"#;

fn doc(statements: &[&str]) -> String {
    format!(
        r#"{{"Version":"2012-10-17","Statement":[{}]}}"#,
        statements.join(",")
    )
}

#[test]
fn policy_wildcard_without_condition_is_public() {
    for principal in [
        r#""*""#,
        r#"{"AWS":"*"}"#,
        r#"{"AWS":["arn:aws:iam::111122223333:root","*"]}"#,
    ] {
        let st = format!(
            r#"{{"Effect":"Allow","Principal":{principal},"Action":"kms:Decrypt","Resource":"*"}}"#
        );
        let ev = put_key_policy(&doc(&[OWNER_STATEMENT, &st]));
        let p = ev.kms.policy.expect("policy read");
        assert!(p.public, "{principal}");
        assert!(p.external_accounts.is_empty(), "{principal}");
        assert!(ev.kms.grantees.is_empty());
    }
}

#[test]
fn policy_wildcard_with_restricting_condition_is_not_public() {
    for cond in [
        r#"{"StringEquals":{"aws:PrincipalOrgID":"o-abc123"}}"#,
        r#"{"StringEquals":{"kms:CallerAccount":"111122223333","kms:ViaService":"s3.eu-west-1.amazonaws.com"}}"#,
        r#"{"ForAnyValue:StringLike":{"aws:principalarn":["arn:aws:iam::*:role/Deploy*"]}}"#,
        r#"{"ArnLike":{"aws:SourceArn":"arn:aws:s3:::bucket"}}"#,
    ] {
        let st = format!(
            r#"{{"Effect":"Allow","Principal":"*","Action":"kms:Decrypt","Resource":"*","Condition":{cond}}}"#
        );
        let p = put_key_policy(&doc(&[OWNER_STATEMENT, &st]))
            .kms
            .policy
            .unwrap();
        assert!(!p.public, "{cond}");
    }
    // A condition that does not say who the caller is leaves the key public.
    let st = r#"{"Effect":"Allow","Principal":{"AWS":"*"},"Action":"kms:Decrypt","Resource":"*","Condition":{"StringEquals":{"kms:EncryptionContext:app":"billing"}}}"#;
    assert!(put_key_policy(&doc(&[st])).kms.policy.unwrap().public);
}

#[test]
fn policy_deny_and_not_principal() {
    let deny = r#"{"Effect":"Deny","Principal":"*","Action":"kms:*","Resource":"*"}"#;
    let p = put_key_policy(&doc(&[OWNER_STATEMENT, deny]))
        .kms
        .policy
        .unwrap();
    assert!(!p.public);
    let not_principal = r#"{"Effect":"Allow","NotPrincipal":{"AWS":"arn:aws:iam::111122223333:user/bob"},"Action":"kms:Decrypt","Resource":"*"}"#;
    assert!(
        put_key_policy(&doc(&[not_principal]))
            .kms
            .policy
            .unwrap()
            .public
    );
}

#[test]
fn policy_external_accounts_from_principal_lists() {
    let st = r#"{"Effect":"Allow","Principal":{"AWS":["arn:aws:iam::444455556666:root","arn:aws:sts::777788889999:assumed-role/R/s","999900001111","arn:aws:iam::111122223333:role/Local","arn:aws:iam::444455556666:role/Dup"],"Service":"logs.eu-west-1.amazonaws.com"},"Action":"kms:Decrypt","Resource":"*"}"#;
    let denied = r#"{"Effect":"Deny","Principal":{"AWS":"arn:aws:iam::222233334444:root"},"Action":"kms:*","Resource":"*"}"#;
    let p = put_key_policy(&doc(&[OWNER_STATEMENT, st, denied]))
        .kms
        .policy
        .unwrap();
    assert!(!p.public);
    assert_eq!(
        p.external_accounts,
        vec!["444455556666", "777788889999", "999900001111"]
    );
}

#[test]
fn policy_same_account_only_is_empty() {
    let p = put_key_policy(&doc(&[OWNER_STATEMENT])).kms.policy.unwrap();
    assert_eq!(p, kmswatch_model::PolicyChange::default());
}

#[test]
fn policy_owner_is_the_key_arn_account() {
    // The caller's trail (recipient 111122223333) logs a call on a key of 444455556666: the
    // key's own account is not external, the recipient's is.
    let policy = serde_json::to_string(&doc(&[
        r#"{"Effect":"Allow","Principal":{"AWS":["arn:aws:iam::444455556666:root","arn:aws:iam::111122223333:root"]},"Action":"kms:*","Resource":"*"}"#,
    ]))
    .unwrap();
    let (ev, _) = event(&kms_call(
        "PutKeyPolicy",
        &format!(r#"{{"keyId":"arn:aws:kms:eu-west-1:444455556666:key/k","policy":{policy}}}"#),
        "",
    ));
    assert_eq!(
        ev.kms.policy.unwrap().external_accounts,
        vec!["111122223333"]
    );
}

#[test]
fn policy_as_object_and_create_key() {
    let (ev, _) = event(&kms_call(
        "CreateKey",
        r#"{"keyUsage":"ENCRYPT_DECRYPT","policy":{"Version":"2012-10-17","Statement":{"Effect":"Allow","Principal":{"AWS":"arn:aws:iam::444455556666:root"},"Action":"kms:*","Resource":"*"}}}"#,
        "",
    ));
    assert_eq!(ev.kms.operation, KmsOperation::CreateKey);
    let p = ev.kms.policy.unwrap();
    assert!(!p.public);
    assert_eq!(p.external_accounts, vec!["444455556666"]);
}

#[test]
fn malformed_or_missing_policy_leaves_policy_unset() {
    for params in [
        r#"{"keyId":"k","policy":"{not json"}"#,
        r#"{"keyId":"k","policy":""}"#,
        r#"{"keyId":"k","policy":"\"just a string\""}"#,
        r#"{"keyId":"k","policy":42}"#,
        r#"{"keyId":"k","policy":null}"#,
        r#"{"keyId":"k","policy":"{\"Version\":\"2012-10-17\"}"}"#,
        r#"{"keyId":"k","policy":"{\"Statement\":\"oops\"}"}"#,
        r#"{"keyId":"k"}"#,
    ] {
        let (ev, _) = event(&kms_call("PutKeyPolicy", params, ""));
        assert_eq!(ev.kms.operation, KmsOperation::UpdateKeyPolicy, "{params}");
        assert!(ev.kms.policy.is_none(), "{params}");
    }
    // Odd statements are skipped, not fatal.
    let ev = put_key_policy(
        r#"{"Statement":[42,{"Effect":"Allow"},{"Effect":"Allow","Principal":{"AWS":7}}]}"#,
    );
    assert_eq!(ev.kms.policy, Some(kmswatch_model::PolicyChange::default()));
}

#[test]
fn policy_not_read_for_other_operations() {
    let (ev, _) = event(&kms_call(
        "Decrypt",
        r#"{"keyId":"k","policy":"{\"Statement\":[{\"Effect\":\"Allow\",\"Principal\":\"*\"}]}"}"#,
        "",
    ));
    assert!(ev.kms.policy.is_none());
    assert!(ev.kms.grantees.is_empty());
}

#[test]
fn create_grant_to_another_account() {
    let (ev, _) = event(&kms_call(
        "CreateGrant",
        r#"{"keyId":"arn:aws:kms:eu-west-1:111122223333:key/k","granteePrincipal":"arn:aws:iam::444455556666:role/Reader","retiringPrincipal":"arn:aws:iam::111122223333:role/Admin","operations":["Decrypt"]}"#,
        "",
    ));
    assert_eq!(ev.kms.operation, KmsOperation::CreateGrant);
    assert_eq!(
        ev.kms.grantees,
        vec![
            "arn:aws:iam::444455556666:role/Reader",
            "arn:aws:iam::111122223333:role/Admin"
        ]
    );
    let p = ev.kms.policy.unwrap();
    assert!(!p.public);
    assert_eq!(p.external_accounts, vec!["444455556666"]);
}

#[test]
fn create_grant_to_a_service_or_same_account() {
    for grantee in [
        "s3.amazonaws.com",
        "arn:aws:iam::111122223333:role/App",
        "111122223333:aws:ec2-infrastructure:i-81e2f56c",
        "EX_PRINCIPAL_ID",
    ] {
        let (ev, _) = event(&kms_call(
            "CreateGrant",
            &format!(r#"{{"keyId":"k","granteePrincipal":"{grantee}"}}"#),
            "",
        ));
        assert_eq!(ev.kms.grantees, vec![grantee]);
        assert_eq!(
            ev.kms.policy,
            Some(kmswatch_model::PolicyChange::default()),
            "{grantee}"
        );
    }
    // No grantee logged: nothing claimed.
    let (ev, _) = event(&kms_call("CreateGrant", r#"{"keyId":"k"}"#, ""));
    assert!(ev.kms.grantees.is_empty());
    assert!(ev.kms.policy.is_none());
}

#[test]
fn panther_resource_made_public_samples() {
    // Shapes of Panther's AWS.CloudTrail.ResourceMadePublic tests: the policy as an object
    // with a bare wildcard, and a string policy whose wildcards are narrowed by
    // aws:PrincipalOrgID + aws:PrincipalArn.
    let public = r#"{"awsRegion":"us-west-2","eventID":"test-04","eventName":"PutKeyPolicy","eventSource":"kms.amazonaws.com","eventTime":"2024-01-01 00:00:00.000","requestParameters":{"policy":{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":"*","Action":"kms:Decrypt","Resource":"*"}]}},"userIdentity":{"type":"AssumedRole","userName":"TestRole"}}"#;
    assert!(event(public).0.kms.policy.unwrap().public);
    let restricted_doc = r#"{"Version":"2008-10-17","Statement":[{"Effect":"Allow","Principal":{"AWS":"arn:aws:iam::123456789012:root"},"Action":"kms:*","Resource":"*"},{"Effect":"Allow","Principal":"*","Action":"kms:Decrypt","Resource":"*","Condition":{"StringEquals":{"aws:PrincipalOrgID":"o-xxxxxxxxxx"},"ForAnyValue:StringLike":{"aws:PrincipalArn":["arn:aws:iam::*:role/ExampleDeploymentRole*"]}}}]}"#;
    let restricted = format!(
        r#"{{"awsRegion":"us-west-2","eventID":"x","eventName":"PutKeyPolicy","eventSource":"kms.amazonaws.com","eventTime":"2025-03-05T21:19:44Z","recipientAccountId":"123456789012","requestParameters":{{"keyId":"k","policy":{}}},"userIdentity":{{"type":"AssumedRole","accountId":"123456789012"}}}}"#,
        serde_json::to_string(restricted_doc).unwrap()
    );
    assert_eq!(
        event(&restricted).0.kms.policy,
        Some(kmswatch_model::PolicyChange::default())
    );
}

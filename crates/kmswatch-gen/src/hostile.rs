//! Hostile inputs: what anyone who can write into a monitored bucket, topic or directory can
//! hand kmswatch — decompression bombs, containers nested thousands deep, JSON nested past any
//! parser's limit, one line of hundreds of megabytes, text that validates but does not parse.
//! Small on disk, deterministic, generated rather than stored.
//!
//! The normalizer's adversarial tests (`kmswatch-normalize/tests/adversarial.rs`), the
//! end-to-end test of `kmswatch run` under a memory budget (`kmswatch/tests/hostile_run.rs`)
//! and `kmswatch gen --hostile OUT` (to try them by hand: `kmswatch scan OUT`) all use these.

use base64::Engine as _;
use std::io::{Cursor, Write};

/// One mebibyte.
pub const MIB: usize = 1 << 20;

/// A valid CloudTrail KMS `Decrypt` record by an IAM user (event id `e-I`), one line.
pub fn kms_line(i: usize) -> String {
    serde_json::json!({
        "eventVersion": "1.08",
        "userIdentity": {"type": "IAMUser", "principalId": "AIDAEXAMPLE", "arn": "arn:aws:iam::111122223333:user/alice", "accountId": "111122223333", "userName": "alice"},
        "eventTime": "2026-03-01T10:00:00Z", "eventSource": "kms.amazonaws.com", "eventName": "Decrypt",
        "awsRegion": "us-east-1", "sourceIPAddress": "198.51.100.7", "userAgent": "aws-cli",
        "requestParameters": {"keyId": "1234abcd-12ab-34cd-56ef-1234567890ab"},
        "eventID": format!("e-{i}"), "eventType": "AwsApiCall", "recipientAccountId": "111122223333"
    })
    .to_string()
}

/// `n` [`kms_line`]s, each ending with a newline.
pub fn kms_lines(n: usize) -> String {
    (0..n).map(|i| kms_line(i) + "\n").collect()
}

/// `data` gzip-compressed (best compression).
pub fn gzip(data: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    // Writing to a Vec cannot fail.
    let _ = e.write_all(data);
    e.finish().unwrap_or_default()
}

/// A gzip bomb of about `compressed` bytes: one member holding `head`, then members of 1 MiB
/// of blanks each (about 1 KiB compressed: 1,000 times smaller) up to the size. Returns the
/// bytes and how many bytes they decompress to.
pub fn gzip_bomb(head: &[u8], compressed: usize) -> (Vec<u8>, usize) {
    let mut out = gzip(head);
    let member = gzip(&vec![b' '; MIB]);
    let mut decoded = head.len();
    while out.len() < compressed {
        out.extend_from_slice(&member);
        decoded += MIB;
    }
    (out, decoded)
}

fn stored() -> zip::write::SimpleFileOptions {
    zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Stored)
}

/// A zip archive of `entries` (name, bytes), stored uncompressed.
pub fn zip_of(entries: &[(&str, &[u8])]) -> Vec<u8> {
    let mut w = zip::ZipWriter::new(Cursor::new(Vec::new()));
    for (name, data) in entries {
        // Writing to an in-memory archive fails only on names zip cannot hold; ours are fixed.
        let _ = w.start_file(*name, stored());
        let _ = w.write_all(data);
    }
    w.finish().map(Cursor::into_inner).unwrap_or_default()
}

/// `inner` as `events.jsonl` in a zip, that zip as `nested.zip` in a zip, `levels` times
/// (3,000 levels: about 350 KB).
pub fn nested_zip(levels: usize, inner: &[u8]) -> Vec<u8> {
    let mut data = zip_of(&[("events.jsonl", inner)]);
    for _ in 1..levels {
        data = zip_of(&[("nested.zip", &data)]);
    }
    data
}

/// A zip bomb: `head` as `first.jsonl`, then `entries` copies of one entry of `entry_bytes`
/// blanks, deflated once and copied raw (1,000 entries of 8 MiB: an 8 MB archive that
/// decompresses to 8 GiB).
pub fn zip_bomb(head: &[u8], entries: usize, entry_bytes: usize) -> Vec<u8> {
    let one = {
        let mut w = zip::ZipWriter::new(Cursor::new(Vec::new()));
        let opts = zip::write::SimpleFileOptions::default()
            .compression_method(zip::CompressionMethod::Deflated);
        let _ = w.start_file("blank.json", opts);
        let _ = w.write_all(&vec![b' '; entry_bytes]);
        w.finish().map(Cursor::into_inner).unwrap_or_default()
    };
    let mut w = zip::ZipWriter::new(Cursor::new(Vec::new()));
    let _ = w.start_file("first.jsonl", stored());
    let _ = w.write_all(head);
    if let Ok(mut src) = zip::ZipArchive::new(Cursor::new(one)) {
        for i in 0..entries {
            if let Ok(f) = src.by_index(0) {
                let _ = w.raw_copy_file_rename(f, format!("e{i:04}.json"));
            }
        }
    }
    w.finish().map(Cursor::into_inner).unwrap_or_default()
}

/// A CloudWatch Logs subscription envelope, `{"awslogs":{"data": base64(gz)}}`.
pub fn awslogs(gz: &[u8]) -> Vec<u8> {
    let data = base64::engine::general_purpose::STANDARD.encode(gz);
    serde_json::json!({"awslogs": {"data": data}})
        .to_string()
        .into_bytes()
}

/// `open` `levels` times, `inner`, `close` `levels` times.
pub fn deep(open: &str, close: &str, levels: usize, inner: &str) -> String {
    let mut s = String::with_capacity((open.len() + close.len()) * levels + inner.len());
    for _ in 0..levels {
        s.push_str(open);
    }
    s.push_str(inner);
    for _ in 0..levels {
        s.push_str(close);
    }
    s
}

/// One hostile input: a file name (its extension is what a delivery would have), the bytes,
/// and what it is.
#[derive(Debug, Clone)]
pub struct Case {
    /// File or object name.
    pub name: &'static str,
    /// The bytes.
    pub bytes: Vec<u8>,
    /// What it is and what kmswatch must do with it.
    pub what: &'static str,
}

/// One line of `bytes` bytes (a CloudTrail-looking record with one huge field), written
/// without holding it: the issue's case is 1 GiB.
pub fn write_long_line(w: &mut impl Write, bytes: usize) -> std::io::Result<()> {
    let head = br#"{"eventSource":"kms.amazonaws.com","eventName":"Decrypt","x":""#;
    let tail = b"\"}\n";
    w.write_all(head)?;
    let mut left = bytes.saturating_sub(head.len() + tail.len());
    let chunk = vec![b'a'; MIB.min(left.max(1))];
    while left > 0 {
        let n = left.min(chunk.len());
        w.write_all(&chunk[..n])?;
        left -= n;
    }
    w.write_all(tail)
}

/// The hostile corpus: every kind above, plus one ordinary record file (`ok.json`) so a run
/// shows the pipeline going on. The long line is apart ([`write_long_line`]).
pub fn corpus() -> Vec<Case> {
    let cwl_head = serde_json::json!({
        "messageType": "DATA_MESSAGE", "owner": "111122223333", "logGroup": "g",
        "logStream": "s", "subscriptionFilters": ["f"],
        "logEvents": [{"id": "1", "timestamp": 1, "message": kms_line(1)}],
    })
    .to_string();
    vec![
        Case {
            name: "nested-3000.zip",
            bytes: nested_zip(3000, kms_lines(1).as_bytes()),
            what: "a zip nested 3,000 levels deep (350 KB): one too_deep rejection, no stack overflow",
        },
        Case {
            name: "bomb-3mb.json.gz",
            bytes: gzip_bomb(kms_lines(3).as_bytes(), 3 * MIB).0,
            what: "3 MB of gzip that decompresses to 3 GiB: the records before the budget, then one budget_exceeded",
        },
        Case {
            name: "bomb-8gb.zip",
            bytes: zip_bomb(kms_lines(2).as_bytes(), 1000, 8 * MIB),
            what: "an 8 MB zip of 1,000 entries that decompress to 8 GiB: stops at the per-object budget",
        },
        Case {
            name: "awslogs-bomb.json",
            bytes: awslogs(&gzip_bomb(cwl_head.as_bytes(), MIB).0),
            what: "a CloudWatch Logs envelope whose base64 gzip payload decompresses to 1 GiB",
        },
        Case {
            name: "deep.jsonl",
            bytes: format!(
                "{}\n{}\n",
                deep("[", "]", 100_000, "{}"),
                deep(r#"{"a":"#, "}", 100_000, "1")
            )
            .into_bytes(),
            what: "JSON nested 100,000 levels: too_deep, no stack overflow",
        },
        Case {
            name: "unparseable.jsonl",
            bytes: format!(
                "{}\n{}\n",
                kms_line(7).replace(r#""userAgent":"aws-cli""#, r#""userAgent":"\ud800""#),
                kms_line(8).replace(r#""eventVersion":"1.08""#, r#""eventVersion":1e400"#)
            )
            .into_bytes(),
            what: "records that validate as JSON text but do not parse as values (lone surrogate, 1e400): rejected, not kept invisible to raw rules",
        },
        Case {
            name: "ok.json",
            bytes: kms_lines(1).into_bytes(),
            what: "an ordinary record: the run goes on",
        },
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bombs_are_small_on_disk_and_what_they_say() {
        let (g, decoded) = gzip_bomb(b"x", 3 * MIB);
        assert!(g.len() >= 3 * MIB && g.len() < 4 * MIB, "{}", g.len());
        assert!(decoded > 2000 * MIB, "{decoded}");
        let z = zip_bomb(b"x\n", 10, MIB);
        let mut a = zip::ZipArchive::new(Cursor::new(z)).expect("zip");
        assert_eq!(a.len(), 11);
        assert_eq!(a.by_index(5).expect("entry").size(), MIB as u64);
        let n = nested_zip(50, b"{}");
        assert!(n.len() < 50 * 200, "{}", n.len());
        assert_eq!(corpus().len(), 7);
        let mut long = Vec::new();
        write_long_line(&mut long, 4 * MIB).expect("write");
        assert_eq!(long.len(), 4 * MIB);
        assert_eq!(long.iter().filter(|&&b| b == b'\n').count(), 1);
        assert!(serde_json::from_slice::<serde_json::Value>(&long).is_ok());
    }
}

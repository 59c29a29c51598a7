//! Cloud KMS resource names: which key, version, key ring or other object a log entry is
//! about.
//!
//! `kms.key.uid` is `projects/P/locations/L/keyRings/R/cryptoKeys/K`, trimmed from the
//! longest name the entry gives (`cryptoKeyVersions/V` goes to `kms.key.version`). Entries
//! about something that is not a key — a key ring (`CreateKeyRing`, IAM on a key ring), an
//! import job, an EKM connection, an Autokey key handle or config — have no `kms.key`; their
//! resource name goes to `kms.object_uid` instead, so rules and analysts still see what was
//! touched. Names may carry the `//cloudkms.googleapis.com/` service prefix; it is removed.

/// A parsed Cloud KMS resource name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct KmsName<'a> {
    /// The name without service prefix and without anything past the deepest resource
    /// understood.
    pub full: &'a str,
    /// Project id or number (or `folders/F` parents have none).
    pub project: Option<&'a str>,
    /// Location (`us-central1`, `global`, `us`).
    pub location: Option<&'a str>,
    /// `projects/P/locations/L/keyRings/R/cryptoKeys/K`, when the name reaches a key.
    pub key: Option<&'a str>,
    /// The `cryptoKeyVersions` id, when the name reaches a version.
    pub version: Option<&'a str>,
    /// True when the name reaches a key ring or a resource other than a key.
    pub has_object: bool,
}

/// Parse a Cloud KMS resource name. Returns `None` for names that are not under
/// `projects/…` or `folders/…` / `organizations/…`.
pub fn parse(name: &str) -> Option<KmsName<'_>> {
    let name = name
        .strip_prefix("//cloudkms.googleapis.com/")
        .unwrap_or(name)
        .trim_start_matches('/');
    let mut out = KmsName::default();
    let mut end = 0usize; // byte length of the understood prefix
    let mut pos = 0usize;
    let mut it = name.split('/');
    let mut depth = 0usize;
    while let (Some(kind), Some(id)) = (it.next(), it.next()) {
        if id.is_empty() {
            break;
        }
        let seg_end = pos + kind.len() + 1 + id.len();
        let ok = match (depth, kind) {
            (0, "projects") => {
                out.project = Some(id);
                true
            }
            (0, "folders" | "organizations") => true,
            (1, "locations") => {
                out.location = Some(id);
                true
            }
            (2, "keyRings") => {
                out.has_object = true;
                true
            }
            (3, "cryptoKeys") => {
                out.has_object = false;
                out.key = name.get(..seg_end);
                true
            }
            (4, "cryptoKeyVersions") if out.key.is_some() => {
                out.version = Some(id);
                true
            }
            (3, "importJobs") | (2, "ekmConnections" | "keyHandles") => {
                out.has_object = true;
                true
            }
            _ => false,
        };
        if !ok {
            break;
        }
        end = seg_end;
        pos = seg_end + 1;
        depth += 1;
    }
    // Singletons: `projects/P/locations/L/ekmConfig`, `folders/F/autokeyConfig`.
    if let Some(rest) = name.get(end..).and_then(|r| r.strip_prefix('/')) {
        let single = rest.split('/').next().unwrap_or("");
        if matches!(single, "ekmConfig" | "autokeyConfig") {
            out.has_object = true;
            end += 1 + single.len();
        }
    }
    if end == 0 {
        return None;
    }
    out.full = name.get(..end)?;
    Some(out)
}

/// The project of a `logName` (`projects/P/logs/cloudaudit.googleapis.com%2Factivity`).
pub fn project_of_log_name(log_name: &str) -> Option<&str> {
    let rest = log_name.strip_prefix("projects/")?;
    let p = rest.split('/').next()?;
    (!p.is_empty()).then_some(p)
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "projects/kmswatch-demo/locations/us-east1/keyRings/ring/cryptoKeys/key";

    #[test]
    fn key_and_version() {
        let s = format!("{KEY}/cryptoKeyVersions/3");
        let n = parse(&s).expect("parses");
        assert_eq!(n.key, Some(KEY));
        assert_eq!(n.version, Some("3"));
        assert_eq!(n.project, Some("kmswatch-demo"));
        assert_eq!(n.location, Some("us-east1"));
        assert!(!n.has_object);

        let n = parse(KEY).expect("parses");
        assert_eq!(n.key, Some(KEY));
        assert_eq!(n.version, None);
        assert_eq!(n.full, KEY);
    }

    #[test]
    fn service_prefix_and_trailing_parts() {
        let s = format!("//cloudkms.googleapis.com/{KEY}/cryptoKeyVersions/1");
        let n = parse(&s).expect("parses");
        assert_eq!(n.key, Some(KEY));
        assert_eq!(n.version, Some("1"));
        // A version that is a placeholder still names the key.
        let s = format!("{KEY}/cryptoKeyVersions/new");
        let n = parse(&s).expect("parses");
        assert_eq!(n.key, Some(KEY));
        // Unknown trailing parts are cut off.
        let s = format!("{KEY}/somethingElse/x");
        let n = parse(&s).expect("parses");
        assert_eq!(n.full, KEY);
    }

    #[test]
    fn objects_that_are_not_keys() {
        let ring = "projects/kmswatch-demo/locations/global/keyRings/ring";
        let n = parse(ring).expect("parses");
        assert_eq!(n.key, None);
        assert!(n.has_object);
        assert_eq!(n.full, ring);

        let job = format!("{ring}/importJobs/job1");
        let n = parse(&job).expect("parses");
        assert_eq!((n.key, n.has_object, n.full), (None, true, job.as_str()));

        let ekm = "projects/kmswatch-demo/locations/us/ekmConnections/conn";
        let n = parse(ekm).expect("parses");
        assert_eq!((n.key, n.has_object, n.full), (None, true, ekm));

        let cfg = "projects/kmswatch-demo/locations/us/ekmConfig";
        let n = parse(cfg).expect("parses");
        assert_eq!((n.has_object, n.full), (true, cfg));

        let auto = "folders/123/autokeyConfig";
        let n = parse(auto).expect("parses");
        assert_eq!((n.project, n.has_object, n.full), (None, true, auto));

        let loc = "projects/kmswatch-demo/locations/us";
        let n = parse(loc).expect("parses");
        assert_eq!((n.key, n.has_object, n.location), (None, false, Some("us")));
    }

    #[test]
    fn not_kms_names() {
        assert_eq!(parse(""), None);
        assert_eq!(parse("buckets/b/objects/o"), None);
        assert_eq!(parse("projects/"), None);
        assert_eq!(parse("projects"), None);
    }

    #[test]
    fn log_names() {
        assert_eq!(
            project_of_log_name(
                "projects/kmswatch-demo/logs/cloudaudit.googleapis.com%2Fdata_access"
            ),
            Some("kmswatch-demo")
        );
        assert_eq!(
            project_of_log_name("organizations/1/logs/cloudaudit.googleapis.com%2Factivity"),
            None
        );
        assert_eq!(project_of_log_name("projects//logs/x"), None);
    }
}

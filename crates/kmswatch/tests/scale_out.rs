//! Scale-out on Kafka against the real tansu broker (`scripts/services up`): one
//! `run --mode ingest` instance publishes a generated corpus to the event topic; then
//! `run --mode detect` runs once with one instance and once (fresh group, fresh changelog) with
//! two concurrent instances. The two finding sets must be identical — same ids, same content —
//! and hold at least one correlation finding. Skipped, with a message, when
//! `KMSWATCH_TEST_KAFKA_BROKERS` is not set.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_kmswatch");

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn unique(prefix: &str) -> String {
    let n = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    format!("{prefix}-{}-{}", std::process::id(), n % 1_000_000_000)
}

struct Proc {
    dir: PathBuf,
    log: PathBuf,
    child: Option<Child>,
}

impl Proc {
    fn start(dir: &Path, name: &str, cfg: &str, args: &[&str]) -> Proc {
        std::fs::create_dir_all(dir).expect("dir");
        let cfg_path = dir.join(format!("{name}.yml"));
        std::fs::write(&cfg_path, cfg).expect("config");
        let log = dir.join(format!("{name}.log"));
        let child = Command::new(BIN)
            .arg("run")
            .arg("--config")
            .arg(&cfg_path)
            .args(args)
            .env("KMSWATCH_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).expect("log"))
            .spawn()
            .expect("spawn kmswatch run");
        Proc {
            dir: dir.to_path_buf(),
            log,
            child: Some(child),
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The complete lines of the findings file (the last one may still be being written).
    fn findings(&self) -> Vec<Value> {
        let text = std::fs::read_to_string(self.dir.join("findings.jsonl")).unwrap_or_default();
        let complete = text.rfind('\n').map_or("", |i| &text[..i]);
        complete
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| serde_json::from_str(l).expect("finding line is JSON"))
            .collect()
    }

    fn assert_alive(&mut self) {
        if let Some(c) = self.child.as_mut() {
            if let Ok(Some(st)) = c.try_wait() {
                panic!("kmswatch exited early with {st}:\n{}", self.log());
            }
        }
    }

    /// Wait for the process to exit by itself, successfully.
    fn wait(&mut self, secs: u64) {
        let mut c = self.child.take().expect("running");
        let deadline = Instant::now() + Duration::from_secs(secs);
        loop {
            if let Ok(Some(st)) = c.try_wait() {
                assert!(st.success(), "kmswatch exited with {st}:\n{}", self.log());
                return;
            }
            if Instant::now() > deadline {
                let _ = c.kill();
                panic!("kmswatch did not finish within {secs} s:\n{}", self.log());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Send SIGTERM (the process checkpoints and leaves its group).
    fn terminate(&self) {
        if let Some(c) = self.child.as_ref() {
            let _ = Command::new("kill")
                .arg("-TERM")
                .arg(c.id().to_string())
                .status();
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Partitions of the event topic.
const PARTITIONS: i64 = 4;

fn scale_out(brokers: &str, topic: &str, group: &str, changelog: &str) -> String {
    format!(
        "scale_out: {{ brokers: [\"{brokers}\"], topic: {topic}, group_id: {group}, changelog_topic: {changelog}, partitions: {PARTITIONS} }}\n"
    )
}

fn detect_config(so: &str) -> String {
    format!(
        "rules:\n  paths: [{}]\n  lateness_secs: 172800\n\
         sinks:\n  - {{ type: file, path: findings.jsonl, batch: {{ timeout_ms: 10 }} }}\n\
         state: {{ dir: state, checkpoint_interval_ms: 300, idle_advance_secs: 3 }}\n{so}",
        workspace().join("rules").display()
    )
}

/// The partitions an instance owns now (its last assignment, unless revoked since) and
/// whether each has been caught up and idle since that assignment, read from its log.
fn ownership(log: &str) -> (BTreeSet<i64>, bool) {
    let mut owned = BTreeSet::new();
    let mut idle = BTreeSet::new();
    for line in log.lines() {
        let Ok(v) = serde_json::from_str::<Value>(line) else {
            continue;
        };
        let fields = &v["fields"];
        let parts = || -> BTreeSet<i64> {
            fields["partitions"]
                .as_str()
                .unwrap_or("")
                .trim_matches(|c| c == '[' || c == ']')
                .split(',')
                .filter_map(|p| p.trim().parse().ok())
                .collect()
        };
        match fields["message"].as_str().unwrap_or("") {
            "kafka partitions assigned; state restored" => {
                owned = parts();
                idle.clear();
            }
            "kafka partitions revoked after their checkpoint" => {
                for p in parts() {
                    owned.remove(&p);
                    idle.remove(&p);
                }
            }
            m if m.starts_with("partition caught up and idle") => {
                if let Some(p) = fields["partition"].as_i64() {
                    idle.insert(p);
                }
            }
            _ => {}
        }
    }
    let all_idle = owned.iter().all(|p| idle.contains(p));
    (owned, all_idle)
}

/// Run detection instances until every partition of the topic is owned by one of them, each
/// has caught up with its partition's end and gone idle (so its event clock moved past every
/// window) since it was assigned, and the findings files have been unchanged for a few
/// seconds (the checkpoint after the idle advance delivered them); then stop them.
fn settle(procs: &mut [Proc], partitions: i64, budget_secs: u64) {
    let deadline = Instant::now() + Duration::from_secs(budget_secs);
    let mut last = (usize::MAX, Instant::now());
    loop {
        for p in procs.iter_mut() {
            p.assert_alive();
        }
        let n: usize = procs.iter().map(|p| p.findings().len()).sum();
        if n != last.0 {
            last = (n, Instant::now());
        }
        let mut owned = BTreeSet::new();
        let mut all_idle = true;
        for p in procs.iter() {
            let (o, idle) = ownership(&p.log());
            owned.extend(o);
            all_idle &= idle;
        }
        let covered = owned.len() as i64 == partitions;
        if covered && all_idle && n > 0 && last.1.elapsed() > Duration::from_secs(4) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "detection did not settle within {budget_secs} s ({n} findings, partitions owned \
             {owned:?}, all idle: {all_idle}):\n{}",
            procs
                .iter()
                .map(Proc::log)
                .collect::<Vec<_>>()
                .join("\n---\n")
        );
        std::thread::sleep(Duration::from_millis(250));
    }
    // Signal every instance before waiting for any: stopping them one by one hands the
    // first one's partitions to the others mid-shutdown (a rebalance and a state restore,
    // which on a loaded machine took 20 s).
    for p in procs.iter() {
        p.terminate();
    }
    for p in procs.iter_mut() {
        p.wait(90);
    }
}

/// One line per finding, for failure messages.
fn describe(f: &Value) -> String {
    format!(
        "{} {} {} {}..{} count={}",
        f["finding_info"]["uid"].as_str().unwrap_or("?"),
        f["finding_info"]["title"].as_str().unwrap_or("?"),
        f["actor"]["user"]["uid"]
            .as_str()
            .or(f["actor"]["user"]["name"].as_str())
            .unwrap_or("?"),
        f["start_time"],
        f["end_time"],
        f["count"]
    )
}

fn by_id(findings: &[Value]) -> BTreeMap<String, Value> {
    let mut out = BTreeMap::new();
    for f in findings {
        let id = f["finding_info"]["uid"]
            .as_str()
            .expect("finding id")
            .to_string();
        if let Some(prev) = out.insert(id.clone(), f.clone()) {
            assert_eq!(&prev, f, "finding {id} delivered with different content");
        }
    }
    out
}

#[test]
fn two_detection_instances_find_exactly_what_one_finds() {
    let Some(brokers) = std::env::var("KMSWATCH_TEST_KAFKA_BROKERS")
        .ok()
        .filter(|b| !b.is_empty())
    else {
        eprintln!("SKIPPED: KMSWATCH_TEST_KAFKA_BROKERS is not set; run scripts/test (or `source scripts/services up`)");
        return;
    };
    let started = Instant::now();
    let tmp = tempfile::tempdir().expect("tempdir");
    let root = tmp.path();
    let corpus = root.join("corpus");
    let st = Command::new(BIN)
        .args(["gen", "--days", "1", "--seed", "7", "--scale", "0.2"])
        .arg(&corpus)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .expect("kmswatch gen");
    assert!(st.success(), "kmswatch gen failed");
    let topic = unique("kmsw-events");

    // One ingest instance: the corpus → the event topic, keyed by principal.
    let ingest_cfg = format!(
        "sources:\n  - {{ id: corpus, type: file, paths: [\"{}/**/*.json*\"] }}\n\
         state: {{ dir: state }}\n{}",
        corpus.display(),
        scale_out(&brokers, &topic, "unused", &format!("{topic}-unused"))
    );
    let mut ingest = Proc::start(
        &root.join("ingest"),
        "ingest",
        &ingest_cfg,
        &["--mode", "ingest"],
    );
    ingest.wait(90);
    assert!(
        ingest.log().contains("every published batch acknowledged"),
        "{}",
        ingest.log()
    );

    // One detection instance.
    let so1 = scale_out(
        &brokers,
        &topic,
        &unique("g-one"),
        &unique("kmsw-state-one"),
    );
    let mut one = vec![Proc::start(
        &root.join("one"),
        "detect",
        &detect_config(&so1),
        &["--mode", "detect"],
    )];
    settle(&mut one, PARTITIONS, 120);
    let single = by_id(&one[0].findings());

    // Two detection instances at once, fresh group and changelog.
    let so2 = scale_out(
        &brokers,
        &topic,
        &unique("g-two"),
        &unique("kmsw-state-two"),
    );
    let mut two = vec![
        Proc::start(
            &root.join("two-a"),
            "detect",
            &detect_config(&so2),
            &["--mode", "detect"],
        ),
        Proc::start(
            &root.join("two-b"),
            "detect",
            &detect_config(&so2),
            &["--mode", "detect"],
        ),
    ];
    settle(&mut two, PARTITIONS, 120);
    let (a, b) = (two[0].findings(), two[1].findings());
    let both: Vec<Value> = a.iter().chain(b.iter()).cloned().collect();
    let pair = by_id(&both);

    assert!(!single.is_empty(), "no findings:\n{}", one[0].log());
    let correlations = single
        .values()
        .filter(|f| f["finding_info"]["analytic"]["type"] == "Correlation")
        .count();
    assert!(
        correlations > 0,
        "no correlation finding among {}",
        single.len()
    );
    // Both instances worked (the partitions were shared).
    let assigned = |p: &Proc| p.log().contains("kafka partitions assigned");
    assert!(assigned(&two[0]) && assigned(&two[1]));
    let only_one: Vec<String> = single
        .iter()
        .filter(|(id, _)| !pair.contains_key(*id))
        .map(|(_, f)| describe(f))
        .collect();
    let only_two: Vec<String> = pair
        .iter()
        .filter(|(id, _)| !single.contains_key(*id))
        .map(|(_, f)| describe(f))
        .collect();
    assert!(
        only_one.is_empty() && only_two.is_empty(),
        "finding ids differ between one and two instances ({} vs {}):\n\
         only with one: {only_one:#?}\nonly with two: {only_two:#?}\n\
         --- one instance:\n{}\n--- two instances:\n{}\n---\n{}",
        single.len(),
        pair.len(),
        one[0].log(),
        two[0].log(),
        two[1].log()
    );
    for (id, f) in &single {
        assert_eq!(
            Some(f),
            pair.get(id),
            "finding {id} differs\n--- one instance:\n{}\n--- two instances:\n{}\n---\n{}",
            one[0].log(),
            two[0].log(),
            two[1].log()
        );
    }
    eprintln!(
        "scale-out: {} findings ({} correlation), instance a {} / b {}, {:.0} s",
        single.len(),
        correlations,
        a.len(),
        b.len(),
        started.elapsed().as_secs_f64()
    );
}

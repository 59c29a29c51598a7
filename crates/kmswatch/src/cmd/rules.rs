//! `kmswatch rules test|lint`: the rule pack's own checks.
//!
//! A pack is a directory of Sigma rules, one rule per file `<slug>.yml` (subfolders allowed),
//! with its test events beside it in `<slug>/tp_*.json` (each must raise a finding from the
//! rule) and `<slug>/tn_*.json` (none may). Test events are native provider logs in any shape
//! `kmswatch normalize` reads. The engine configuration the tests run with (business calendar,
//! `|expand` placeholders, identity inventory) is `tests.config.yml` at the top of the pack.
//!
//! `test` runs every test file through the normalizer and a fresh detection engine holding the
//! whole pack, in file order, flushing at the end; `lint` checks Sigma conformance and the
//! pack's own conventions. Both print one line per rule and a summary, `--json` for machines,
//! and exit 1 when anything fails.

use crate::term::{escape, escape_lines};
use anyhow::{Context, Result};
use kmswatch_model::Finding;
use kmswatch_normalize::{Item, Normalizer, Options};
use kmswatch_rules::{Engine, EngineConfig, LoadOptions, RuleSet};
use serde::Serialize;
use serde_json::Value;
use std::collections::{HashMap, HashSet};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// Test and lint a Sigma rule pack.
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    pub command: Sub,
}

/// `rules` verbs.
#[derive(Debug, clap::Subcommand)]
pub enum Sub {
    Test(TestArgs),
    Lint(LintArgs),
}

/// Run every rule's test events: `<slug>/tp_*` must raise a finding from the rule,
/// `<slug>/tn_*` must not.
///
/// Each test file is normalized and fed, in file order, to a fresh engine holding the whole
/// pack with the pack's test configuration (`DIR/tests.config.yml`), flushed at the end.
///
/// Exit status: 0 when every rule passes, 1 when one fails, 2 when the pack cannot be read.
///
/// Examples:
///   kmswatch rules test
///   kmswatch rules test rules/ --rule kms_human_decrypt
///   kmswatch rules test --json | jq '.rules[] | select(.passed | not)'
#[derive(Debug, clap::Args)]
#[command(verbatim_doc_comment)]
pub struct TestArgs {
    /// The rule pack.
    #[arg(default_value = "rules", value_name = "DIR")]
    pub dir: PathBuf,

    /// Engine configuration for the tests (default: DIR/tests.config.yml when the pack has
    /// one). A file given here that cannot be read is an error (exit 2).
    #[arg(long, short = 'c', value_name = "PATH")]
    pub config: Option<PathBuf>,

    /// Only test rules whose slug (file stem) or id contains this. Repeatable.
    #[arg(long, value_name = "TEXT")]
    pub rule: Vec<String>,

    /// Print one JSON document instead of text.
    #[arg(long)]
    pub json: bool,
}

/// Check the pack: Sigma conformance (required keys, UUID ids unique across the pack,
/// level/status values, tag format), the loader's own checks (unknown fields, modifiers),
/// descriptions an analyst can act on, false positives listed, and at least one true-positive
/// and one true-negative test file per rule.
///
/// Exit status: 0 when clean, 1 when problems were found, 2 when the pack cannot be read.
#[derive(Debug, clap::Args)]
pub struct LintArgs {
    /// The rule pack.
    #[arg(default_value = "rules", value_name = "DIR")]
    pub dir: PathBuf,

    /// Engine configuration (placeholders for `|expand`; default: DIR/tests.config.yml when
    /// the pack has one). A file given here that cannot be read is an error (exit 2).
    #[arg(long, short = 'c', value_name = "PATH")]
    pub config: Option<PathBuf>,

    /// Print one JSON document instead of text.
    #[arg(long)]
    pub json: bool,
}

/// Run the verb.
pub fn run(args: Args) -> Result<ExitCode> {
    match args.command {
        Sub::Test(a) => run_test(a),
        Sub::Lint(a) => run_lint(a),
    }
}

// ---------------------------------------------------------------------------------------------
// The pack on disk.

/// Name of the test configuration file at the top of a pack.
pub const TEST_CONFIG: &str = "tests.config.yml";

/// One rule file of the pack.
#[derive(Debug, Clone)]
struct RuleFile {
    path: PathBuf,
    slug: String,
    /// The rule document (first YAML document of the file), as JSON.
    doc: Value,
    /// How many YAML documents the file holds.
    documents: usize,
    tests: Vec<TestFile>,
}

impl RuleFile {
    fn id(&self) -> Option<&str> {
        self.doc.get("id").and_then(Value::as_str)
    }
    fn is_correlation(&self) -> bool {
        self.doc.get("correlation").is_some()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
enum Expect {
    /// `tp_*`: at least one finding from the rule.
    Tp,
    /// `tn_*`: no finding from the rule.
    Tn,
}

#[derive(Debug, Clone)]
struct TestFile {
    path: PathBuf,
    expect: Expect,
}

/// Every rule file under `dir` (`*.yml` / `*.yaml` except the test config), sorted by path,
/// with its test files.
fn read_pack(dir: &Path) -> Result<Vec<RuleFile>> {
    if !dir.is_dir() {
        anyhow::bail!("{}: not a directory (expected a rule pack)", dir.display());
    }
    let mut out = Vec::new();
    for entry in walkdir::WalkDir::new(dir).sort_by_file_name() {
        let entry = entry.with_context(|| format!("walking {}", dir.display()))?;
        let p = entry.path();
        let is_yaml = p
            .extension()
            .and_then(|x| x.to_str())
            .is_some_and(|x| x.eq_ignore_ascii_case("yml") || x.eq_ignore_ascii_case("yaml"));
        if !entry.file_type().is_file() || !is_yaml {
            continue;
        }
        let name = p.file_name().and_then(|n| n.to_str()).unwrap_or_default();
        if name.starts_with("tests.") {
            continue;
        }
        let slug = p
            .file_stem()
            .and_then(|s| s.to_str())
            .unwrap_or_default()
            .to_string();
        let text =
            std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display()))?;
        let docs = yaml_rust2::YamlLoader::load_from_str(&text)
            .map_err(|e| anyhow::anyhow!("{}: YAML: {e}", p.display()))?;
        let doc = docs
            .first()
            .map(crate::config::yaml_to_json)
            .unwrap_or(Value::Null);
        let tests = test_files(&p.with_extension(""))?;
        out.push(RuleFile {
            path: p.to_path_buf(),
            slug,
            doc,
            documents: docs.len(),
            tests,
        });
    }
    Ok(out)
}

/// `tp_*` and `tn_*` files in a rule's test folder, sorted by name.
fn test_files(dir: &Path) -> Result<Vec<TestFile>> {
    let mut out = Vec::new();
    let Ok(rd) = std::fs::read_dir(dir) else {
        return Ok(out);
    };
    for e in rd {
        let e = e.with_context(|| format!("reading {}", dir.display()))?;
        let path = e.path();
        let name = e.file_name().to_string_lossy().into_owned();
        let expect = if name.starts_with("tp_") {
            Expect::Tp
        } else if name.starts_with("tn_") {
            Expect::Tn
        } else {
            continue;
        };
        if path.is_file() {
            out.push(TestFile { path, expect });
        }
    }
    out.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(out)
}

// ---------------------------------------------------------------------------------------------
// Test configuration and the engine the tests run.

fn config_path(dir: &Path, explicit: Option<&PathBuf>) -> PathBuf {
    explicit.cloned().unwrap_or_else(|| dir.join(TEST_CONFIG))
}

/// The pack's test configuration (`tests.config.yml`), in kmswatch's own config format
/// (`crate::config`): the `normalize:` options and the `rules:` engine settings (calendars,
/// identity inventory, `|expand` placeholders) the tests run with.
#[derive(Debug, Clone, Default)]
struct TestConfig {
    /// Normalizer options (for example `human_role_patterns`).
    normalize: Options,
    /// Engine configuration from the `rules:` section.
    detect: EngineConfig,
}

/// The pack's test configuration: `explicit` (`--config`; an error when it cannot be read),
/// else `DIR/tests.config.yml` when the pack has one, else the defaults.
fn load_config(path: &Path, explicit: bool) -> Result<TestConfig> {
    if !explicit && !path.exists() {
        return Ok(TestConfig::default());
    }
    let cfg = crate::config::Config::load(path)?;
    Ok(TestConfig {
        normalize: cfg.normalize,
        detect: cfg.rules.engine,
    })
}

fn load_options(cfg: &TestConfig) -> LoadOptions {
    LoadOptions {
        skip_invalid: true,
        ..cfg.detect.load_options()
    }
}

// ---------------------------------------------------------------------------------------------
// `rules test`

/// The outcome of one test file.
#[derive(Debug, Clone, Serialize)]
pub struct FileResult {
    /// The test file.
    pub file: String,
    /// `tp` or `tn`.
    pub expect: &'static str,
    /// Events the file normalized to.
    pub events: usize,
    /// Findings the rule raised.
    pub findings: usize,
    /// Whether the expectation held.
    pub passed: bool,
    /// Why not, when it did not.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// The outcome of one rule.
#[derive(Debug, Clone, Serialize)]
pub struct RuleResult {
    /// File stem.
    pub slug: String,
    /// Rule id.
    pub id: String,
    /// The rule file.
    pub file: String,
    /// Whether every test file passed (and there is at least one tp and one tn).
    pub passed: bool,
    /// Problems that are not about one file.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub problems: Vec<String>,
    /// Per test file.
    pub tests: Vec<FileResult>,
}

/// The whole run.
#[derive(Debug, Clone, Serialize)]
pub struct TestReport {
    /// Per rule.
    pub rules: Vec<RuleResult>,
    /// Rules that passed.
    pub passed: usize,
    /// Rules that failed.
    pub failed: usize,
}

fn run_test(args: TestArgs) -> Result<ExitCode> {
    let report = test_pack(&args.dir, args.config.as_ref(), &args.rule)?;
    let mut out = std::io::stdout().lock();
    if args.json {
        serde_json::to_writer_pretty(&mut out, &report)?;
        writeln!(out)?;
    } else {
        // Test files are logs, and file names and messages quote them: escaped (crate::term).
        for r in &report.rules {
            let n = r.tests.len();
            if r.passed {
                writeln!(out, "ok    {:<48} {n} test files", escape(&r.slug))?;
                continue;
            }
            writeln!(out, "FAIL  {:<48} {}", escape(&r.slug), escape(&r.file))?;
            for p in &r.problems {
                writeln!(out, "        {}", escape(p))?;
            }
            for t in r.tests.iter().filter(|t| !t.passed) {
                writeln!(
                    out,
                    "        {}: {}",
                    escape(&t.file),
                    escape(t.error.as_deref().unwrap_or("failed"))
                )?;
            }
        }
        writeln!(out, "{} passed, {} failed", report.passed, report.failed)?;
    }
    Ok(if report.failed > 0 {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

/// Test every rule of the pack in `dir` (only those matching `only`, when given).
pub fn test_pack(dir: &Path, config: Option<&PathBuf>, only: &[String]) -> Result<TestReport> {
    let pack = read_pack(dir)?;
    let cfg_path = config_path(dir, config);
    let cfg = load_config(&cfg_path, config.is_some())?;
    let opts = load_options(&cfg);
    let (rules, load) = RuleSet::load(&[dir], &opts)
        .map_err(|e| anyhow::anyhow!("loading {}: {e}", dir.display()))?;
    let load_errors = errors_by_file(&load);
    let normalizer = Normalizer::new(cfg.normalize.clone())?;
    let loaded: HashSet<String> = rules
        .rules()
        .map(|(_, r)| r.display_id().to_string())
        .chain(
            rules
                .correlations()
                .map(|(_, c)| c.info.display_id().to_string()),
        )
        .collect();
    // Fail early and once when the engine cannot be built with this configuration.
    Engine::new(rules, cfg.detect.clone())
        .map_err(|e| anyhow::anyhow!("{}: {e}", cfg_path.display()))?;

    let mut results = Vec::new();
    for rf in &pack {
        let id = rf.id().unwrap_or_default().to_string();
        if !only.is_empty()
            && !only
                .iter()
                .any(|o| rf.slug.contains(o.as_str()) || id.contains(o.as_str()))
        {
            continue;
        }
        let mut problems = load_errors.get(&rf.path).cloned().unwrap_or_default();
        if id.is_empty() {
            problems.push("the rule has no `id`".to_string());
        } else if problems.is_empty() && !loaded.contains(&id) {
            problems.push(
                "the rule did not load (its logsource is not one kmswatch reads?)".to_string(),
            );
        }
        if !rf.tests.iter().any(|t| t.expect == Expect::Tp) {
            problems.push(format!(
                "no true-positive test file ({}/tp_*.json)",
                rf.slug
            ));
        }
        if !rf.tests.iter().any(|t| t.expect == Expect::Tn) {
            problems.push(format!(
                "no true-negative test file ({}/tn_*.json)",
                rf.slug
            ));
        }
        let tests: Vec<FileResult> = rf
            .tests
            .iter()
            .map(|t| run_file(&normalizer, dir, &opts, &cfg.detect, &id, t))
            .collect();
        let passed = problems.is_empty() && tests.iter().all(|t| t.passed);
        results.push(RuleResult {
            slug: rf.slug.clone(),
            id,
            file: rf.path.display().to_string(),
            passed,
            problems,
            tests,
        });
    }
    let passed = results.iter().filter(|r| r.passed).count();
    Ok(TestReport {
        failed: results.len() - passed,
        passed,
        rules: results,
    })
}

fn errors_by_file(report: &kmswatch_rules::LoadReport) -> HashMap<PathBuf, Vec<String>> {
    let mut m: HashMap<PathBuf, Vec<String>> = HashMap::new();
    for e in &report.errors {
        m.entry(e.file.clone())
            .or_default()
            .push(format!("line {}: {}", e.line, e.reason));
    }
    m
}

/// Normalize one test file and run its events, in file order, through a fresh engine holding
/// the whole pack; flush at the end and count the findings of `rule_id`.
fn run_file(
    normalizer: &Normalizer,
    dir: &Path,
    opts: &LoadOptions,
    detect: &EngineConfig,
    rule_id: &str,
    t: &TestFile,
) -> FileResult {
    let file = t.path.display().to_string();
    let expect = match t.expect {
        Expect::Tp => "tp",
        Expect::Tn => "tn",
    };
    let fail = |events, error: String| FileResult {
        file: file.clone(),
        expect,
        events,
        findings: 0,
        passed: false,
        error: Some(error),
    };
    let bytes = match std::fs::read(&t.path) {
        Ok(b) => b,
        Err(e) => return fail(0, format!("cannot read: {e}")),
    };
    let mut events = Vec::new();
    let mut rejected = Vec::new();
    normalizer.normalize_bytes(&bytes, &file, &mut |item| match item {
        Item::Event { event, .. } => events.push(event),
        Item::Skipped { .. } => {}
        Item::Rejected {
            error, location, ..
        } => rejected.push(format!("{location}: {error}")),
    });
    if let Some(r) = rejected.first() {
        return fail(
            events.len(),
            format!("record rejected by the normalizer: {r}"),
        );
    }
    if events.is_empty() {
        return fail(0, "the file normalizes to no event".to_string());
    }
    let engine = RuleSet::load(&[dir], opts)
        .map_err(|e| e.to_string())
        .and_then(|(rules, _)| Engine::new(rules, detect.clone()).map_err(|e| e.to_string()));
    let mut engine = match engine {
        Ok(e) => e,
        Err(e) => return fail(events.len(), format!("cannot build the engine: {e}")),
    };
    let mut findings: Vec<Finding> = Vec::new();
    // Matches count as well as findings: a correlation building block (`generate: false`)
    // matches events without emitting findings of its own.
    let mut matched = 0usize;
    for ev in &events {
        engine.process(ev, &file, &mut findings);
        matched += engine
            .last_matched()
            .filter(|r| r.id.as_deref() == Some(rule_id))
            .count();
    }
    engine.flush(&mut findings);
    let n = matched
        + findings
            .iter()
            .filter(|f| f.finding_info.analytic.uid == rule_id)
            .count();
    let passed = match t.expect {
        Expect::Tp => n > 0,
        Expect::Tn => n == 0,
    };
    FileResult {
        file: file.clone(),
        expect,
        events: events.len(),
        findings: n,
        passed,
        error: (!passed).then(|| match t.expect {
            Expect::Tp => format!(
                "expected a finding from {rule_id}, got none over {} events",
                events.len()
            ),
            Expect::Tn => format!("expected no finding from {rule_id}, got {n}"),
        }),
    }
}

// ---------------------------------------------------------------------------------------------
// `rules lint`

/// Lint results of one rule.
#[derive(Debug, Clone, Serialize)]
pub struct LintResult {
    /// File stem.
    pub slug: String,
    /// The rule file.
    pub file: String,
    /// What is wrong; empty when clean.
    pub problems: Vec<String>,
}

/// The whole lint run.
#[derive(Debug, Clone, Serialize)]
pub struct LintReport {
    /// Per rule.
    pub rules: Vec<LintResult>,
    /// Problems with the pack as a whole (config, load errors outside a rule).
    pub pack: Vec<String>,
    /// Rules without problems.
    pub clean: usize,
    /// Rules with problems.
    pub failed: usize,
}

/// Top-level keys of a Sigma detection rule (specification v2).
const DETECTION_KEYS: &[&str] = &[
    "title",
    "id",
    "name",
    "related",
    "taxonomy",
    "status",
    "description",
    "license",
    "references",
    "author",
    "date",
    "modified",
    "tags",
    "logsource",
    "detection",
    "fields",
    "falsepositives",
    "level",
    "scope",
];

/// Top-level keys of a Sigma correlation rule (specification v2.1).
const CORRELATION_KEYS: &[&str] = &[
    "title",
    "id",
    "name",
    "related",
    "taxonomy",
    "status",
    "description",
    "license",
    "references",
    "author",
    "date",
    "modified",
    "tags",
    "correlation",
    "generate",
    "fields",
    "falsepositives",
    "level",
    "scope",
];

const LEVELS: &[&str] = &["informational", "low", "medium", "high", "critical"];
const STATUSES: &[&str] = &[
    "stable",
    "test",
    "experimental",
    "deprecated",
    "unsupported",
];
const CORRELATION_TYPES: &[&str] = &["event_count", "value_count", "temporal", "temporal_ordered"];
/// A description shorter than this cannot say what happened, why it matters, what to check
/// and how to respond.
pub const MIN_DESCRIPTION_CHARS: usize = 200;

fn is_uuid(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() == 36
        && b.iter().enumerate().all(|(i, c)| match i {
            8 | 13 | 18 | 23 => *c == b'-',
            _ => c.is_ascii_hexdigit() && !c.is_ascii_uppercase(),
        })
}

fn is_date(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() == 10
        && b.iter().enumerate().all(|(i, c)| match i {
            4 | 7 => *c == b'-' || *c == b'/',
            _ => c.is_ascii_digit(),
        })
}

/// `attack.t1234`, `attack.t1234.001`, or a tactic such as `attack.credential-access`.
fn tag_problem(tag: &str) -> Option<String> {
    let Some((ns, value)) = tag.split_once('.') else {
        return Some(format!("tag `{tag}` is not `namespace.value`"));
    };
    let ok_chars = |s: &str| {
        !s.is_empty()
            && s.bytes().all(|c| {
                c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, b'.' | b'-' | b'_')
            })
    };
    if !ok_chars(ns) || !ok_chars(value) {
        return Some(format!(
            "tag `{tag}` must be lowercase letters, digits, `.`, `-`, `_`"
        ));
    }
    if ns == "attack"
        && value.starts_with('t')
        && value[1..].starts_with(|c: char| c.is_ascii_digit())
    {
        let rest = &value[1..];
        let (tech, sub) = match rest.split_once('.') {
            Some((t, s)) => (t, Some(s)),
            None => (rest, None),
        };
        let digits = |s: &str, n: usize| s.len() == n && s.bytes().all(|c| c.is_ascii_digit());
        if !digits(tech, 4) || sub.is_some_and(|s| !digits(s, 3)) {
            return Some(format!(
                "ATT&CK technique tag `{tag}` must be `attack.tNNNN` or `attack.tNNNN.NNN`"
            ));
        }
    }
    None
}

fn strings(v: Option<&Value>) -> Option<Vec<&str>> {
    match v? {
        Value::Array(a) => a.iter().map(Value::as_str).collect(),
        _ => None,
    }
}

fn lint_rule(
    rf: &RuleFile,
    names: &HashMap<String, &str>,
    ids: &HashMap<String, usize>,
) -> Vec<String> {
    let mut p = Vec::new();
    let Some(doc) = rf.doc.as_object() else {
        return vec!["the file does not hold a YAML map".to_string()];
    };
    if rf.documents != 1 {
        p.push(format!(
            "the file holds {} YAML documents; the pack keeps one rule per file",
            rf.documents
        ));
    }
    let corr = rf.is_correlation();
    let allowed = if corr {
        CORRELATION_KEYS
    } else {
        DETECTION_KEYS
    };
    for k in doc.keys() {
        if !allowed.contains(&k.as_str()) {
            p.push(format!("unknown top-level key `{k}`"));
        }
    }
    let required: &[&str] = if corr {
        &[
            "title",
            "id",
            "status",
            "description",
            "author",
            "date",
            "references",
            "tags",
            "correlation",
            "falsepositives",
            "level",
        ]
    } else {
        &[
            "title",
            "id",
            "status",
            "description",
            "references",
            "author",
            "date",
            "tags",
            "logsource",
            "detection",
            "falsepositives",
            "level",
        ]
    };
    for k in required {
        if !doc.contains_key(*k) {
            p.push(format!("missing `{k}`"));
        }
    }
    let s = |k: &str| doc.get(k).and_then(Value::as_str);
    if let Some(t) = s("title") {
        if t.len() > 256 {
            p.push("`title` is longer than 256 characters".to_string());
        }
    }
    match s("id") {
        Some(id) if !is_uuid(id) => p.push(format!("`id` {id} is not a lowercase UUID")),
        Some(id) if ids.get(id).copied().unwrap_or(0) > 1 => {
            p.push(format!("`id` {id} is used by another rule of the pack"))
        }
        Some(_) => {}
        None if doc.contains_key("id") => p.push("`id` must be a string".to_string()),
        None => {}
    }
    if let Some(n) = s("name") {
        if n != rf.slug {
            p.push(format!("`name` {n} differs from the file stem {}", rf.slug));
        }
    }
    if let Some(l) = s("level") {
        if !LEVELS.contains(&l) {
            p.push(format!("`level` {l} is not one of {}", LEVELS.join(", ")));
        }
    }
    if let Some(st) = s("status") {
        if !STATUSES.contains(&st) {
            p.push(format!(
                "`status` {st} is not one of {}",
                STATUSES.join(", ")
            ));
        }
    }
    for k in ["date", "modified"] {
        if let Some(d) = doc.get(k) {
            if !d.as_str().is_some_and(is_date) {
                p.push(format!("`{k}` must be YYYY-MM-DD"));
            }
        }
    }
    match s("description") {
        Some(d) if d.trim().chars().count() < MIN_DESCRIPTION_CHARS => p.push(format!(
            "`description` is {} characters; say what happened, why it matters, what to check and how to respond (at least {MIN_DESCRIPTION_CHARS})",
            d.trim().chars().count()
        )),
        _ => {}
    }
    for k in ["references", "falsepositives", "tags"] {
        if let Some(v) = doc.get(k) {
            match strings(Some(v)) {
                Some(list) if list.is_empty() => p.push(format!("`{k}` is empty")),
                Some(_) => {}
                None => p.push(format!("`{k}` must be a list of strings")),
            }
        }
    }
    if let Some(tags) = strings(doc.get("tags")) {
        for t in &tags {
            if let Some(e) = tag_problem(t) {
                p.push(e);
            }
        }
        if !tags.iter().any(|t| t.starts_with("attack.")) {
            p.push("no ATT&CK tag (`attack.*`)".to_string());
        }
        let mut seen = HashSet::new();
        for t in &tags {
            if !seen.insert(*t) {
                p.push(format!("tag `{t}` is listed twice"));
            }
        }
    }
    if let Some(ls) = doc.get("logsource") {
        match ls.as_object() {
            Some(m) => {
                for k in m.keys() {
                    if !matches!(
                        k.as_str(),
                        "category" | "product" | "service" | "definition"
                    ) {
                        p.push(format!("unknown `logsource` key `{k}`"));
                    }
                }
            }
            None => p.push("`logsource` must be a map".to_string()),
        }
    }
    if corr {
        p.extend(lint_correlation(doc.get("correlation"), names));
    }
    if !rf.tests.iter().any(|t| t.expect == Expect::Tp) {
        p.push(format!(
            "no true-positive test file ({}/tp_*.json)",
            rf.slug
        ));
    }
    if !rf.tests.iter().any(|t| t.expect == Expect::Tn) {
        p.push(format!(
            "no true-negative test file ({}/tn_*.json)",
            rf.slug
        ));
    }
    p
}

fn is_timespan(s: &str) -> bool {
    let Some(unit) = s.chars().last() else {
        return false;
    };
    let n = &s[..s.len() - unit.len_utf8()];
    matches!(unit, 's' | 'm' | 'h' | 'd' | 'w' | 'M' | 'y')
        && !n.is_empty()
        && n.bytes().all(|c| c.is_ascii_digit())
}

fn lint_correlation(c: Option<&Value>, names: &HashMap<String, &str>) -> Vec<String> {
    let mut p = Vec::new();
    let Some(c) = c.and_then(Value::as_object) else {
        return vec!["`correlation` must be a map".to_string()];
    };
    for k in c.keys() {
        if !matches!(
            k.as_str(),
            "type" | "rules" | "group-by" | "timespan" | "condition" | "aliases"
        ) {
            p.push(format!("unknown `correlation` key `{k}`"));
        }
    }
    let ty = c.get("type").and_then(Value::as_str).unwrap_or_default();
    if !CORRELATION_TYPES.contains(&ty) {
        p.push(format!(
            "`correlation.type` must be one of {}",
            CORRELATION_TYPES.join(", ")
        ));
    }
    match strings(c.get("rules")) {
        Some(rules) if !rules.is_empty() => {
            for r in rules {
                if !names.contains_key(r) {
                    p.push(format!(
                        "`correlation.rules` names `{r}`, which is no rule name or id of the pack"
                    ));
                }
            }
        }
        _ => p.push("`correlation.rules` must be a non-empty list".to_string()),
    }
    if !c
        .get("timespan")
        .and_then(Value::as_str)
        .is_some_and(is_timespan)
    {
        p.push("`correlation.timespan` must be a number and a unit (s m h d w M y)".to_string());
    }
    if strings(c.get("group-by")).is_none_or(|g| g.is_empty()) {
        p.push("`correlation.group-by` must be a non-empty list".to_string());
    }
    match ty {
        "event_count" | "value_count" => match c.get("condition").and_then(Value::as_object) {
            Some(cond) => {
                let ops = ["gt", "gte", "lt", "lte", "eq", "neq"];
                if !cond.keys().any(|k| ops.contains(&k.as_str())) {
                    p.push(
                        "`correlation.condition` needs one of gt, gte, lt, lte, eq, neq"
                            .to_string(),
                    );
                }
                if ty == "value_count" && !cond.contains_key("field") {
                    p.push("a value_count `condition` needs `field`".to_string());
                }
            }
            None => p.push(format!("a {ty} correlation needs a `condition` map")),
        },
        _ => {}
    }
    p
}

/// Lint the pack in `dir`.
pub fn lint_pack(dir: &Path, config: Option<&PathBuf>) -> Result<LintReport> {
    let pack = read_pack(dir)?;
    let mut pack_problems = Vec::new();
    let cfg_path = config_path(dir, config);
    let cfg = match load_config(&cfg_path, config.is_some()) {
        Ok(c) => c,
        // A file the user named must be read; the pack's own is linted like the rules.
        Err(e) if config.is_some() => return Err(e),
        Err(e) => {
            pack_problems.push(format!("{e:#}"));
            TestConfig::default()
        }
    };
    let opts = load_options(&cfg);
    let load_errors = match RuleSet::load(&[dir], &opts) {
        Ok((_, report)) => errors_by_file(&report),
        Err(e) => {
            pack_problems.push(e.to_string());
            HashMap::new()
        }
    };
    let mut names: HashMap<String, &str> = HashMap::new();
    let mut ids: HashMap<String, usize> = HashMap::new();
    for rf in &pack {
        if let Some(id) = rf.id() {
            *ids.entry(id.to_string()).or_default() += 1;
            names.insert(id.to_string(), &rf.slug);
        }
        if let Some(n) = rf.doc.get("name").and_then(Value::as_str) {
            names.insert(n.to_string(), &rf.slug);
        }
    }
    let mut rules = Vec::new();
    for rf in &pack {
        let mut problems = load_errors.get(&rf.path).cloned().unwrap_or_default();
        problems.extend(lint_rule(rf, &names, &ids));
        rules.push(LintResult {
            slug: rf.slug.clone(),
            file: rf.path.display().to_string(),
            problems,
        });
    }
    let failed = rules.iter().filter(|r| !r.problems.is_empty()).count();
    Ok(LintReport {
        clean: rules.len() - failed,
        failed,
        rules,
        pack: pack_problems,
    })
}

fn run_lint(args: LintArgs) -> Result<ExitCode> {
    let report = lint_pack(&args.dir, args.config.as_ref())?;
    let mut out = std::io::stdout().lock();
    if args.json {
        serde_json::to_writer_pretty(&mut out, &report)?;
        writeln!(out)?;
    } else {
        for p in &report.pack {
            writeln!(out, "pack: {}", escape_lines(p))?;
        }
        for r in &report.rules {
            if r.problems.is_empty() {
                writeln!(out, "ok    {}", escape(&r.slug))?;
            } else {
                writeln!(out, "FAIL  {:<48} {}", escape(&r.slug), escape(&r.file))?;
                for p in &r.problems {
                    writeln!(out, "        {}", escape(p))?;
                }
            }
        }
        writeln!(
            out,
            "{} clean, {} with problems",
            report.clean, report.failed
        )?;
    }
    Ok(if report.failed > 0 || !report.pack.is_empty() {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uuid_date_tag_and_timespan_checks() {
        assert!(is_uuid("0740ebed-2fd6-5f7f-845a-9d1b60468f9d"));
        assert!(!is_uuid("0740EBED-2fd6-5f7f-845a-9d1b60468f9d"));
        assert!(!is_uuid("not-a-uuid"));
        assert!(is_date("2024-05-14"));
        assert!(!is_date("14/05/2024"));
        assert_eq!(tag_problem("attack.t1485"), None);
        assert_eq!(tag_problem("attack.t1562.008"), None);
        assert_eq!(tag_problem("attack.credential-access"), None);
        assert!(tag_problem("attack.t14850").is_some());
        assert!(tag_problem("attack.T1485").is_some());
        assert!(tag_problem("noseparator").is_some());
        assert!(
            is_timespan("10m") && is_timespan("24h") && !is_timespan("m") && !is_timespan("10x")
        );
    }
}

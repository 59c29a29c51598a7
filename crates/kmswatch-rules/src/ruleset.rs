//! Loading rule files into a [`RuleSet`], the candidate index, and matching.

use crate::condition::Cond;
use crate::correlation::{Correlation, CorrelationId, PendingCorrelation, RuleRef};
use crate::detection::{Ctx, Detection, FieldResolver, Multi, Selection, ValueMatcher};
use crate::document::{Document, Enrichment, EventDocument, EventField, FieldPath, FieldValue};
use crate::error::{LoadError, LoadErrorKind, LoadErrors, LoadReport, Skipped};
use crate::pattern::PatternSet;
use crate::pattern::{Folded, FoldedRef};
use crate::yaml::{self, Kind, Node};
use aho_corasick::{AhoCorasick, AhoCorasickBuilder, MatchKind};
use hashbrown::HashMap as HbMap;
use kmswatch_model::{Event, KmsOperation, Provider};
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// How to load rules.
#[derive(Debug, Clone, Default)]
pub struct LoadOptions {
    /// Keep going when a rule is invalid: load the others and list the errors in the
    /// [`LoadReport`]. When false, any error fails the whole load (with every error listed).
    pub skip_invalid: bool,
    /// Values for `|expand` placeholders (`%Administrators%` -> `Administrators`), matched
    /// case-insensitively by name. A rule that uses a placeholder missing here fails to load.
    pub placeholders: HashMap<String, Vec<String>>,
}

/// A provider logsource: rules for it run over the event's `raw` record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RawSource {
    /// `product: aws, service: cloudtrail`
    AwsCloudTrail,
    /// `product: azure, service: activitylogs`
    AzureActivityLogs,
    /// `product: azure, service: keyvault` (Key Vault resource logs)
    AzureKeyVault,
    /// `product: azure, service: auditlogs` (Entra ID audit logs)
    AzureAuditLogs,
    /// `product: azure, service: signinlogs`
    AzureSigninLogs,
    /// `product: gcp, service: gcp.audit`
    GcpAudit,
}

impl RawSource {
    /// Every provider logsource.
    pub const ALL: [RawSource; 6] = [
        RawSource::AwsCloudTrail,
        RawSource::AzureActivityLogs,
        RawSource::AzureKeyVault,
        RawSource::AzureAuditLogs,
        RawSource::AzureSigninLogs,
        RawSource::GcpAudit,
    ];

    fn slot(self) -> usize {
        match self {
            RawSource::AwsCloudTrail => 0,
            RawSource::AzureActivityLogs => 1,
            RawSource::AzureKeyVault => 2,
            RawSource::AzureAuditLogs => 3,
            RawSource::AzureSigninLogs => 4,
            RawSource::GcpAudit => 5,
        }
    }

    /// Which provider logsource an event's raw record belongs to, from `cloud.provider`,
    /// `metadata.product.name` and `metadata.log_format`.
    pub fn of_event(event: &Event) -> Option<RawSource> {
        let product = event.metadata.product.name.as_str();
        let format = event.metadata.log_format.as_bytes();
        let has = |needle: &str| {
            let n = needle.as_bytes();
            format.windows(n.len()).any(|w| w.eq_ignore_ascii_case(n))
        };
        match event.cloud.provider {
            Provider::Aws => Some(RawSource::AwsCloudTrail),
            Provider::Gcp => Some(RawSource::GcpAudit),
            Provider::Azure => {
                if product == "Azure Key Vault" || has("keyvault") {
                    Some(RawSource::AzureKeyVault)
                } else if product == "Azure Activity" || has("activity") {
                    Some(RawSource::AzureActivityLogs)
                } else if has("signin") {
                    Some(RawSource::AzureSigninLogs)
                } else if has("audit") {
                    Some(RawSource::AzureAuditLogs)
                } else {
                    None
                }
            }
        }
    }

    /// How many leading [`RawSource::index_fields`] name the raw record's operation, whose
    /// value the normalizer copies verbatim into `api.operation` (for `log_format`), so that
    /// an index lookup of `api.operation` gives the same rules as one of the raw field.
    fn op_fields(self) -> (usize, &'static str) {
        match self {
            // CloudTrail records: `api.operation` is `eventName` (EventBridge events carry
            // their detail-type instead, so they are not gated).
            RawSource::AwsCloudTrail => (1, "aws_cloudtrail"),
            // `api.operation` is `protoPayload.methodName` (the alias `gcp.audit.method_name`
            // reads the same field).
            RawSource::GcpAudit => (2, "gcp_audit"),
            _ => (0, ""),
        }
    }

    /// Fields whose equality values index rules of this source.
    fn index_fields(self) -> &'static [&'static str] {
        match self {
            RawSource::AwsCloudTrail => &["eventName", "eventSource"],
            RawSource::AzureActivityLogs | RawSource::AzureKeyVault | RawSource::AzureAuditLogs => {
                &["operationName"]
            }
            RawSource::AzureSigninLogs => &[],
            RawSource::GcpAudit => &["protoPayload.methodName", "gcp.audit.method_name"],
        }
    }

    /// Alternative raw paths for names used by SigmaHQ rules (their logsource's field
    /// mappings): Elastic's `gcp.audit.*` names for the Cloud Audit Logs `LogEntry`, and a
    /// `data.` prefix some rules carry from Pub/Sub exports.
    fn aliases(self, name: &str) -> Vec<String> {
        let mut out = Vec::new();
        if self == RawSource::GcpAudit {
            if let Some(rest) = name.strip_prefix("gcp.audit.") {
                let mapped = match rest {
                    "method_name" => Some("protoPayload.methodName"),
                    "service_name" => Some("protoPayload.serviceName"),
                    "resource_name" => Some("protoPayload.resourceName"),
                    "authentication_info.principal_email" => {
                        Some("protoPayload.authenticationInfo.principalEmail")
                    }
                    "request_metadata.caller_ip" => Some("protoPayload.requestMetadata.callerIp"),
                    "status.code" => Some("protoPayload.status.code"),
                    "status.message" => Some("protoPayload.status.message"),
                    _ => None,
                };
                out.extend(mapped.map(str::to_string));
            }
            if let Some(rest) = name.strip_prefix("data.") {
                out.push(rest.to_string());
            }
        }
        out
    }
}

/// What a rule runs over.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Target {
    /// `product: kms`: the normalized event and its enrichment.
    Normalized,
    /// A provider logsource: the event's raw record.
    Raw(RawSource),
}

/// A rule's `logsource`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LogSource {
    /// `category`
    pub category: Option<String>,
    /// `product`
    pub product: Option<String>,
    /// `service`
    pub service: Option<String>,
}

impl LogSource {
    /// The target this logsource selects, or `None` when kmswatch never sees such events.
    pub fn target(&self) -> Option<Target> {
        let product = self.product.as_deref().map(str::to_ascii_lowercase);
        let service = self.service.as_deref().map(str::to_ascii_lowercase);
        match (product.as_deref(), service.as_deref()) {
            (Some("kms"), _) => Some(Target::Normalized),
            (Some("aws"), Some("cloudtrail") | None) => Some(Target::Raw(RawSource::AwsCloudTrail)),
            (Some("azure"), Some("activitylogs")) => {
                Some(Target::Raw(RawSource::AzureActivityLogs))
            }
            (Some("azure"), Some("keyvault")) => Some(Target::Raw(RawSource::AzureKeyVault)),
            (Some("azure"), Some("auditlogs")) => Some(Target::Raw(RawSource::AzureAuditLogs)),
            (Some("azure"), Some("signinlogs")) => Some(Target::Raw(RawSource::AzureSigninLogs)),
            (Some("gcp"), Some("gcp.audit")) => Some(Target::Raw(RawSource::GcpAudit)),
            _ => None,
        }
    }

    /// Whether every attribute a filter's logsource sets is the same in `rule`'s.
    fn covers(&self, rule: &LogSource) -> bool {
        let same = |a: &Option<String>, b: &Option<String>| match a {
            None => true,
            Some(x) => b.as_deref().is_some_and(|y| y.eq_ignore_ascii_case(x)),
        };
        same(&self.category, &rule.category)
            && same(&self.product, &rule.product)
            && same(&self.service, &rule.service)
    }
}

/// Index of a rule in its [`RuleSet`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RuleId(pub u32);

/// What a loaded rule is, for findings and reports.
#[derive(Debug, Clone)]
pub struct RuleInfo {
    /// `id`
    pub id: Option<String>,
    /// `name`
    pub name: Option<String>,
    /// `title`
    pub title: String,
    /// `level`
    pub level: Option<String>,
    /// `status`
    pub status: Option<String>,
    /// `description`
    pub description: Option<String>,
    /// `tags`
    pub tags: Vec<String>,
    /// `falsepositives`
    pub falsepositives: Vec<String>,
    /// `logsource`
    pub logsource: LogSource,
    /// What it runs over; `None` for rules kept but not applicable to kmswatch's events.
    pub target: Option<Target>,
    /// The rule file.
    pub file: PathBuf,
    /// Line where the rule's document starts.
    pub line: usize,
    /// Titles of the filters applied to it.
    pub filters: Vec<String>,
}

impl RuleInfo {
    /// The rule's `id`, else its `title`: how reports name it.
    pub fn display_id(&self) -> &str {
        self.id.as_deref().unwrap_or(&self.title)
    }
}

#[derive(Debug)]
pub(crate) struct CompiledRule {
    pub(crate) info: RuleInfo,
    detection: Detection,
    /// Global filters: each must hold too (pySigma semantics: `(rule) and (filter)`).
    filters: Vec<Detection>,
}

impl CompiledRule {
    fn eval<D: Document + ?Sized>(&self, doc: &D) -> bool {
        self.detection.eval(doc) && self.filters.iter().all(|f| f.eval(doc))
    }
}

#[derive(Debug, Default)]
struct TargetIndex {
    /// (index field, folded value -> rules)
    fields: Vec<(FieldPath, HbMap<Folded, Vec<u32>>)>,
    /// Rules that must be checked on every event of this target.
    always: Vec<u32>,
    count: usize,
    /// Every rule of this target.
    members: Vec<u32>,
    /// Raw targets: literals tested on the raw JSON text before it is parsed.
    prefilter: Option<Prefilter>,
    /// The normalized target: the position of `kms.operation` in `fields`, and its map read
    /// per [`KmsOperation`] (by `op as usize`), so an event's candidates by operation are one
    /// array read instead of a case-folded hash of the operation's name.
    by_op: Option<(usize, Vec<Vec<u32>>)>,
}

/// Up to this many distinct literals per provider logsource (a bitset on the stack).
const PREFILTER_MAX_LITERALS: usize = 255;

/// A necessary condition per raw rule, tested on the raw JSON text before parsing it: a
/// conjunction of clauses, each a set of literals of which one must occur in the text (ASCII
/// case-insensitively). Derived at load time from the positive selections of the rule's
/// condition and filters (see [`cond_cnf`]); rules without one always pass.
#[derive(Debug)]
struct Prefilter {
    /// Every literal, then `\u` (a text with `\u` escapes may spell a literal differently:
    /// then every rule passes).
    ac: AhoCorasick,
    escape_id: usize,
    /// Per rule of the target (by rule index): its clauses as literal ids; `None` = no
    /// prefilter for that rule.
    rules: HbMap<u32, Vec<Vec<u16>>>,
}

/// The literal ids found in a raw text, or `None` when the prefilter cannot be trusted for it.
struct Hits([u64; 4]);

impl Hits {
    fn has(&self, id: u16) -> bool {
        let id = usize::from(id);
        self.0
            .get(id / 64)
            .is_some_and(|w| w & (1u64 << (id % 64)) != 0)
    }
}

impl Prefilter {
    fn build(rules: &[CompiledRule], members: &[u32]) -> Option<Prefilter> {
        let mut literals: Vec<String> = Vec::new();
        let mut ids: HbMap<String, u16> = HbMap::new();
        let mut per_rule = HbMap::new();
        for &i in members {
            let Some(rule) = rules.get(i as usize) else {
                continue;
            };
            let cnf = rule_cnf(rule);
            if cnf.is_empty() {
                continue;
            }
            let mut clauses = Vec::new();
            for clause in cnf {
                let mut c = Vec::new();
                for lit in clause {
                    let key = lit.to_ascii_lowercase();
                    let id = match ids.get(&key) {
                        Some(id) => *id,
                        None => {
                            let id = u16::try_from(literals.len()).ok()?;
                            if literals.len() >= PREFILTER_MAX_LITERALS {
                                return None;
                            }
                            literals.push(key.clone());
                            ids.insert(key, id);
                            id
                        }
                    };
                    c.push(id);
                }
                clauses.push(c);
            }
            per_rule.insert(i, clauses);
        }
        if per_rule.is_empty() {
            return None;
        }
        let escape_id = literals.len();
        literals.push("\\u".to_string());
        let ac = AhoCorasickBuilder::new()
            .ascii_case_insensitive(true)
            .match_kind(MatchKind::Standard)
            .build(&literals)
            .ok()?;
        Some(Prefilter {
            ac,
            escape_id,
            rules: per_rule,
        })
    }

    /// The literals present in `text`; `None` when the text is not plain ASCII or has `\u`
    /// escapes (then the literals may be spelled differently and every rule must be tried).
    fn scan(&self, text: &str) -> Option<Hits> {
        if !text.is_ascii() {
            return None;
        }
        let mut hits = Hits([0; 4]);
        for m in self.ac.find_overlapping_iter(text) {
            let id = m.pattern().as_usize();
            if id == self.escape_id {
                return None;
            }
            if let Some(w) = hits.0.get_mut(id / 64) {
                *w |= 1u64 << (id % 64);
            }
        }
        Some(hits)
    }

    /// Whether rule `i` may match a text with `hits`.
    fn passes(&self, i: u32, hits: &Hits) -> bool {
        self.rules
            .get(&i)
            .is_none_or(|clauses| clauses.iter().all(|c| c.iter().any(|id| hits.has(*id))))
    }
}

/// A compiled, indexed set of Sigma detection rules.
#[derive(Debug, Default)]
pub struct RuleSet {
    rules: Vec<CompiledRule>,
    correlations: Vec<Correlation>,
    normalized: TargetIndex,
    raw: [TargetIndex; 6],
}

struct NormalizedResolver;

impl FieldResolver for NormalizedResolver {
    fn resolve(&self, name: &str) -> Result<FieldPath, String> {
        FieldPath::normalized(name).ok_or_else(|| {
            let hint = if name == "raw" || name.starts_with("raw.") {
                " (match the provider record with a provider logsource such as `product: aws, service: cloudtrail`)"
            } else {
                ""
            };
            format!(
                "unknown field `{name}` for `product: kms`{hint}; known fields: {}, kmswatch.off_hours, kmswatch.first_seen, kmswatch.principal_known",
                EventField::ALL.iter().map(|f| f.name()).collect::<Vec<_>>().join(", ")
            )
        })
    }
}

struct RawResolver(Option<RawSource>);

impl FieldResolver for RawResolver {
    fn resolve(&self, name: &str) -> Result<FieldPath, String> {
        if name.is_empty() {
            return Err("empty field name".to_string());
        }
        let aliases = self.0.map(|s| s.aliases(name)).unwrap_or_default();
        let refs: Vec<&str> = aliases.iter().map(String::as_str).collect();
        Ok(FieldPath::json_with_fallbacks(name, &refs))
    }
}

pub(crate) fn resolver_for(target: Option<Target>) -> Box<dyn FieldResolver> {
    match target {
        Some(Target::Normalized) => Box::new(NormalizedResolver),
        Some(Target::Raw(s)) => Box::new(RawResolver(Some(s))),
        None => Box::new(RawResolver(None)),
    }
}

struct PendingFilter {
    title: String,
    file: PathBuf,
    line: usize,
    logsource: LogSource,
    rules: Option<Vec<String>>,
    node: Node,
}

#[derive(Default)]
pub(crate) struct Loader {
    rules: Vec<CompiledRule>,
    filters: Vec<PendingFilter>,
    pub(crate) correlations: Vec<PendingCorrelation>,
    pub(crate) report: LoadReport,
}

fn str_field(doc: &Node, key: &str) -> Option<String> {
    doc.get(key).and_then(Node::scalar_text)
}

fn str_list(doc: &Node, key: &str) -> Vec<String> {
    match doc.get(key).map(|n| &n.kind) {
        Some(Kind::Seq(items)) => items.iter().filter_map(Node::scalar_text).collect(),
        Some(_) => doc
            .get(key)
            .and_then(Node::scalar_text)
            .into_iter()
            .collect(),
        None => Vec::new(),
    }
}

fn parse_logsource(doc: &Node) -> Result<LogSource, (usize, String)> {
    let Some(ls) = doc.get("logsource") else {
        return Err((doc.line, "missing `logsource`".to_string()));
    };
    if !matches!(ls.kind, Kind::Map(_)) {
        return Err((ls.line, "`logsource` must be a map".to_string()));
    }
    Ok(LogSource {
        category: str_field(ls, "category"),
        product: str_field(ls, "product"),
        service: str_field(ls, "service"),
    })
}

impl Loader {
    pub(crate) fn error(
        &mut self,
        file: &Path,
        line: usize,
        rule: Option<String>,
        kind: LoadErrorKind,
        reason: String,
    ) {
        self.report.errors.push(LoadError {
            file: file.to_path_buf(),
            line,
            rule,
            kind,
            reason,
        });
    }

    fn load_text(&mut self, file: &Path, text: &str, opts: &LoadOptions) {
        let docs = match yaml::parse_documents(text) {
            Ok(d) => d,
            Err(e) => {
                self.error(
                    file,
                    e.line,
                    None,
                    LoadErrorKind::Syntax,
                    format!("YAML: {}", e.message),
                );
                return;
            }
        };
        for doc in docs {
            self.load_doc(file, doc, opts);
        }
    }

    fn load_doc(&mut self, file: &Path, doc: Node, opts: &LoadOptions) {
        if !matches!(doc.kind, Kind::Map(_)) {
            if matches!(doc.kind, Kind::Null) {
                return; // an empty document (e.g. a trailing `---`)
            }
            self.error(
                file,
                doc.line,
                None,
                LoadErrorKind::Invalid,
                "a rule must be a YAML map".to_string(),
            );
            return;
        }
        let title = str_field(&doc, "title");
        let id = str_field(&doc, "id");
        let display = id.clone().or_else(|| title.clone());
        if doc.get("action").is_some() {
            self.error(
                file,
                doc.line,
                display,
                LoadErrorKind::Unsupported,
                "Sigma v1 rule collections (`action: global/reset/repeat`) are not supported; write one rule per document".to_string(),
            );
            return;
        }
        if let Some(corr) = doc.get("correlation") {
            self.load_correlation(file, &doc, corr, title, id, display);
            return;
        }
        let Some(title) = title else {
            self.error(
                file,
                doc.line,
                display,
                LoadErrorKind::Invalid,
                "missing `title`".to_string(),
            );
            return;
        };
        let logsource = match parse_logsource(&doc) {
            Ok(l) => l,
            Err((line, reason)) => {
                self.error(file, line, display, LoadErrorKind::Invalid, reason);
                return;
            }
        };
        if let Some(filter) = doc.get("filter") {
            let rules = match filter.get("rules").map(|n| &n.kind) {
                None => {
                    self.error(
                        file,
                        filter.line,
                        display,
                        LoadErrorKind::Invalid,
                        "a filter needs `rules` (rule ids or names, or `any`)".to_string(),
                    );
                    return;
                }
                Some(Kind::Str(s))
                    if s.eq_ignore_ascii_case("any") || s.eq_ignore_ascii_case("all") =>
                {
                    None
                }
                Some(Kind::Seq(items)) if items.is_empty() => None,
                Some(_) => Some(str_list(filter, "rules")),
            };
            // Check the filter compiles at all (against its own logsource's target).
            let resolver = resolver_for(logsource.target());
            let ctx = Ctx {
                resolver: resolver.as_ref(),
                placeholders: &opts.placeholders,
            };
            if let Err((line, reason)) = Detection::compile(&ctx, filter, &["rules"]) {
                self.error(file, line, display, LoadErrorKind::Invalid, reason);
                return;
            }
            let filter = filter.clone();
            self.filters.push(PendingFilter {
                title,
                file: file.to_path_buf(),
                line: doc.line,
                logsource,
                rules,
                node: filter,
            });
            return;
        }
        let Some(detection) = doc.get("detection") else {
            self.error(
                file,
                doc.line,
                display,
                LoadErrorKind::Invalid,
                "missing `detection`".to_string(),
            );
            return;
        };
        let target = logsource.target();
        let resolver = resolver_for(target);
        let ctx = Ctx {
            resolver: resolver.as_ref(),
            placeholders: &opts.placeholders,
        };
        let detection = match Detection::compile(&ctx, detection, &[]) {
            Ok(d) => d,
            Err((line, reason)) => {
                let kind = if reason.contains(crate::detection::MISSING_PLACEHOLDER) {
                    LoadErrorKind::MissingPlaceholder
                } else if reason.contains("not supported") || reason.contains("cannot be matched") {
                    LoadErrorKind::Unsupported
                } else {
                    LoadErrorKind::Invalid
                };
                self.error(file, line, display, kind, reason);
                return;
            }
        };
        let info = RuleInfo {
            id,
            name: str_field(&doc, "name"),
            title,
            level: str_field(&doc, "level"),
            status: str_field(&doc, "status"),
            description: str_field(&doc, "description"),
            tags: str_list(&doc, "tags"),
            falsepositives: str_list(&doc, "falsepositives"),
            logsource,
            target,
            file: file.to_path_buf(),
            line: doc.line,
            filters: Vec::new(),
        };
        if target.is_none() {
            self.report.skipped.push(Skipped {
                file: file.to_path_buf(),
                line: doc.line,
                rule: info.display_id().to_string(),
                reason: format!(
                    "logsource {} is not one kmswatch reads (product: kms; aws/cloudtrail; azure/activitylogs|keyvault|auditlogs|signinlogs; gcp/gcp.audit)",
                    describe(&info.logsource)
                ),
            });
        }
        self.rules.push(CompiledRule {
            info,
            detection,
            filters: Vec::new(),
        });
    }

    fn apply_filters(&mut self, opts: &LoadOptions) {
        let filters = std::mem::take(&mut self.filters);
        for f in filters {
            let mut applied = 0usize;
            for rule in &mut self.rules {
                if !f.logsource.covers(&rule.info.logsource) {
                    continue;
                }
                let named = match &f.rules {
                    None => true,
                    Some(refs) => refs.iter().any(|r| {
                        rule.info.id.as_deref() == Some(r.as_str())
                            || rule.info.name.as_deref() == Some(r.as_str())
                    }),
                };
                if !named {
                    continue;
                }
                let resolver = resolver_for(rule.info.target);
                let ctx = Ctx {
                    resolver: resolver.as_ref(),
                    placeholders: &opts.placeholders,
                };
                match Detection::compile(&ctx, &f.node, &["rules"]) {
                    Ok(d) => {
                        rule.filters.push(d);
                        rule.info.filters.push(f.title.clone());
                        applied += 1;
                    }
                    Err((line, reason)) => self.report.errors.push(LoadError {
                        file: f.file.clone(),
                        line,
                        rule: Some(f.title.clone()),
                        kind: LoadErrorKind::Invalid,
                        reason: format!(
                            "filter cannot apply to rule {}: {reason}",
                            rule.info.display_id()
                        ),
                    }),
                }
            }
            if applied == 0 {
                self.report.skipped.push(Skipped {
                    file: f.file,
                    line: f.line,
                    rule: f.title,
                    reason: "filter names no loaded rule with a matching logsource".to_string(),
                });
            }
        }
    }
}

fn describe(ls: &LogSource) -> String {
    let mut parts = Vec::new();
    for (k, v) in [
        ("category", &ls.category),
        ("product", &ls.product),
        ("service", &ls.service),
    ] {
        if let Some(v) = v {
            parts.push(format!("{k}: {v}"));
        }
    }
    format!("{{{}}}", parts.join(", "))
}

/// `NAME.config.yml` beside rules holds configuration (the pack's test configuration), not
/// rules: directory walks pass it over.
pub fn is_config_file(p: &Path) -> bool {
    p.file_name()
        .and_then(|n| n.to_str())
        .map(str::to_ascii_lowercase)
        .is_some_and(|n| n.ends_with(".config.yml") || n.ends_with(".config.yaml"))
}

fn collect_files(path: &Path, out: &mut Vec<PathBuf>, errors: &mut Vec<LoadError>) {
    if path.is_file() {
        out.push(path.to_path_buf());
        return;
    }
    for entry in walkdir::WalkDir::new(path).sort_by_file_name() {
        match entry {
            Ok(e) => {
                let p = e.path();
                let is_yaml = p.extension().and_then(|x| x.to_str()).is_some_and(|x| {
                    x.eq_ignore_ascii_case("yml") || x.eq_ignore_ascii_case("yaml")
                });
                if e.file_type().is_file() && is_yaml && !is_config_file(p) {
                    out.push(p.to_path_buf());
                }
            }
            Err(e) => errors.push(LoadError {
                file: e.path().unwrap_or(path).to_path_buf(),
                line: 0,
                rule: None,
                kind: LoadErrorKind::Io,
                reason: e.to_string(),
            }),
        }
    }
}

impl RuleSet {
    /// Load every `.yml`/`.yaml` file under `paths` (files or directories, recursively),
    /// except configuration files named `*.config.yml` (see [`is_config_file`]).
    ///
    /// Every document is read and every error collected; with `skip_invalid` the valid rules are
    /// returned and the errors listed in the report, otherwise any error fails the load.
    pub fn load<P: AsRef<Path>>(
        paths: &[P],
        opts: &LoadOptions,
    ) -> Result<(RuleSet, LoadReport), LoadErrors> {
        let mut loader = Loader::default();
        let mut files = Vec::new();
        for p in paths {
            let p = p.as_ref();
            if !p.exists() {
                loader.error(
                    p,
                    0,
                    None,
                    LoadErrorKind::Io,
                    "no such file or directory".to_string(),
                );
                continue;
            }
            collect_files(p, &mut files, &mut loader.report.errors);
        }
        for f in files {
            match std::fs::read_to_string(&f) {
                Ok(text) => loader.load_text(&f, &text, opts),
                Err(e) => loader.error(&f, 0, None, LoadErrorKind::Io, format!("cannot read: {e}")),
            }
        }
        Self::finish(loader, opts)
    }

    /// Load rules from a string (`name` stands for the file in errors).
    pub fn from_yaml(
        name: &str,
        text: &str,
        opts: &LoadOptions,
    ) -> Result<(RuleSet, LoadReport), LoadErrors> {
        let mut loader = Loader::default();
        loader.load_text(Path::new(name), text, opts);
        Self::finish(loader, opts)
    }

    fn finish(mut loader: Loader, opts: &LoadOptions) -> Result<(RuleSet, LoadReport), LoadErrors> {
        loader.apply_filters(opts);
        if !loader.report.errors.is_empty() && !opts.skip_invalid {
            return Err(LoadErrors(loader.report.errors));
        }
        let correlations = std::mem::take(&mut loader.correlations);
        let correlations =
            crate::correlation::resolve(&loader.rules, correlations, &mut loader.report);
        if !loader.report.errors.is_empty() && !opts.skip_invalid {
            return Err(LoadErrors(loader.report.errors));
        }
        let mut set = RuleSet {
            rules: loader.rules,
            correlations,
            ..RuleSet::default()
        };
        set.build_index();
        Ok((set, loader.report))
    }

    fn build_index(&mut self) {
        self.normalized = TargetIndex {
            fields: ["kms.operation", "api.operation"]
                .iter()
                .filter_map(|n| FieldPath::normalized(n))
                .map(|p| (p, HbMap::new()))
                .collect(),
            ..TargetIndex::default()
        };
        for s in RawSource::ALL {
            let resolver = RawResolver(Some(s));
            let fields = s
                .index_fields()
                .iter()
                .filter_map(|n| resolver.resolve(n).ok())
                .map(|p| (p, HbMap::new()))
                .collect();
            if let Some(slot) = self.raw.get_mut(s.slot()) {
                *slot = TargetIndex {
                    fields,
                    ..TargetIndex::default()
                };
            }
        }
        for (i, rule) in self.rules.iter().enumerate() {
            let Ok(i) = u32::try_from(i) else { break };
            let (idx, prefer) = match rule.info.target {
                None => continue,
                Some(Target::Normalized) => (&mut self.normalized, 0),
                Some(Target::Raw(s)) => match self.raw.get_mut(s.slot()) {
                    Some(x) => (x, s.op_fields().0),
                    None => continue,
                },
            };
            idx.count += 1;
            idx.members.push(i);
            let names: Vec<&str> = idx.fields.iter().map(|(p, _)| p.name()).collect();
            let keys = cond_keys(
                &rule.detection.cond,
                &rule.detection.selections,
                &names,
                prefer,
            );
            match keys {
                Some((field, values)) => {
                    if let Some((_, map)) = idx.fields.get_mut(field) {
                        for v in values {
                            let list = map.entry(Folded(v)).or_default();
                            if list.last() != Some(&i) {
                                list.push(i);
                            }
                        }
                    }
                }
                None => idx.always.push(i),
            }
        }
        for idx in &mut self.raw {
            idx.prefilter = Prefilter::build(&self.rules, &idx.members);
        }
        let op_field = self
            .normalized
            .fields
            .iter()
            .position(|(p, _)| p.name() == "kms.operation");
        if let Some((fi, (_, map))) =
            op_field.and_then(|fi| self.normalized.fields.get(fi).map(|f| (fi, f)))
        {
            let mut table = vec![Vec::new(); KmsOperation::ALL.len()];
            for &op in KmsOperation::ALL {
                if let (Some(slot), Some(list)) =
                    (table.get_mut(op as usize), map.get(&FoldedRef(op.as_str())))
                {
                    slot.clone_from(list);
                }
            }
            self.normalized.by_op = Some((fi, table));
        }
    }

    /// Number of rules loaded (including inapplicable ones).
    pub fn len(&self) -> usize {
        self.rules.len()
    }

    /// Whether no rule was loaded.
    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// A rule's description.
    pub fn rule(&self, id: RuleId) -> Option<&RuleInfo> {
        self.rules.get(id.0 as usize).map(|r| &r.info)
    }

    /// Every rule with its id.
    pub fn rules(&self) -> impl Iterator<Item = (RuleId, &RuleInfo)> {
        self.rules
            .iter()
            .enumerate()
            .map(|(i, r)| (RuleId(u32::try_from(i).unwrap_or(u32::MAX)), &r.info))
    }

    /// Every correlation rule with its id.
    pub fn correlations(&self) -> impl Iterator<Item = (CorrelationId, &Correlation)> {
        self.correlations
            .iter()
            .enumerate()
            .map(|(i, c)| (CorrelationId(u32::try_from(i).unwrap_or(u32::MAX)), c))
    }

    /// A correlation rule.
    pub fn correlation(&self, id: CorrelationId) -> Option<&Correlation> {
        self.correlations.get(id.0 as usize)
    }

    /// Find a detection or correlation rule by its `id` or `name`.
    pub fn find_any(&self, reference: &str) -> Option<RuleRef> {
        if let Some(r) = self.find(reference) {
            return Some(RuleRef::Rule(r));
        }
        self.correlations().find_map(|(id, c)| {
            (c.info.id.as_deref() == Some(reference) || c.info.name.as_deref() == Some(reference))
                .then_some(RuleRef::Correlation(id))
        })
    }

    /// Find a rule by its `id` or `name` (for correlation rules and tests).
    pub fn find(&self, reference: &str) -> Option<RuleId> {
        self.rules().find_map(|(id, r)| {
            (r.id.as_deref() == Some(reference) || r.name.as_deref() == Some(reference))
                .then_some(id)
        })
    }

    /// Whether any rule reads the raw record of `source` (so the caller knows whether parsing it
    /// is worth it).
    pub fn wants_raw(&self, source: RawSource) -> bool {
        self.raw.get(source.slot()).is_some_and(|i| i.count > 0)
    }

    /// Append to `out` the rules that match `event`: `product: kms` rules over the event and
    /// `enrichment`, and provider rules over its `raw` record (parsed once, and only when a rule
    /// for that provider's logsource exists). Ids are appended in ascending order.
    pub fn matches(&self, event: &Event, enrichment: &Enrichment, out: &mut Vec<RuleId>) {
        let start = out.len();
        self.match_normalized(event, enrichment, out);
        if let Some(source) = RawSource::of_event(event) {
            if self.wants_raw(source) {
                if let Some(idx) = self.raw.get(source.slot()) {
                    if self.op_gate(source, idx, event) {
                        self.match_raw_text(idx, event.raw.get(), out);
                    }
                }
            }
        }
        finish_out(out, start);
    }

    /// Append to `out` the provider rules of `source` that match an already parsed raw record.
    pub fn matches_raw(&self, source: RawSource, raw: &serde_json::Value, out: &mut Vec<RuleId>) {
        let start = out.len();
        if let Some(idx) = self.raw.get(source.slot()) {
            self.match_index(idx, raw, out);
        }
        finish_out(out, start);
    }

    /// Append to `out` the `product: kms` rules that match `event` (no raw rules).
    pub fn matches_normalized(
        &self,
        event: &Event,
        enrichment: &Enrichment,
        out: &mut Vec<RuleId>,
    ) {
        let start = out.len();
        self.match_normalized(event, enrichment, out);
        finish_out(out, start);
    }

    /// The `product: kms` rules matching `event`, appended unsorted.
    fn match_normalized(&self, event: &Event, enrichment: &Enrichment, out: &mut Vec<RuleId>) {
        let doc = EventDocument { event, enrichment };
        self.match_filtered(
            &self.normalized,
            &doc,
            Some(event.kms.operation),
            out,
            &|_| true,
        );
    }

    /// False when no rule of the raw target `idx` can match `event`'s raw record, decided from
    /// `api.operation` without looking at the raw text: every rule of the target is indexed
    /// by the record's operation field (no rule in `always`, no rule keyed on another field),
    /// the normalizer copied that field verbatim into `api.operation` (see
    /// [`RawSource::op_fields`]), and no rule's key equals it (case-insensitively). The index
    /// key is a necessary condition of each rule, so skipping then changes no result; it
    /// saves the literal scan and the parse of the raw record for the many events (Decrypt,
    /// Encrypt, ...) that no provider-logsource rule is about.
    fn op_gate(&self, source: RawSource, idx: &TargetIndex, event: &Event) -> bool {
        let (n, format) = source.op_fields();
        if n == 0 || event.metadata.log_format != format || !idx.always.is_empty() {
            return true;
        }
        if idx.fields.iter().skip(n).any(|(_, map)| !map.is_empty()) {
            return true;
        }
        let op = FoldedRef(event.api.operation.as_str());
        idx.fields
            .iter()
            .take(n)
            .any(|(_, map)| map.contains_key(&op))
    }

    /// Match the rules of a raw target against a raw JSON text: the prefilter first, then the
    /// text is parsed only when some rule may still match.
    fn match_raw_text(&self, idx: &TargetIndex, text: &str, out: &mut Vec<RuleId>) {
        if idx.count == 0 {
            return;
        }
        let hits = idx.prefilter.as_ref().and_then(|p| p.scan(text));
        let allow = |i: u32| match (&idx.prefilter, &hits) {
            (Some(p), Some(h)) => p.passes(i, h),
            _ => true,
        };
        if !idx.members.iter().any(|&i| allow(i)) {
            return;
        }
        // The normalizer keeps only records whose text parses as a `Value` (its strict scan is
        // `Value`'s grammar: paired surrogate escapes, numbers within f64, at most
        // `scan::MAX_DEPTH` levels — fuzzed by `fuzz/` `normalize_auto`), so this parse
        // succeeds for every event it produced; a hand-built event with other text matches
        // no raw rule.
        if let Ok(raw) = serde_json::from_str::<serde_json::Value>(text) {
            self.match_filtered(idx, &raw, None, out, &allow);
        }
    }

    fn match_index<D: Document + ?Sized>(&self, idx: &TargetIndex, doc: &D, out: &mut Vec<RuleId>) {
        self.match_filtered(idx, doc, None, out, &|_| true);
    }

    fn match_filtered<D: Document + ?Sized>(
        &self,
        idx: &TargetIndex,
        doc: &D,
        op: Option<KmsOperation>,
        out: &mut Vec<RuleId>,
        allow: &dyn Fn(u32) -> bool,
    ) {
        if idx.count == 0 {
            return;
        }
        let check = |i: u32, out: &mut Vec<RuleId>| {
            if allow(i) && self.rules.get(i as usize).is_some_and(|r| r.eval(doc)) {
                out.push(RuleId(i));
            }
        };
        for (fi, (path, map)) in idx.fields.iter().enumerate() {
            if map.is_empty() {
                continue;
            }
            if let (Some((op_field, table)), Some(op)) = (&idx.by_op, op) {
                // `doc.get(path)` would be `FieldValue::Str(op.as_str())`.
                if *op_field == fi {
                    for &i in table.get(op as usize).map(Vec::as_slice).unwrap_or(&[]) {
                        check(i, out);
                    }
                    continue;
                }
            }
            match doc.get(path) {
                FieldValue::Str(s) => {
                    if let Some(list) = map.get(&FoldedRef(s)) {
                        for &i in list {
                            check(i, out);
                        }
                    }
                }
                FieldValue::List(items) => {
                    for item in items {
                        if let Some(list) = item.as_str().and_then(|s| map.get(&FoldedRef(s))) {
                            for &i in list {
                                check(i, out);
                            }
                        }
                    }
                }
                FieldValue::StrList(items) => {
                    for item in items {
                        if let Some(list) = map.get(&FoldedRef(item)) {
                            for &i in list {
                                check(i, out);
                            }
                        }
                    }
                }
                _ => {}
            }
        }
        for &i in &idx.always {
            check(i, out);
        }
    }
}

/// A conjunction of clauses; each clause a set of literals of which one must occur in the raw
/// JSON text for the rule to match. Empty: nothing is known.
type Cnf = Vec<Vec<String>>;

/// Clauses with a literal shorter than this are not worth testing.
const MIN_LITERAL: usize = 3;
/// At most this many clauses per rule (the longest-literal ones).
const MAX_CLAUSES: usize = 6;

/// The prefilter of a rule: its detection's clauses and its filters' (all must hold).
fn rule_cnf(rule: &CompiledRule) -> Cnf {
    let mut cnf = cond_cnf(&rule.detection.cond, &rule.detection.selections);
    for f in &rule.filters {
        cnf.extend(cond_cnf(&f.cond, &f.selections));
    }
    cnf.retain(|c| !c.is_empty());
    cnf.sort_by_key(|c| std::cmp::Reverse(clause_score(c)));
    cnf.dedup();
    cnf.truncate(MAX_CLAUSES);
    cnf
}

/// How selective a clause probably is: its shortest literal's length.
fn clause_score(c: &[String]) -> usize {
    c.iter().map(String::len).min().unwrap_or(0)
}

/// Necessary literals of a condition. `not` contributes nothing (its selection must *not*
/// match, which says nothing about what the text contains).
fn cond_cnf(c: &Cond, sels: &[Selection]) -> Cnf {
    match c {
        Cond::Sel(i) => sels.get(*i).map(sel_cnf).unwrap_or_default(),
        Cond::Not(_) => Vec::new(),
        Cond::And(items) => items.iter().flat_map(|i| cond_cnf(i, sels)).collect(),
        Cond::Or(items) => or_cnf(items.iter().map(|i| cond_cnf(i, sels))),
        Cond::AtLeast(0, _) => Vec::new(),
        Cond::AtLeast(_, idx) => or_cnf(
            idx.iter()
                .map(|i| sels.get(*i).map(sel_cnf).unwrap_or_default()),
        ),
    }
}

/// A disjunction: one clause, the union of the best clause of every alternative; nothing
/// when an alternative has no clause.
fn or_cnf(alts: impl Iterator<Item = Cnf>) -> Cnf {
    let mut union: Vec<String> = Vec::new();
    let mut any = false;
    for alt in alts {
        let best = alt
            .into_iter()
            .filter(|c| !c.is_empty())
            .max_by_key(|c| clause_score(c));
        match best {
            Some(c) => union.extend(c),
            None => return Vec::new(),
        }
        any = true;
    }
    if any {
        vec![union]
    } else {
        Vec::new()
    }
}

fn set_clause(set: &PatternSet) -> Option<Vec<String>> {
    set.required_literals()
        .filter(|lits| lits.iter().all(|l| l.len() >= MIN_LITERAL))
        .map(<[String]>::to_vec)
}

fn multi_cnf(m: &Multi) -> Cnf {
    match m {
        Multi::Any(set) => set_clause(set).into_iter().collect(),
        Multi::All(sets) => sets.iter().filter_map(set_clause).collect(),
    }
}

fn sel_cnf(s: &Selection) -> Cnf {
    match s {
        Selection::Fields(items) => items
            .iter()
            .flat_map(|f| match &f.matcher {
                ValueMatcher::Values(m) => multi_cnf(m),
                _ => Vec::new(),
            })
            .collect(),
        Selection::AnyOf(items) => or_cnf(items.iter().map(sel_cnf)),
        Selection::Keywords(m) => multi_cnf(m),
    }
}

fn finish_out(out: &mut Vec<RuleId>, start: usize) {
    if let Some(tail) = out.get_mut(start..) {
        tail.sort_unstable();
    }
    out.dedup();
}

/// A necessary condition for the rule: the value of index field `.0` must be one of `.1`
/// (case-insensitively). `None` when no such condition can be proven.
/// Among several candidates, the one with the fewest values, except that the first `prefer` fields
/// (the operation fields of a raw target, see [`RawSource::op_fields`]) win over the others, so
/// that the target's operation gate ([`RuleSet::op_gate`]) applies whenever it can.
fn cond_keys(
    c: &Cond,
    sels: &[Selection],
    fields: &[&str],
    prefer: usize,
) -> Option<(usize, Vec<String>)> {
    match c {
        Cond::Sel(i) => sel_keys(sels.get(*i)?, fields, prefer),
        Cond::Not(_) => None,
        Cond::And(items) => items
            .iter()
            .filter_map(|i| cond_keys(i, sels, fields, prefer))
            .min_by_key(|(f, v)| (*f >= prefer, v.len())),
        Cond::Or(items) => union(items.iter().map(|i| cond_keys(i, sels, fields, prefer))),
        Cond::AtLeast(_, idx) => union(
            idx.iter()
                .map(|i| sels.get(*i).and_then(|s| sel_keys(s, fields, prefer))),
        ),
    }
}

fn union(
    mut it: impl Iterator<Item = Option<(usize, Vec<String>)>>,
) -> Option<(usize, Vec<String>)> {
    let (field, mut values) = it.next()??;
    for next in it {
        let (f, v) = next?;
        if f != field {
            return None;
        }
        values.extend(v);
    }
    Some((field, values))
}

fn sel_keys(s: &Selection, fields: &[&str], prefer: usize) -> Option<(usize, Vec<String>)> {
    match s {
        Selection::Fields(items) => items
            .iter()
            .filter_map(|f| {
                let field = fields.iter().position(|n| *n == f.path.name())?;
                match &f.matcher {
                    ValueMatcher::Values(Multi::Any(set)) => set.index_values().map(|v| (field, v)),
                    _ => None,
                }
            })
            .min_by_key(|(f, v)| (*f >= prefer, v.len())),
        Selection::AnyOf(items) => union(items.iter().map(|i| sel_keys(i, fields, prefer))),
        Selection::Keywords(_) => None,
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn cnf_of(detection: &str) -> Cnf {
        let text = format!(
            "title: t\nlogsource:\n    product: aws\n    service: cloudtrail\ndetection:\n{detection}\n"
        );
        let (set, _) = RuleSet::from_yaml("t.yml", &text, &LoadOptions::default()).unwrap();
        rule_cnf(set.rules.first().unwrap())
    }

    #[test]
    fn raw_rules_are_indexed_by_their_operation_field_when_they_have_one() {
        // `eventSource` has fewer values, but keying on `eventName` lets the operation gate
        // skip every CloudTrail event with another operation without reading its raw text.
        let text = "title: t\nlogsource:\n    product: aws\n    service: cloudtrail\ndetection:\n    sel:\n        eventSource: cloudtrail.amazonaws.com\n        eventName:\n            - StopLogging\n            - DeleteTrail\n    condition: sel\n";
        let (set, _) = RuleSet::from_yaml("t.yml", text, &LoadOptions::default()).unwrap();
        let idx = set.raw.get(RawSource::AwsCloudTrail.slot()).unwrap();
        let keys = |f: usize| {
            let mut k: Vec<String> = idx
                .fields
                .get(f)
                .map(|(_, m)| m.keys().map(|k| k.0.clone()).collect())
                .unwrap_or_default();
            k.sort();
            k
        };
        assert_eq!(keys(0), vec!["DeleteTrail", "StopLogging"]);
        assert!(keys(1).is_empty());
        assert!(idx.always.is_empty());
        // So an event whose operation (copied from `eventName` by the normalizer) is another
        // one is decided without the raw text.
        let mut ev = Event::new(
            0,
            kmswatch_model::KmsOperation::Other,
            serde_json::value::RawValue::from_string(
                r#"{"eventSource":"cloudtrail.amazonaws.com","eventName":"StopLogging"}"#.into(),
            )
            .unwrap(),
        );
        ev.cloud.provider = Provider::Aws;
        ev.metadata.log_format = "aws_cloudtrail".into();
        ev.api.operation = "Decrypt".into();
        assert!(!set.op_gate(RawSource::AwsCloudTrail, idx, &ev));
        ev.api.operation = "stoplogging".into();
        assert!(set.op_gate(RawSource::AwsCloudTrail, idx, &ev));
    }

    #[test]
    fn prefilter_literals_come_from_positive_selections() {
        let cnf = cnf_of("    sel:\n        eventSource: cloudtrail.amazonaws.com\n        eventName:\n            - StopLogging\n            - DeleteTrail\n    f:\n        errorCode|exists: true\n    condition: sel and not f");
        assert_eq!(
            cnf,
            vec![
                vec!["cloudtrail.amazonaws.com".to_string()],
                vec!["StopLogging".to_string(), "DeleteTrail".to_string()],
            ]
        );
        // `or`: one clause with a literal of each side.
        let cnf = cnf_of("    a:\n        eventName: StopLogging\n    b:\n        eventName|startswith: Delete\n    condition: a or b");
        assert_eq!(
            cnf,
            vec![vec!["StopLogging".to_string(), "Delete".to_string()]]
        );
        // A `/` may be escaped in JSON: the longest run without it is required.
        let cnf = cnf_of(
            "    sel:\n        operationName: MICROSOFT.KEYVAULT/VAULTS/WRITE\n    condition: sel",
        );
        assert_eq!(cnf, vec![vec!["MICROSOFT.KEYVAULT".to_string()]]);
    }

    #[test]
    fn prefilter_is_skipped_when_unsure() {
        for det in [
            "    f:\n        eventName: Decrypt\n    condition: not f",
            "    sel:\n        eventName|re: 'Stop.*'\n    condition: sel",
            "    sel:\n        n|gt: 3\n    condition: sel",
            "    sel:\n        n: 1.5\n    condition: sel",
            "    sel:\n        sourceIPAddress|cidr: 10.0.0.0/8\n    condition: sel",
            "    a:\n        eventName: StopLogging\n    b:\n        eventName|re: x\n    condition: a or b",
            "    sel:\n        eventName: null\n    condition: sel",
            "    sel:\n        eventName: 'Stop\"Logging\u{e9}'\n    condition: sel",
        ] {
            let cnf = cnf_of(det);
            assert!(
                cnf.iter().all(|c| c.iter().all(|l| !l.contains('"'))),
                "{det}: {cnf:?}"
            );
            if !det.contains("Stop\"") {
                assert!(cnf.is_empty(), "{det}: {cnf:?}");
            }
        }
    }
}

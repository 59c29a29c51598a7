//! Loading rule files into a [`RuleSet`], the candidate index, and matching.

use crate::condition::Cond;
use crate::correlation::{Correlation, CorrelationId, PendingCorrelation, RuleRef};
use crate::detection::{Ctx, Detection, FieldResolver, Multi, Selection, ValueMatcher};
use crate::document::{Document, Enrichment, EventDocument, EventField, FieldPath, FieldValue};
use crate::error::{LoadError, LoadErrorKind, LoadErrors, LoadReport, Skipped};
use crate::pattern::{Folded, FoldedRef};
use crate::yaml::{self, Kind, Node};
use hashbrown::HashMap as HbMap;
use kmswatch_model::{Event, Provider};
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
                let kind =
                    if reason.contains("not supported") || reason.contains("cannot be matched") {
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
                if e.file_type().is_file() && is_yaml {
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
    /// Load every `.yml`/`.yaml` file under `paths` (files or directories, recursively).
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
            let idx = match rule.info.target {
                None => continue,
                Some(Target::Normalized) => &mut self.normalized,
                Some(Target::Raw(s)) => match self.raw.get_mut(s.slot()) {
                    Some(x) => x,
                    None => continue,
                },
            };
            idx.count += 1;
            let names: Vec<&str> = idx.fields.iter().map(|(p, _)| p.name()).collect();
            match cond_keys(&rule.detection.cond, &rule.detection.selections, &names) {
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
        let doc = EventDocument { event, enrichment };
        self.match_index(&self.normalized, &doc, out);
        if let Some(source) = RawSource::of_event(event) {
            if self.wants_raw(source) {
                if let Ok(raw) = serde_json::from_str::<serde_json::Value>(event.raw.get()) {
                    if let Some(idx) = self.raw.get(source.slot()) {
                        self.match_index(idx, &raw, out);
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
        self.match_index(&self.normalized, &EventDocument { event, enrichment }, out);
        finish_out(out, start);
    }

    fn match_index<D: Document + ?Sized>(&self, idx: &TargetIndex, doc: &D, out: &mut Vec<RuleId>) {
        if idx.count == 0 {
            return;
        }
        let check = |i: u32, out: &mut Vec<RuleId>| {
            if self.rules.get(i as usize).is_some_and(|r| r.eval(doc)) {
                out.push(RuleId(i));
            }
        };
        for (path, map) in &idx.fields {
            if map.is_empty() {
                continue;
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

fn finish_out(out: &mut Vec<RuleId>, start: usize) {
    if let Some(tail) = out.get_mut(start..) {
        tail.sort_unstable();
    }
    out.dedup();
}

/// A necessary condition for the rule: the value of index field `.0` must be one of `.1`
/// (case-insensitively). `None` when no such condition can be proven.
fn cond_keys(c: &Cond, sels: &[Selection], fields: &[&str]) -> Option<(usize, Vec<String>)> {
    match c {
        Cond::Sel(i) => sel_keys(sels.get(*i)?, fields),
        Cond::Not(_) => None,
        Cond::And(items) => items
            .iter()
            .filter_map(|i| cond_keys(i, sels, fields))
            .min_by_key(|(_, v)| v.len()),
        Cond::Or(items) => union(items.iter().map(|i| cond_keys(i, sels, fields))),
        Cond::AtLeast(_, idx) => union(
            idx.iter()
                .map(|i| sels.get(*i).and_then(|s| sel_keys(s, fields))),
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

fn sel_keys(s: &Selection, fields: &[&str]) -> Option<(usize, Vec<String>)> {
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
            .min_by_key(|(_, v)| v.len()),
        Selection::AnyOf(items) => union(items.iter().map(|i| sel_keys(i, fields))),
        Selection::Keywords(_) => None,
    }
}

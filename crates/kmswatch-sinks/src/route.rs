//! Routing: which findings go to which sink (`route:` of a sink's config).

use crate::config::RouteConfig;
use crate::Outgoing;

/// Rank of a level name (`informational` 1 ... `critical` 5), case-insensitive.
pub fn level_rank(level: &str) -> Option<u8> {
    match level.to_ascii_lowercase().as_str() {
        "informational" | "info" => Some(1),
        "low" => Some(2),
        "medium" => Some(3),
        "high" => Some(4),
        "critical" => Some(5),
        _ => None,
    }
}

/// A compiled `route:`.
#[derive(Debug, Clone)]
pub struct Route {
    min_rank: Option<u8>,
    rules: Vec<String>,
    tags: Vec<String>,
    audit: bool,
    findings: bool,
}

impl Route {
    /// Compiles a validated route config (an unknown `min_level` routes nothing below
    /// critical; `SinkConfig::validate` rejects it first).
    pub fn new(c: &RouteConfig) -> Route {
        Route {
            min_rank: c.min_level.as_deref().map(|l| level_rank(l).unwrap_or(5)),
            rules: c.rules.clone(),
            tags: c.tags.iter().map(|t| t.to_ascii_lowercase()).collect(),
            audit: c.audit,
            findings: c.findings,
        }
    }

    /// Does this item go to the sink?
    pub fn matches(&self, item: &Outgoing) -> bool {
        let f = match item {
            Outgoing::Audit(_) => return self.audit,
            Outgoing::Finding(f) => f,
        };
        if !self.findings {
            return false;
        }
        if let Some(min) = self.min_rank {
            // severity_id: 1 informational ... 5 critical, 0 unknown (never passes a minimum).
            if f.severity_id < min {
                return false;
            }
        }
        if !self.rules.is_empty() {
            let a = &f.finding_info.analytic;
            let hit = self
                .rules
                .iter()
                .any(|r| *r == a.uid || *r == a.name || *r == f.finding_info.title);
            if !hit {
                return false;
            }
        }
        if !self.tags.is_empty() {
            let hit = f
                .kmswatch
                .tags
                .iter()
                .any(|t| self.tags.iter().any(|w| t.eq_ignore_ascii_case(w)));
            if !hit {
                return false;
            }
        }
        true
    }
}

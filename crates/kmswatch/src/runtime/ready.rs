//! Readiness: whether this process does its job right now, and if not, why.
//!
//! The pipeline decides (state restored and sources open; no component failing); the HTTP
//! listener only serves it: `/readyz` is 200 while [`Readiness::is_ready`], 503 otherwise,
//! with [`Readiness::reason`] as the body. A component that fails (`state_store`: a
//! checkpoint cannot be written; `dead_letters`: the dead-letter file cannot be written)
//! records its reason and clears it once it works again. The reasons are also on `/metrics`
//! as `kmswatch_not_ready{reason=COMPONENT}` (1 while failing) next to `kmswatch_ready`.

use crate::runtime::metrics::Metrics;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

/// The readiness of the process; cheap to clone.
#[derive(Debug, Clone)]
pub struct Readiness {
    flag: Arc<AtomicBool>,
    inner: Arc<Mutex<Inner>>,
    metrics: Metrics,
}

#[derive(Debug, Default)]
struct Inner {
    started: bool,
    failing: BTreeMap<&'static str, String>,
}

impl Readiness {
    /// Not ready until [`Readiness::started`].
    pub fn new(metrics: &Metrics) -> Readiness {
        metrics.describe(
            "kmswatch_not_ready",
            "gauge",
            "1 while a component keeps the process not ready, by reason (state_store, dead_letters).",
        );
        Readiness {
            flag: Arc::new(AtomicBool::new(false)),
            inner: Arc::default(),
            metrics: metrics.clone(),
        }
    }

    fn update(&self, f: impl FnOnce(&mut Inner)) {
        let mut g = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        f(&mut g);
        let ready = g.started && g.failing.is_empty();
        self.flag.store(ready, Ordering::SeqCst);
        self.metrics
            .set("kmswatch_ready", &[], if ready { 1.0 } else { 0.0 });
    }

    /// State restored and sources open (`true`), or stopping (`false`).
    pub fn started(&self, on: bool) {
        self.update(|g| g.started = on);
    }

    /// `component` fails: not ready, with `reason`.
    pub fn fail(&self, component: &'static str, reason: String) {
        self.metrics
            .set("kmswatch_not_ready", &[("reason", component)], 1.0);
        self.update(|g| {
            g.failing.insert(component, reason);
        });
    }

    /// `component` works again; true when it had failed.
    pub fn recover(&self, component: &'static str) -> bool {
        let mut was = false;
        self.update(|g| was = g.failing.remove(component).is_some());
        if was {
            self.metrics
                .set("kmswatch_not_ready", &[("reason", component)], 0.0);
        }
        was
    }

    /// Ready now.
    pub fn is_ready(&self) -> bool {
        self.flag.load(Ordering::SeqCst)
    }

    /// Why not ready (`None` when ready): the body of a 503 from `/readyz`.
    pub fn reason(&self) -> Option<String> {
        let g = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        if !g.started {
            return Some("not ready: starting or stopping".into());
        }
        if g.failing.is_empty() {
            return None;
        }
        Some(
            g.failing
                .iter()
                .map(|(c, r)| format!("not ready: {c}: {r}"))
                .collect::<Vec<_>>()
                .join("\n"),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failing_component_makes_the_process_not_ready_until_it_recovers() {
        let m = Metrics::default();
        let r = Readiness::new(&m);
        assert!(!r.is_ready());
        r.started(true);
        assert!(r.is_ready() && r.reason().is_none());
        r.fail(
            "state_store",
            "committing checkpoint: No space left on device".into(),
        );
        assert!(!r.is_ready());
        assert_eq!(
            r.reason().as_deref(),
            Some("not ready: state_store: committing checkpoint: No space left on device")
        );
        assert!(m
            .render()
            .contains("kmswatch_not_ready{reason=\"state_store\"} 1"));
        assert!(m.render().contains("kmswatch_ready{} 0"));
        assert!(r.recover("state_store"));
        assert!(!r.recover("state_store"));
        assert!(r.is_ready());
        assert!(m
            .render()
            .contains("kmswatch_not_ready{reason=\"state_store\"} 0"));
        r.started(false);
        assert!(!r.is_ready());
    }
}

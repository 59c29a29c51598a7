//! kmswatch's configuration file (YAML), one documented schema for every verb.
//!
//! ```yaml
//! normalize:                 # kmswatch_normalize::Options
//!   human_role_patterns: ["Admin*"]
//! rules:                     # where the rules are, plus the detection engine's settings
//!   paths: [rules]
//!   skip_invalid: false
//!   calendar: { time_zone: UTC, working_days: [mon, tue, wed, thu, fri], work_start: "08:00", work_end: "18:00" }
//!   calendars: { "111122223333": { time_zone: Europe/Paris, ... } }
//!   inventory_path: inventory.csv
//!   placeholders: { kms_admins: [arn:aws:iam::111122223333:user/kms-admin] }
//!   lateness_secs: 1200
//! ```
//!
//! Every section is optional; unknown keys are errors (a typo must not silently disable a
//! setting). `${NAME}` in any string is replaced by the environment variable `NAME` (an unset
//! variable is an error). Relative paths are relative to the config file.

use anyhow::{anyhow, bail, Context, Result};
use kmswatch_normalize::Options as NormalizeOptions;
use kmswatch_rules::EngineConfig;
use serde::Deserialize;
use serde_json::{Map, Value};
use std::path::{Path, PathBuf};

/// The whole configuration.
#[derive(Debug, Clone, Default)]
pub struct Config {
    /// Normalizer options.
    pub normalize: NormalizeOptions,
    /// Rule files and the detection engine's settings.
    pub rules: RulesConfig,
    /// Where the file was read from (for messages), if it was.
    pub path: Option<PathBuf>,
}

/// The `rules:` section.
#[derive(Debug, Clone)]
pub struct RulesConfig {
    /// Rule files or directories (default `rules` when it exists).
    pub paths: Vec<PathBuf>,
    /// Load the valid rules even when some are invalid (each invalid one is reported).
    pub skip_invalid: bool,
    /// Detection engine settings: calendars, inventory, placeholders, lateness, suppression.
    pub engine: EngineConfig,
}

impl Default for RulesConfig {
    fn default() -> Self {
        RulesConfig {
            paths: vec![PathBuf::from("rules")],
            skip_invalid: false,
            engine: EngineConfig::default(),
        }
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTop {
    #[serde(default)]
    normalize: Option<NormalizeOptions>,
    #[serde(default)]
    rules: Option<Value>,
}

impl Config {
    /// Read and validate a config file (pure validation after reading; no other I/O).
    pub fn load(path: &Path) -> Result<Config> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading config {}", path.display()))?;
        let base = path.parent().unwrap_or(Path::new("."));
        let mut cfg =
            Config::parse(&text, base).with_context(|| format!("config {}", path.display()))?;
        cfg.path = Some(path.to_path_buf());
        Ok(cfg)
    }

    /// Parse config text; relative paths are resolved against `base`.
    pub fn parse(text: &str, base: &Path) -> Result<Config> {
        let docs = yaml_rust2::YamlLoader::load_from_str(text).map_err(|e| anyhow!("{e}"))?;
        let mut value = docs.first().map(yaml_to_json).unwrap_or(Value::Null);
        if value.is_null() {
            value = Value::Object(Map::new());
        }
        interpolate_env(&mut value)?;
        let top: RawTop = serde_json::from_value(value).map_err(|e| anyhow!("{e}"))?;
        let mut rules = RulesConfig::default();
        if let Some(Value::Object(mut m)) = top.rules {
            if let Some(p) = m.remove("paths") {
                let paths: Vec<PathBuf> =
                    serde_json::from_value(p).map_err(|e| anyhow!("rules.paths: {e}"))?;
                rules.paths = paths.into_iter().map(|p| base.join(p)).collect();
            }
            if let Some(s) = m.remove("skip_invalid") {
                rules.skip_invalid =
                    serde_json::from_value(s).map_err(|e| anyhow!("rules.skip_invalid: {e}"))?;
            }
            rules.engine =
                serde_json::from_value(Value::Object(m)).map_err(|e| anyhow!("rules: {e}"))?;
            if let Some(p) = rules.engine.inventory_path.as_mut() {
                *p = base.join(&*p);
            }
        } else if let Some(other) = top.rules {
            if !other.is_null() {
                bail!("rules: expected a mapping, found {other}");
            }
        }
        rules.engine.validate().map_err(|e| anyhow!("rules: {e}"))?;
        Ok(Config {
            normalize: top.normalize.unwrap_or_default(),
            rules,
            path: None,
        })
    }
}

/// `${NAME}` in strings → the environment variable.
fn interpolate_env(v: &mut Value) -> Result<()> {
    match v {
        Value::String(s) if s.contains("${") => {
            let mut out = String::with_capacity(s.len());
            let mut rest = s.as_str();
            while let Some(i) = rest.find("${") {
                out.push_str(&rest[..i]);
                let after = &rest[i + 2..];
                let end = after
                    .find('}')
                    .ok_or_else(|| anyhow!("unterminated ${{ in {s:?}"))?;
                let name = &after[..end];
                let val = std::env::var(name).map_err(|_| {
                    anyhow!("environment variable {name} is not set (used as ${{{name}}})")
                })?;
                out.push_str(&val);
                rest = &after[end + 1..];
            }
            out.push_str(rest);
            *s = out;
        }
        Value::Array(a) => a.iter_mut().try_for_each(interpolate_env)?,
        Value::Object(o) => o.values_mut().try_for_each(interpolate_env)?,
        _ => {}
    }
    Ok(())
}

/// YAML → JSON value (strings, numbers, booleans, lists, maps; keys as strings).
pub fn yaml_to_json(y: &yaml_rust2::Yaml) -> Value {
    use yaml_rust2::Yaml as Y;
    match y {
        Y::Real(s) => s
            .parse::<f64>()
            .ok()
            .and_then(serde_json::Number::from_f64)
            .map_or(Value::String(s.clone()), Value::Number),
        Y::Integer(i) => Value::from(*i),
        Y::String(s) => Value::String(s.clone()),
        Y::Boolean(b) => Value::Bool(*b),
        Y::Array(a) => Value::Array(a.iter().map(yaml_to_json).collect()),
        Y::Hash(h) => Value::Object(
            h.iter()
                .map(|(k, v)| {
                    let key = match k {
                        Y::String(s) => s.clone(),
                        Y::Integer(i) => i.to_string(),
                        Y::Boolean(b) => b.to_string(),
                        Y::Real(r) => r.clone(),
                        _ => String::new(),
                    };
                    (key, yaml_to_json(v))
                })
                .collect(),
        ),
        Y::Alias(_) | Y::Null | Y::BadValue => Value::Null,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sections_defaults_and_errors() {
        let c = Config::parse("", Path::new("/etc/kmswatch")).unwrap();
        assert_eq!(c.rules.paths, vec![PathBuf::from("rules")]);

        let c = Config::parse(
            "normalize: {human_role_patterns: [Admin*]}\nrules:\n  paths: [r]\n  inventory_path: inv.csv\n  lateness_secs: 60\n",
            Path::new("/etc/kmswatch"),
        )
        .unwrap();
        assert_eq!(c.rules.paths, vec![PathBuf::from("/etc/kmswatch/r")]);
        assert_eq!(c.rules.engine.lateness_secs, 60);
        assert_eq!(
            c.rules.engine.inventory_path,
            Some(PathBuf::from("/etc/kmswatch/inv.csv"))
        );
        assert_eq!(c.normalize.human_role_patterns, vec!["Admin*".to_string()]);

        let e = Config::parse("rules: {latenes_secs: 5}\n", Path::new(".")).unwrap_err();
        assert!(e.to_string().contains("latenes_secs"), "{e}");
        let e = Config::parse("sinkz: []\n", Path::new(".")).unwrap_err();
        assert!(e.to_string().contains("sinkz"), "{e}");
    }

    #[test]
    fn env_interpolation() {
        std::env::set_var("KMSWATCH_TEST_ROLE", "Breakglass");
        let c = Config::parse(
            "normalize: {human_role_patterns: [\"${KMSWATCH_TEST_ROLE}*\"]}\n",
            Path::new("."),
        )
        .unwrap();
        assert_eq!(
            c.normalize.human_role_patterns,
            vec!["Breakglass*".to_string()]
        );
        let e = Config::parse(
            "normalize: {human_role_patterns: [\"${KMSWATCH_TEST_UNSET_VAR}\"]}\n",
            Path::new("."),
        )
        .unwrap_err();
        assert!(e.to_string().contains("KMSWATCH_TEST_UNSET_VAR"));
    }
}

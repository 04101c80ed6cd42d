//! The chart's alerts and dashboard as data, for tests/packaging.rs (promtool on the rendered
//! rules) and tests/e2e/monitoring.rs (every metric they query is one the operator exports):
//! rendering the PrometheusRule, reading the dashboard JSON, a small PromQL tokenizer and an
//! OpenMetrics reader.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::process::Command;

/// The release the rules are rendered as; the series in charts/azureml-attach/tests/alerts-test.yaml
/// carry its job (`<release>-metrics`) and namespace.
pub const RELEASE: &str = "azureml-attach";
/// Its namespace.
pub const NAMESPACE: &str = "azureml-attach-system";

pub fn chart() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("charts/azureml-attach")
}

/// The PrometheusRule the chart renders for [`RELEASE`] with `prometheusRule.enabled=true`
/// (`helm` is the helm binary's command, e.g. `TestEnv::helm()`).
pub fn render_prometheus_rule(mut helm: Command) -> serde_yaml::Value {
    let out = helm
        .args(["template", RELEASE])
        .arg(chart())
        .args(["--namespace", NAMESPACE])
        .args(["--set", "prometheusRule.enabled=true"])
        .args(["--show-only", "templates/prometheusrule.yaml"])
        .output()
        .expect("running helm template");
    assert!(
        out.status.success(),
        "helm template --set prometheusRule.enabled=true failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let rule: serde_yaml::Value = serde_yaml::from_slice(&out.stdout).expect("PrometheusRule YAML");
    assert_eq!(rule["kind"], "PrometheusRule");
    rule
}

/// Every alerting rule of a PrometheusRule (or of a rules file: `spec` is its content).
pub fn alerts(rule: &serde_yaml::Value) -> Vec<&serde_yaml::Value> {
    rule["spec"]["groups"]
        .as_sequence()
        .expect("spec.groups")
        .iter()
        .flat_map(|g| g["rules"].as_sequence().expect("rules"))
        .filter(|r| r["alert"].is_string())
        .collect()
}

/// The dashboard JSON files of the chart (`dashboards/*.json`), by file name.
pub fn dashboards() -> BTreeMap<String, serde_json::Value> {
    let dir = chart().join("dashboards");
    std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .map(|p| {
            let text = std::fs::read_to_string(&p).unwrap();
            let json = serde_json::from_str(&text)
                .unwrap_or_else(|e| panic!("{}: invalid JSON: {e}", p.display()));
            (p.file_name().unwrap().to_string_lossy().into_owned(), json)
        })
        .collect()
}

/// Every PromQL query of a dashboard, named by its panel (or variable): the panels' targets
/// and the variables' `label_values(<selector>, <label>)` selectors.
pub fn dashboard_queries(dashboard: &serde_json::Value) -> Vec<(String, String)> {
    let mut queries = Vec::new();
    for panel in dashboard["panels"].as_array().into_iter().flatten() {
        for target in panel["targets"].as_array().into_iter().flatten() {
            if let Some(expr) = target["expr"].as_str() {
                queries.push((
                    panel["title"].as_str().unwrap_or("?").to_owned(),
                    expr.to_owned(),
                ));
            }
        }
    }
    for var in dashboard["templating"]["list"]
        .as_array()
        .into_iter()
        .flatten()
    {
        let query = var["query"]["query"]
            .as_str()
            .or_else(|| var["query"].as_str());
        if var["type"] == "query"
            && let Some(q) = query
        {
            let selector = q
                .strip_prefix("label_values(")
                .and_then(|rest| rest.rsplit_once(','))
                .map_or(q, |(selector, _label)| selector);
            queries.push((format!("variable {}", var["name"]), selector.to_owned()));
        }
    }
    queries
}

/// What a PromQL expression refers to.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Refs {
    /// Metric names (bare identifiers that are not functions, aggregations or keywords).
    pub metrics: BTreeSet<String>,
    /// Label names in `{…}` matchers and `by`/`without`/`on`/`ignoring`/`group_*` lists.
    pub labels: BTreeSet<String>,
}

const AGGREGATIONS: &[&str] = &[
    "sum",
    "min",
    "max",
    "avg",
    "group",
    "stddev",
    "stdvar",
    "count",
    "count_values",
    "bottomk",
    "topk",
    "quantile",
    "limitk",
    "limit_ratio",
];
const GROUPING: &[&str] = &[
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
];
const KEYWORDS: &[&str] = &[
    "and", "or", "unless", "bool", "offset", "inf", "nan", "atan2",
];

/// Tokenizes `expr` just enough to tell metric names from functions and labels: strings,
/// `[ranges]`, `$variables` and numbers are skipped; an identifier followed by `(` is a function.
pub fn refs(expr: &str) -> Refs {
    let chars: Vec<char> = expr.chars().collect();
    let mut refs = Refs::default();
    let mut i = 0;
    let ident_start = |c: char| c.is_ascii_alphabetic() || c == '_' || c == ':';
    let ident_char = |c: char| c.is_ascii_alphanumeric() || c == '_' || c == ':';
    let skip_string = |i: &mut usize| {
        let quote = chars[*i];
        *i += 1;
        while *i < chars.len() && chars[*i] != quote {
            if chars[*i] == '\\' {
                *i += 1;
            }
            *i += 1;
        }
        *i += 1;
    };
    let ident = |i: &mut usize| -> String {
        let start = *i;
        while *i < chars.len() && ident_char(chars[*i]) {
            *i += 1;
        }
        chars[start..*i].iter().collect()
    };
    let next_non_space = |mut j: usize| {
        while j < chars.len() && chars[j].is_whitespace() {
            j += 1;
        }
        (j, chars.get(j).copied())
    };
    while i < chars.len() {
        let c = chars[i];
        match c {
            '"' | '\'' | '`' => skip_string(&mut i),
            '[' => {
                while i < chars.len() && chars[i] != ']' {
                    i += 1;
                }
                i += 1;
            }
            '$' => {
                i += 1;
                while i < chars.len() && (ident_char(chars[i]) || "{}".contains(chars[i])) {
                    i += 1;
                }
            }
            '{' => {
                // Matchers: label op "value", …
                i += 1;
                while i < chars.len() && chars[i] != '}' {
                    if ident_start(chars[i]) {
                        refs.labels.insert(ident(&mut i));
                    } else if "\"'`".contains(chars[i]) {
                        skip_string(&mut i);
                    } else {
                        i += 1;
                    }
                }
                i += 1;
            }
            c if c.is_ascii_digit() || c == '.' => {
                while i < chars.len() && (chars[i].is_ascii_alphanumeric() || chars[i] == '.') {
                    i += 1;
                }
            }
            c if ident_start(c) => {
                let word = ident(&mut i);
                let (j, next) = next_non_space(i);
                if GROUPING.contains(&word.as_str()) {
                    if next == Some('(') {
                        i = j + 1;
                        while i < chars.len() && chars[i] != ')' {
                            if ident_start(chars[i]) {
                                refs.labels.insert(ident(&mut i));
                            } else {
                                i += 1;
                            }
                        }
                        i += 1;
                    }
                } else if AGGREGATIONS.contains(&word.as_str())
                    || KEYWORDS.contains(&word.as_str())
                    || next == Some('(')
                {
                    // A function, an aggregation or an operator keyword.
                } else {
                    refs.metrics.insert(word);
                }
            }
            _ => i += 1,
        }
    }
    refs
}

/// Sample names of an OpenMetrics/Prometheus text exposition with the label names seen on each.
/// (prometheus-client leaves out a family until it has a sample, so `# TYPE` lines are no proof.)
pub fn exposition(text: &str) -> BTreeMap<String, BTreeSet<String>> {
    let mut samples: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for line in text
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
    {
        let end = line.find(['{', ' ']).unwrap_or(line.len());
        let labels = samples.entry(line[..end].to_owned()).or_default();
        if line[end..].starts_with('{') {
            let inner = &line[end + 1..];
            let mut rest = inner;
            while let Some(eq) = rest.find("=\"") {
                labels.insert(rest[..eq].trim_start_matches(',').trim().to_owned());
                // Skip the quoted value (with escapes).
                let value = &rest[eq + 2..];
                let mut k = 0;
                let bytes = value.as_bytes();
                while k < bytes.len() && bytes[k] != b'"' {
                    k += if bytes[k] == b'\\' { 2 } else { 1 };
                }
                rest = &value[(k + 1).min(value.len())..];
                if rest.starts_with('}') {
                    break;
                }
            }
        }
    }
    samples
}

#[test]
fn refs_tell_metrics_from_functions_labels_and_variables() {
    let r = refs(
        r#"histogram_quantile(0.95, sum by (kind, le) (rate(azureml_attach_reconcile_duration_seconds_bucket{job=~"$job", state!~"A|B"}[$__rate_interval]))) > 0 or vector(0)"#,
    );
    assert_eq!(
        r.metrics,
        BTreeSet::from(["azureml_attach_reconcile_duration_seconds_bucket".to_owned()])
    );
    assert_eq!(
        r.labels,
        ["kind", "le", "job", "state"]
            .into_iter()
            .map(String::from)
            .collect()
    );
    let r = refs(r#"absent(up{job="x"} == 1) and on (namespace) min by (class) (a_b) offset 5m"#);
    assert_eq!(
        r.metrics,
        ["up", "a_b"].into_iter().map(String::from).collect()
    );
    assert_eq!(
        r.labels,
        ["job", "namespace", "class"]
            .into_iter()
            .map(String::from)
            .collect()
    );
}

#[test]
fn exposition_reads_sample_names_and_label_names() {
    let text = "# HELP x_total X.\n# TYPE x counter\nx_total{kind=\"A\",reason=\"a \\\"q\\\", b\"} 1\n\
                y 2\n# TYPE z gauge\n# EOF\n";
    let e = exposition(text);
    assert_eq!(e.keys().collect::<Vec<_>>(), ["x_total", "y"]);
    assert_eq!(
        e["x_total"],
        ["kind", "reason"].into_iter().map(String::from).collect()
    );
    assert!(e["y"].is_empty());
}

//! The operator image three ways: the Dockerfile's runtime stage, the daemonless recipe
//! (hack/build-image.sh, `make image`) and a built OCI archive. Shared by tests/packaging.rs
//! (Dockerfile = recipe) and tests/node (the archive the kubelet runs = Dockerfile).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

/// What a user of the image relies on.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ImageSpec {
    /// `65532:65532`.
    pub user: String,
    /// The entrypoint, e.g. `["/usr/local/bin/azureml-attach", "run"]`.
    pub entrypoint: Vec<String>,
    /// Exposed ports as `PORT/PROTO`.
    pub exposed: Vec<String>,
    /// Where the operator binary is.
    pub binary: String,
    /// OCI labels.
    pub labels: BTreeMap<String, String>,
}

pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Lines of `text` with backslash continuations joined.
fn logical_lines(text: &str) -> Vec<String> {
    let mut lines = Vec::new();
    let mut current = String::new();
    for line in text.lines() {
        let trimmed = line.trim_end();
        if let Some(stripped) = trimmed.strip_suffix('\\') {
            current.push_str(stripped);
            current.push(' ');
        } else {
            current.push_str(trimmed);
            lines.push(std::mem::take(&mut current));
        }
    }
    lines
}

/// `k="v" k2="v2"` (the Dockerfile's LABEL syntax, values double-quoted).
fn parse_labels(text: &str, labels: &mut BTreeMap<String, String>) {
    let mut rest = text.trim();
    while let Some(eq) = rest.find('=') {
        let key = rest[..eq].trim().to_string();
        let after = &rest[eq + 1..];
        let after = after.strip_prefix('"').expect("LABEL values are quoted");
        let end = after.find('"').expect("closing quote");
        labels.insert(key, after[..end].to_string());
        rest = after[end + 1..].trim_start();
    }
}

/// The last stage of the Dockerfile: its USER, ENTRYPOINT, EXPOSE, LABELs and the COPY of the
/// binary, plus its base image.
pub fn dockerfile_runtime() -> (String, ImageSpec) {
    let text = std::fs::read_to_string(repo().join("Dockerfile")).expect("Dockerfile");
    let lines = logical_lines(&text);
    let last_from = lines
        .iter()
        .rposition(|l| l.starts_with("FROM "))
        .expect("FROM");
    let base = lines[last_from]
        .split_whitespace()
        .nth(1)
        .unwrap()
        .to_string();
    let mut spec = ImageSpec::default();
    for line in &lines[last_from + 1..] {
        let (instruction, args) = line.split_once(' ').unwrap_or((line, ""));
        match instruction {
            "USER" => spec.user = args.trim().to_string(),
            "ENTRYPOINT" => spec.entrypoint = serde_json::from_str(args.trim()).expect("exec form"),
            "EXPOSE" => {
                spec.exposed = args
                    .split_whitespace()
                    .map(|p| {
                        if p.contains('/') {
                            p.to_string()
                        } else {
                            format!("{p}/tcp")
                        }
                    })
                    .collect()
            }
            "COPY" => spec.binary = args.split_whitespace().last().unwrap().to_string(),
            "LABEL" => parse_labels(args, &mut spec.labels),
            _ => {}
        }
    }
    (base, spec)
}

/// The recipe's declarations in hack/build-image.sh (`IMAGE_*=`).
pub fn recipe() -> ImageSpec {
    let text = std::fs::read_to_string(repo().join("hack/build-image.sh")).expect("recipe");
    let scalar = |name: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(&format!("{name}=")))
            .unwrap_or_else(|| panic!("{name} in hack/build-image.sh"))
            .trim()
            .to_string()
    };
    let array = |name: &str| -> Vec<String> {
        let start = text
            .find(&format!("{name}=("))
            .unwrap_or_else(|| panic!("{name} in hack/build-image.sh"))
            + name.len()
            + 2;
        let end = start + text[start..].find(')').unwrap();
        let body = &text[start..end];
        let mut items = Vec::new();
        let mut rest = body.trim();
        while !rest.is_empty() {
            if let Some(quoted) = rest.strip_prefix('"') {
                let close = quoted.find('"').unwrap();
                items.push(quoted[..close].to_string());
                rest = quoted[close + 1..].trim_start();
            } else {
                let word_end = rest.find(char::is_whitespace).unwrap_or(rest.len());
                items.push(rest[..word_end].to_string());
                rest = rest[word_end..].trim_start();
            }
        }
        items
    };
    let mut labels = BTreeMap::new();
    for label in array("IMAGE_LABELS") {
        let (k, v) = label.split_once('=').unwrap();
        labels.insert(k.to_string(), v.to_string());
    }
    ImageSpec {
        user: scalar("IMAGE_USER"),
        entrypoint: array("IMAGE_ENTRYPOINT"),
        exposed: vec![scalar("IMAGE_EXPOSE")],
        binary: scalar("IMAGE_BINARY"),
        labels,
    }
}

/// A built archive: its config as an [`ImageSpec`] (binary = the entrypoint's program if the
/// layer holds it) and the layer's entries as `(path, mode string, owner)`.
pub fn archive(path: &Path) -> (ImageSpec, Vec<(String, String, String)>) {
    let dir = tempdir(path);
    let status = Command::new("tar")
        .arg("-xf")
        .arg(path)
        .arg("-C")
        .arg(&dir)
        .status()
        .unwrap();
    assert!(status.success(), "untar {}", path.display());
    let blob = |digest: &str| {
        dir.join("blobs/sha256")
            .join(digest.trim_start_matches("sha256:"))
    };
    let json = |p: PathBuf| -> serde_json::Value {
        serde_json::from_slice(&std::fs::read(&p).unwrap()).unwrap()
    };
    let index = json(dir.join("index.json"));
    let manifest = json(blob(index["manifests"][0]["digest"].as_str().unwrap()));
    let config = json(blob(manifest["config"]["digest"].as_str().unwrap()));
    let c = &config["config"];
    let strings = |v: &serde_json::Value| -> Vec<String> {
        v.as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|s| s.as_str().map(String::from))
                    .collect()
            })
            .unwrap_or_default()
    };
    let mut entries = Vec::new();
    for layer in manifest["layers"].as_array().unwrap() {
        let out = Command::new("tar")
            .arg("-tvzf")
            .arg(blob(layer["digest"].as_str().unwrap()))
            .output()
            .unwrap();
        assert!(out.status.success(), "listing a layer");
        for line in String::from_utf8_lossy(&out.stdout).lines() {
            let fields: Vec<&str> = line.split_whitespace().collect();
            if fields.len() >= 6 {
                let name = fields[5..].join(" ");
                let name = format!("/{}", name.trim_start_matches("./").trim_end_matches('/'));
                entries.push((name, fields[0].to_string(), fields[1].to_string()));
            }
        }
    }
    let entrypoint = strings(&c["Entrypoint"]);
    let mut exposed: Vec<String> = c["ExposedPorts"]
        .as_object()
        .map(|o| o.keys().cloned().collect())
        .unwrap_or_default();
    exposed.sort();
    let labels = c["Labels"]
        .as_object()
        .map(|o| {
            o.iter()
                .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string()))
                .collect()
        })
        .unwrap_or_default();
    let binary = entrypoint
        .first()
        .filter(|b| entries.iter().any(|(p, _, _)| p == *b))
        .cloned()
        .unwrap_or_default();
    let _ = std::fs::remove_dir_all(&dir);
    (
        ImageSpec {
            user: c["User"].as_str().unwrap_or_default().to_string(),
            entrypoint,
            exposed,
            binary,
            labels,
        },
        entries,
    )
}

fn tempdir(path: &Path) -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "azureml-attach-image-{}-{}",
        std::process::id(),
        path.file_name().unwrap().to_string_lossy()
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

//! The scenario's output: one `INVARIANT <name>: ok|VIOLATED (details)` line per invariant,
//! `CHAOS <figure>` lines with the measurements, and a summary line.

#[derive(Default)]
pub struct Report {
    invariants: Vec<(String, Option<String>)>,
}

impl Report {
    /// Records and prints an invariant; `violation` is `None` when it holds.
    pub fn invariant(&mut self, name: &str, violation: Option<String>) {
        match &violation {
            None => println!("INVARIANT {name}: ok"),
            Some(d) => println!("INVARIANT {name}: VIOLATED ({d})"),
        }
        self.invariants.push((name.to_owned(), violation));
    }

    /// `ok` when `bad` is empty, else the first few entries and the count.
    pub fn invariant_list(&mut self, name: &str, bad: &[String]) {
        self.invariant(name, summarize(bad));
    }

    pub fn violated(&self) -> Vec<&(String, Option<String>)> {
        self.invariants
            .iter()
            .filter(|(_, v)| v.is_some())
            .collect()
    }

    pub fn summary(&self) {
        let bad = self.violated();
        println!(
            "CHAOS SUMMARY: {} invariants, {} ok, {} violated{}",
            self.invariants.len(),
            self.invariants.len() - bad.len(),
            bad.len(),
            if bad.is_empty() {
                String::new()
            } else {
                format!(
                    ": {}",
                    bad.iter()
                        .map(|(n, _)| n.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                )
            }
        );
    }
}

pub fn summarize(bad: &[String]) -> Option<String> {
    if bad.is_empty() {
        return None;
    }
    let shown: Vec<&str> = bad.iter().take(8).map(String::as_str).collect();
    let more = bad.len().saturating_sub(shown.len());
    Some(if more > 0 {
        format!("{} of them: {}; … {more} more", bad.len(), shown.join("; "))
    } else {
        format!("{} of them: {}", bad.len(), shown.join("; "))
    })
}

/// Prints a figure line.
pub fn figure(text: impl AsRef<str>) {
    println!("CHAOS {}", text.as_ref());
}

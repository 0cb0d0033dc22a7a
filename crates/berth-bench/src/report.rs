//! The results of one scenario: a text table for people, JSON for scripts.

use std::fmt::Write as _;

use serde_json::{Value, json};

use crate::stats::{Sample, median, ratios, summary};

pub struct EndpointResult {
    pub name: String,
    pub url: String,
    pub runtime: String,
    pub samples: Vec<Sample>,
}

impl EndpointResult {
    fn values(&self, metric: &str) -> Vec<f64> {
        self.samples.iter().filter_map(|s| s.get(metric)).collect()
    }
}

pub struct Report {
    pub scenario: &'static str,
    pub title: String,
    pub date: String,
    pub runs: usize,
    pub warmup: usize,
    pub endpoints: Vec<EndpointResult>,
}

impl Report {
    fn metrics(&self) -> Vec<&'static str> {
        self.endpoints
            .iter()
            .find_map(|e| e.samples.first())
            .map(Sample::names)
            .unwrap_or_default()
    }

    /// First endpoint over second, run i against run i.
    fn pair_ratios(&self, metric: &str) -> Option<Vec<f64>> {
        match self.endpoints.as_slice() {
            [a, b] => Some(ratios(&a.values(metric), &b.values(metric))),
            _ => None,
        }
    }

    pub fn text(&self) -> String {
        let mut out = String::new();
        let names: Vec<_> = self.endpoints.iter().map(|e| e.name.as_str()).collect();
        let _ = writeln!(out, "== {}: {}", self.scenario, self.title);
        let _ = writeln!(
            out,
            "   {} runs each after {} warm-up, alternating {}; {}; ms: median (min–max)",
            self.runs,
            self.warmup,
            names.join(" "),
            self.date
        );
        let metrics = self.metrics();
        for e in &self.endpoints {
            let _ = write!(out, "   {:<12}", e.name);
            for m in &metrics {
                if let Some(s) = summary(&e.values(m)) {
                    let _ = write!(out, "  {m} {:.1} ({:.1}–{:.1})", s.median, s.min, s.max);
                }
            }
            let _ = writeln!(out, "   [{}]", e.runtime);
        }
        if let ([a, b], Some(head)) = (self.endpoints.as_slice(), metrics.first()) {
            let pairs = self.pair_ratios(head).unwrap_or_default();
            let list: Vec<_> = pairs.iter().map(|r| format!("{r:.2}")).collect();
            let _ = writeln!(
                out,
                "   {}/{} {head} pair by pair: {}",
                a.name,
                b.name,
                list.join(" ")
            );
            let _ = write!(out, "   median ratio {}/{}:", a.name, b.name);
            for m in &metrics {
                if let Some(r) = self.pair_ratios(m).as_deref().and_then(median) {
                    let _ = write!(out, "  {m} {r:.2}");
                }
            }
            out.push('\n');
        }
        out
    }

    pub fn json(&self) -> Value {
        let metrics = self.metrics();
        let endpoints: Vec<Value> = self
            .endpoints
            .iter()
            .map(|e| {
                let samples: Vec<Value> = e
                    .samples
                    .iter()
                    .map(|s| Value::Object(s.0.iter().map(|(k, v)| (k.to_string(), json!(v))).collect()))
                    .collect();
                let summaries: serde_json::Map<String, Value> = metrics
                    .iter()
                    .filter_map(|m| {
                        summary(&e.values(m)).map(|s| {
                            (
                                m.to_string(),
                                json!({"median": s.median, "min": s.min, "max": s.max}),
                            )
                        })
                    })
                    .collect();
                json!({
                    "name": e.name, "url": e.url, "runtime": e.runtime,
                    "samples_ms": samples, "summary_ms": summaries,
                })
            })
            .collect();
        let ratio = match self.endpoints.as_slice() {
            [a, b] => {
                let per_metric: serde_json::Map<String, Value> = metrics
                    .iter()
                    .filter_map(|m| {
                        let pairs = self.pair_ratios(m)?;
                        Some((m.to_string(), json!({"pairs": pairs, "median": median(&pairs)})))
                    })
                    .collect();
                json!({"numerator": a.name, "denominator": b.name, "metrics": per_metric})
            }
            _ => Value::Null,
        };
        json!({
            "scenario": self.scenario, "title": self.title, "date": self.date,
            "runs": self.runs, "warmup": self.warmup,
            "endpoints": endpoints, "ratio": ratio,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(total: f64, run: f64) -> Sample {
        Sample(vec![("total", total), ("run", run)])
    }

    fn report() -> Report {
        Report {
            scenario: "pod",
            title: "t".into(),
            date: "2026-11-30".into(),
            runs: 3,
            warmup: 1,
            endpoints: vec![
                EndpointResult {
                    name: "a".into(),
                    url: "unix:///a".into(),
                    runtime: "a 1".into(),
                    samples: vec![sample(10.0, 5.0), sample(20.0, 6.0), sample(30.0, 7.0)],
                },
                EndpointResult {
                    name: "b".into(),
                    url: "unix:///b".into(),
                    runtime: "b 2".into(),
                    samples: vec![sample(20.0, 10.0), sample(20.0, 12.0), sample(10.0, 14.0)],
                },
            ],
        }
    }

    #[test]
    fn ratios_are_pairwise_and_their_median_is_reported() {
        let j = report().json();
        let total = &j["ratio"]["metrics"]["total"];
        assert_eq!(total["pairs"], json!([0.5, 1.0, 3.0]));
        assert_eq!(total["median"], json!(1.0));
        assert_eq!(j["ratio"]["metrics"]["run"]["median"], json!(0.5));
        assert_eq!(
            j["endpoints"][0]["summary_ms"]["total"],
            json!({"median": 20.0, "min": 10.0, "max": 30.0})
        );
        assert_eq!(
            j["endpoints"][1]["samples_ms"][2],
            json!({"total": 10.0, "run": 14.0})
        );
    }

    #[test]
    fn text_names_both_endpoints_and_the_pairs() {
        let t = report().text();
        assert!(t.contains("a/b total pair by pair: 0.50 1.00 3.00"), "{t}");
        assert!(t.contains("median ratio a/b:  total 1.00  run 0.50"), "{t}");
        assert!(t.contains("total 20.0 (10.0–30.0)"), "{t}");
    }

    #[test]
    fn one_endpoint_has_no_ratio() {
        let mut r = report();
        r.endpoints.pop();
        assert_eq!(r.json()["ratio"], Value::Null);
        assert!(!r.text().contains("ratio"));
    }
}

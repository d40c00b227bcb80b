//! Prometheus metrics in the text exposition format, kept with atomics
//! (no registry crate: the set is small and fixed).
//!
//! Why nothing personal: labels are route *templates*
//! (`/v1/tenants/{tenant}/search`), methods, status codes, problem kinds and
//! ingest outcomes — never a tenant, a user, an address, a query or a
//! message id — so the metrics endpoint can be scraped without
//! authentication and its data kept without a retention plan.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Upper bounds (seconds) of the latency histogram buckets.
const BUCKETS: [f64; 14] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

/// A latency histogram with fixed buckets.
#[derive(Debug, Default)]
pub struct Histogram {
    buckets: [AtomicU64; BUCKETS.len()],
    count: AtomicU64,
    sum_micros: AtomicU64,
}

impl Histogram {
    /// Records one observation.
    pub fn observe(&self, d: Duration) {
        let s = d.as_secs_f64();
        for (i, le) in BUCKETS.iter().enumerate() {
            if s <= *le {
                self.buckets[i].fetch_add(1, Ordering::Relaxed);
            }
        }
        self.count.fetch_add(1, Ordering::Relaxed);
        self.sum_micros.fetch_add(
            u64::try_from(d.as_micros()).unwrap_or(u64::MAX),
            Ordering::Relaxed,
        );
    }

    fn render(&self, out: &mut String, name: &str, labels: &str) {
        let sep = if labels.is_empty() { "" } else { "," };
        for (i, le) in BUCKETS.iter().enumerate() {
            let _ = writeln!(
                out,
                "{name}_bucket{{{labels}{sep}le=\"{le}\"}} {}",
                self.buckets[i].load(Ordering::Relaxed)
            );
        }
        let count = self.count.load(Ordering::Relaxed);
        let _ = writeln!(out, "{name}_bucket{{{labels}{sep}le=\"+Inf\"}} {count}");
        let sum = self.sum_micros.load(Ordering::Relaxed) as f64 / 1e6;
        let braces = if labels.is_empty() {
            String::new()
        } else {
            format!("{{{labels}}}")
        };
        let _ = writeln!(out, "{name}_sum{braces} {sum}");
        let _ = writeln!(out, "{name}_count{braces} {count}");
    }
}

/// Outcome of one HTTP ingest.
#[derive(Debug, Clone, Copy)]
pub enum IngestOutcome {
    /// Stored as a new message.
    Stored,
    /// Same bytes as a stored message of the tenant.
    Duplicate,
    /// Refused by the engine (empty, not a message, too large).
    Refused,
}

/// The server's metrics.
#[derive(Debug, Default)]
pub struct Metrics {
    requests: Mutex<BTreeMap<(String, String, u16), u64>>,
    latency: Mutex<BTreeMap<String, std::sync::Arc<Histogram>>>,
    problems: Mutex<BTreeMap<&'static str, u64>>,
    ingest_stored: AtomicU64,
    ingest_duplicate: AtomicU64,
    ingest_refused: AtomicU64,
    ingest_bytes: AtomicU64,
    ingest_latency: Histogram,
    search_latency: Histogram,
    rate_limited: AtomicU64,
}

impl Metrics {
    /// Counts a finished request by route template, method and status.
    pub fn request(&self, route: &str, method: &str, status: u16, took: Duration) {
        if let Ok(mut m) = self.requests.lock() {
            *m.entry((route.to_string(), method.to_string(), status))
                .or_default() += 1;
        }
        let h = self.latency.lock().ok().map(|mut m| {
            m.entry(route.to_string())
                .or_insert_with(Default::default)
                .clone()
        });
        if let Some(h) = h {
            h.observe(took);
        }
    }

    /// Counts a problem response by kind.
    pub fn problem(&self, slug: &'static str) {
        if let Ok(mut m) = self.problems.lock() {
            *m.entry(slug).or_default() += 1;
        }
    }

    /// Records an ingest.
    pub fn ingest(&self, outcome: IngestOutcome, bytes: usize, took: Duration) {
        let c = match outcome {
            IngestOutcome::Stored => &self.ingest_stored,
            IngestOutcome::Duplicate => &self.ingest_duplicate,
            IngestOutcome::Refused => &self.ingest_refused,
        };
        c.fetch_add(1, Ordering::Relaxed);
        if !matches!(outcome, IngestOutcome::Refused) {
            self.ingest_bytes.fetch_add(bytes as u64, Ordering::Relaxed);
        }
        self.ingest_latency.observe(took);
    }

    /// Records a search's engine time.
    pub fn search(&self, took: Duration) {
        self.search_latency.observe(took);
    }

    /// Counts a request refused by the rate limiter.
    pub fn rate_limited(&self) {
        self.rate_limited.fetch_add(1, Ordering::Relaxed);
    }

    /// The Prometheus text exposition.
    pub fn render(&self) -> String {
        let mut out = String::new();
        out.push_str("# HELP ama_http_requests_total HTTP requests by route template, method and status.\n# TYPE ama_http_requests_total counter\n");
        if let Ok(m) = self.requests.lock() {
            for ((route, method, status), n) in m.iter() {
                let _ = writeln!(
                    out,
                    "ama_http_requests_total{{route=\"{}\",method=\"{}\",status=\"{status}\"}} {n}",
                    escape(route),
                    escape(method)
                );
            }
        }
        out.push_str("# HELP ama_http_request_duration_seconds Time to the response head, by route template.\n# TYPE ama_http_request_duration_seconds histogram\n");
        if let Ok(m) = self.latency.lock() {
            for (route, h) in m.iter() {
                h.render(
                    &mut out,
                    "ama_http_request_duration_seconds",
                    &format!("route=\"{}\"", escape(route)),
                );
            }
        }
        out.push_str("# HELP ama_http_problems_total Error responses by problem type.\n# TYPE ama_http_problems_total counter\n");
        if let Ok(m) = self.problems.lock() {
            for (slug, n) in m.iter() {
                let _ = writeln!(out, "ama_http_problems_total{{type=\"{slug}\"}} {n}");
            }
        }
        out.push_str("# HELP ama_ingest_messages_total Messages ingested over HTTP by outcome.\n# TYPE ama_ingest_messages_total counter\n");
        for (o, c) in [
            ("stored", &self.ingest_stored),
            ("duplicate", &self.ingest_duplicate),
            ("refused", &self.ingest_refused),
        ] {
            let _ = writeln!(
                out,
                "ama_ingest_messages_total{{outcome=\"{o}\"}} {}",
                c.load(Ordering::Relaxed)
            );
        }
        let _ = writeln!(
            out,
            "# HELP ama_ingest_bytes_total Bytes of messages accepted over HTTP.\n# TYPE ama_ingest_bytes_total counter\nama_ingest_bytes_total {}",
            self.ingest_bytes.load(Ordering::Relaxed)
        );
        out.push_str("# HELP ama_ingest_duration_seconds Engine time of one HTTP ingest (durable on return).\n# TYPE ama_ingest_duration_seconds histogram\n");
        self.ingest_latency
            .render(&mut out, "ama_ingest_duration_seconds", "");
        out.push_str("# HELP ama_search_duration_seconds Engine time of one search.\n# TYPE ama_search_duration_seconds histogram\n");
        self.search_latency
            .render(&mut out, "ama_search_duration_seconds", "");
        let _ = writeln!(
            out,
            "# HELP ama_http_rate_limited_total Requests refused by the per-principal rate limit.\n# TYPE ama_http_rate_limited_total counter\nama_http_rate_limited_total {}",
            self.rate_limited.load(Ordering::Relaxed)
        );
        out
    }
}

fn escape(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_counters_and_histograms() {
        let m = Metrics::default();
        m.request(
            "/v1/tenants/{tenant}/search",
            "GET",
            200,
            Duration::from_millis(3),
        );
        m.ingest(IngestOutcome::Stored, 100, Duration::from_millis(20));
        m.search(Duration::from_millis(2));
        m.problem("not-found");
        let text = m.render();
        assert!(text.contains(
            "ama_http_requests_total{route=\"/v1/tenants/{tenant}/search\",method=\"GET\",status=\"200\"} 1"
        ));
        assert!(text.contains("ama_ingest_messages_total{outcome=\"stored\"} 1"));
        assert!(text.contains("ama_search_duration_seconds_bucket{le=\"0.0025\"} 1"));
        assert!(text.contains("ama_search_duration_seconds_bucket{le=\"0.001\"} 0"));
        assert!(text.contains("ama_search_duration_seconds_count 1"));
        assert!(text.contains("ama_http_problems_total{type=\"not-found\"} 1"));
    }
}

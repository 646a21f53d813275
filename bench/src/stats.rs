//! Latency histograms (HdrHistogram, nanoseconds, 3 significant digits) and their summary.

use std::time::Duration;

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

/// Highest latency a histogram records: longer ones are clamped to it (and counted).
pub const MAX_LATENCY: Duration = Duration::from_secs(3600);

/// A latency histogram in nanoseconds.
#[derive(Debug, Clone)]
pub struct Latencies {
    hist: Histogram<u64>,
    clamped: u64,
}

impl Default for Latencies {
    fn default() -> Self {
        Latencies {
            hist: Histogram::new_with_bounds(1, MAX_LATENCY.as_nanos() as u64, 3)
                .expect("valid histogram bounds"),
            clamped: 0,
        }
    }
}

impl Latencies {
    /// Records one latency.
    pub fn record(&mut self, latency: Duration) {
        self.record_n(latency, 1);
    }

    /// Records `n` requests or records of the same latency.
    pub fn record_n(&mut self, latency: Duration, n: u64) {
        let mut ns = latency.as_nanos().max(1) as u64;
        if ns > self.hist.high() {
            ns = self.hist.high();
            self.clamped += n;
        }
        self.hist.record_n(ns, n).expect("value within bounds");
    }

    /// Adds another histogram into this one.
    pub fn merge(&mut self, other: &Latencies) {
        self.hist.add(&other.hist).expect("same bounds");
        self.clamped += other.clamped;
    }

    /// Number of recorded values.
    pub fn len(&self) -> u64 {
        self.hist.len()
    }

    /// True if nothing was recorded.
    pub fn is_empty(&self) -> bool {
        self.hist.is_empty()
    }

    /// Empties the histogram.
    pub fn reset(&mut self) {
        self.hist.reset();
        self.clamped = 0;
    }

    /// The value at `percentile` (0..=100), in ns.
    pub fn percentile_ns(&self, percentile: f64) -> u64 {
        self.hist.value_at_percentile(percentile)
    }

    /// The underlying histogram.
    pub fn histogram(&self) -> &Histogram<u64> {
        &self.hist
    }

    /// Count, mean and the percentiles a report shows.
    pub fn summary(&self) -> Summary {
        let ms = |ns: u64| ns as f64 / 1e6;
        Summary {
            count: self.hist.len(),
            mean_ms: self.hist.mean() / 1e6,
            p50_ms: ms(self.percentile_ns(50.0)),
            p90_ms: ms(self.percentile_ns(90.0)),
            p99_ms: ms(self.percentile_ns(99.0)),
            p999_ms: ms(self.percentile_ns(99.9)),
            p9999_ms: ms(self.percentile_ns(99.99)),
            max_ms: ms(self.hist.max()),
            clamped: self.clamped,
        }
    }

    /// The histogram in HdrHistogram's V2 compressed format, base64 (as in interval logs),
    /// so that results files carry the full distribution.
    pub fn encode(&self) -> String {
        let mut bytes = Vec::new();
        hdrhistogram::serialization::V2DeflateSerializer::new()
            .serialize(&self.hist, &mut bytes)
            .expect("serializing into memory");
        base64_encode(&bytes)
    }

    /// Decodes [`Latencies::encode`]'s output.
    pub fn decode(text: &str) -> Result<Latencies, String> {
        let bytes = base64_decode(text).ok_or("histogram: bad base64")?;
        let hist: Histogram<u64> = hdrhistogram::serialization::Deserializer::new()
            .deserialize(&mut &bytes[..])
            .map_err(|e| format!("histogram: {e:?}"))?;
        let mut out = Latencies::default();
        out.hist.add(&hist).map_err(|e| format!("histogram: {e:?}"))?;
        Ok(out)
    }
}

use base64::Engine as _;
use hdrhistogram::serialization::Serializer as _;

fn base64_encode(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

fn base64_decode(text: &str) -> Option<Vec<u8>> {
    base64::engine::general_purpose::STANDARD.decode(text.trim()).ok()
}

/// A latency distribution in milliseconds, as reports show it.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    /// Recorded values.
    pub count: u64,
    /// Mean.
    pub mean_ms: f64,
    /// Median.
    pub p50_ms: f64,
    /// 90th percentile.
    pub p90_ms: f64,
    /// 99th percentile.
    pub p99_ms: f64,
    /// 99.9th percentile.
    pub p999_ms: f64,
    /// 99.99th percentile.
    pub p9999_ms: f64,
    /// Largest.
    pub max_ms: f64,
    /// Values above the histogram's range, recorded as its maximum (one hour).
    pub clamped: u64,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schedule::{latency, Schedule};

    #[test]
    fn merging_equals_recording_everything_in_one() {
        let mut all = Latencies::default();
        let mut parts = vec![Latencies::default(), Latencies::default(), Latencies::default()];
        for i in 0..30_000u64 {
            let d = Duration::from_micros(1 + (i * 7919) % 50_000);
            all.record(d);
            parts[(i % 3) as usize].record(d);
        }
        let mut merged = Latencies::default();
        for p in &parts {
            merged.merge(p);
        }
        assert_eq!(merged.summary(), all.summary());
        assert_eq!(merged.len(), 30_000);
    }

    #[test]
    fn histograms_round_trip_through_their_encoding() {
        let mut h = Latencies::default();
        for i in 1..5000u64 {
            h.record(Duration::from_nanos(i * i));
        }
        let back = Latencies::decode(&h.encode()).expect("decode");
        assert_eq!(back.summary().p99_ms, h.summary().p99_ms);
        assert_eq!(back.len(), h.len());
        assert!(Latencies::decode("not base64!").is_err());
        assert_eq!(base64_decode(&base64_encode(b"ab")), Some(b"ab".to_vec()));
    }

    /// A simulated 1,000 requests/s open loop against a service that answers in 0.5 ms
    /// (one request at a time), except for one 1-second stall. With coordinated-omission
    /// correction, the ~1,000 requests due during the stall, and the ~1,000 queued behind
    /// them while the backlog drains, show latencies from 1 s down to 0, so the p99 of
    /// 10,000 requests is close to 1 s; measured from the actual (late) sends, the stall
    /// vanishes and p99 stays at 0.5 ms.
    #[test]
    fn a_stall_shows_in_the_corrected_percentiles() {
        let schedule = Schedule::new(1000.0);
        let service = Duration::from_micros(500);
        let stall = (Duration::from_secs(5), Duration::from_secs(6));
        let (mut corrected, mut naive) = (Latencies::default(), Latencies::default());
        let mut free_at = Duration::ZERO; // when the (single, closed) client may send again
        for i in 0..10_000 {
            let intended = schedule.at(i);
            let mut sent = intended.max(free_at);
            if sent >= stall.0 && sent < stall.1 {
                sent = stall.1; // blocked behind the stall
            }
            let done = sent + service;
            free_at = done;
            corrected.record(latency(true, intended, sent, done));
            naive.record(latency(false, intended, sent, done));
        }
        let (c, n) = (corrected.summary(), naive.summary());
        assert!(n.p99_ms < 0.6 && n.max_ms < 0.6, "uncorrected {n:?}");
        assert!(c.p50_ms < 0.6, "most requests were not affected: {c:?}");
        assert!(c.p90_ms > 100.0, "about 20 % were: {c:?}");
        assert!(c.p99_ms > 900.0 && c.p99_ms < 1001.0, "corrected p99 {c:?}");
        assert!(c.max_ms >= 999.0, "{c:?}");
    }
}

//! What a run leaves behind: a table on the terminal, a JSON result file, an HDR interval
//! log, and a self-contained HTML page with the latency percentile plot; and the side by
//! side comparison of two result files.

use std::fmt::Write as _;
use std::path::Path;

use crate::run::RunResult;
use crate::stats::{Latencies, Summary};

/// The terminal table of a run.
pub fn table(r: &RunResult) -> String {
    let mut out = String::new();
    let c = &r.config;
    let _ = writeln!(out, "target:   {}", r.target);
    let _ = writeln!(
        out,
        "workload: {:?}, {} shard(s), {} producer(s), batch {}, window {}, records {:?}, keys {:?}, {}",
        c.workload,
        c.shards,
        c.producers,
        c.batch,
        c.window,
        c.record_size,
        c.keys,
        match c.rate {
            Some(rate) => format!("open loop at {rate} records/s"),
            None => "closed loop".into(),
        }
    );
    let _ = writeln!(
        out,
        "measured: {:.1} s after {:.1} s of warm-up",
        r.seconds,
        c.warmup.as_secs_f64()
    );
    let _ = writeln!(
        out,
        "produced: {} records, {:.0} records/s, {:.2} MB/s; throttled {}, errors {}",
        r.produced.records,
        r.produce_records_per_sec,
        r.produce_mb_per_sec,
        r.produced.throttled,
        r.produced.errors
    );
    if let Some(first) = crate::target::first_error() {
        let _ = writeln!(out, "first error: {first}");
    }
    if let Some(cons) = &r.consumed {
        let _ = writeln!(
            out,
            "consumed: {} records checked, {:.0} records/s; corrupt {}, out of order {}, throttled reads {}, errors {}",
            cons.records,
            r.consume_records_per_sec.unwrap_or(cons.records as f64 / r.seconds),
            cons.corrupt,
            cons.out_of_order,
            cons.throttled_reads,
            cons.errors
        );
    }
    let put = if c.workload == crate::run::Workload::Consume {
        "put (filling)"
    } else {
        "put acknowledgement"
    };
    let mut rows = vec![(put, &r.put_latency)];
    rows.extend(r.send_lag.as_ref().map(|s| ("send lag (harness)", s)));
    rows.extend(r.e2e_latency.as_ref().map(|s| ("put to delivery", s)));
    rows.extend(r.read_latency.as_ref().map(|s| ("GetRecords call", s)));
    out.push('\n');
    out.push_str(&latency_rows(&rows));
    out
}

/// Latency summaries as the table's rows under a header: count, p50, p90, p99, p99.9,
/// p99.99, max and mean, in ms.
pub fn latency_rows(rows: &[(&str, &Summary)]) -> String {
    let mut out = format!(
        "{:<22} {:>10} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9}\n",
        "latency (ms)", "count", "p50", "p90", "p99", "p99.9", "p99.99", "max", "mean"
    );
    for (name, s) in rows {
        let _ = writeln!(
            out,
            "{name:<22} {:>10} {:>9.3} {:>9.3} {:>9.3} {:>9.3} {:>9.3} {:>9.3} {:>9.3}",
            s.count, s.p50_ms, s.p90_ms, s.p99_ms, s.p999_ms, s.p9999_ms, s.max_ms, s.mean_ms
        );
    }
    out
}

/// Writes `<base>.json`, `<base>.hlog` and `<base>.html`.
pub fn write_files(r: &RunResult, base: &Path) -> Result<Vec<std::path::PathBuf>, String> {
    if let Some(dir) = base.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    }
    let with = |ext: &str| base.with_extension(ext);
    let json = serde_json::to_string_pretty(r).map_err(|e| e.to_string())?;
    std::fs::write(with("json"), json).map_err(|e| format!("{}: {e}", with("json").display()))?;
    std::fs::write(with("hlog"), interval_log(r)?)
        .map_err(|e| format!("{}: {e}", with("hlog").display()))?;
    std::fs::write(with("html"), html(&[(label(r), r)])?)
        .map_err(|e| format!("{}: {e}", with("html").display()))?;
    Ok(vec![with("json"), with("hlog"), with("html")])
}

fn label(r: &RunResult) -> String {
    match r.config.rate {
        Some(rate) => format!("{:?} at {rate} records/s", r.config.workload),
        None => format!("{:?}, closed loop", r.config.workload),
    }
}

/// The per-second acknowledgement histograms as an HdrHistogram interval log (readable
/// by HdrHistogram's `HistogramLogProcessor` and plotters).
pub fn interval_log(r: &RunResult) -> Result<Vec<u8>, String> {
    use hdrhistogram::serialization::interval_log::IntervalLogWriterBuilder;
    let mut buf = Vec::new();
    let mut serializer = hdrhistogram::serialization::V2DeflateSerializer::new();
    {
        let mut writer = IntervalLogWriterBuilder::new()
            .add_comment(&format!("riffle-bench {}: {}", r.version, r.target))
            .add_comment("put acknowledgement latency, nanoseconds, one histogram per second")
            .with_max_value_divisor(1e6)
            .begin_log_with(&mut buf, &mut serializer)
            .map_err(|e| e.to_string())?;
        for (start, hist) in &r.intervals {
            writer
                .write_histogram(hist.histogram(), *start, std::time::Duration::from_secs(1), None)
                .map_err(|e| format!("{e:?}"))?;
        }
    }
    Ok(buf)
}

/// The percentile points of a histogram for the plot: (percentile, ms), from 0 to the max.
fn curve(h: &Latencies) -> Vec<(f64, f64)> {
    let mut points = Vec::new();
    for v in h.histogram().iter_quantiles(5) {
        let p = v.quantile_iterated_to() * 100.0;
        points.push((p.min(99.9999), v.value_iterated_to() as f64 / 1e6));
    }
    points
}

/// A self-contained HTML page with an SVG plot of latency by percentile (log scale of
/// `1 / (1 - p)`, the usual HdrHistogram plot) for each result given, put and delivery.
pub fn html(results: &[(String, &RunResult)]) -> Result<String, String> {
    let mut series: Vec<(String, Vec<(f64, f64)>)> = Vec::new();
    for (name, r) in results {
        series.push((format!("{name}: put ack"), curve(&Latencies::decode(&r.put_histogram)?)));
        if let Some(e2e) = &r.e2e_histogram {
            series.push((format!("{name}: put to delivery"), curve(&Latencies::decode(e2e)?)));
        }
    }
    let (w, h, left, bottom) = (900.0, 480.0, 70.0, 50.0);
    let x_of = |p: f64| -> f64 {
        let nines = (1.0 / (1.0 - p / 100.0)).log10(); // 0 at p0, 6 at 99.9999
        left + nines / 6.0 * (w - left - 20.0)
    };
    let max_ms = series.iter().flat_map(|(_, pts)| pts.iter().map(|p| p.1)).fold(0.001, f64::max);
    let y_of = |ms: f64| -> f64 { h - bottom - ms / max_ms * (h - bottom - 20.0) };
    let colours = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b"];
    let mut svg = String::new();
    let _ = write!(
        svg,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" font-family="sans-serif" font-size="12">"#
    );
    let _ = write!(svg, r#"<rect width="{w}" height="{h}" fill="white"/>"#);
    for (i, label) in
        ["0%", "90%", "99%", "99.9%", "99.99%", "99.999%", "99.9999%"].iter().enumerate()
    {
        let x = left + i as f64 / 6.0 * (w - left - 20.0);
        let _ = write!(
            svg,
            r##"<line x1="{x}" y1="20" x2="{x}" y2="{}" stroke="#ddd"/><text x="{x}" y="{}" text-anchor="middle">{label}</text>"##,
            h - bottom,
            h - bottom + 16.0
        );
    }
    for i in 0..=5 {
        let ms = max_ms * f64::from(i) / 5.0;
        let y = y_of(ms);
        let _ = write!(
            svg,
            r##"<line x1="{left}" y1="{y}" x2="{}" y2="{y}" stroke="#eee"/><text x="{}" y="{}" text-anchor="end">{ms:.3}</text>"##,
            w - 20.0,
            left - 6.0,
            y + 4.0
        );
    }
    let _ = write!(
        svg,
        r#"<text x="{}" y="{}" text-anchor="middle">percentile</text>"#,
        (w + left) / 2.0,
        h - 10.0
    );
    let _ = write!(
        svg,
        r#"<text x="16" y="{}" transform="rotate(-90 16 {})" text-anchor="middle">latency (ms)</text>"#,
        h / 2.0,
        h / 2.0
    );
    for (i, (name, pts)) in series.iter().enumerate() {
        let colour = colours[i % colours.len()];
        let path: Vec<String> =
            pts.iter().map(|(p, ms)| format!("{:.1},{:.1}", x_of(*p), y_of(*ms))).collect();
        let _ = write!(
            svg,
            r#"<polyline fill="none" stroke="{colour}" stroke-width="2" points="{}"/>"#,
            path.join(" ")
        );
        let _ = write!(
            svg,
            r#"<text x="{}" y="{}" fill="{colour}">{}</text>"#,
            left + 10.0,
            36.0 + 16.0 * i as f64,
            escape(name)
        );
    }
    svg.push_str("</svg>");
    let mut page = String::from("<!doctype html><meta charset=\"utf-8\"><title>riffle-bench</title><body style=\"font-family:sans-serif\">");
    let _ = write!(page, "<h2>riffle-bench latency by percentile</h2>{svg}<pre>");
    for (_, r) in results {
        page.push_str(&escape(&table(r)));
        page.push('\n');
    }
    page.push_str("</pre></body>");
    Ok(page)
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
}

/// Two results side by side, with B/A ratios.
pub fn compare(a: &RunResult, b: &RunResult) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "A: {} — {}", a.target, label(a));
    let _ = writeln!(out, "B: {} — {}", b.target, label(b));
    let _ = writeln!(out, "\n{:<34} {:>14} {:>14} {:>8}", "", "A", "B", "B/A");
    let mut row = |name: &str, x: f64, y: f64| {
        let ratio = if x != 0.0 { format!("{:.3}", y / x) } else { "-".into() };
        let _ = writeln!(out, "{name:<34} {x:>14.3} {y:>14.3} {ratio:>8}");
    };
    row("produce records/s", a.produce_records_per_sec, b.produce_records_per_sec);
    row("produce MB/s", a.produce_mb_per_sec, b.produce_mb_per_sec);
    if let (Some(x), Some(y)) = (a.consume_records_per_sec, b.consume_records_per_sec) {
        row("consume records/s", x, y);
    }
    row(
        "throttled + errors",
        (a.produced.throttled + a.produced.errors) as f64,
        (b.produced.throttled + b.produced.errors) as f64,
    );
    let mut latencies = |name: &str, x: &Summary, y: &Summary| {
        for (p, vx, vy) in [
            ("p50", x.p50_ms, y.p50_ms),
            ("p90", x.p90_ms, y.p90_ms),
            ("p99", x.p99_ms, y.p99_ms),
            ("p99.9", x.p999_ms, y.p999_ms),
            ("p99.99", x.p9999_ms, y.p9999_ms),
            ("max", x.max_ms, y.max_ms),
        ] {
            row(&format!("{name} {p} (ms)"), vx, vy);
        }
    };
    latencies("put ack", &a.put_latency, &b.put_latency);
    if let (Some(x), Some(y)) = (&a.e2e_latency, &b.e2e_latency) {
        latencies("put to delivery", x, y);
    }
    if let (Some(x), Some(y)) = (&a.read_latency, &b.read_latency) {
        latencies("GetRecords", x, y);
    }
    out
}

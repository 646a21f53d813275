//! Shared by the `loom_*` model tests (included with `mod loom_common;`, so it is compiled
//! only where they are: under `--cfg loom`).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

/// The preemption bound when `LOOM_MAX_PREEMPTIONS` is not set.
pub const DEFAULT_PREEMPTIONS: usize = 2;

/// Checks `model` over every interleaving within the preemption bound
/// (`LOOM_MAX_PREEMPTIONS`, else [`DEFAULT_PREEMPTIONS`]) and returns how many executions
/// loom explored. With `LOOM_REPORT` set, prints that count to stderr (run the harness
/// with `--nocapture` to see it).
pub fn explore(name: &str, model: impl Fn() + Sync + Send + 'static) -> usize {
    let mut builder = loom::model::Builder::new();
    if builder.preemption_bound.is_none() {
        builder.preemption_bound = Some(DEFAULT_PREEMPTIONS);
    }
    let executions = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&executions);
    builder.check(move || {
        counter.fetch_add(1, Ordering::Relaxed);
        model();
    });
    let n = executions.load(Ordering::Relaxed);
    if std::env::var_os("LOOM_REPORT").is_some() {
        eprintln!("loom: {name}: {n} executions (preemption bound {:?})", builder.preemption_bound);
    }
    n
}

/// [`explore`] for a model with more than one thread: it must have explored more than one
/// interleaving, or it checks nothing.
pub fn explore_concurrent(name: &str, model: impl Fn() + Sync + Send + 'static) {
    let n = explore(name, model);
    assert!(n > 1, "{name}: loom explored a single execution");
}

#!/usr/bin/env bash
# Model-checks the engine's concurrency core with loom (engine/tests/loom_*.rs): watermark
# publication, Completion, DirtyQueue shutdown and hold, the group-commit hand-off and the
# journal's checkpoint queue (JobQueue), then checks that loom still catches the
# deliberately broken hand-off (a lost wake-up).
#
#   bash scripts/loom.sh                        # models + broken-variant check (CI)
#   LOOM_MAX_PREEMPTIONS=3 bash scripts/loom.sh # deeper search (default bound 2; must be >= 1)
#   LOOM_REPORT=1 bash scripts/loom.sh --nocapture  # also print executions per model
#   bash scripts/loom.sh <harness args>         # only the models, e.g. a test-name filter
#   bash scripts/loom.sh --broken               # only the broken-variant check
#
# `--cfg loom` applies to every crate in the build and tokio/tokio-uring do not compile
# under it, so the engine is built without its `io-uring` feature, into its own target
# directory (target/loom, or $LOOM_TARGET_DIR) so that the normal build cache survives.
set -euo pipefail
cd "$(dirname "$0")/.."

export LOOM_MAX_PREEMPTIONS="${LOOM_MAX_PREEMPTIONS:-2}"
export RUSTFLAGS="${RUSTFLAGS:+$RUSTFLAGS }--cfg loom"
export CARGO_TARGET_DIR="${LOOM_TARGET_DIR:-target/loom}"
# The models need no debug info, and it would be a second copy of every crate's on disk.
export CARGO_PROFILE_RELEASE_DEBUG="${CARGO_PROFILE_RELEASE_DEBUG:-0}"

cargo_test=(cargo test --release --locked -p riffle-engine --no-default-features)

models() {
    echo "== loom models (LOOM_MAX_PREEMPTIONS=$LOOM_MAX_PREEMPTIONS)"
    "${cargo_test[@]}" --test 'loom_*' -- "$@"
}

# The broken variant (#[ignore]d in loom_group_commit.rs) must fail with a loom deadlock.
# A loom deadlock may abort the test process instead of failing the test, so it runs here,
# as its own process, and only its output is judged.
broken() {
    echo "== broken hand-off (loom must report a deadlock)"
    # Build first, so that a build error is not mistaken for the expected failure.
    "${cargo_test[@]}" --test loom_group_commit --no-run
    local log
    log="$(mktemp)"
    if RUST_BACKTRACE=0 "${cargo_test[@]}" --test loom_group_commit -- --ignored --exact \
        broken_handoff_clearing_enqueued_late_deadlocks >"$log" 2>&1; then
        cat "$log"
        rm -f "$log"
        echo "FAIL: loom did not catch the broken hand-off" >&2
        return 1
    fi
    if ! grep -q '^deadlock; threads' "$log"; then
        cat "$log"
        rm -f "$log"
        echo "FAIL: the broken hand-off failed, but not with a loom deadlock" >&2
        return 1
    fi
    grep '^deadlock; threads' "$log"
    rm -f "$log"
    echo "ok: loom caught the broken hand-off"
}

case "${1:-}" in
    --broken) broken ;;
    "") models && broken ;;
    *) models "$@" ;;
esac

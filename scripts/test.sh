#!/usr/bin/env bash
# The whole test suite, as CI runs it (.ci/run calls exactly this).
# Installs what it needs (rustfmt, clippy through rustup), then: formatting, lints, every
# unit/integration/doc test of the workspace (corpus replays and crash tests included),
# and the bounded loom models. Long fuzz runs and soak tests are separate: see README.md.
set -euo pipefail
cd "$(dirname "$0")/.."

if command -v rustup >/dev/null 2>&1; then
    rustup component add rustfmt clippy >/dev/null 2>&1 || true
fi

# The Kinesis API tests drive riffled with boto3 and the AWS CLI (both from PyPI).
if ! python3 -c 'import boto3, awscli' >/dev/null 2>&1; then
    echo "== installing boto3 and the AWS CLI for the Kinesis API tests"
    python3 -m pip install --quiet boto3 awscli
fi

# ... and with the AWS SDK for JavaScript v3 (from npm, pinned by its package-lock.json).
# Node.js comes from Debian's packages when the machine has none.
if ! command -v npm >/dev/null 2>&1 && command -v apt-get >/dev/null 2>&1; then
    echo "== installing Node.js for the Kinesis API tests"
    sudo_="" ; [ "$(id -u)" -ne 0 ] && sudo_="sudo"
    $sudo_ apt-get update -qq && $sudo_ apt-get install -y -qq nodejs npm >/dev/null
fi
js=server/tests/kinesis/js
if [ ! -d "$js/node_modules/@aws-sdk/client-kinesis" ]; then
    echo "== installing the AWS SDK for JavaScript for the Kinesis API tests"
    npm ci --prefix "$js" --no-audit --no-fund --loglevel=error
fi

# Incremental-compilation caches would add 0.6 GB to a clean run's 1.4 GB under target/,
# and a run from a clean clone (as in CI) never reuses them. Set CARGO_INCREMENTAL=1 to keep them.
export CARGO_INCREMENTAL="${CARGO_INCREMENTAL:-0}"

echo "== cargo fmt --check"
cargo fmt --all -- --check

echo "== cargo clippy"
cargo clippy --workspace --all-targets --locked -- -D warnings
# The engine embedded without io_uring (as the loom models build it) is a supported build too.
cargo clippy -p riffle-engine --no-default-features --all-targets --locked -- -D warnings

echo "== cargo test"
cargo test --workspace --locked

echo "== loom models (bounded)"
bash scripts/loom.sh

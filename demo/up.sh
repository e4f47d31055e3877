#!/usr/bin/env bash
# The demo: builds the stand-in program and the demo images, then starts environments/demo.yaml
# with envctl, which prints the proxy's URL. Extra arguments go to `envctl up`.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

demo/build-standin.sh >/dev/null
cargo build --release --quiet --bin envctl
target/release/envctl build demo
exec target/release/envctl up demo "$@"

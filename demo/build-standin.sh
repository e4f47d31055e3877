#!/usr/bin/env bash
# Builds the demo stand-in as a static binary for the host and copies it to demo/image/standin,
# the build context of the demo images (a FROM scratch image, so the demo needs no registry).
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

target="$(rustc -vV | sed -n 's/^host: //p')"
# Stripped: symbols and line tables would quadruple the size of the image.
RUSTFLAGS="-C target-feature=+crt-static" CARGO_PROFILE_RELEASE_STRIP=symbols \
    cargo build --release -p envctl-standin --target "$target" --target-dir target/standin

install -m 0755 "target/standin/$target/release/envctl-standin" demo/image/standin
echo "$PWD/demo/image/standin"

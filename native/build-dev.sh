#!/bin/sh
# Development build of the compiled engine core: native/ -> streams/_native.abi3.so
# (the release build; packaging is the build integration's job).
set -eu
here=$(cd "$(dirname "$0")" && pwd)
cd "$here"
export PYO3_PYTHON="${PYO3_PYTHON:-/root/.pyenv/versions/3.13.0/bin/python3}"
cargo build --release -j "${JOBS:-2}"
cp target/release/lib_native.so ../streams/_native.abi3.so
echo "built $(cd .. && pwd)/streams/_native.abi3.so"

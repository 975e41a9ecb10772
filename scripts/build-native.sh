#!/usr/bin/env bash
# Builds the libtorch addon (node-gyp) and records which libtorch it was built against, so that
# scripts/setup.sh rebuilds it only when its sources change or another libtorch is selected.
# With --stamp: prints that record for the libtorch selected now, and builds nothing.
set -euo pipefail
cd "$(dirname "$0")/.."
stamp="libtorch=${LIBTORCH:-system} $(node src/engine/native/libtorch-paths.cjs defines)"
if [ "${1:-}" = "--stamp" ]; then
  echo "$stamp"
  exit 0
fi
npx --no-install node-gyp rebuild --directory src/engine/native
echo "$stamp" > src/engine/native/build/libtorch.stamp

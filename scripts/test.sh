#!/usr/bin/env bash
# Runs every test file under test/ with Node's test runner (TypeScript through tsx).
# Arguments narrow the run to files whose path contains one of them.
set -euo pipefail
cd "$(dirname "$0")/.."
mapfile -t files < <(find test -name '*.test.ts' | sort)
if [ $# -gt 0 ]; then
  selected=()
  for f in "${files[@]}"; do for pattern in "$@"; do [[ "$f" == *"$pattern"* ]] && selected+=("$f") && break; done; done
  files=("${selected[@]}")
fi
exec node --import tsx --test --test-reporter=spec "${files[@]}"

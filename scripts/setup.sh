#!/usr/bin/env bash
# Installs what smml needs and skips what is already there: libtorch (Debian's libtorch-dev, or the
# installation named by LIBTORCH), the npm packages, and the native addon. With --bench (npm run bench), also
# Debian's PyTorch for Python (python3-torch), the benchmarks' reference.
set -euo pipefail
cd "$(dirname "$0")/.."
bench=
[ "${1:-}" = "--bench" ] && bench=1

say() { echo "[setup] $*" >&2; }

need_apt=()
if [ -n "${LIBTORCH:-}" ]; then
  if [ ! -f "$LIBTORCH/include/torch/csrc/api/include/torch/torch.h" ]; then
    say "LIBTORCH=$LIBTORCH does not look like a libtorch installation (include/torch/csrc/api/include/torch/torch.h is missing)."
    exit 1
  fi
elif [ ! -f /usr/include/torch/csrc/api/include/torch/torch.h ]; then
  need_apt+=(libtorch-dev)
fi
# Distributed training (Gloo) compiles against gloo's headers, which libtorch-dev does not depend on.
if [ -z "${LIBTORCH:-}" ] && [ ! -f /usr/include/gloo/context.h ]; then
  need_apt+=(libgloo-dev)
fi
command -v g++ >/dev/null 2>&1 || need_apt+=(g++)
command -v make >/dev/null 2>&1 || need_apt+=(make)
command -v python3 >/dev/null 2>&1 || need_apt+=(python3)
# Debian's libtorch does its matrix products through whichever BLAS provides libblas.so.3; the reference
# one runs them at about 1 GFLOP/s, OpenBLAS (OpenMP build, sharing libtorch's thread pool) at 30-40.
want_apt=()
if [ -z "${LIBTORCH:-}" ] && ! compgen -G "/usr/lib/*/openblas-openmp/libblas.so.3" >/dev/null; then
  want_apt+=(libopenblas0-openmp)
fi

# The report's PNG charts are drawn by resvg with the system's fonts (DejaVu Sans); the browser tests drive
# Debian's chromium (they are skipped, saying so, without it).
[ -f /usr/share/fonts/truetype/dejavu/DejaVuSans.ttf ] || want_apt+=(fonts-dejavu-core)
command -v chromium >/dev/null 2>&1 || want_apt+=(chromium)
# The same libtorch 1.13 as libtorch-dev, driven from Python: bench/*_reference.py compare against it.
if [ -n "$bench" ] && [ ! -f /usr/lib/python3/dist-packages/torch/__init__.py ]; then
  want_apt+=(python3-torch)
fi

if [ ${#need_apt[@]} -gt 0 ] || [ ${#want_apt[@]} -gt 0 ]; then
  if [ "$(id -u)" -eq 0 ]; then
    say "installing ${need_apt[*]} ${want_apt[*]} with apt-get (one time, a few minutes)"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${need_apt[@]}" "${want_apt[@]}" >/dev/null
  elif [ ${#need_apt[@]} -gt 0 ]; then
    say "missing system packages: ${need_apt[*]} ${want_apt[*]}. Install them once with:"
    say "  sudo apt-get install -y ${need_apt[*]} ${want_apt[*]}"
    exit 1
  else
    say "optional packages missing (OpenBLAS: fast matrix products; fonts-dejavu-core: text in PNG charts; chromium: browser tests; python3-torch: the benchmarks' PyTorch reference); install them once with: sudo apt-get install -y ${want_apt[*]}"
  fi
fi

# npm packages: install when absent or when the lock file changed since the last install.
if [ ! -f node_modules/.package-lock.json ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  say "installing npm packages"
  npm ci --no-audit --no-fund --loglevel=error >&2
fi

# Native addon: rebuild when missing, when its sources changed, or when another libtorch is selected.
addon=src/engine/native/build/Release/smml_torch.node
stamp=src/engine/native/build/libtorch.stamp
wanted=$(bash scripts/build-native.sh --stamp)
stale=
for source in src/engine/native/*.cc src/engine/native/*.h src/engine/native/binding.gyp; do
  [ "$source" -nt "$addon" ] && stale=1
done
if [ ! -f "$addon" ] || [ -n "$stale" ] || [ "$(cat "$stamp" 2>/dev/null)" != "$wanted" ]; then
  say "building the libtorch addon (about a minute)"
  log=$(mktemp)
  if ! bash scripts/build-native.sh >"$log" 2>&1; then
    cat "$log" >&2
    say "the native build failed; its log is above"
    exit 1
  fi
  rm -f "$log"
fi

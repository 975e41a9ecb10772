// Prints compiler or linker flags for the libtorch that the addon is built against.
// LIBTORCH=/path/to/libtorch selects an unpacked libtorch distribution (for example a CUDA build);
// without it, Debian's libtorch-dev layout is used. `defines` names the distributed back ends that can be
// compiled: Gloo where its headers are found (Debian: libgloo-dev), NCCL where libtorch has CUDA and nccl.h is found.
const fs = require('node:fs');
const path = require('node:path');

const root = process.env.LIBTORCH;
const what = process.argv[2];

const headerIn = (dirs, name) => dirs.some((dir) => fs.existsSync(path.join(dir, name)));

if (!root) {
  const inc = ['/usr/include', '/usr/include/torch/csrc/api/include'];
  const defines = headerIn(inc, 'gloo/context.h') ? ['SMML_WITH_GLOO', 'USE_C10D_GLOO'] : [];
  const out = { include: inc, libs: ['-ltorch', '-ltorch_cpu', '-lc10'], ldflags: [], defines };
  console.log(out[what].join(' '));
  process.exit(0);
}

const lib = path.join(root, 'lib');
const has = (name) => fs.existsSync(path.join(lib, name));
const libs = ['-ltorch', '-ltorch_cpu', '-lc10'];
// A CUDA build registers its kernels from libtorch_cuda at load time; keep it linked even though no symbol is referenced.
const cuda = has('libtorch_cuda.so') ? ['-Wl,--no-as-needed', '-ltorch_cuda', '-lc10_cuda', '-Wl,--as-needed'] : [];
const include = [path.join(root, 'include'), path.join(root, 'include/torch/csrc/api/include')];
const ncclDir = has('libtorch_cuda.so') ? [...include, '/usr/local/cuda/include'].find((dir) => headerIn([dir], 'nccl.h')) : undefined;
if (ncclDir && !include.includes(ncclDir)) include.push(ncclDir);
const nccl = ncclDir !== undefined;
const out = {
  include,
  libs: [...cuda, ...libs],
  ldflags: [`-L${lib}`, `-Wl,-rpath,${lib}`],
  defines: [...(headerIn(include, 'gloo/context.h') ? ['SMML_WITH_GLOO', 'USE_C10D_GLOO'] : []), ...(nccl ? ['SMML_WITH_NCCL', 'USE_C10D_NCCL'] : [])],
};
console.log(out[what].join(' '));

// Prints compiler or linker flags for the libtorch that the addon is built against.
// LIBTORCH=/path/to/libtorch selects an unpacked libtorch distribution (for example a CUDA build);
// without it, Debian's libtorch-dev layout is used.
const fs = require('node:fs');
const path = require('node:path');

const root = process.env.LIBTORCH;
const what = process.argv[2];

if (!root) {
  const inc = ['/usr/include', '/usr/include/torch/csrc/api/include'];
  const out = { include: inc, libs: ['-ltorch', '-ltorch_cpu', '-lc10'], ldflags: [] };
  console.log(out[what].join(' '));
  process.exit(0);
}

const lib = path.join(root, 'lib');
const has = (name) => fs.existsSync(path.join(lib, name));
const libs = ['-ltorch', '-ltorch_cpu', '-lc10'];
// A CUDA build registers its kernels from libtorch_cuda at load time; keep it linked even though no symbol is referenced.
const cuda = has('libtorch_cuda.so') ? ['-Wl,--no-as-needed', '-ltorch_cuda', '-lc10_cuda', '-Wl,--as-needed'] : [];
const out = {
  include: [path.join(root, 'include'), path.join(root, 'include/torch/csrc/api/include')],
  libs: [...cuda, ...libs],
  ldflags: [`-L${lib}`, `-Wl,-rpath,${lib}`],
};
console.log(out[what].join(' '));

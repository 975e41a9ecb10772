{
  "targets": [
    {
      "target_name": "smml_torch",
      "sources": ["torch.cc", "thin_conv.cc", "norm_act.cc", "conv1x1.cc", "trilinear.cc", "reflect_pad.cc", "distributed.cc", "autocast.cc", "checkpoint.cc"],
      "include_dirs": [
        "<!(node -p \"require('node-addon-api').include_dir\")",
        "<!@(node libtorch-paths.cjs include)"
      ],
      "libraries": ["<!@(node libtorch-paths.cjs libs)"],
      "ldflags": ["-fopenmp", "<!@(node libtorch-paths.cjs ldflags)"],
      "cflags_cc!": ["-fno-exceptions", "-fno-rtti", "-std=gnu++17"],
      "cflags_cc": ["-std=c++17", "-fexceptions", "-frtti", "-O2", "-fopenmp", "-Wno-unused-parameter", "-Wno-deprecated-declarations"],
      "defines": ["NAPI_CPP_EXCEPTIONS", "NODE_ADDON_API_DISABLE_DEPRECATED", "NAPI_VERSION=8", "<!@(node libtorch-paths.cjs defines)"]
    }
  ]
}

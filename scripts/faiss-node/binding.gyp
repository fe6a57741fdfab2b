{
  "targets": [
    {
      "target_name": "faiss-node",
      "sources": ["src/faiss-patched.cc", "src/flat-scan.cc"],
      "include_dirs": ["<!(node -p \"require('node-addon-api').include_dir\")"],
      "defines": ["NAPI_VERSION=6", "NAPI_CPP_EXCEPTIONS", "NAPI_CPP_EXCEPTIONS_MAXIMAL"],
      "cflags!": ["-fno-exceptions"],
      "cflags_cc!": ["-fno-exceptions", "-fno-rtti"],
      "cflags_cc": ["-std=c++17", "-O3", "-w", "-fopenmp", "-include", "<(module_root_dir)/src/compat.h"],
      "libraries": [
        "-Wl,--whole-archive", "<!(echo ${FAISS_STATIC_LIB:-/usr/lib/x86_64-linux-gnu/libfaiss.a})", "-Wl,--no-whole-archive",
        "-lopenblas", "-llapack", "-lgomp"
      ]
    }
  ]
}

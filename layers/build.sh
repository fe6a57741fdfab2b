#!/usr/bin/env bash
# Builds the native bundles the Lambda functions need, for Amazon Linux 2023 / x86_64, inside AWS's
# Lambda build image (layers/Dockerfile), checks that they load on the Lambda runtime image, and
# checks each function's total against Lambda's 250 MB unzipped limit. See layers/README.md.
#
# Output (read by infra/native.ts at deploy time):
#   layers/faiss/build/nodejs/node_modules/...        layers/faiss/layer.zip
#   layers/onnxruntime/build/nodejs/node_modules/...  layers/onnxruntime/layer.zip
set -euo pipefail

usage() {
  cat <<'USAGE'
usage: layers/build.sh [--target all|faiss|onnxruntime] [--dry-run] [--check-only] [--no-zip]

  --target       which bundle to build (default: all)
  --dry-run      print the docker command and exit; needs no Docker
  --check-only   skip the build; run the Lambda size check on the bundles already built
  --no-zip       do not write layer.zip (only needed to publish a bundle as a Lambda layer)

environment:
  DOCKER         docker command to use (default: docker)
  LAYERS_OUT     where the bundles go (default: the layers/ folder of this repository)
  CODE_MB        size allowance for a function's own bundled code in the size check (default: 15)
USAGE
}

TARGET=all
DRY_RUN=0
CHECK_ONLY=0
ZIP=1
while [[ $# -gt 0 ]]; do
  case "$1" in
    --target) TARGET="${2:-}"; shift 2 || { echo "build.sh: --target needs a value" >&2; exit 2; } ;;
    --target=*) TARGET="${1#*=}"; shift ;;
    --dry-run) DRY_RUN=1; shift ;;
    --check-only) CHECK_ONLY=1; shift ;;
    --no-zip) ZIP=0; shift ;;
    -h|--help) usage; exit 0 ;;
    *) echo "build.sh: unknown argument: $1" >&2; usage >&2; exit 2 ;;
  esac
done
case "$TARGET" in
  all) BUNDLES=(faiss onnxruntime); STAGE=export ;;
  faiss|onnxruntime) BUNDLES=("$TARGET"); STAGE="export-$TARGET" ;;
  *) echo "build.sh: --target must be all, faiss or onnxruntime (got \"$TARGET\")" >&2; exit 2 ;;
esac

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
OUT="${LAYERS_OUT:-$ROOT/layers}"
DOCKER="${DOCKER:-docker}"

# Versions come from package.json, so the bundles match what the code was tested with.
dep_version() { node -p "require('$ROOT/package.json').dependencies['$1']"; }

size_check() {
  local built=() profiles=() b
  for b in faiss onnxruntime; do [[ -d "$OUT/$b/build" ]] && built+=("$b"); done
  if [[ ${#built[@]} -eq 0 ]]; then
    echo "build.sh: no bundle in $OUT/*/build to check; build them first" >&2
    return 1
  fi
  if [[ -d "$OUT/faiss/build" && -d "$OUT/onnxruntime/build" ]]; then
    # Search and reindex carry both bundles, the reranker only ONNX Runtime, an index shard only faiss
    # (infra/api.ts, reindex.ts, reranker.ts, shards.ts).
    # They also carry the USE-lite packages (pure JS, copied from node_modules) unless EMBEDDER names an
    # embedder without it (infra/native.ts embedderPackaging): counted here, as a plain deploy ships them.
    local use_lite
    use_lite=$(cd "$ROOT" && node --import tsx -e \
      'import("./infra/bundles.ts").then((m) => console.log(m.USE_LITE_PACKAGES.map((p) => "node_modules/" + p).join(",")))')
    profiles=("search=$OUT/faiss/build,$OUT/onnxruntime/build,$use_lite" "reindex=$OUT/faiss/build,$OUT/onnxruntime/build,$use_lite"
              "reranker=$OUT/onnxruntime/build" "shard=$OUT/faiss/build")
  else
    for b in "${built[@]}"; do profiles+=("$b=$OUT/$b/build"); done
  fi
  (cd "$ROOT" && node --import tsx layers/size-check.ts --code-mb "${CODE_MB:-15}" "${profiles[@]}")
}

if [[ $CHECK_ONLY -eq 1 ]]; then
  size_check
  exit $?
fi

CMD=("$DOCKER" build --platform linux/amd64 -f "$ROOT/layers/Dockerfile" --target "$STAGE"
     --build-arg "FAISS_NODE_VERSION=$(dep_version faiss-node)"
     --build-arg "ORT_VERSION=$(dep_version onnxruntime-node)"
     --output "type=local,dest=@OUT@" "$ROOT")

if [[ $DRY_RUN -eq 1 ]]; then
  printf '%q ' "${CMD[@]}" | sed "s|@OUT@|<temporary folder>|"
  echo
  exit 0
fi

if ! command -v "$DOCKER" >/dev/null 2>&1; then
  cat >&2 <<MSG
build.sh: Docker is not available: there is no "$DOCKER" command on this machine.
  The native bundles (faiss-node with its BLAS/OpenMP libraries, onnxruntime-node) must be compiled
  inside the Lambda build image for Amazon Linux 2023, which needs Docker. Run this script where
  Docker works (a laptop or a CI runner), then deploy from there or copy layers/*/build/ over.
  Nothing was built.
MSG
  exit 3
fi
if ! "$DOCKER" info >/dev/null 2>&1; then
  cat >&2 <<MSG
build.sh: Docker is not available: "$DOCKER" is installed but cannot reach a Docker daemon
  (\`$DOCKER info\` fails). Start Docker, or run this script on a machine where it runs. Nothing was built.
MSG
  exit 3
fi

TMP="$(mktemp -d)"
trap 'rm -rf "$TMP"' EXIT
CMD=("${CMD[@]/@OUT@/$TMP}")
echo "[build.sh] ${CMD[*]}"
DOCKER_BUILDKIT=1 "${CMD[@]}"

for b in "${BUNDLES[@]}"; do
  [[ -d "$TMP/$b/nodejs/node_modules" ]] || { echo "build.sh: the image did not produce $b/nodejs/node_modules" >&2; exit 1; }
  mkdir -p "$OUT/$b"
  rm -rf "$OUT/$b/build" "$OUT/$b/layer.zip"
  mv "$TMP/$b" "$OUT/$b/build"
  if [[ $ZIP -eq 1 ]]; then
    if command -v zip >/dev/null 2>&1; then
      (cd "$OUT/$b/build" && zip -qry "$OUT/$b/layer.zip" nodejs)
    else
      echo "[build.sh] zip not found: skipped $b/layer.zip (only needed to publish it as a Lambda layer)"
    fi
  fi
  echo "[build.sh] $b -> $OUT/$b/build"
done

size_check

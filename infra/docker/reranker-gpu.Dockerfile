# syntax=docker/dockerfile:1.7
# Image of the GPU reranker service (infra/reranker.ts, DEPLOY_RERANKER=gpu): the reranker HTTP app
# functions/rerank/server.ts with onnxruntime-node's CUDA execution provider. Build context: the
# repository root (SST passes `context: "."`).
#
# The CUDA EP is not in onnxruntime-node's npm package: its install script fetches it from NuGet when
# ONNXRUNTIME_NODE_INSTALL=cuda12. That works here because image builds have internet; the repo's
# .npmrc turns install scripts off only for the offline development machines.
#
# By hand:
#   docker build -f infra/docker/reranker-gpu.Dockerfile -t reranker-gpu .
#   docker run --gpus all -p 3001:3001 -e STORE_KIND=s3 -e BUCKET=... -e RERANKER_MODEL_S3_PREFIX=models/reranker/ reranker-gpu

ARG NODE_IMAGE=node:20-bookworm-slim
# CUDA 12 + cuDNN 9, what onnxruntime-node's cuda12 build links against. The host driver must support
# this CUDA minor version (ECS GPU hosts ship a current driver).
ARG CUDA_IMAGE=nvidia/cuda:12.8.1-cudnn-runtime-ubuntu22.04

FROM ${NODE_IMAGE} AS build
WORKDIR /app
COPY package.json package-lock.json .npmrc ./
RUN npm ci --no-audit --no-fund --loglevel=error
COPY tsconfig.json ./
COPY shared ./shared
COPY functions ./functions
# One ESM file holding everything except the native addon, which must stay a package on disk
# (onnxruntime-web, the WASM fallback, is left out: this image always has the native runtime).
RUN npx esbuild functions/rerank/server.ts --bundle --platform=node --target=node20 --format=esm \
      --external:onnxruntime-node --external:onnxruntime-common --external:onnxruntime-web \
      --banner:js="import { createRequire } from 'node:module'; const require = createRequire(import.meta.url);" \
      --outfile=dist/server.mjs

FROM ${NODE_IMAGE} AS runtime-deps
WORKDIR /deps
COPY package.json /app/package.json
# Same onnxruntime-node version as package.json, this time with its install script and the CUDA EP.
RUN ORT_VERSION="$(node -p "require('/app/package.json').dependencies['onnxruntime-node']")" \
 && npm init -y >/dev/null \
 && ONNXRUNTIME_NODE_INSTALL=cuda12 npm install --no-audit --no-fund --loglevel=error "onnxruntime-node@${ORT_VERSION}" \
 && test -n "$(find node_modules/onnxruntime-node/bin -name libonnxruntime_providers_cuda.so)" \
 && rm -rf node_modules/onnxruntime-node/bin/napi-v6/darwin node_modules/onnxruntime-node/bin/napi-v6/win32 \
           node_modules/onnxruntime-node/bin/napi-v6/linux/arm64

FROM ${CUDA_IMAGE}
COPY --from=build /usr/local/bin/node /usr/local/bin/node
WORKDIR /srv
COPY --from=runtime-deps /deps/node_modules ./node_modules
COPY --from=build /app/dist/server.mjs ./server.mjs
RUN useradd --system --uid 10001 --create-home reranker && mkdir -p /tmp/models && chown reranker /tmp/models
USER reranker
# CUDA asked for explicitly: a fallback to the CPU makes /health answer 503 ("degraded").
ENV NODE_ENV=production RERANKER_PORT=3001 RERANKER_PROVIDER=cuda MODEL_CACHE_DIR=/tmp/models
EXPOSE 3001
CMD ["node", "server.mjs"]

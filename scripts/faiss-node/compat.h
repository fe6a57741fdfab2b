// Force-included when building faiss-node against Debian's faiss 1.7.3:
// faiss-node's source uses faiss::idx_t, which faiss only gained in 1.7.4.
#pragma once
#include <faiss/Index.h>
#include <faiss/MetricType.h>
#if !defined(FAISS_VERSION_MAJOR) || (FAISS_VERSION_MAJOR == 1 && FAISS_VERSION_MINOR < 7) || \
    (FAISS_VERSION_MAJOR == 1 && FAISS_VERSION_MINOR == 7 && FAISS_VERSION_PATCH < 4)
namespace faiss {
using idx_t = Index::idx_t;
}
#endif

#include "src/util/parallel.h"

#include <omp.h>

#include <algorithm>

namespace attn::util {

int resolve_threads(int requested) {
  return requested > 0 ? requested : std::max(1, omp_get_max_threads());
}

void ParallelFor(int64_t n, int num_threads,
                 const std::function<void(int64_t, int)>& body) {
  const int threads =
      static_cast<int>(std::min<int64_t>(resolve_threads(num_threads), n));
  if (threads <= 1) {
    for (int64_t i = 0; i < n; ++i) body(i, 0);
    return;
  }
#pragma omp parallel for num_threads(threads) schedule(dynamic, 1)
  for (int64_t i = 0; i < n; ++i) body(i, omp_get_thread_num());
}

}  // namespace attn::util

#include "src/util/parallel.h"

#include <omp.h>

#include <algorithm>
#include <atomic>
#include <thread>

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#endif

namespace attn::util {

int resolve_threads(int requested) {
  return requested > 0 ? requested : std::max(1, omp_get_max_threads());
}

namespace {

// Workers for n items: at most one per item; with one, runs the items in
// order on the caller and returns 0.
int workers_for(int64_t n, int num_threads,
                const std::function<void(int64_t, int)>& body) {
  const int threads =
      static_cast<int>(std::min<int64_t>(resolve_threads(num_threads), n));
  if (threads > 1) return threads;
  for (int64_t i = 0; i < n; ++i) body(i, 0);
  return 0;
}

}  // namespace

void ParallelFor(int64_t n, int num_threads,
                 const std::function<void(int64_t, int)>& body) {
  const int threads = workers_for(n, num_threads, body);
  if (threads == 0) return;
#pragma omp parallel for num_threads(threads) schedule(dynamic, 1)
  for (int64_t i = 0; i < n; ++i) body(i, omp_get_thread_num());
}

void ParallelForOrdered(int64_t n, int num_threads,
                        const std::function<void(int64_t, int)>& body) {
  const int threads = workers_for(n, num_threads, body);
  if (threads == 0) return;
  // One shared counter: items are taken strictly in order.
  std::atomic<int64_t> next{0};
#pragma omp parallel num_threads(threads)
  {
    const int worker = omp_get_thread_num();
    for (int64_t i = next.fetch_add(1); i < n; i = next.fetch_add(1)) {
      body(i, worker);
    }
  }
}

void SpinPause(int64_t& spins) {
  if (++spins % 1024 == 0) {
    std::this_thread::yield();
    return;
  }
#if defined(__x86_64__) || defined(__i386__)
  _mm_pause();
#endif
}

}  // namespace attn::util

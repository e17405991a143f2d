#include "src/util/parallel.h"

#include <omp.h>

#include <algorithm>
#include <atomic>
#include <exception>
#include <mutex>
#include <string>
#include <system_error>
#include <thread>
#include <vector>

#include "attn/error.h"

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#endif

namespace attn::util {

int resolve_threads(int requested) {
  return requested > 0 ? requested : std::max(1, omp_get_max_threads());
}

namespace {

// The most threads a region has run with: regions up to it need no probe.
std::atomic<int> g_threads_started{1};

// OpenMP has no way to report a thread it could not create (libgomp
// prints "Thread creation failed" and exits the process), so before a
// region first uses more threads than any before it, start that many
// threads of the default stack size ourselves, all alive at once, and turn
// a failure into attn::Error.
void ensure_threads(int threads) {
  if (threads <= g_threads_started.load(std::memory_order_relaxed)) return;
  std::atomic<bool> go{false};
  std::vector<std::thread> probes;
  std::string failure;
  try {
    probes.reserve(static_cast<size_t>(threads - 1));
    for (int t = 1; t < threads; ++t) {
      probes.emplace_back([&go] {
        while (!go.load(std::memory_order_acquire)) std::this_thread::yield();
      });
    }
  } catch (const std::system_error& e) {
    failure = e.what();
  } catch (const std::bad_alloc&) {
    failure = "out of memory";
  }
  go.store(true, std::memory_order_release);
  for (std::thread& t : probes) t.join();
  if (!failure.empty()) {
    throw Error("attn: could not start " + std::to_string(threads) +
                " threads (started " + std::to_string(probes.size() + 1) +
                "): " + failure +
                "; use fewer threads (num_threads, --threads)");
  }
  int seen = g_threads_started.load(std::memory_order_relaxed);
  while (seen < threads &&
         !g_threads_started.compare_exchange_weak(seen, threads)) {
  }
}

// What a region's workers share: the first exception a body threw, and a
// flag that stops the other workers taking items (and, through SpinPause,
// waiting on items that will never progress).
struct RegionState {
  std::atomic<bool> failed{false};
  std::mutex mutex;
  std::exception_ptr error;

  void fail(std::exception_ptr e) {
    std::lock_guard<std::mutex> lock(mutex);
    if (!error) error = std::move(e);
    failed.store(true, std::memory_order_release);
  }
};

// SpinPause's way out of a region that failed.
thread_local const RegionState* t_region = nullptr;
struct Aborted {};

// Workers for n items: at most one per item; with one, runs the items in
// order on the caller and returns 0.
int workers_for(int64_t n, int num_threads,
                const std::function<void(int64_t, int)>& body) {
  const int threads =
      static_cast<int>(std::min<int64_t>(resolve_threads(num_threads), n));
  if (threads > 1) {
    ensure_threads(threads);
    return threads;
  }
  for (int64_t i = 0; i < n; ++i) body(i, 0);
  return 0;
}

// The region behind both entry points: items taken from one shared
// counter, so they also start in increasing order (what ParallelForOrdered
// promises). Each worker takes items until none is left or a body has
// failed; exceptions are kept for the caller, never let out of the OpenMP
// region (which would terminate the process).
void run_region(int64_t n, int threads,
                const std::function<void(int64_t, int)>& body) {
  RegionState state;
  std::atomic<int64_t> next{0};
#pragma omp parallel num_threads(threads)
  {
    const RegionState* outer = t_region;
    t_region = &state;
    const int worker = omp_get_thread_num();
    try {
      for (int64_t i = next.fetch_add(1); i < n; i = next.fetch_add(1)) {
        if (state.failed.load(std::memory_order_acquire)) break;
        body(i, worker);
      }
    } catch (const Aborted&) {
      // Another worker failed first; its exception is the one reported.
    } catch (...) {
      state.fail(std::current_exception());
    }
    t_region = outer;
  }
  if (state.error) std::rethrow_exception(state.error);
}

}  // namespace

void ParallelFor(int64_t n, int num_threads,
                 const std::function<void(int64_t, int)>& body) {
  const int threads = workers_for(n, num_threads, body);
  if (threads > 0) run_region(n, threads, body);
}

void ParallelForOrdered(int64_t n, int num_threads,
                        const std::function<void(int64_t, int)>& body) {
  const int threads = workers_for(n, num_threads, body);
  if (threads > 0) run_region(n, threads, body);
}

void SpinPause(int64_t& spins) {
  if (t_region != nullptr && t_region->failed.load(std::memory_order_acquire))
    throw Aborted{};
  if (++spins % 1024 == 0) {
    std::this_thread::yield();
    return;
  }
#if defined(__x86_64__) || defined(__i386__)
  _mm_pause();
#endif
}

}  // namespace attn::util

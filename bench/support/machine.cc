// Machine peaks for benchmark ratios. The FMA loop is compiled per SIMD
// target (Highway dynamic dispatch) so the peak matches the code the
// kernels run; the bf16 loop uses vdpbf16ps directly (absent from Highway
// 1.0.3) and runs only where the CPU has it.
#undef HWY_TARGET_INCLUDE
#define HWY_TARGET_INCLUDE "bench/support/machine.cc"
#include "hwy/foreach_target.h"  // IWYU pragma: keep
// Must come after foreach_target.h.
#include "hwy/highway.h"

HWY_BEFORE_NAMESPACE();
namespace attn::bench {
namespace HWY_NAMESPACE {
namespace hn = hwy::HWY_NAMESPACE;

// Runs `iterations` rounds of 12 independent FMA chains (enough to cover
// FMA latency x throughput on current cores); returns flops done. The
// result feeds `sink` so the loop cannot be removed.
double FmaLoop(int64_t iterations, float* sink) {
  const hn::ScalableTag<float> d;
  constexpr int kChains = 12;
  using V = hn::Vec<decltype(d)>;
  V acc[kChains];
  for (int c = 0; c < kChains; ++c) acc[c] = hn::Set(d, 0.001f * c);
  const V a = hn::Set(d, 0.999999f), b = hn::Set(d, 1e-7f);
  for (int64_t n = 0; n < iterations; ++n) {
    for (int c = 0; c < kChains; ++c) acc[c] = hn::MulAdd(acc[c], a, b);
  }
  V sum = acc[0];
  for (int c = 1; c < kChains; ++c) sum = hn::Add(sum, acc[c]);
  *sink += hn::GetLane(sum);
  return 2.0 * kChains * static_cast<double>(hn::Lanes(d)) *
         static_cast<double>(iterations);
}

}  // namespace HWY_NAMESPACE
}  // namespace attn::bench
HWY_AFTER_NAMESPACE();

#if HWY_ONCE
#include <immintrin.h>
#include <omp.h>
#include <sys/mman.h>

#include <algorithm>
#include <chrono>
#include <fstream>
#include <memory>
#include <new>
#include <vector>

#include "bench/support/machine.h"

namespace attn::bench {
HWY_EXPORT(FmaLoop);

namespace {

int resolve_threads(int threads) {
  return threads > 0 ? threads : omp_get_max_threads();
}

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0)
      .count();
}

// Runs body(worker) on `threads` OpenMP threads at once (started together
// after a barrier), `repeats` times, and returns the best total rate: the
// sum over threads of work / that thread's own time.
template <class Body>
std::vector<double> parallel_rates(int threads, int repeats, Body body) {
  std::vector<double> totals;
  for (int r = 0; r < repeats; ++r) {
    std::vector<double> rate(threads, 0.0);
#pragma omp parallel num_threads(threads)
    {
      const int w = omp_get_thread_num();
#pragma omp barrier
      const auto t0 = std::chrono::steady_clock::now();
      const double work = body(w);
      rate[w] = work / seconds_since(t0);
    }
    double total = 0.0;
    for (double x : rate) total += x;
    totals.push_back(total);
  }
  return totals;
}
template <class Body>
double best_parallel_rate(int threads, int repeats, Body body) {
  const std::vector<double> totals = parallel_rates(threads, repeats, body);
  return *std::max_element(totals.begin(), totals.end());
}

__attribute__((target("avx512f,avx512bf16"))) double bf16_dot_loop(
    int64_t iterations, float* sink) {
  constexpr int kChains = 12;
  __m512 acc[kChains];
  for (int c = 0; c < kChains; ++c) acc[c] = _mm512_set1_ps(0.001f * c);
  const __m512bh a = (__m512bh)_mm512_set1_epi16(0x3f80);  // 1.0
  const __m512bh b = (__m512bh)_mm512_set1_epi16(0x3380);  // ~6e-8
  for (int64_t n = 0; n < iterations; ++n) {
#pragma GCC unroll 12
    for (int c = 0; c < kChains; ++c) acc[c] = _mm512_dpbf16_ps(acc[c], a, b);
  }
  __m512 sum = acc[0];
  for (int c = 1; c < kChains; ++c) sum = _mm512_add_ps(sum, acc[c]);
  *sink += _mm512_reduce_add_ps(sum);
  return 2.0 * 32.0 * kChains * static_cast<double>(iterations);
}

std::size_t status_kib(const char* key) {
  std::ifstream in("/proc/self/status");
  std::string name;
  while (in >> name) {
    if (name == key) {
      std::size_t kib = 0;
      in >> kib;
      return kib * 1024;
    }
    in.ignore(1 << 16, '\n');
  }
  return 0;
}

}  // namespace

double measure_fma_peak_gflops(int threads) {
  threads = resolve_threads(threads);
  std::vector<float> sinks(threads * 16, 0.0f);
  const auto fn = &HWY_DYNAMIC_DISPATCH(FmaLoop);
  return best_parallel_rate(
             threads, 7,
             [&](int w) { return fn(int64_t{4} << 20, &sinks[w * 16]); }) /
         1e9;
}

bool cpu_has_avx512_bf16() {
  __builtin_cpu_init();
  return __builtin_cpu_supports("avx512bf16");
}

double measure_bf16_dot_peak_gflops(int threads) {
  if (!cpu_has_avx512_bf16()) return 0.0;
  threads = resolve_threads(threads);
  std::vector<float> sinks(threads * 16, 0.0f);
  return best_parallel_rate(threads, 7,
                            [&](int w) {
                              return bf16_dot_loop(int64_t{2} << 20,
                                                   &sinks[w * 16]);
                            }) /
         1e9;
}

namespace {

// Rates of `rounds` x `passes` reads of a buffer of about `bytes`, in B/s,
// round by round.
std::vector<std::vector<double>> read_rates(int threads, std::size_t bytes,
                                            int rounds, int passes) {
  threads = resolve_threads(threads);
  const std::size_t n = bytes / sizeof(float) / threads * threads;
  // On transparent huge pages where the kernel offers them on request, as
  // the KV cache's pools are (src/cache/kv_cache.cc), so a roof measured
  // here does not flatter rows reading huge pages: on an AMD EPYC Zen 4
  // (2 threads, 256 MiB, a stand-alone copy of this loop) 4 KiB pages read
  // 0-19% slower than huge pages from run to run (31.1-38.2 against
  // 36.4-38.6 GB/s).
  constexpr std::size_t kHuge = std::size_t{2} << 20;
  struct Free {
    void operator()(float* p) const {
      ::operator delete[](p, std::align_val_t(kHuge));
    }
  };
  std::unique_ptr<float[], Free> buf(static_cast<float*>(
      ::operator new[](n * sizeof(float), std::align_val_t(kHuge))));
#ifdef MADV_HUGEPAGE
  if (n * sizeof(float) >= kHuge) {
    madvise(buf.get(), n * sizeof(float) / kHuge * kHuge, MADV_HUGEPAGE);
  }
#endif
  // First touch from the thread that will read each part.
  const std::size_t part = n / threads;
#pragma omp parallel for num_threads(threads) schedule(static, 1)
  for (int t = 0; t < threads; ++t) {
    std::fill(buf.get() + t * part, buf.get() + (t + 1) * part, 1.0f);
  }
  std::vector<float> sinks(threads * 16, 0.0f);
  std::vector<std::vector<double>> out;
  for (int r = 0; r < rounds; ++r) {
    out.push_back(parallel_rates(threads, passes, [&](int w) {
      const float* p = buf.get() + w * part;
      float s[16] = {};
      for (std::size_t i = 0; i < part; i += 16) {
        for (int l = 0; l < 16; ++l) s[l] += p[i + l];
      }
      for (float x : s) sinks[w * 16] += x;
      return static_cast<double>(part * sizeof(float));
    }));
  }
  return out;
}

}  // namespace

double measure_read_bandwidth_gbs(int threads, std::size_t bytes) {
  const std::vector<double> rates = read_rates(threads, bytes, 1, 5)[0];
  return *std::max_element(rates.begin(), rates.end()) / 1e9;
}

double measure_read_bandwidth_robust_gbs(int threads, std::size_t bytes,
                                         int rounds) {
  double best = 0.0;
  for (std::vector<double>& round : read_rates(threads, bytes, rounds, 5)) {
    std::nth_element(round.begin(), round.begin() + round.size() / 2,
                     round.end());
    best = std::max(best, round[round.size() / 2]);
  }
  return best / 1e9;
}

std::size_t resident_bytes() { return status_kib("VmRSS:"); }
std::size_t peak_resident_bytes() { return status_kib("VmHWM:"); }

std::string cpu_model_name() {
  std::ifstream in("/proc/cpuinfo");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("model name", 0) == 0) {
      const auto colon = line.find(':');
      if (colon != std::string::npos) return line.substr(colon + 2);
    }
  }
  return "unknown CPU";
}

}  // namespace attn::bench
#endif  // HWY_ONCE

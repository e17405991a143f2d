// Benchmark support, not library API: measurements of this machine that
// `attn bench` and bench/ quote results against:
// floating-point peak and memory bandwidth, measured (not looked up) with
// small built-in microbenchmarks, so ratios stay honest on shared machines.
#ifndef ATTN_BENCH_SUPPORT_MACHINE_H_
#define ATTN_BENCH_SUPPORT_MACHINE_H_

#include <cstddef>
#include <string>

namespace attn::bench {

// fp32 fused multiply-add peak in GFLOP/s (2 flops per lane per FMA) of the
// active SIMD target (attn/simd.h) on `threads` threads (0 = all cores).
double measure_fma_peak_gflops(int threads);

// bfloat16 dot-product peak in GFLOP/s (vdpbf16ps: 2 flops per bf16 pair)
// on `threads` threads, or 0 when the CPU lacks AVX-512 BF16.
double measure_bf16_dot_peak_gflops(int threads);
bool cpu_has_avx512_bf16();

// Read bandwidth in GB/s (1e9 bytes/s) streaming a buffer far larger than
// the caches on `threads` threads: the best of 5 passes.
double measure_read_bandwidth_gbs(int threads,
                                  std::size_t bytes = std::size_t{1} << 30);
// The same taken robustly for a roofline: `rounds` rounds of 5 passes, the
// best round's median (single passes swing by 2x on shared machines, and
// one lucky pass would make every row's share look worse than it is).
double measure_read_bandwidth_robust_gbs(int threads, std::size_t bytes,
                                         int rounds = 3);

// Memory this process holds now and at most since the last reset, in bytes
// (Linux: VmRSS and VmHWM from /proc/self/status; 0 when unavailable).
std::size_t resident_bytes();
std::size_t peak_resident_bytes();

// The CPU's model name, for reports.
std::string cpu_model_name();

}  // namespace attn::bench

#endif  // ATTN_BENCH_SUPPORT_MACHINE_H_

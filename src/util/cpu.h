// What the CPU offers beyond Highway's target list: features the kernels
// use through intrinsics (Highway 1.0.3 has no bfloat16 or int8 dot product).
#ifndef ATTN_SRC_UTIL_CPU_H_
#define ATTN_SRC_UTIL_CPU_H_

#include <atomic>

namespace attn::util {

// While set, the features below read as absent, so a target's plain code
// runs on a CPU that has them (tests: ATTN_TEST_CPU_EXTENSIONS=off, see
// tests/simd_target_env.cc). Not thread-safe with running calls.
inline std::atomic<bool>& cpu_extensions_disabled() {
  static std::atomic<bool> off{false};
  return off;
}

// vdpbf16ps (AVX-512 BF16).
inline bool cpu_has_avx512_bf16() {
  __builtin_cpu_init();
  return !cpu_extensions_disabled() && __builtin_cpu_supports("avx512bf16");
}

// vpdpbusd (AVX-512 VNNI).
inline bool cpu_has_avx512_vnni() {
  __builtin_cpu_init();
  return !cpu_extensions_disabled() && __builtin_cpu_supports("avx512vnni");
}

}  // namespace attn::util

#endif  // ATTN_SRC_UTIL_CPU_H_

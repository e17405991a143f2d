// What the CPU offers beyond Highway's target list: features the kernels
// use through intrinsics (Highway 1.0.3 has no bfloat16 dot product).
#ifndef ATTN_SRC_UTIL_CPU_H_
#define ATTN_SRC_UTIL_CPU_H_

namespace attn::util {

// vdpbf16ps (AVX-512 BF16).
inline bool cpu_has_avx512_bf16() {
  __builtin_cpu_init();
  return __builtin_cpu_supports("avx512bf16");
}

}  // namespace attn::util

#endif  // ATTN_SRC_UTIL_CPU_H_

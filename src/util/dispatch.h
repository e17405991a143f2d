// Per-type Highway dispatch: the one way a kernel file exports its
// per-target entry points and picks the one for the CPU (or for the target
// a test forces). Include after the HWY_ONCE guard of a foreach_target
// file.
//
//   ATTN_EXPORT_FOR_TYPES(FlashItem)        // FlashItemF32, ...BF16, ...F16
//   auto fn = ATTN_DISPATCH_FOR_TYPE(T, FlashItem);
//
// and, for kernels over a KV cache's element type E (float32, bfloat16,
// float16 or int8), ATTN_EXPORT_FOR_CACHE / ATTN_DISPATCH_FOR_CACHE with
// the suffixes F32, BF16, F16 and I8.
#ifndef ATTN_SRC_UTIL_DISPATCH_H_
#define ATTN_SRC_UTIL_DISPATCH_H_

#include <cstdint>
#include <type_traits>

#include "attn/tensor.h"
#include "hwy/highway.h"

namespace attn::util {

// Highway's chosen target, initialised on first use (a forced target,
// tests/simd_target_env.cc, has already set it).
inline void ready_targets() {
  hwy::ChosenTarget& chosen = hwy::GetChosenTarget();
  if (!chosen.IsInitialized()) chosen.Update(hwy::SupportedTargets());
}

}  // namespace attn::util

#define ATTN_EXPORT_FOR_TYPES(Name) \
  HWY_EXPORT(Name##F32);            \
  HWY_EXPORT(Name##BF16);           \
  HWY_EXPORT(Name##F16)

#define ATTN_EXPORT_FOR_CACHE(Name) \
  ATTN_EXPORT_FOR_TYPES(Name);      \
  HWY_EXPORT(Name##I8)

// The entry point of Name for element type T, as a function pointer.
#define ATTN_DISPATCH_FOR_TYPE(T, Name)                              \
  ([] {                                                              \
    ::attn::util::ready_targets();                                   \
    if constexpr (std::is_same_v<T, float>) {                        \
      return &HWY_DYNAMIC_DISPATCH(Name##F32);                       \
    } else if constexpr (std::is_same_v<T, ::attn::bfloat16>) {      \
      return &HWY_DYNAMIC_DISPATCH(Name##BF16);                      \
    } else {                                                         \
      static_assert(std::is_same_v<T, ::attn::float16>,              \
                    "element types are float, bfloat16 or float16"); \
      return &HWY_DYNAMIC_DISPATCH(Name##F16);                       \
    }                                                                \
  }())

#define ATTN_DISPATCH_FOR_CACHE(E, Name)       \
  ([] {                                        \
    if constexpr (std::is_same_v<E, int8_t>) { \
      ::attn::util::ready_targets();           \
      return &HWY_DYNAMIC_DISPATCH(Name##I8);  \
    } else {                                   \
      return ATTN_DISPATCH_FOR_TYPE(E, Name);  \
    }                                          \
  }())

#endif  // ATTN_SRC_UTIL_DISPATCH_H_

// The flash / decode item reading a KV-cache layer in place (PagedKV): the
// same FlashItemGroup as flash.cc, instantiated for the cache's element
// types; short pages group the items of several KV heads (head_group).
// Query types: float against every cache type (keys dequantised while
// packed), or the cache's own 16-bit type.
#undef HWY_TARGET_INCLUDE
#define HWY_TARGET_INCLUDE "src/kernels/flash_paged.cc"
#include "hwy/foreach_target.h"  // IWYU pragma: keep
// Must come after foreach_target.h.
#include "hwy/highway.h"
#include "src/kernels/flash-inl.h"

HWY_BEFORE_NAMESPACE();
namespace attn::kernels {
namespace HWY_NAMESPACE {

#define ATTN_PAGED_ITEM(NAME, T, E)                                  \
  void NAME(const detail::Problem<T>& p, const PagedKV<E>& kv,       \
            const FlashPlan& plan, int64_t item, std::byte* scratch, \
            float* partial) {                                        \
    FlashItemGroup(p, kv, plan, item, scratch, partial);             \
  }
ATTN_PAGED_ITEM(PagedF32F32, float, float)
ATTN_PAGED_ITEM(PagedF32BF16, float, bfloat16)
ATTN_PAGED_ITEM(PagedF32F16, float, float16)
ATTN_PAGED_ITEM(PagedF32I8, float, int8_t)
// 16-bit queries against a cache of their own type (float32 queries of a
// float32 cache are PagedF32F32).
ATTN_PAGED_ITEM(PagedSameBF16, bfloat16, bfloat16)
ATTN_PAGED_ITEM(PagedSameF16, float16, float16)
#undef ATTN_PAGED_ITEM

}  // namespace HWY_NAMESPACE
}  // namespace attn::kernels
HWY_AFTER_NAMESPACE();

#if HWY_ONCE
#include "src/util/cpu.h"
#include "src/util/dispatch.h"

namespace attn::kernels {

ATTN_EXPORT_FOR_CACHE(PagedF32);  // float32 queries, any cache type
HWY_EXPORT(PagedSameBF16);        // 16-bit queries of the cache's type
HWY_EXPORT(PagedSameF16);

namespace {

template <class T, class E>
auto paged_item_function() {
  if constexpr (std::is_same_v<T, float>) {
    return ATTN_DISPATCH_FOR_CACHE(E, PagedF32);
  } else {
    static_assert(std::is_same_v<T, E>,
                  "16-bit queries read a cache of their own type");
    util::ready_targets();
    if constexpr (std::is_same_v<T, bfloat16>) {
      return &HWY_DYNAMIC_DISPATCH(PagedSameBF16);
    } else {
      return &HWY_DYNAMIC_DISPATCH(PagedSameF16);
    }
  }
}

}  // namespace

template <class T, class E>
void flash_attention_paged(const detail::Problem<T>& problem,
                           const PagedKV<E>& kv, Workspace* workspace,
                           int64_t splits) {
  const detail::Params& p = problem.params;
  FlashPlan plan = make_flash_plan(p, splits);
  plan.path = choose_flash_path<T, E>(p, plan, flash_target(),
                                      util::cpu_has_avx512_bf16());
  plan.head_group = head_group(plan, p.shape.Hkv, kv.layout.page_size);
  const auto fn = paged_item_function<T, E>();
  run_flash_items<T>(
      problem, plan,
      [&](int64_t item, std::byte* scratch, float* partial) {
        fn(problem, kv, plan, item, scratch, partial);
      },
      workspace);
}

template void flash_attention_paged(const detail::Problem<float>&,
                                    const PagedKV<float>&, Workspace*, int64_t);
template void flash_attention_paged(const detail::Problem<float>&,
                                    const PagedKV<bfloat16>&, Workspace*,
                                    int64_t);
template void flash_attention_paged(const detail::Problem<float>&,
                                    const PagedKV<float16>&, Workspace*,
                                    int64_t);
template void flash_attention_paged(const detail::Problem<float>&,
                                    const PagedKV<int8_t>&, Workspace*,
                                    int64_t);
template void flash_attention_paged(const detail::Problem<bfloat16>&,
                                    const PagedKV<bfloat16>&, Workspace*,
                                    int64_t);
template void flash_attention_paged(const detail::Problem<float16>&,
                                    const PagedKV<float16>&, Workspace*,
                                    int64_t);

}  // namespace attn::kernels
#endif  // HWY_ONCE

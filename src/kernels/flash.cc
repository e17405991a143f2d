// Flash forward: plan, dispatch and the parallel loop. The algorithm and
// its per-target SIMD code are in flash-inl.h.
//
// Work items are (b, kv head, block of Br query positions), Br chosen so a
// block holds about kTargetRows rows over the G heads of a GQA group. Items
// are independent and each computes its rows in a fixed order, so results
// are the same bits for any thread count. Scratch comes from a Workspace
// sized before the loop: per worker
//   Q [rows_padded, D] + Kt [D, kKeyTile] + V [kKeyTile, Dvp]
//   + S [rows_padded, kKeyTile] + O [rows_padded, Dvp] + m, l + ranges,
// independent of Sq and Skv.

#undef HWY_TARGET_INCLUDE
#define HWY_TARGET_INCLUDE "src/kernels/flash.cc"
#include "hwy/foreach_target.h"  // IWYU pragma: keep
// Must come after foreach_target.h.
#include "hwy/highway.h"
#include "src/kernels/flash-inl.h"

HWY_BEFORE_NAMESPACE();
namespace attn::kernels {
namespace HWY_NAMESPACE {

void FlashItemF32(const detail::Problem<float>& p, const FlashPlan& plan,
                  int64_t item, std::byte* scratch) {
  FlashItem(p, plan, item, scratch);
}
void FlashItemBF16(const detail::Problem<bfloat16>& p, const FlashPlan& plan,
                   int64_t item, std::byte* scratch) {
  FlashItem(p, plan, item, scratch);
}
void FlashItemF16(const detail::Problem<float16>& p, const FlashPlan& plan,
                  int64_t item, std::byte* scratch) {
  FlashItem(p, plan, item, scratch);
}

}  // namespace HWY_NAMESPACE
}  // namespace attn::kernels
HWY_AFTER_NAMESPACE();

#if HWY_ONCE
#include "attn/machine.h"
#include "src/util/parallel.h"
#include "src/util/workspace_impl.h"

namespace attn::kernels {

HWY_EXPORT(FlashItemF32);
HWY_EXPORT(FlashItemBF16);
HWY_EXPORT(FlashItemF16);

namespace {

int64_t round_up(int64_t x, int64_t to) { return (x + to - 1) / to * to; }

// The per-target entry point for T, chosen once per call.
template <class T>
auto item_function() {
  hwy::ChosenTarget& chosen = hwy::GetChosenTarget();
  if (!chosen.IsInitialized()) chosen.Update(hwy::SupportedTargets());
  if constexpr (std::is_same_v<T, float>) {
    return &HWY_DYNAMIC_DISPATCH(FlashItemF32);
  } else if constexpr (std::is_same_v<T, bfloat16>) {
    return &HWY_DYNAMIC_DISPATCH(FlashItemBF16);
  } else {
    return &HWY_DYNAMIC_DISPATCH(FlashItemF16);
  }
}

}  // namespace

FlashPlan make_flash_plan(const detail::Shape& sh, bool banded) {
  FlashPlan plan;
  const int64_t G = sh.group();
  // Causal or windowed calls on short sequences get smaller items: less of
  // the diagonal band computed only to be masked, more items for the
  // threads. (Measured: S 512 causal 46% -> 53% of peak; unmasked calls
  // lose with smaller items, so they keep kTargetRows.)
  const int64_t target = !banded || sh.Sq >= 2048 ? kTargetRows
                         : sh.Sq >= 1024          ? kTargetRows / 2
                                                  : kTargetRows / 4;
  plan.block_positions = std::clamp<int64_t>(target / G, 1, sh.Sq);
  plan.blocks_per_head =
      (sh.Sq + plan.block_positions - 1) / plan.block_positions;
  plan.rows_padded = round_up(G * plan.block_positions, kRowBlock);
  plan.dv_padded = round_up(sh.Dv, kDvAlign);
  plan.items = sh.B * sh.Hkv * plan.blocks_per_head;

  std::size_t at = 0;
  auto take = [&at](std::size_t bytes) {
    const std::size_t offset = at;
    at += (bytes + 63) / 64 * 64;
    return offset;
  };
  const auto f = sizeof(float);
  const auto rows = static_cast<std::size_t>(plan.rows_padded);
  plan.q = take(rows * sh.D * f);
  plan.kt = take(static_cast<std::size_t>(sh.D) * kKeyTile * f);
  plan.v = take(static_cast<std::size_t>(kKeyTile) * plan.dv_padded * f);
  plan.s = take(rows * kKeyTile * f);
  plan.o = take(rows * plan.dv_padded * f);
  plan.m = take(rows * f);
  plan.l = take(rows * f);
  plan.lw = take(rows * f);
  plan.ranges = take(plan.block_positions * sizeof(KeyRange));
  plan.pp = take(rows * (kKeyTile / 2) * sizeof(uint32_t));
  plan.bytes = at;
  return plan;
}

template <class T>
void flash_attention(const detail::Problem<T>& problem, Workspace* workspace) {
  thread_local Workspace own;  // kept across calls from this thread
  Workspace& ws = workspace != nullptr ? *workspace : own;
  const detail::Params& p = problem.params;
  FlashPlan plan = make_flash_plan(
      p.shape, p.causal || p.window_left >= 0 || p.window_right >= 0);
  if constexpr (std::is_same_v<T, bfloat16>) plan.bf16_dot = cpu_has_avx512_bf16();
  const int threads = static_cast<int>(std::min<int64_t>(
      util::resolve_threads(problem.params.num_threads), plan.items));
  ws.impl().reserve(threads, plan.bytes);
  const auto fn = item_function<T>();
  Workspace::Impl& impl = ws.impl();
  util::ParallelFor(plan.items, threads, [&](int64_t item, int worker) {
    fn(problem, plan, item, impl.slice(worker));
  });
}

template void flash_attention(const detail::Problem<float>&, Workspace*);
template void flash_attention(const detail::Problem<bfloat16>&, Workspace*);
template void flash_attention(const detail::Problem<float16>&, Workspace*);

}  // namespace attn::kernels
#endif  // HWY_ONCE

// Flash forward: plan, dispatch and the parallel loop. The algorithm and
// its per-target SIMD code are in flash-inl.h.
//
// Work items are (b, kv head, block of Br query positions[, key split]), Br
// chosen so a block holds about kTargetRows rows over the G heads of a GQA
// group. Items are independent and each computes its rows in a fixed order;
// split partials are merged in split order; so results are the same bits
// for any thread count. Scratch comes from a Workspace sized before the
// loop: per worker
//   Q [rows_padded, D] + Kt [D, kKeyTile] + Kd [kKeyTile, D]
//   + V [kKeyTile, Dvp] + S [rows_padded, kKeyTile] + O [rows_padded, Dvp]
//   + m, l + ranges + one 64-bit key mask per row,
// independent of Sq and Skv; with splits, one shared buffer of partials
// (items x rows_padded x (Dv + 1) floats), independent of Skv too.

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
                  int64_t item, std::byte* scratch, float* partial) {
  FlashItemGroup(p, ViewKV<float>{p.k, p.v}, plan, item, scratch, partial);
}
void FlashItemBF16(const detail::Problem<bfloat16>& p, const FlashPlan& plan,
                   int64_t item, std::byte* scratch, float* partial) {
  FlashItemGroup(p, ViewKV<bfloat16>{p.k, p.v}, plan, item, scratch, partial);
}
void FlashItemF16(const detail::Problem<float16>& p, const FlashPlan& plan,
                  int64_t item, std::byte* scratch, float* partial) {
  FlashItemGroup(p, ViewKV<float16>{p.k, p.v}, plan, item, scratch, partial);
}

}  // namespace HWY_NAMESPACE
}  // namespace attn::kernels
HWY_AFTER_NAMESPACE();

#if HWY_ONCE
#include "src/kernels/merge.h"
#include "src/kernels/tile_walk.h"
#include "src/util/cpu.h"
#include "src/util/dispatch.h"
#include "src/util/parallel.h"
#include "src/util/workspace_impl.h"

namespace attn::kernels {

ATTN_EXPORT_FOR_TYPES(FlashItem);
HWY_EXPORT(ThisFlashTarget);

FlashTarget flash_target() {
  util::ready_targets();
  FlashTarget target = HWY_DYNAMIC_DISPATCH(ThisFlashTarget)();
  target.vnni = target.avx512 && util::cpu_has_avx512_vnni();
  return target;
}

namespace {

int64_t round_up(int64_t x, int64_t to) { return (x + to - 1) / to * to; }
int64_t ceil_div(int64_t x, int64_t y) { return (x + y - 1) / y; }

// Combines the splits of every (b, kv head, query block) into out and lse,
// in split order.
template <class T>
void merge_partials(const detail::Problem<T>& pb, const FlashPlan& plan,
                    const float* partial, Workspace::Impl& ws, int threads) {
  const detail::Shape& sh = pb.params.shape;
  const int64_t G = sh.group(), Dv = sh.Dv;
  const int64_t bases = plan.items / plan.splits;
  util::ParallelFor(bases, threads, [&](int64_t base, int worker) {
    float* acc = reinterpret_cast<float*>(ws.slice(worker) + plan.o);
    const int64_t qblock = base % plan.blocks_per_head;
    const int64_t kvh = (base / plan.blocks_per_head) % sh.Hkv;
    const int64_t b = base / (plan.blocks_per_head * sh.Hkv);
    const int64_t i0 = qblock * plan.block_positions;
    const int64_t br = std::min(plan.block_positions, sh.Sq - i0);
    const int64_t first = base * plan.splits;
    for (int64_t r = 0; r < G * br; ++r) {
      const float lse = merge_row(
          plan.splits, Dv,
          [&](int64_t s) {
            return partial + plan.partial_out(first + s) + r * Dv;
          },
          [&](int64_t s) { return plan.partial_lse(partial, first + s)[r]; },
          acc);
      const int64_t h = kvh * G + r / br, i = i0 + r % br;
      T* out = pb.out.row(b, h, i);
      for (int64_t d = 0; d < Dv; ++d) out[d] = from_float<T>(acc[d]);
      if (!pb.lse.empty()) pb.lse(b, h, i, 0) = lse;
    }
  });
}

}  // namespace

FlashPlan make_flash_plan(const detail::Shape& sh, Band band, int64_t splits,
                          int64_t narrow) {
  FlashPlan plan;
  const int64_t G = sh.group();
  // Causal or windowed calls on short sequences get smaller items: less of
  // the diagonal band computed only to be masked, more items for the
  // threads. (Measured: S 512 causal 46% -> 53% of peak; unmasked calls
  // lose with smaller items, so they keep kTargetRows.)
  // A chunk of queries against a much longer cache (chunked prefill) has a
  // thin band: it keeps full-size items.
  if (sh.Skv >= 4 * sh.Sq) band = Band::kNone;
  int64_t target = band == Band::kNone || sh.Sq >= 2048 ? kTargetRows
                   : sh.Sq >= 1024                      ? kTargetRows / 2
                                                        : kTargetRows / 4;
  if (band == Band::kNarrow) target = std::min(target, narrow);
  plan.block_positions = std::clamp<int64_t>(target / G, 1, sh.Sq);
  plan.blocks_per_head =
      (sh.Sq + plan.block_positions - 1) / plan.block_positions;
  plan.rows_padded = round_up(G * plan.block_positions, kRowBlock);
  plan.dv_padded = round_up(sh.Dv, kDvAlign);
  plan.dv = sh.Dv;
  const int64_t bases = sh.B * sh.Hkv * plan.blocks_per_head;
  const int64_t tiles = std::max<int64_t>(1, ceil_div(sh.Skv, kKeyTile));
  if (splits == 0) {
    splits = std::clamp<int64_t>(ceil_div(kSplitTargetItems, bases), 1,
                                 std::max<int64_t>(1, sh.Skv / kMinSplitKeys));
  }
  splits = std::clamp<int64_t>(splits, 1, tiles);
  plan.split_keys = ceil_div(tiles, splits) * kKeyTile;
  plan.splits = std::max<int64_t>(1, ceil_div(sh.Skv, plan.split_keys));
  plan.items = bases * plan.splits;

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
  plan.kd = take(static_cast<std::size_t>(sh.D) * kKeyTile * f);
  plan.v = take(static_cast<std::size_t>(kKeyTile) * plan.dv_padded * f);
  plan.s = take(rows * kKeyTile * f);
  plan.o = take(rows * plan.dv_padded * f);
  plan.m = take(rows * f);
  plan.l = take(rows * f);
  plan.lw = take(rows * f);
  plan.ranges = take(plan.block_positions * sizeof(KeyRange));
  plan.pp = take(rows * (kKeyTile / 2) * sizeof(uint32_t));
  plan.keep = take(rows * sizeof(uint64_t));
  plan.bytes = at;
  return plan;
}

FlashWork count_flash_work(const detail::Params& p, int64_t splits) {
  const FlashPlan plan = make_flash_plan(p, splits);
  const int64_t G = p.shape.group();
  std::vector<KeyRange> ranges(static_cast<size_t>(plan.block_positions));
  FlashWork work;
  for (int64_t item = 0; item < plan.items; ++item) {
    const ItemSpan s = item_span(p, plan, item, ranges.data());
    const int64_t pos0 = s.i0 + p.offset_of(s.b);
    TileWalker walk(p.pattern, s.b, s.kvh * G, s.kvh * G + G, pos0, pos0 + s.br,
                    s.keys_begin, s.keys_end, kKeyTile);
    int64_t tile = 0;
    TileKind kind;
    while (walk.next(tile, kind)) {
      const int64_t keys = std::min((tile + 1) * kKeyTile, s.keys_end) -
                           std::max(tile * kKeyTile, s.keys_begin);
      ++work.tiles;
      work.scores += G * s.br * keys;
    }
  }
  return work;
}

template <class T>
void run_flash_items(const detail::Problem<T>& problem, const FlashPlan& plan,
                     const FlashItemFn& fn, Workspace* workspace) {
  Workspace& ws = workspace_or_default(workspace);
  const int threads = static_cast<int>(std::min<int64_t>(
      util::resolve_threads(problem.params.num_threads), plan.units()));
  Workspace::Impl& impl = ws.impl();
  impl.reserve(threads, plan.bytes * plan.head_group);
  float* partial = plan.splits > 1 ? reinterpret_cast<float*>(impl.shared(
                                         plan.partial_floats() * sizeof(float)))
                                   : nullptr;
  util::ParallelFor(plan.units(), threads, [&](int64_t unit, int worker) {
    fn(unit, impl.slice(worker), partial);
  });
  if (plan.splits > 1) merge_partials(problem, plan, partial, impl, threads);
}

template <class T>
void flash_attention(const detail::Problem<T>& problem, Workspace* workspace,
                     int64_t splits) {
  const detail::Params& p = problem.params;
  FlashPlan plan = make_flash_plan(p, splits);
  plan.path = choose_flash_path<T, T>(p, plan, flash_target(),
                                      util::cpu_has_avx512_bf16());
  const auto fn = ATTN_DISPATCH_FOR_TYPE(T, FlashItem);
  run_flash_items<T>(
      problem, plan,
      [&](int64_t item, std::byte* scratch, float* partial) {
        fn(problem, plan, item, scratch, partial);
      },
      workspace);
}

#define ATTN_INSTANTIATE(T)                                                  \
  template void flash_attention(const detail::Problem<T>&, Workspace*,       \
                                int64_t);                                    \
  template void run_flash_items(const detail::Problem<T>&, const FlashPlan&, \
                                const FlashItemFn&, Workspace*);
ATTN_INSTANTIATE(float)
ATTN_INSTANTIATE(bfloat16)
ATTN_INSTANTIATE(float16)
#undef ATTN_INSTANTIATE

}  // namespace attn::kernels
#endif  // HWY_ONCE

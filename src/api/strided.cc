// The Sparse Transformer's strided pattern (attn::SparseStrided) without
// its tile waste. In tiles of 64 keys the strided keys j = i - k * stride
// are a thin diagonal per tile, so a tile walk visits nearly every tile.
// Grouped by residue r = i mod stride, the same keys form dense causal
// attention within each class {r, r + stride, r + 2 stride, ...}, which a
// view with the sequence stride multiplied by `stride` expresses. So, per
// (batch entry, KV head group):
//   1. out, lse1 <- flash with a window of `local` keys (the A(1) part);
//   2. lse2, out2 <- flash over the residue classes (residues are the batch
//      axis of the views) with class distance a - b >= m = local / stride + 1,
//      i.e. keys outside the window: causal, top-left, queries from a = m;
//   3. non-causal only: lse3, out3 <- the mirror, keys a + m <= b;
//   4. out, lse <- merge of the parts by log-sum-exp (src/kernels/merge.h).
// Every key is in exactly one part, so the merge is the pattern's softmax.
// Cost: S * local + S^2 / stride instead of about S^2 / 2. Extra memory: one
// group's part outputs, G * S * Dv floats each, plus lse values.
#include "src/api/strided.h"

#include <limits>
#include <optional>
#include <vector>

#include "attn/attention.h"
#include "attn/patterns.h"
#include "src/kernels/merge.h"
#include "src/util/parallel.h"

namespace attn::detail {
namespace {

// How a call splits, or nullopt when it does not qualify.
struct StridedPlan {
  int64_t S, stride, local, m;  // m: first class distance outside the window
  bool causal;
  // Residues [r0, r1) whose classes have n members, n > m.
  struct Group {
    int64_t r0, r1, n;
  };
  std::vector<Group> groups;
};

std::optional<StridedPlan> plan_strided(const Params& p) {
  const Shape& sh = p.shape;
  const SparseStrided* sp = p.pattern.strided();
  if (sp == nullptr || p.algorithm != Algorithm::kFlash || sh.Sq != sh.Skv ||
      !p.key_lengths.empty() || !p.mask.empty() || !p.bias.empty() ||
      !p.alibi_slopes.empty() || p.window_left >= 0 || p.window_right >= 0 ||
      p.dropout.on()) {  // its parts renumber rows and keys
    return std::nullopt;
  }
  StridedPlan plan{sh.Sq,
                   sp->stride,
                   sp->local,
                   sp->local / sp->stride + 1,
                   sp->causal || p.causal,
                   {}};
  // Classes of one or two members: the tile walk does as well. (Value
  // heads beyond 1024 would overflow the merge's row buffer.)
  if (plan.S < 2 * plan.stride || sh.Dv > 1024) return std::nullopt;
  const int64_t rem = plan.S % plan.stride;
  for (const StridedPlan::Group g :
       {StridedPlan::Group{0, rem, plan.S / plan.stride + 1},
        StridedPlan::Group{rem, plan.stride, plan.S / plan.stride}}) {
    if (g.r1 > g.r0 && g.n > plan.m) plan.groups.push_back(g);
  }
  return plan;
}

}  // namespace

kernels::FlashWork strided_work(const Params& p) {
  const std::optional<StridedPlan> plan = plan_strided(p);
  if (!plan) return {-1, -1};
  const Shape& sh = p.shape;
  kernels::FlashWork total;
  const auto add = [&](const Params& part, int64_t copies) {
    const kernels::FlashWork w = kernels::count_flash_work(part, 1);
    total.tiles += w.tiles * copies;
    total.scores += w.scores * copies;
  };
  Params window = p;
  window.pattern = {};
  window.causal = plan->causal;
  window.window_left = plan->local;
  window.window_right = plan->causal ? -1 : plan->local;
  add(window, 1);
  for (const StridedPlan::Group& g : plan->groups) {
    Params cls = p;
    cls.pattern = {};
    cls.shape = {g.r1 - g.r0,   sh.group(), 1,    g.n - plan->m,
                 g.n - plan->m, sh.D,       sh.Dv};
    cls.offset = 0;
    cls.causal = true;
    add(cls, sh.B * sh.Hkv);  // left part, per (b, KV head)
    if (!plan->causal) {
      cls.causal = false;
      cls.window_left = 0;
      add(cls, sh.B * sh.Hkv);  // right part
    }
  }
  return total;
}

bool strided_attention(const Problem<float>& pb,
                       const AttentionOptions& options) {
  const Params& p = pb.params;
  const Shape& sh = p.shape;
  const std::optional<StridedPlan> plan = plan_strided(p);
  if (!plan) return false;
  const int64_t S = plan->S, stride = plan->stride, local = plan->local,
                m = plan->m;
  const bool causal = plan->causal;
  const int64_t G = sh.group(), Dv = sh.Dv;
  const float neg_inf = -std::numeric_limits<float>::infinity();

  AttentionOptions base = options;
  base.pattern = {};
  base.algorithm = Algorithm::kFlash;
  base.mask = {};
  base.bias = {};

  const int parts = causal ? 2 : 3;  // window, left classes, (right classes)
  // Kept across calls from this thread: fresh pages cost more to touch than
  // the class attention itself.
  thread_local std::vector<float> buffer;
  const size_t lse_floats = static_cast<size_t>(parts * G * S);
  const size_t need =
      lse_floats + static_cast<size_t>((parts - 1) * G * S * Dv);
  if (buffer.size() < need) buffer.resize(need);
  float* const lse = buffer.data();
  float* const class_out = lse + lse_floats;
  const auto lse_part = [&](int part) { return lse + part * G * S; };
  const auto out_part = [&](int part) {
    return class_out + (part - 1) * G * S * Dv;
  };

  for (int64_t b = 0; b < sh.B; ++b) {
    for (int64_t kvh = 0; kvh < sh.Hkv; ++kvh) {
      const auto heads = [&](auto view, int64_t h0, int64_t n) {
        return decltype(view)(view.row(b, h0, 0), {1, n, S, view.extent(3)},
                              view.strides());
      };
      const TensorView<const float> q = heads(pb.q, kvh * G, G);
      const TensorView<const float> k = heads(pb.k, kvh, 1);
      const TensorView<const float> v = heads(pb.v, kvh, 1);
      const TensorView<float> out = heads(pb.out, kvh * G, G);

      // 1. The window.
      AttentionOptions w = base;
      w.causal = causal;
      w.window_left = local;
      w.window_right = causal ? -1 : local;
      attention(q, k, v, out, w,
                TensorView<float>(lse_part(0), {1, G, S, 1}, {0, S, 1, 1}));

      // 2, 3. The classes: residues [r0, r1) have n positions each.
      std::fill(lse_part(1), lse + lse_floats, neg_inf);
      for (const auto& [r0, r1, n] : plan->groups) {
        const auto cls = [&](auto view, int64_t first, int64_t rows) {
          // [residues, heads, rows, dim]: residue r, class member a is
          // position r + (first + a) * stride.
          return decltype(view)(view.row(0, 0, r0 + first * stride),
                                {r1 - r0, view.extent(1), rows, view.extent(3)},
                                {view.stride(2), view.stride(1),
                                 stride * view.stride(2), view.stride(3)});
        };
        const auto tmp_out = [&](int part, int64_t first, int64_t rows) {
          return TensorView<float>(out_part(part) + (r0 + first * stride) * Dv,
                                   {r1 - r0, G, rows, Dv},
                                   {Dv, S * Dv, stride * Dv, 1});
        };
        const auto tmp_lse = [&](int part, int64_t first, int64_t rows) {
          return TensorView<float>(lse_part(part) + r0 + first * stride,
                                   {r1 - r0, G, rows, 1}, {1, S, stride, 1});
        };
        AttentionOptions c = base;
        c.alignment = Alignment::kTopLeft;
        // Left: member a >= m sees members b <= a - m.
        c.causal = true;
        attention(cls(q, m, n - m), cls(k, 0, n - m), cls(v, 0, n - m),
                  tmp_out(1, m, n - m), c, tmp_lse(1, m, n - m));
        if (!causal) {
          // Right: member a < n - m sees members b >= a + m.
          c.causal = false;
          c.window_left = 0;
          attention(cls(q, 0, n - m), cls(k, m, n - m), cls(v, m, n - m),
                    tmp_out(2, 0, n - m), c, tmp_lse(2, 0, n - m));
        }
      }

      // 4. Merge in part order, in blocks of rows.
      constexpr int64_t kRowsPerBlock = 256;
      const int64_t blocks = (S + kRowsPerBlock - 1) / kRowsPerBlock;
      util::ParallelFor(G * blocks, p.num_threads, [&](int64_t item, int) {
        const int64_t g = item / blocks, i0 = item % blocks * kRowsPerBlock;
        float acc[1024];  // Dv <= 1024 here (checked below)
        for (int64_t i = i0; i < std::min(S, i0 + kRowsPerBlock); ++i) {
          float* row = out.row(0, g, i);
          const float merged = kernels::merge_row(
              parts, Dv,
              [&](int64_t part) -> const float* {
                return part == 0 ? row : out_part(int(part)) + (g * S + i) * Dv;
              },
              [&](int64_t part) { return lse_part(int(part))[g * S + i]; },
              acc);
          std::copy(acc, acc + Dv, row);
          if (!pb.lse.empty()) pb.lse(b, kvh * G + g, i, 0) = merged;
        }
      });
    }
  }
  return true;
}

}  // namespace attn::detail

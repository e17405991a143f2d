// Rewrite::kStridedClasses: the Sparse Transformer's strided pattern
// (attn::SparseStrided) without its tile waste. In tiles of 64 keys the
// strided keys j = i - k * stride are a thin diagonal per tile, so a tile
// walk visits nearly every tile. Grouped by residue r = i mod stride, the
// same keys form dense causal attention within each class {r, r + stride,
// r + 2 stride, ...}, which a view with the sequence stride multiplied by
// `stride` expresses. So, per (batch entry, KV head group):
//   1. out, lse1 <- flash with a window of `local` keys (the A(1) part);
//   2. lse2, out2 <- flash over the residue classes (residues are the batch
//      axis of the views) with class distance a - b >= m = local / stride + 1,
//      i.e. keys outside the window: causal, top-left, queries from a = m;
//   3. non-causal only: lse3, out3 <- the mirror, keys a + m <= b;
//   4. out, lse <- merge of the parts by log-sum-exp (merge.h).
// Every key is in exactly one part, so the merge is the pattern's softmax.
// Each part is a Problem handed to the flash kernel directly: the call was
// validated once, and the parts' shapes follow from it.
// Cost: S * local + S^2 / stride instead of about S^2 / 2. Extra memory (the
// workspace's rewrite buffer): one group's part outputs, G * S * Dv floats
// each, plus lse values.
#include "src/kernels/strided.h"

#include <algorithm>
#include <limits>

#include "attn/patterns.h"
#include "src/kernels/merge.h"
#include "src/util/parallel.h"
#include "src/util/workspace_impl.h"

namespace attn::kernels {
namespace {

using detail::Params;
using detail::Shape;

// The merge's row buffer.
constexpr int64_t kMaxMergeDv = 1024;

// A part's parameters: the call's scale, softcap and threads, the pattern
// replaced by plain causality and windows, on views of `shape`.
Params part_params(const Params& p, const Shape& shape, bool causal,
                   int64_t window_left, int64_t window_right) {
  Params part = p;
  part.pattern = {};
  part.rewrite = Rewrite::kNone;
  part.algorithm = Algorithm::kFlash;
  part.shape = shape;
  part.offset = 0;  // square parts, and the classes are top-left aligned
  part.causal = causal;
  part.window_left = window_left;
  part.window_right = window_right;
  return part;
}

// The window part of one (b, KV head): G query heads against one KV head.
Params window_params(const Params& p, const StridedPlan& plan) {
  const Shape& sh = p.shape;
  return part_params(p, {1, sh.group(), 1, plan.S, plan.S, sh.D, sh.Dv},
                     plan.causal, plan.local, plan.causal ? -1 : plan.local);
}

// The class parts of group g: left (members a >= m see b <= a - m: causal)
// and, non-causal only, right (a < n - m sees b >= a + m: window_left 0).
Params class_params(const Params& p, const StridedPlan::Group& g, int64_t m,
                    bool left) {
  const Shape& sh = p.shape;
  const Shape shape{g.r1 - g.r0, sh.group(), 1, g.n - m, g.n - m, sh.D, sh.Dv};
  return left ? part_params(p, shape, true, -1, -1)
              : part_params(p, shape, false, 0, -1);
}

}  // namespace

std::optional<StridedPlan> plan_strided(const Params& p) {
  const Shape& sh = p.shape;
  const SparseStrided* sp = p.pattern.strided();
  if (sp == nullptr || p.algorithm != Algorithm::kFlash || sh.Sq != sh.Skv ||
      !p.key_lengths.empty() || p.per_sequence_offset || !p.mask.empty() ||
      !p.bias.empty() || !p.alibi_slopes.empty() || p.window_left >= 0 ||
      p.window_right >= 0 ||
      p.dropout.on()) {  // its parts renumber rows and keys
    return std::nullopt;
  }
  StridedPlan plan{sh.Sq,
                   sp->stride,
                   sp->local,
                   sp->local / sp->stride + 1,
                   sp->causal || p.causal,
                   {}};
  // Classes of one or two members: the tile walk does as well.
  if (plan.S < 2 * plan.stride || sh.Dv > kMaxMergeDv) return std::nullopt;
  const int64_t rem = plan.S % plan.stride;
  for (const StridedPlan::Group g :
       {StridedPlan::Group{0, rem, plan.S / plan.stride + 1},
        StridedPlan::Group{rem, plan.stride, plan.S / plan.stride}}) {
    if (g.r1 > g.r0 && g.n > plan.m) plan.groups.push_back(g);
  }
  return plan;
}

FlashWork count_strided_work(const Params& p) {
  const std::optional<StridedPlan> plan = plan_strided(p);
  if (!plan) return count_flash_work(p, 1);
  const int64_t copies = p.shape.B * p.shape.Hkv;  // parts per (b, KV head)
  FlashWork total;
  const auto add = [&](const Params& part) {
    const FlashWork w = count_flash_work(part, 1);
    total.tiles += w.tiles * copies;
    total.scores += w.scores * copies;
  };
  add(window_params(p, *plan));
  for (const StridedPlan::Group& g : plan->groups) {
    add(class_params(p, g, plan->m, /*left=*/true));
    if (!plan->causal) add(class_params(p, g, plan->m, /*left=*/false));
  }
  return total;
}

void strided_attention(const detail::Problem<float>& pb, Workspace* workspace) {
  const Params& p = pb.params;
  const Shape& sh = p.shape;
  const std::optional<StridedPlan> found = plan_strided(p);
  if (!found) {  // validation sets the rewrite only where it applies
    flash_attention(pb, workspace, 1);
    return;
  }
  const StridedPlan& plan = *found;
  const int64_t S = plan.S, stride = plan.stride, m = plan.m;
  const int64_t G = sh.group(), Dv = sh.Dv;
  const float neg_inf = -std::numeric_limits<float>::infinity();

  // The parts' results, on the workspace (kept across calls: fresh pages
  // cost more to touch than the class attention itself). The flash parts
  // use the same workspace's slices.
  Workspace& ws = workspace_or_default(workspace);
  const int parts = plan.causal ? 2 : 3;  // window, left, (right) classes
  const int64_t lse_floats = parts * G * S;
  float* const lse = reinterpret_cast<float*>(ws.impl().rewrite(
      static_cast<std::size_t>(lse_floats + (parts - 1) * G * S * Dv) *
      sizeof(float)));
  float* const class_out = lse + lse_floats;
  const auto lse_part = [&](int part) { return lse + part * G * S; };
  const auto out_part = [&](int part) {
    return class_out + (part - 1) * G * S * Dv;
  };

  const Params window = window_params(p, plan);
  for (int64_t b = 0; b < sh.B; ++b) {
    for (int64_t kvh = 0; kvh < sh.Hkv; ++kvh) {
      const auto heads = [&](auto view, int64_t h0, int64_t n) {
        return decltype(view)(view.row(b, h0, 0), {1, n, S, view.extent(3)},
                              view.strides());
      };
      detail::Problem<float> part;
      const TensorView<const float> q = heads(pb.q, kvh * G, G);
      const TensorView<const float> k = heads(pb.k, kvh, 1);
      const TensorView<const float> v = heads(pb.v, kvh, 1);
      const TensorView<float> out = heads(pb.out, kvh * G, G);

      // 1. The window.
      part.params = window;
      part.q = q;
      part.k = k;
      part.v = v;
      part.out = out;
      part.lse = TensorView<float>(lse_part(0), {1, G, S, 1}, {0, S, 1, 1});
      flash_attention(part, &ws, 1);

      // 2, 3. The classes: residues [r0, r1) have n positions each.
      std::fill(lse_part(1), lse + lse_floats, neg_inf);
      for (const StridedPlan::Group& g : plan.groups) {
        const int64_t r0 = g.r0, r1 = g.r1, n = g.n;
        const auto cls = [&](auto view, int64_t first, int64_t rows) {
          // [residues, heads, rows, dim]: residue r, class member a is
          // position r + (first + a) * stride.
          return decltype(view)(view.row(0, 0, r0 + first * stride),
                                {r1 - r0, view.extent(1), rows, view.extent(3)},
                                {view.stride(2), view.stride(1),
                                 stride * view.stride(2), view.stride(3)});
        };
        const auto tmp_out = [&](int which, int64_t first, int64_t rows) {
          return TensorView<float>(out_part(which) + (r0 + first * stride) * Dv,
                                   {r1 - r0, G, rows, Dv},
                                   {Dv, S * Dv, stride * Dv, 1});
        };
        const auto tmp_lse = [&](int which, int64_t first, int64_t rows) {
          return TensorView<float>(lse_part(which) + r0 + first * stride,
                                   {r1 - r0, G, rows, 1}, {1, S, stride, 1});
        };
        // Left: member a >= m sees members b <= a - m.
        part.params = class_params(p, g, m, /*left=*/true);
        part.q = cls(q, m, n - m);
        part.k = cls(k, 0, n - m);
        part.v = cls(v, 0, n - m);
        part.out = tmp_out(1, m, n - m);
        part.lse = tmp_lse(1, m, n - m);
        flash_attention(part, &ws, 1);
        if (!plan.causal) {
          // Right: member a < n - m sees members b >= a + m.
          part.params = class_params(p, g, m, /*left=*/false);
          part.q = cls(q, 0, n - m);
          part.k = cls(k, m, n - m);
          part.v = cls(v, m, n - m);
          part.out = tmp_out(2, 0, n - m);
          part.lse = tmp_lse(2, 0, n - m);
          flash_attention(part, &ws, 1);
        }
      }

      // 4. Merge in part order, in blocks of rows.
      constexpr int64_t kRowsPerBlock = 256;
      const int64_t blocks = (S + kRowsPerBlock - 1) / kRowsPerBlock;
      util::ParallelFor(G * blocks, p.num_threads, [&](int64_t item, int) {
        const int64_t g = item / blocks, i0 = item % blocks * kRowsPerBlock;
        float acc[kMaxMergeDv];
        for (int64_t i = i0; i < std::min(S, i0 + kRowsPerBlock); ++i) {
          float* row = out.row(0, g, i);
          const float merged = merge_row(
              parts, Dv,
              [&](int64_t pt) -> const float* {
                return pt == 0 ? row : out_part(int(pt)) + (g * S + i) * Dv;
              },
              [&](int64_t pt) { return lse_part(int(pt))[g * S + i]; }, acc);
          std::copy(acc, acc + Dv, row);
          if (!pb.lse.empty()) pb.lse(b, kvh * G + g, i, 0) = merged;
        }
      });
    }
  }
}

}  // namespace attn::kernels

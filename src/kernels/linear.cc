// Linear attention, chunked (attn/linear.h):
//
//   out_i = phi(q_i)^T S_i / (phi(q_i) . z_i + eps)
//   S_i = sum_{j in keys(i)} phi(k_j) v_j^T   [D, Dv],   z_i = sum phi(k_j)  [D]
//
// The keys of each (b, KV head) are cut into segments of whole chunks (C =
// 64 keys; about 16 segments, a function of the shape only, so results do
// not depend on the thread count):
//   1. per (b, kv head, segment), in parallel: the segment's totals
//      T = sum phi(k) v^T and t = sum phi(k);
//   2. per (b, kv head), in segment order: exclusive prefix sums of the
//      totals (non-causal: their sum), starting from the state given;
//   3. causal, per (b, kv head, segment), in parallel: chunk by chunk,
//      for each query head of the GQA group,
//        num = phi(Q_c) S + tril(phi(Q_c) phi(K_c)^T) V_c   [C, Dv]
//        den = phi(Q_c) z + rowsum(tril(phi(Q_c) phi(K_c)^T))
//      then S += phi(K_c)^T V_c, z += colsum phi(K_c);
//      non-causal, per (b, kv head, block of C queries): num = phi(Q) S,
//      den = phi(Q) z.
// Work per position and query head: about 4 D Dv + C (D + Dv) FLOPs; extra
// memory: B * Hkv * segments * D * (Dv + 1) floats of totals plus per-worker
// chunk scratch, none of it growing with S beyond the segment count.

#undef HWY_TARGET_INCLUDE
#define HWY_TARGET_INCLUDE "src/kernels/linear.cc"
#include "hwy/foreach_target.h"  // IWYU pragma: keep
// Must come after foreach_target.h.
#include "hwy/contrib/math/math-inl.h"
#include "hwy/highway.h"
#include "src/kernels/linear.h"

#ifndef ATTN_SRC_KERNELS_LINEAR_PLAN_
#define ATTN_SRC_KERNELS_LINEAR_PLAN_
namespace attn::kernels {

inline constexpr int64_t kLinearChunk = 64;
inline constexpr int64_t kLinearSegments = 16;

// Segments and per-worker scratch (float offsets) of one call.
struct LinearPlan {
  int64_t chunk = kLinearChunk, seg_len = 0, segments = 0;
  int64_t state_floats = 0;  // D * Dv + D
  // Per-worker scratch: S, z (a segment's running state), phi(K) [C, D],
  // phi(K)^T [D, C], V [C, Dv], phi(Q) [C, D], A row [C], num row [Dv],
  // one widened input row [max(D, Dv)].
  int64_t s = 0, z = 0, phik = 0, phikt = 0, v = 0, phiq = 0, a = 0, num = 0,
          row = 0, floats = 0;
};

}  // namespace attn::kernels
#endif

HWY_BEFORE_NAMESPACE();
namespace attn::kernels {
namespace HWY_NAMESPACE {
namespace hn = hwy::HWY_NAMESPACE;
using DF = hn::ScalableTag<float>;

// y[0, n) += a * x[0, n).
HWY_INLINE void Axpy(float a, const float* HWY_RESTRICT x, float* HWY_RESTRICT y,
                     int64_t n) {
  const DF df;
  const int64_t N = static_cast<int64_t>(hn::Lanes(df));
  const auto va = hn::Set(df, a);
  int64_t i = 0;
  for (; i + N <= n; i += N) {
    hn::StoreU(hn::MulAdd(va, hn::LoadU(df, x + i), hn::LoadU(df, y + i)), df, y + i);
  }
  for (; i < n; ++i) y[i] += a * x[i];
}

// sum a[i] b[i] in a fixed order: lanes, then the tail.
HWY_INLINE float Dot(const float* HWY_RESTRICT a, const float* HWY_RESTRICT b,
                     int64_t n) {
  const DF df;
  const int64_t N = static_cast<int64_t>(hn::Lanes(df));
  auto acc = hn::Zero(df);
  int64_t i = 0;
  for (; i + N <= n; i += N) acc = hn::MulAdd(hn::LoadU(df, a + i), hn::LoadU(df, b + i), acc);
  float sum = hn::GetLane(hn::SumOfLanes(df, acc));
  for (; i < n; ++i) sum += a[i] * b[i];
  return sum;
}

// A stored row of n elements as float.
template <class T>
HWY_INLINE const float* Widen(const T* src, int64_t n, float* tmp) {
  if constexpr (std::is_same_v<T, float>) {
    return src;
  } else {
    for (int64_t d = 0; d < n; ++d) tmp[d] = to_float(src[d]);
    return tmp;
  }
}

// y = phi(x) over a row of n values.
template <class T>
HWY_INLINE void Phi(const LinearProblem<T>& p, const float* HWY_RESTRICT x,
                    float* HWY_RESTRICT y, int64_t n) {
  if (p.map == FeatureMap::kCustom) {
    p.custom(x, y, n, p.custom_context);
    return;
  }
  const DF df;
  const int64_t N = static_cast<int64_t>(hn::Lanes(df));
  const auto zero = hn::Zero(df), one = hn::Set(df, 1.0f);
  // exp's valid range starts near -87; below, elu(x) + 1 rounds to 0 anyway.
  const auto lowest = hn::Set(df, -87.0f);
  int64_t d = 0;
  for (; d + N <= n; d += N) {
    const auto v = hn::LoadU(df, x + d);
    if (p.map == FeatureMap::kRelu) {
      hn::StoreU(hn::Max(v, zero), df, y + d);
    } else {
      const auto e = hn::Exp(df, hn::Max(v, lowest));
      hn::StoreU(hn::IfThenElse(hn::Gt(v, zero), hn::Add(v, one), e), df, y + d);
    }
  }
  for (; d < n; ++d) {
    y[d] = p.map == FeatureMap::kRelu ? (x[d] > 0 ? x[d] : 0.0f)
           : x[d] > 0                 ? x[d] + 1.0f
                                      : std::exp(std::max(x[d], -87.0f));
  }
}

// Pass 1: totals of keys [j0, j1) of (b, kvh) into st (D * Dv + D floats).
template <class T>
void SegmentTotals(const LinearProblem<T>& p, const LinearPlan& plan, int64_t b,
                   int64_t kvh, int64_t j0, int64_t j1, float* st, float* scratch) {
  const int64_t D = p.shape.D, Dv = p.shape.Dv;
  float* S = st;
  float* z = st + D * Dv;
  std::fill(st, st + plan.state_floats, 0.0f);
  float* phik = scratch + plan.phik;
  float* row = scratch + plan.row;
  for (int64_t j = j0; j < j1; ++j) {
    Phi(p, Widen(p.k.row(b, kvh, j), D, row), phik, D);
    const float* v = Widen(p.v.row(b, kvh, j), Dv, row);
    for (int64_t d = 0; d < D; ++d) Axpy(phik[d], v, S + d * Dv, Dv);
    Axpy(1.0f, phik, z, D);
  }
}

// Writes out row i of head h from num [Dv] and den.
template <class T>
HWY_INLINE void WriteRow(const LinearProblem<T>& p, int64_t b, int64_t h, int64_t i,
                         const float* num, float den) {
  T* out = p.out.row(b, h, i);
  den += p.eps;
  const float inv = den != 0.0f ? 1.0f / den : 0.0f;
  for (int64_t e = 0; e < p.shape.Dv; ++e) out[e] = from_float<T>(num[e] * inv);
}

// Pass 3, causal: keys and queries [j0, j1) of (b, kvh) from the state
// st_in; the final state goes to st_out when not null.
template <class T>
void CausalSegment(const LinearProblem<T>& p, const LinearPlan& plan, int64_t b,
                   int64_t kvh, int64_t j0, int64_t j1, const float* st_in,
                   float* st_out, float* scratch) {
  const int64_t D = p.shape.D, Dv = p.shape.Dv, G = p.shape.group(), C = plan.chunk;
  float* S = scratch + plan.s;
  float* z = scratch + plan.z;
  float* phik = scratch + plan.phik;
  float* phikt = scratch + plan.phikt;
  float* V = scratch + plan.v;
  float* phiq = scratch + plan.phiq;
  float* a = scratch + plan.a;
  float* num = scratch + plan.num;
  float* row = scratch + plan.row;
  std::copy(st_in, st_in + D * Dv, S);
  std::copy(st_in + D * Dv, st_in + D * Dv + D, z);
  for (int64_t c0 = j0; c0 < j1; c0 += C) {
    const int64_t n = std::min(C, j1 - c0);
    for (int64_t jj = 0; jj < n; ++jj) {
      Phi(p, Widen(p.k.row(b, kvh, c0 + jj), D, row), phik + jj * D, D);
      const float* v = Widen(p.v.row(b, kvh, c0 + jj), Dv, row);
      std::copy(v, v + Dv, V + jj * Dv);
      for (int64_t d = 0; d < D; ++d) phikt[d * C + jj] = phik[jj * D + d];
    }
    for (int64_t g = 0; g < G; ++g) {
      const int64_t h = kvh * G + g;
      for (int64_t ii = 0; ii < n; ++ii) {
        float* q = phiq + ii * D;
        Phi(p, Widen(p.q.row(b, h, c0 + ii), D, row), q, D);
        // Keys before the chunk, through the state.
        std::fill(num, num + Dv, 0.0f);
        for (int64_t d = 0; d < D; ++d) Axpy(q[d], S + d * Dv, num, Dv);
        float den = Dot(q, z, D);
        // Keys of the chunk up to this query.
        std::fill(a, a + ii + 1, 0.0f);
        for (int64_t d = 0; d < D; ++d) Axpy(q[d], phikt + d * C, a, ii + 1);
        for (int64_t jj = 0; jj <= ii; ++jj) {
          Axpy(a[jj], V + jj * Dv, num, Dv);
          den += a[jj];
        }
        WriteRow(p, b, h, c0 + ii, num, den);
      }
    }
    for (int64_t jj = 0; jj < n; ++jj) {
      for (int64_t d = 0; d < D; ++d) Axpy(phik[jj * D + d], V + jj * Dv, S + d * Dv, Dv);
      Axpy(1.0f, phik + jj * D, z, D);
    }
  }
  if (st_out != nullptr) {
    std::copy(S, S + D * Dv, st_out);
    std::copy(z, z + D, st_out + D * Dv);
  }
}

// Pass 3, non-causal: queries [i0, i1) of every head of group kvh against
// the total state st.
template <class T>
void NonCausalRows(const LinearProblem<T>& p, const LinearPlan& plan, int64_t b,
                   int64_t kvh, int64_t i0, int64_t i1, const float* st,
                   float* scratch) {
  const int64_t D = p.shape.D, Dv = p.shape.Dv, G = p.shape.group();
  const float* S = st;
  const float* z = st + D * Dv;
  float* q = scratch + plan.phiq;
  float* num = scratch + plan.num;
  float* row = scratch + plan.row;
  for (int64_t g = 0; g < G; ++g) {
    const int64_t h = kvh * G + g;
    for (int64_t i = i0; i < i1; ++i) {
      Phi(p, Widen(p.q.row(b, h, i), D, row), q, D);
      std::fill(num, num + Dv, 0.0f);
      for (int64_t d = 0; d < D; ++d) Axpy(q[d], S + d * Dv, num, Dv);
      WriteRow(p, b, h, i, num, Dot(q, z, D));
    }
  }
}

#define ATTN_LINEAR_ITEMS(T, Suffix)                                              \
  void Totals##Suffix(const LinearProblem<T>& p, const LinearPlan& plan,          \
                      int64_t b, int64_t kvh, int64_t j0, int64_t j1, float* st,  \
                      float* scratch) {                                           \
    SegmentTotals(p, plan, b, kvh, j0, j1, st, scratch);                          \
  }                                                                               \
  void Causal##Suffix(const LinearProblem<T>& p, const LinearPlan& plan,          \
                      int64_t b, int64_t kvh, int64_t j0, int64_t j1,             \
                      const float* st_in, float* st_out, float* scratch) {        \
    CausalSegment(p, plan, b, kvh, j0, j1, st_in, st_out, scratch);               \
  }                                                                               \
  void Rows##Suffix(const LinearProblem<T>& p, const LinearPlan& plan, int64_t b, \
                    int64_t kvh, int64_t i0, int64_t i1, const float* st,         \
                    float* scratch) {                                             \
    NonCausalRows(p, plan, b, kvh, i0, i1, st, scratch);                          \
  }
ATTN_LINEAR_ITEMS(float, F32)
ATTN_LINEAR_ITEMS(bfloat16, BF16)
ATTN_LINEAR_ITEMS(float16, F16)
#undef ATTN_LINEAR_ITEMS

}  // namespace HWY_NAMESPACE
}  // namespace attn::kernels
HWY_AFTER_NAMESPACE();

#if HWY_ONCE
#include <vector>

#include "src/util/parallel.h"
#include "src/util/workspace_impl.h"

namespace attn::kernels {

HWY_EXPORT(TotalsF32);
HWY_EXPORT(TotalsBF16);
HWY_EXPORT(TotalsF16);
HWY_EXPORT(CausalF32);
HWY_EXPORT(CausalBF16);
HWY_EXPORT(CausalF16);
HWY_EXPORT(RowsF32);
HWY_EXPORT(RowsBF16);
HWY_EXPORT(RowsF16);

namespace {

template <class T>
struct Items;
#define ATTN_LINEAR_DISPATCH(T, Suffix)                                        \
  template <>                                                                  \
  struct Items<T> {                                                            \
    static auto totals() { return &HWY_DYNAMIC_DISPATCH(Totals##Suffix); }     \
    static auto causal() { return &HWY_DYNAMIC_DISPATCH(Causal##Suffix); }     \
    static auto rows() { return &HWY_DYNAMIC_DISPATCH(Rows##Suffix); }         \
  };
ATTN_LINEAR_DISPATCH(float, F32)
ATTN_LINEAR_DISPATCH(bfloat16, BF16)
ATTN_LINEAR_DISPATCH(float16, F16)
#undef ATTN_LINEAR_DISPATCH

LinearPlan make_plan(const detail::Shape& sh) {
  LinearPlan plan;
  const int64_t C = plan.chunk;
  const int64_t per = (sh.Skv + kLinearSegments - 1) / kLinearSegments;
  plan.seg_len = std::max(C, (per + C - 1) / C * C);
  plan.segments = std::max<int64_t>(1, (sh.Skv + plan.seg_len - 1) / plan.seg_len);
  plan.state_floats = sh.D * sh.Dv + sh.D;
  int64_t at = 0;
  auto take = [&at](int64_t n) {
    const int64_t o = at;
    at += (n + 15) / 16 * 16;  // 64-byte steps
    return o;
  };
  plan.s = take(sh.D * sh.Dv);
  plan.z = take(sh.D);
  plan.phik = take(C * sh.D);
  plan.phikt = take(sh.D * C);
  plan.v = take(C * sh.Dv);
  plan.phiq = take(C * sh.D);
  plan.a = take(C);
  plan.num = take(sh.Dv);
  plan.row = take(std::max(sh.D, sh.Dv));
  plan.floats = at;
  return plan;
}

}  // namespace

template <class T>
void linear_chunked(const LinearProblem<T>& p, Workspace* workspace, float* state) {
  hwy::ChosenTarget& chosen = hwy::GetChosenTarget();
  if (!chosen.IsInitialized()) chosen.Update(hwy::SupportedTargets());
  const detail::Shape& sh = p.shape;
  const LinearPlan plan = make_plan(sh);
  const int64_t heads = sh.B * sh.Hkv, nseg = plan.segments;
  thread_local Workspace own;
  Workspace& ws = workspace != nullptr ? *workspace : own;
  Workspace::Impl& impl = ws.impl();
  const int threads = static_cast<int>(std::min<int64_t>(
      util::resolve_threads(p.num_threads), heads * std::max(nseg, sh.Sq / plan.chunk + 1)));
  impl.reserve(threads, static_cast<std::size_t>(plan.floats) * sizeof(float));
  // Totals, one block per (b, kv head, segment), then one more block per
  // (b, kv head) for the running sum.
  float* totals = reinterpret_cast<float*>(impl.shared(
      static_cast<std::size_t>(heads * (nseg + 1) * plan.state_floats) * sizeof(float)));
  const auto block = [&](int64_t bh, int64_t seg) {
    return totals + (bh * (nseg + 1) + seg) * plan.state_floats;
  };
  const auto scratch = [&](int worker) {
    return reinterpret_cast<float*>(impl.slice(worker));
  };
  const auto seg_keys = [&](int64_t seg) {
    return std::pair{seg * plan.seg_len, std::min(sh.Skv, (seg + 1) * plan.seg_len)};
  };

  // 1. Segment totals.
  const auto totals_fn = Items<T>::totals();
  util::ParallelFor(heads * nseg, threads, [&](int64_t item, int worker) {
    const int64_t bh = item / nseg, seg = item % nseg;
    const auto [j0, j1] = seg_keys(seg);
    totals_fn(p, plan, bh / sh.Hkv, bh % sh.Hkv, j0, j1, block(bh, seg), scratch(worker));
  });
  // 2. Prefix sums in segment order (non-causal: the sum lands in the last
  // block).
  util::ParallelFor(heads, threads, [&](int64_t bh, int) {
    float* running = block(bh, nseg);
    if (state != nullptr) {
      std::copy(state + bh * plan.state_floats, state + (bh + 1) * plan.state_floats,
                running);
    } else {
      std::fill(running, running + plan.state_floats, 0.0f);
    }
    for (int64_t seg = 0; seg < nseg; ++seg) {
      float* t = block(bh, seg);
      for (int64_t x = 0; x < plan.state_floats; ++x) {
        const float total = t[x];
        t[x] = running[x];  // state before this segment
        running[x] += total;
      }
    }
  });
  if (!p.causal) {
    // 3. Every query against the whole state.
    const int64_t blocks = (sh.Sq + plan.chunk - 1) / plan.chunk;
    const auto rows_fn = Items<T>::rows();
    util::ParallelFor(heads * blocks, threads, [&](int64_t item, int worker) {
      const int64_t bh = item / blocks, i0 = (item % blocks) * plan.chunk;
      rows_fn(p, plan, bh / sh.Hkv, bh % sh.Hkv, i0, std::min(sh.Sq, i0 + plan.chunk),
              block(bh, nseg), scratch(worker));
    });
    return;
  }
  // 3. Each segment from the state before it.
  const auto causal_fn = Items<T>::causal();
  util::ParallelFor(heads * nseg, threads, [&](int64_t item, int worker) {
    const int64_t bh = item / nseg, seg = item % nseg;
    const auto [j0, j1] = seg_keys(seg);
    causal_fn(p, plan, bh / sh.Hkv, bh % sh.Hkv, j0, j1, block(bh, seg), nullptr,
              scratch(worker));
  });
  if (state != nullptr) {
    for (int64_t bh = 0; bh < heads; ++bh) {
      std::copy(block(bh, nseg), block(bh, nseg) + plan.state_floats,
                state + bh * plan.state_floats);
    }
  }
}

template <class T>
void linear_naive(const LinearProblem<T>& p) {
  const detail::Shape& sh = p.shape;
  const int threads = util::resolve_threads(p.num_threads);
  util::ParallelFor(sh.B * sh.Hq, threads, [&](int64_t item, int) {
    const int64_t b = item / sh.Hq, h = item % sh.Hq, kvh = h / sh.group();
    std::vector<float> pk(sh.Skv * sh.D), pq(sh.D), row(std::max(sh.D, sh.Dv)),
        a(sh.Skv), num(sh.Dv);
    for (int64_t j = 0; j < sh.Skv; ++j) {
      for (int64_t d = 0; d < sh.D; ++d) row[d] = to_float(p.k(b, kvh, j, d));
      phi_row<float>(p, row.data(), &pk[j * sh.D], sh.D);
    }
    for (int64_t i = 0; i < sh.Sq; ++i) {
      for (int64_t d = 0; d < sh.D; ++d) row[d] = to_float(p.q(b, h, i, d));
      phi_row<float>(p, row.data(), pq.data(), sh.D);
      const int64_t keys = p.causal ? i + 1 : sh.Skv;
      float den = 0.0f;
      std::fill(num.begin(), num.end(), 0.0f);
      for (int64_t j = 0; j < keys; ++j) {
        float s = 0.0f;
        for (int64_t d = 0; d < sh.D; ++d) s += pq[d] * pk[j * sh.D + d];
        den += s;
        for (int64_t e = 0; e < sh.Dv; ++e) num[e] += s * to_float(p.v(b, kvh, j, e));
      }
      den += p.eps;
      const float inv = den != 0.0f ? 1.0f / den : 0.0f;
      for (int64_t e = 0; e < sh.Dv; ++e) p.out(b, h, i, e) = from_float<T>(num[e] * inv);
    }
  });
}

#define ATTN_INSTANTIATE(T)                                                  \
  template void linear_chunked(const LinearProblem<T>&, Workspace*, float*); \
  template void linear_naive(const LinearProblem<T>&);
ATTN_INSTANTIATE(float)
ATTN_INSTANTIATE(bfloat16)
ATTN_INSTANTIATE(float16)
#undef ATTN_INSTANTIATE

}  // namespace attn::kernels
#endif  // HWY_ONCE

// Linear attention, chunked (attn/linear.h):
//
//   out_i = phi(q_i)^T S_i / (phi(q_i) . z_i + eps)
//   S_i = sum_{j in keys(i)} phi(k_j) v_j^T   [D, Dv],   z_i = sum phi(k_j) [D]
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
#include "src/kernels/micro_gemm-inl.h"

#ifndef ATTN_SRC_KERNELS_LINEAR_PLAN_
#define ATTN_SRC_KERNELS_LINEAR_PLAN_
namespace attn::kernels {

inline constexpr int64_t kLinearChunk = 64;
inline constexpr int64_t kLinearSegments = 16;

// Segments and per-worker scratch (float offsets) of one call.
struct LinearPlan {
  int64_t chunk = kLinearChunk, seg_len = 0, segments = 0;
  int64_t state_floats = 0;  // D * Dv + D: S, then z, as stored
  int64_t dvp = 0;           // Dv padded to a multiple of 16 in scratch
  // Per-worker scratch (Dv padded with zeros): S [D, Dvp], z [D] (a
  // segment's running state), phi(K)^T [D, C], V [C, Dvp], phi(Q) [C, D],
  // A [C, C], NUM [C, Dvp], one widened input row [max(D, Dv)].
  int64_t s = 0, z = 0, phikt = 0, v = 0, phiq = 0, a = 0, num = 0, row = 0,
          floats = 0;
};

}  // namespace attn::kernels
#endif

HWY_BEFORE_NAMESPACE();
namespace attn::kernels {
namespace HWY_NAMESPACE {
namespace hn = hwy::HWY_NAMESPACE;

// sum a[i] b[i] in a fixed order: lanes, then the tail.
HWY_INLINE float Dot(const float* HWY_RESTRICT a, const float* HWY_RESTRICT b,
                     int64_t n) {
  const DF df;
  const int64_t N = static_cast<int64_t>(hn::Lanes(df));
  auto acc = hn::Zero(df);
  int64_t i = 0;
  for (; i + N <= n; i += N)
    acc = hn::MulAdd(hn::LoadU(df, a + i), hn::LoadU(df, b + i), acc);
  float sum = hn::GetLane(hn::SumOfLanes(df, acc));
  for (; i < n; ++i) sum += a[i] * b[i];
  return sum;
}

// Rows per register block of the products below (kVecs vectors wide):
// the family's micro-GEMM (micro_gemm-inl.h).
constexpr int kRows = 4;

template <int R>
HWY_INLINE void ProductRows(const float* A, int64_t lda, int64_t K,
                            const float* B, int64_t ldb, float* C, int64_t ldc,
                            int64_t vecs, bool add) {
  MicroGemmCols<R>(DF(), A, lda, 1, 0, K, MatrixB{B, ldb}, 0, vecs, C, ldc, add,
                   kDotChain);
}

// C[M, cols] (+)= A[M, K] B[K, cols], row-major with leading dims lda,
// ldb, ldc; cols a multiple of the vector length; add: accumulate.
HWY_NOINLINE void Product(const float* A, int64_t lda, int64_t M, int64_t K,
                          const float* B, int64_t ldb, float* C, int64_t ldc,
                          int64_t cols, bool add = true) {
  const int64_t vecs = cols / static_cast<int64_t>(hn::Lanes(DF()));
  int64_t r = 0;
  for (; r + kRows <= M; r += kRows) {
    ProductRows<kRows>(A + r * lda, lda, K, B, ldb, C + r * ldc, ldc, vecs,
                       add);
  }
  for (; r < M; ++r) {
    ProductRows<1>(A + r * lda, lda, K, B, ldb, C + r * ldc, ldc, vecs, add);
  }
}

// C[M, cols] += tril(A)[M, M] B[M, cols]: row r takes A[r, 0 .. r] only.
// Blocks of kRows rows run K = (last row of the block) + 1 keys with the
// block's small upper triangle of A cleared, so A's upper part is never
// read.
HWY_NOINLINE void LowerProduct(float* A, int64_t lda, int64_t M, const float* B,
                               int64_t ldb, float* C, int64_t ldc,
                               int64_t cols) {
  const int64_t vecs = cols / static_cast<int64_t>(hn::Lanes(DF()));
  int64_t r = 0;
  for (; r + kRows <= M; r += kRows) {
    for (int64_t x = 0; x < kRows; ++x) {
      for (int64_t y = x + 1; y < kRows; ++y) A[(r + x) * lda + r + y] = 0.0f;
    }
    ProductRows<kRows>(A + r * lda, lda, r + kRows, B, ldb, C + r * ldc, ldc,
                       vecs, true);
  }
  for (; r < M; ++r) {
    ProductRows<1>(A + r * lda, lda, r + 1, B, ldb, C + r * ldc, ldc, vecs,
                   true);
  }
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

// y = phi(x) over a row of n values. Not inlined, nor are the products
// above and below: they are the bulk of the code and depend on no element
// type, so each target compiles them once, not once per type's items.
HWY_NOINLINE void PhiRow(FeatureMap map, FeatureFn custom,
                         const void* custom_context,
                         const float* HWY_RESTRICT x, float* HWY_RESTRICT y,
                         int64_t n) {
  if (map == FeatureMap::kCustom) {
    custom(x, y, n, custom_context);
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
    if (map == FeatureMap::kRelu) {
      hn::StoreU(hn::Max(v, zero), df, y + d);
    } else {
      const auto e = hn::Exp(df, hn::Max(v, lowest));
      hn::StoreU(hn::IfThenElse(hn::Gt(v, zero), hn::Add(v, one), e), df,
                 y + d);
    }
  }
  for (; d < n; ++d) {
    y[d] = map == FeatureMap::kRelu ? (x[d] > 0 ? x[d] : 0.0f)
           : x[d] > 0               ? x[d] + 1.0f
                                    : std::exp(std::max(x[d], -87.0f));
  }
}

template <class T>
HWY_INLINE void Phi(const LinearProblem<T>& p, const float* HWY_RESTRICT x,
                    float* HWY_RESTRICT y, int64_t n) {
  PhiRow(p.map, p.custom, p.custom_context, x, y, n);
}

// Loads keys and values [c0, c0 + n) of (b, kvh): phi(K)^T into phikt [D,
// C] and V into v [C, Dvp] (padding columns zero); adds colsum phi(K) to z.
template <class T>
void LoadChunk(const LinearProblem<T>& p, const LinearPlan& plan, int64_t b,
               int64_t kvh, int64_t c0, int64_t n, float* phikt, float* V,
               float* z, float* row) {
  const int64_t D = p.shape.D, Dv = p.shape.Dv, C = plan.chunk, Dvp = plan.dvp;
  float phik[1024 + 16];  // one key's features; D <= 1024 checked at the API
  for (int64_t jj = 0; jj < n; ++jj) {
    Phi(p, Widen(p.k.row(b, kvh, c0 + jj), D, row), phik, D);
    for (int64_t d = 0; d < D; ++d) {
      phikt[d * C + jj] = phik[d];
      z[d] += phik[d];
    }
    const float* v = Widen(p.v.row(b, kvh, c0 + jj), Dv, row);
    std::copy(v, v + Dv, V + jj * Dvp);
    std::fill(V + jj * Dvp + Dv, V + (jj + 1) * Dvp, 0.0f);
  }
  for (int64_t d = 0; d < D && n < C; ++d)
    std::fill(phikt + d * C + n, phikt + (d + 1) * C, 0.0f);
}

// S (padded [D, Dvp], z [D]) from and to the stored form (D * Dv + D).
HWY_INLINE void UnpackState(const float* st, int64_t D, int64_t Dv, int64_t Dvp,
                            float* S, float* z) {
  for (int64_t d = 0; d < D; ++d) {
    std::copy(st + d * Dv, st + (d + 1) * Dv, S + d * Dvp);
    std::fill(S + d * Dvp + Dv, S + (d + 1) * Dvp, 0.0f);
  }
  std::copy(st + D * Dv, st + D * Dv + D, z);
}
HWY_INLINE void PackState(const float* S, const float* z, int64_t D, int64_t Dv,
                          int64_t Dvp, float* st) {
  for (int64_t d = 0; d < D; ++d)
    std::copy(S + d * Dvp, S + d * Dvp + Dv, st + d * Dv);
  std::copy(z, z + D, st + D * Dv);
}

// Pass 1: totals of keys [j0, j1) of (b, kvh) into st (stored form).
template <class T>
void SegmentTotals(const LinearProblem<T>& p, const LinearPlan& plan, int64_t b,
                   int64_t kvh, int64_t j0, int64_t j1, float* st,
                   float* scratch) {
  const int64_t D = p.shape.D, Dv = p.shape.Dv, Dvp = plan.dvp, C = plan.chunk;
  float* S = scratch + plan.s;
  float* z = scratch + plan.z;
  std::fill(S, S + D * Dvp, 0.0f);
  std::fill(z, z + D, 0.0f);
  for (int64_t c0 = j0; c0 < j1; c0 += C) {
    const int64_t n = std::min(C, j1 - c0);
    LoadChunk(p, plan, b, kvh, c0, n, scratch + plan.phikt, scratch + plan.v, z,
              scratch + plan.row);
    // S += phi(K)^T V.
    Product(scratch + plan.phikt, C, D, n, scratch + plan.v, Dvp, S, Dvp, Dvp);
  }
  PackState(S, z, D, Dv, Dvp, st);
}

// Writes out row i of head h from num [Dv] and den.
template <class T>
HWY_INLINE void WriteRow(const LinearProblem<T>& p, int64_t b, int64_t h,
                         int64_t i, const float* num, float den) {
  T* out = p.out.row(b, h, i);
  den += p.eps;
  const float inv = den != 0.0f ? 1.0f / den : 0.0f;
  for (int64_t e = 0; e < p.shape.Dv; ++e) out[e] = from_float<T>(num[e] * inv);
}

// Pass 3, causal: keys and queries [j0, j1) of (b, kvh) from the state
// st_in (stored form).
template <class T>
void CausalSegment(const LinearProblem<T>& p, const LinearPlan& plan, int64_t b,
                   int64_t kvh, int64_t j0, int64_t j1, const float* st_in,
                   float* scratch) {
  const int64_t D = p.shape.D, Dv = p.shape.Dv, G = p.shape.group(),
                C = plan.chunk, Dvp = plan.dvp;
  float* S = scratch + plan.s;
  float* z = scratch + plan.z;
  float* phikt = scratch + plan.phikt;
  float* V = scratch + plan.v;
  float* phiq = scratch + plan.phiq;
  float* A = scratch + plan.a;
  float* num = scratch + plan.num;
  float* row = scratch + plan.row;
  UnpackState(st_in, D, Dv, Dvp, S, z);
  float z_chunk[1024];  // z before this chunk's keys
  for (int64_t c0 = j0; c0 < j1; c0 += C) {
    const int64_t n = std::min(C, j1 - c0);
    std::copy(z, z + D, z_chunk);
    LoadChunk(p, plan, b, kvh, c0, n, phikt, V, z, row);
    for (int64_t g = 0; g < G; ++g) {
      const int64_t h = kvh * G + g;
      for (int64_t ii = 0; ii < n; ++ii) {
        Phi(p, Widen(p.q.row(b, h, c0 + ii), D, row), phiq + ii * D, D);
      }
      // NUM = phi(Q) S: the keys before the chunk.
      Product(phiq, D, n, D, S, Dvp, num, Dvp, Dvp, /*add=*/false);
      // A = phi(Q) phi(K)^T, its lower triangle: the chunk's own keys.
      Product(phiq, D, n, D, phikt, C, A, C, C, /*add=*/false);
      LowerProduct(A, C, n, V, Dvp, num, Dvp, Dvp);
      for (int64_t ii = 0; ii < n; ++ii) {
        float den = Dot(phiq + ii * D, z_chunk, D);
        for (int64_t jj = 0; jj <= ii; ++jj) den += A[ii * C + jj];
        WriteRow(p, b, h, c0 + ii, num + ii * Dvp, den);
      }
    }
    // S += phi(K)^T V.
    Product(phikt, C, D, n, V, Dvp, S, Dvp, Dvp);
  }
}

// Pass 3, non-causal: queries [i0, i1) (at most one chunk) of every head of
// group kvh against the total state st (stored form).
template <class T>
void NonCausalRows(const LinearProblem<T>& p, const LinearPlan& plan, int64_t b,
                   int64_t kvh, int64_t i0, int64_t i1, const float* st,
                   float* scratch) {
  const int64_t D = p.shape.D, Dv = p.shape.Dv, G = p.shape.group(),
                Dvp = plan.dvp;
  float* S = scratch + plan.s;
  float* z = scratch + plan.z;
  float* phiq = scratch + plan.phiq;
  float* num = scratch + plan.num;
  float* row = scratch + plan.row;
  UnpackState(st, D, Dv, Dvp, S, z);
  const int64_t n = i1 - i0;
  for (int64_t g = 0; g < G; ++g) {
    const int64_t h = kvh * G + g;
    for (int64_t ii = 0; ii < n; ++ii) {
      Phi(p, Widen(p.q.row(b, h, i0 + ii), D, row), phiq + ii * D, D);
    }
    Product(phiq, D, n, D, S, Dvp, num, Dvp, Dvp, /*add=*/false);
    for (int64_t ii = 0; ii < n; ++ii) {
      WriteRow(p, b, h, i0 + ii, num + ii * Dvp, Dot(phiq + ii * D, z, D));
    }
  }
}

#define ATTN_LINEAR_ITEMS(T, Suffix)                                     \
  void Totals##Suffix(const LinearProblem<T>& p, const LinearPlan& plan, \
                      int64_t b, int64_t kvh, int64_t j0, int64_t j1,    \
                      float* st, float* scratch) {                       \
    SegmentTotals(p, plan, b, kvh, j0, j1, st, scratch);                 \
  }                                                                      \
  void Causal##Suffix(const LinearProblem<T>& p, const LinearPlan& plan, \
                      int64_t b, int64_t kvh, int64_t j0, int64_t j1,    \
                      const float* st_in, float* scratch) {              \
    CausalSegment(p, plan, b, kvh, j0, j1, st_in, scratch);              \
  }                                                                      \
  void Rows##Suffix(const LinearProblem<T>& p, const LinearPlan& plan,   \
                    int64_t b, int64_t kvh, int64_t i0, int64_t i1,      \
                    const float* st, float* scratch) {                   \
    NonCausalRows(p, plan, b, kvh, i0, i1, st, scratch);                 \
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

#include "src/util/dispatch.h"
#include "src/util/parallel.h"
#include "src/util/workspace_impl.h"

namespace attn::kernels {

ATTN_EXPORT_FOR_TYPES(Totals);
ATTN_EXPORT_FOR_TYPES(Causal);
ATTN_EXPORT_FOR_TYPES(Rows);

namespace {

LinearPlan make_plan(const detail::Shape& sh) {
  LinearPlan plan;
  const int64_t C = plan.chunk;
  const int64_t per = (sh.Skv + kLinearSegments - 1) / kLinearSegments;
  plan.seg_len = std::max(C, (per + C - 1) / C * C);
  plan.segments =
      std::max<int64_t>(1, (sh.Skv + plan.seg_len - 1) / plan.seg_len);
  plan.state_floats = sh.D * sh.Dv + sh.D;
  plan.dvp = (sh.Dv + 15) / 16 * 16;
  int64_t at = 0;
  auto take = [&at](int64_t n) {
    const int64_t o = at;
    at += (n + 15) / 16 * 16;  // 64-byte steps
    return o;
  };
  plan.s = take(sh.D * plan.dvp);
  plan.z = take(sh.D);
  plan.phikt = take(sh.D * C);
  plan.v = take(C * plan.dvp);
  plan.phiq = take(C * sh.D);
  plan.a = take(C * C);
  plan.num = take(C * plan.dvp);
  plan.row = take(std::max(sh.D, sh.Dv));
  plan.floats = at;
  return plan;
}

}  // namespace

template <class T>
void linear_chunked(const LinearProblem<T>& p, Workspace* workspace,
                    float* state) {
  const detail::Shape& sh = p.shape;
  const LinearPlan plan = make_plan(sh);
  const int64_t heads = sh.B * sh.Hkv, nseg = plan.segments;
  Workspace& ws = workspace_or_default(workspace);
  Workspace::Impl& impl = ws.impl();
  const int threads = static_cast<int>(
      std::min<int64_t>(util::resolve_threads(p.num_threads),
                        heads * std::max(nseg, sh.Sq / plan.chunk + 1)));
  impl.reserve(threads, static_cast<std::size_t>(plan.floats) * sizeof(float));
  // Totals, one block per (b, kv head, segment), then one more block per
  // (b, kv head) for the running sum.
  float* totals = reinterpret_cast<float*>(impl.shared(
      static_cast<std::size_t>(heads * (nseg + 1) * plan.state_floats) *
      sizeof(float)));
  const auto block = [&](int64_t bh, int64_t seg) {
    return totals + (bh * (nseg + 1) + seg) * plan.state_floats;
  };
  const auto scratch = [&](int worker) {
    return reinterpret_cast<float*>(impl.slice(worker));
  };
  const auto seg_keys = [&](int64_t seg) {
    return std::pair{seg * plan.seg_len,
                     std::min(sh.Skv, (seg + 1) * plan.seg_len)};
  };

  // 1. Segment totals.
  const auto totals_fn = ATTN_DISPATCH_FOR_TYPE(T, Totals);
  util::ParallelFor(heads * nseg, threads, [&](int64_t item, int worker) {
    const int64_t bh = item / nseg, seg = item % nseg;
    const auto [j0, j1] = seg_keys(seg);
    totals_fn(p, plan, bh / sh.Hkv, bh % sh.Hkv, j0, j1, block(bh, seg),
              scratch(worker));
  });
  // 2. Prefix sums in segment order (non-causal: the sum lands in the last
  // block).
  util::ParallelFor(heads, threads, [&](int64_t bh, int) {
    float* running = block(bh, nseg);
    if (state != nullptr) {
      std::copy(state + bh * plan.state_floats,
                state + (bh + 1) * plan.state_floats, running);
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
    const auto rows_fn = ATTN_DISPATCH_FOR_TYPE(T, Rows);
    util::ParallelFor(heads * blocks, threads, [&](int64_t item, int worker) {
      const int64_t bh = item / blocks, i0 = (item % blocks) * plan.chunk;
      rows_fn(p, plan, bh / sh.Hkv, bh % sh.Hkv, i0,
              std::min(sh.Sq, i0 + plan.chunk), block(bh, nseg),
              scratch(worker));
    });
    return;
  }
  // 3. Each segment from the state before it.
  const auto causal_fn = ATTN_DISPATCH_FOR_TYPE(T, Causal);
  util::ParallelFor(heads * nseg, threads, [&](int64_t item, int worker) {
    const int64_t bh = item / nseg, seg = item % nseg;
    const auto [j0, j1] = seg_keys(seg);
    causal_fn(p, plan, bh / sh.Hkv, bh % sh.Hkv, j0, j1, block(bh, seg),
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
  const int64_t items = sh.B * sh.Hq;
  const int threads = static_cast<int>(
      std::min<int64_t>(util::resolve_threads(p.num_threads), items));
  // Per-worker scratch, allocated before the parallel loop: an allocation
  // failure is then std::bad_alloc on the caller, not inside a worker.
  struct Scratch {
    std::vector<float> pk, pq, row, num;
  };
  std::vector<Scratch> scratch(static_cast<size_t>(std::max(threads, 1)));
  for (Scratch& w : scratch) {
    w.pk.resize(sh.Skv * sh.D);
    w.pq.resize(sh.D);
    w.row.resize(std::max(sh.D, sh.Dv));
    w.num.resize(sh.Dv);
  }
  util::ParallelFor(items, threads, [&](int64_t item, int worker) {
    const int64_t b = item / sh.Hq, h = item % sh.Hq, kvh = h / sh.group();
    Scratch& w = scratch[worker];
    std::vector<float>&pk = w.pk, &pq = w.pq, &row = w.row, &num = w.num;
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
        for (int64_t e = 0; e < sh.Dv; ++e)
          num[e] += s * to_float(p.v(b, kvh, j, e));
      }
      den += p.eps;
      const float inv = den != 0.0f ? 1.0f / den : 0.0f;
      for (int64_t e = 0; e < sh.Dv; ++e)
        p.out(b, h, i, e) = from_float<T>(num[e] * inv);
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

// Flash backward, FlashAttention-2 style: P is recomputed from q, k and the
// forward's lse, never stored.
//
// A work item is (b, KV head, tile of kKeyTile keys): it owns dK and dV of
// its keys, accumulated in float32 over every query head of the GQA group
// and every query, so they need no reduction. For each head g of the group
// and block of kBackwardRows queries that can see some key of the tile:
//
//   S  = Q Kt                 [rows, 64]   (Kt: the tile transposed)
//   P  = 2^(S scale log2 e - lse log2 e)   (hidden keys 0)
//   dP = (dO Vt) z            [rows, 64]   (z: dropout factors, 1 without)
//   dS = P (dP - Delta) scale              (x (1 - tanh^2) under softcap,
//                                           x score_grad with a score functor)
//   dV += (P z)^T dO,  dK += dS^T Q        (the item's own accumulators)
//   dQ_block = dS K           [rows, D]    added to the shared dQ below
//
// with Delta_i = dO_i . O_i computed once before the items. The five
// products run on one register-blocked micro-kernel (Gemm below) with the
// operands laid out so the SIMD axis is always contiguous.
//
// Determinism without atomic adds: every query block's dQ rows receive the
// items' contributions in key-tile order. Items start in increasing order
// (util::ParallelForOrdered); item (b, kvh, t) adds its block only after
// item (b, kvh, t - 1) has added (or passed) that block, a per-block counter
// saying whose turn it is. Items compute first and wait only to add, so the
// waits are short; the result is the same bits for any thread count.
//
// Memory: per worker the tile's K, Kt, Vt, dK, dV and one block's Q, dO, P,
// dS, dQ (a few hundred KiB); shared, a float32 dQ accumulator and Delta
// ([B, Hq, Sq, D] and [B, Hq, Sq]) and one counter per query block: nothing
// of size Sq x Skv.
#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdint>
#include <limits>
#include <vector>

#undef HWY_TARGET_INCLUDE
#define HWY_TARGET_INCLUDE "src/kernels/flash_backward.cc"
#include "hwy/foreach_target.h"  // IWYU pragma: keep
// Must come after foreach_target.h.
#include "hwy/highway.h"
#include "src/kernels/flash_backward.h"
#include "src/kernels/micro_gemm-inl.h"
#include "src/kernels/row_ops-inl.h"
#include "src/util/parallel.h"

#ifndef ATTN_SRC_KERNELS_FLASH_BACKWARD_PLAN_
#define ATTN_SRC_KERNELS_FLASH_BACKWARD_PLAN_
namespace attn::kernels {

// Sizes and scratch layout of one backward call (floats, per worker).
struct BackwardPlan {
  int64_t Dp = 0, Dvp = 0;  // D and Dv padded to kDvAlign
  int64_t q_blocks = 0, key_tiles = 0, items = 0;
  std::size_t kt = 0, vt = 0, kr = 0, dk = 0, dv = 0, q = 0, dout = 0, p = 0,
              ds = 0, f = 0, dq = 0, z = 0, keep = 0;
  std::size_t bytes = 0;
};

// What every item shares.
struct BackwardShared {
  float* dq = nullptr;                   // [B, Hq, Sq, Dp] accumulator
  float* delta = nullptr;                // [B, Hq, Sq]
  std::atomic<int64_t>* turn = nullptr;  // [B, Hq, q_blocks]: next key tile
};

}  // namespace attn::kernels
#endif  // ATTN_SRC_KERNELS_FLASH_BACKWARD_PLAN_

HWY_BEFORE_NAMESPACE();
namespace attn::kernels {
namespace HWY_NAMESPACE {

// C [R, ncols] (+)= A B through the family's micro-GEMM
// (micro_gemm-inl.h): A's element (r, k) at a[r sm + k sk], B row-major
// [kdim, ncols] with leading dimension ldb; ncols a multiple of the lanes.
template <int R, bool kAcc, int64_t kChain>
HWY_INLINE void GemmRows(DF df, const float* a, int64_t sm, int64_t sk,
                         int64_t kdim, const float* b, int64_t ldb,
                         int64_t ncols, float* c, int64_t ldc) {
  const int64_t N = static_cast<int64_t>(hn::Lanes(df));
  MicroGemmCols<R>(df, a, sm, sk, 0, kdim, MatrixB{b, ldb}, 0, ncols / N, c,
                   ldc, kAcc, kChain);
}

// C[m, :ncols] (+)= sum_{k < kdim} A(m, k) B[k, :ncols] for m < rows, in
// blocks of kRowBlock rows (ncols a multiple of the vector length). kChain:
// kDotChain for the head-dim sums that the recomputed P and dP - Delta
// depend on (S = Q Kt, dP = dO Vt); kOneChain for the sums over keys or
// rows that only accumulate gradients (dV, dK, dQ), which need no cut.
template <bool kAcc, int64_t kChain>
void Gemm(DF df, int64_t rows, const float* a, int64_t sm, int64_t sk,
          int64_t kdim, const float* b, int64_t ldb, int64_t ncols, float* c,
          int64_t ldc) {
  static_assert(kRowBlock == 6);
  int64_t m = 0;
  for (; m + 6 <= rows; m += 6) {
    GemmRows<6, kAcc, kChain>(df, a + m * sm, sm, sk, kdim, b, ldb, ncols,
                              c + m * ldc, ldc);
  }
  const float* am = a + m * sm;
  float* cm = c + m * ldc;
  switch (rows - m) {
    case 1:
      GemmRows<1, kAcc, kChain>(df, am, sm, sk, kdim, b, ldb, ncols, cm, ldc);
      break;
    case 2:
      GemmRows<2, kAcc, kChain>(df, am, sm, sk, kdim, b, ldb, ncols, cm, ldc);
      break;
    case 3:
      GemmRows<3, kAcc, kChain>(df, am, sm, sk, kdim, b, ldb, ncols, cm, ldc);
      break;
    case 4:
      GemmRows<4, kAcc, kChain>(df, am, sm, sk, kdim, b, ldb, ncols, cm, ldc);
      break;
    case 5:
      GemmRows<5, kAcc, kChain>(df, am, sm, sk, kdim, b, ldb, ncols, cm, ldc);
      break;
    default:
      break;
  }
}

template <class T>
void BackwardItem(const detail::BackwardProblem<T>& pb,
                  const BackwardPlan& plan, const BackwardShared& sh,
                  int64_t item, std::byte* scratch) {
  const DF df;
  const int64_t N = static_cast<int64_t>(hn::Lanes(df));
  const detail::Params& p = pb.params;
  const detail::Shape& s = p.shape;
  const int64_t G = s.group(), D = s.D, Dv = s.Dv, Dp = plan.Dp, Dvp = plan.Dvp;
  const int64_t tile = item % plan.key_tiles;
  const int64_t kvh = (item / plan.key_tiles) % s.Hkv;
  const int64_t b = item / (plan.key_tiles * s.Hkv);
  const int64_t j0 = tile * kKeyTile;
  const int64_t bc = std::min(kKeyTile, s.Skv - j0);
  const float kNegInf = -std::numeric_limits<float>::infinity();
  constexpr float kLog2e = 1.4426950408889634f;

  auto buf = [&](std::size_t off) {
    return reinterpret_cast<float*>(scratch + off);
  };
  float* HWY_RESTRICT Kt = buf(plan.kt);    // [Dp, 64]
  float* HWY_RESTRICT Vt = buf(plan.vt);    // [Dvp, 64]
  float* HWY_RESTRICT Kr = buf(plan.kr);    // [64, Dp]
  float* HWY_RESTRICT dK = buf(plan.dk);    // [64, Dp]
  float* HWY_RESTRICT dV = buf(plan.dv);    // [64, Dvp]
  float* HWY_RESTRICT Q = buf(plan.q);      // [rows, Dp]
  float* HWY_RESTRICT dO = buf(plan.dout);  // [rows, Dvp]
  float* HWY_RESTRICT P = buf(plan.p);      // [rows, 64]: S, then P
  float* HWY_RESTRICT dS = buf(plan.ds);    // [rows, 64]: dP, then dS
  float* HWY_RESTRICT F = buf(plan.f);    // [rows, 64]: ds/d(q.k), general path
  float* HWY_RESTRICT dQ = buf(plan.dq);  // [rows, Dp]
  float* HWY_RESTRICT Z = buf(plan.z);    // [64]: one row's dropout factors
  uint64_t* HWY_RESTRICT keep =
      reinterpret_cast<uint64_t*>(scratch + plan.keep);

  // The tile: K rows, K and V transposed (keys past Skv and dims past D
  // stay zero); dK and dV cleared.
  if (bc < kKeyTile || Dp != D || Dvp != Dv) {  // padding to clear
    std::fill(Kt, Kt + Dp * kKeyTile, 0.0f);
    std::fill(Vt, Vt + Dvp * kKeyTile, 0.0f);
    std::fill(Kr, Kr + kKeyTile * Dp, 0.0f);
  }
  std::fill(dK, dK + kKeyTile * Dp, 0.0f);
  std::fill(dV, dV + kKeyTile * Dvp, 0.0f);
  for (int64_t c = 0; c < bc; ++c) {
    float* kr = Kr + c * Dp;
    widen_row(pb.k.row(b, kvh, j0 + c), D, kr);
    for (int64_t d = 0; d < D; ++d) Kt[d * kKeyTile + c] = kr[d];
    const T* vr = pb.v.row(b, kvh, j0 + c);
    for (int64_t d = 0; d < Dv; ++d) Vt[d * kKeyTile + c] = to_float(vr[d]);
  }

  const bool direct = std::is_same_v<T, float> && Dp == D && Dvp == Dv;
  const bool general = p.softcap > 0.0f || !p.alibi_slopes.empty() ||
                       !p.bias.empty() || !p.mask.empty() ||
                       p.pattern.has_score();
  const float c1 = p.scale * kLog2e;
  const VF vc1 = hn::Set(df, c1);
  const VF vscale = hn::Set(df, p.scale);

  for (int64_t g = 0; g < G; ++g) {
    const int64_t h = kvh * G + g;
    for (int64_t qb = 0; qb < plan.q_blocks; ++qb) {
      const int64_t i0 = qb * kBackwardRows;
      const int64_t br = std::min(kBackwardRows, s.Sq - i0);
      const int64_t pos0 = i0 + p.offset_of(b);
      // Does any row of the block see a key of the tile?
      const KeyRange first = key_range(p, b, i0),
                     last = key_range(p, b, i0 + br - 1);
      TileKind kind = TileKind::kEmpty;
      if (std::max(first.begin, j0) < std::min(last.end, j0 + bc)) {
        kind = p.pattern.classify(b, h, pos0, pos0 + br, j0, j0 + bc);
      }
      bool any = false;
      if (kind != TileKind::kEmpty) {
        for (int64_t r = 0; r < br; ++r) {
          const int64_t i = i0 + r;
          const KeyRange kr = key_range(p, b, i);
          uint64_t bits = key_bits(kr.begin - j0, std::min(kr.end - j0, bc));
          if (bits != 0 && kind == TileKind::kPartial) {
            bits &=
                p.pattern.mask_bits(b, h, pos0 + r, j0, static_cast<int>(bc));
          }
          if (pb.lse(b, h, i, 0) == kNegInf) bits = 0;
          keep[r] = bits;
          any = any || bits != 0;
        }
      }
      std::atomic<int64_t>& turn = sh.turn[(b * s.Hq + h) * plan.q_blocks + qb];
      if (!any) {  // pass this block's turn on
        int64_t spins = 0;
        while (turn.load(std::memory_order_acquire) != tile)
          util::SpinPause(spins);
        turn.store(tile + 1, std::memory_order_release);
        continue;
      }

      // The block's Q and dO rows: float rows of whole vectors are read in
      // place; others are widened and padded with zeros.
      const float* Qb = Q;
      const float* dOb = dO;
      int64_t ldq = Dp, ldo = Dvp;
      if (direct) {
        if constexpr (std::is_same_v<T, float>) {
          Qb = pb.q.row(b, h, i0);
          dOb = pb.dout.row(b, h, i0);
          ldq = pb.q.stride(2);
          ldo = pb.dout.stride(2);
        }
      } else {
        for (int64_t r = 0; r < br; ++r) {
          float* q = Q + r * Dp;
          widen_row(pb.q.row(b, h, i0 + r), D, q);
          std::fill(q + D, q + Dp, 0.0f);
          float* o = dO + r * Dvp;
          widen_row(pb.dout.row(b, h, i0 + r), Dv, o);
          std::fill(o + Dv, o + Dvp, 0.0f);
        }
      }
      // S = Q Kt, dP = dO Vt.
      Gemm<false, kDotChain>(df, br, Qb, ldq, 1, Dp, Kt, kKeyTile, kKeyTile, P,
                             kKeyTile);
      Gemm<false, kDotChain>(df, br, dOb, ldo, 1, Dvp, Vt, kKeyTile, kKeyTile,
                             dS, kKeyTile);
      // P, then dS = P (dP - Delta) ds/d(q.k).
      for (int64_t r = 0; r < br; ++r) {
        float* HWY_RESTRICT prow = P + r * kKeyTile;
        float* HWY_RESTRICT dsrow = dS + r * kKeyTile;
        const uint64_t bits = keep[r];
        if (bits == 0) {
          std::fill(prow, prow + kKeyTile, 0.0f);
          std::fill(dsrow, dsrow + kKeyTile, 0.0f);
          continue;
        }
        const int64_t i = i0 + r;
        const float lse = pb.lse(b, h, i, 0);
        const VF delta = hn::Set(df, sh.delta[(b * s.Hq + h) * s.Sq + i]);
        if (p.dropout.on()) {  // factors z: 0 or 1 / (1 - p) per key
          const uint64_t kept = DropoutKeepBits(
              p.dropout, p.dropout.row(b, h, i), j0, static_cast<int>(bc));
          const VF keep_scale = hn::Set(df, p.dropout.keep_scale);
          for (int64_t c = 0; c < kKeyTile; c += N) {
            hn::Store(hn::IfThenElseZero(KeepMask(df, kept, c), keep_scale), df,
                      Z + c);
          }
        }
        if (!general) {
          const VF lse2 = hn::Set(df, lse * kLog2e);
          for (int64_t c = 0; c < kKeyTile; c += N) {
            const VF e =
                Exp2(df, hn::MulSub(hn::Load(df, prow + c), vc1, lse2));
            const VF pv = hn::IfThenElseZero(KeepMask(df, bits, c), e);
            VF dp = hn::Load(df, dsrow + c);
            if (p.dropout.on()) {
              const VF z = hn::Load(df, Z + c);
              dp = hn::Mul(dp, z);
              hn::Store(hn::Mul(pv, z), df, prow + c);  // dV sees P z
            } else {
              hn::Store(pv, df, prow + c);
            }
            hn::Store(hn::Mul(hn::Mul(pv, hn::Sub(dp, delta)), vscale), df,
                      dsrow + c);
          }
          continue;
        }
        float* HWY_RESTRICT frow = F + r * kKeyTile;
        for (int64_t c = 0; c < kKeyTile; ++c) {
          const int64_t j = j0 + c;
          if (((bits >> c) & 1) == 0 ||
              (!p.mask.empty() && !p.mask(b, h, i, j))) {
            prow[c] = 0.0f;
            frow[c] = 0.0f;
            continue;
          }
          const float dot = prow[c];
          const float sb = p.score_builtin<float>(dot, b, h, i, j);
          float f = p.scale;
          if (p.softcap > 0.0f) {
            const float t = std::tanh(p.scale * dot / p.softcap);
            f *= 1.0f - t * t;
          }
          float sc = sb;
          if (p.pattern.has_score()) {
            sc = p.pattern.score(sb, b, h, pos0 + r, j);
            f *= p.pattern.score_grad(sb, b, h, pos0 + r, j);
          }
          prow[c] = std::exp(sc - lse);
          frow[c] = f;
        }
        for (int64_t c = 0; c < kKeyTile; c += N) {
          const VF pv = hn::Load(df, prow + c);
          VF dp = hn::Load(df, dsrow + c);
          if (p.dropout.on()) {
            const VF z = hn::Load(df, Z + c);
            dp = hn::Mul(dp, z);
            hn::Store(hn::Mul(pv, z), df, prow + c);
          }
          hn::Store(
              hn::Mul(hn::Mul(pv, hn::Sub(dp, delta)), hn::Load(df, frow + c)),
              df, dsrow + c);
        }
      }
      // dV += P^T dO, dK += dS^T Q (rows: the tile's keys), dQ = dS K.
      Gemm<true, kOneChain>(df, bc, P, 1, kKeyTile, br, dOb, ldo, Dvp, dV, Dvp);
      Gemm<true, kOneChain>(df, bc, dS, 1, kKeyTile, br, Qb, ldq, Dp, dK, Dp);
      Gemm<false, kOneChain>(df, br, dS, kKeyTile, 1, bc, Kr, Dp, Dp, dQ, Dp);

      // Add to the shared dQ in key-tile order.
      int64_t spins = 0;
      while (turn.load(std::memory_order_acquire) != tile)
        util::SpinPause(spins);
      float* acc = sh.dq + ((b * s.Hq + h) * s.Sq + i0) * Dp;
      for (int64_t x = 0; x < br * Dp; x += N) {
        hn::Store(hn::Add(hn::Load(df, acc + x), hn::Load(df, dQ + x)), df,
                  acc + x);
      }
      turn.store(tile + 1, std::memory_order_release);
    }
  }

  for (int64_t c = 0; c < bc; ++c) {
    T* dk = pb.dk.row(b, kvh, j0 + c);
    T* dv = pb.dv.row(b, kvh, j0 + c);
    for (int64_t d = 0; d < D; ++d) dk[d] = from_float<T>(dK[c * Dp + d]);
    for (int64_t d = 0; d < Dv; ++d) dv[d] = from_float<T>(dV[c * Dvp + d]);
  }
}

void BackwardItemF32(const detail::BackwardProblem<float>& pb,
                     const BackwardPlan& plan, const BackwardShared& sh,
                     int64_t item, std::byte* scratch) {
  BackwardItem(pb, plan, sh, item, scratch);
}
void BackwardItemBF16(const detail::BackwardProblem<bfloat16>& pb,
                      const BackwardPlan& plan, const BackwardShared& sh,
                      int64_t item, std::byte* scratch) {
  BackwardItem(pb, plan, sh, item, scratch);
}
void BackwardItemF16(const detail::BackwardProblem<float16>& pb,
                     const BackwardPlan& plan, const BackwardShared& sh,
                     int64_t item, std::byte* scratch) {
  BackwardItem(pb, plan, sh, item, scratch);
}

}  // namespace HWY_NAMESPACE
}  // namespace attn::kernels
HWY_AFTER_NAMESPACE();

#if HWY_ONCE
#include "src/util/dispatch.h"
#include "src/util/workspace_impl.h"

namespace attn::kernels {

ATTN_EXPORT_FOR_TYPES(BackwardItem);

namespace {

int64_t round_up(int64_t x, int64_t to) { return (x + to - 1) / to * to; }

BackwardPlan make_backward_plan(const detail::Shape& s) {
  BackwardPlan plan;
  plan.Dp = round_up(s.D, kDvAlign);
  plan.Dvp = round_up(s.Dv, kDvAlign);
  plan.q_blocks = (s.Sq + kBackwardRows - 1) / kBackwardRows;
  plan.key_tiles = (s.Skv + kKeyTile - 1) / kKeyTile;
  plan.items = s.B * s.Hkv * plan.key_tiles;
  std::size_t at = 0;
  auto take = [&](int64_t floats) {
    const std::size_t off = at;
    at += static_cast<std::size_t>(round_up(floats, 16)) * sizeof(float);
    return off;
  };
  plan.kt = take(plan.Dp * kKeyTile);
  plan.vt = take(plan.Dvp * kKeyTile);
  plan.kr = take(kKeyTile * plan.Dp);
  plan.dk = take(kKeyTile * plan.Dp);
  plan.dv = take(kKeyTile * plan.Dvp);
  plan.q = take(kBackwardRows * plan.Dp);
  plan.dout = take(kBackwardRows * plan.Dvp);
  plan.p = take(kBackwardRows * kKeyTile);
  plan.ds = take(kBackwardRows * kKeyTile);
  plan.f = take(kBackwardRows * kKeyTile);
  plan.dq = take(kBackwardRows * plan.Dp);
  plan.z = take(kKeyTile);
  plan.keep = take(2 * kBackwardRows);  // uint64_t per row
  plan.bytes = at;
  return plan;
}

}  // namespace

template <class T>
void flash_attention_backward(const detail::BackwardProblem<T>& pb,
                              Workspace* workspace) {
  const detail::Params& p = pb.params;
  const detail::Shape& s = p.shape;
  const BackwardPlan plan = make_backward_plan(s);
  Workspace& ws = workspace_or_default(workspace);
  Workspace::Impl& impl = ws.impl();
  const int threads = util::resolve_threads(p.num_threads);
  impl.reserve(threads, plan.bytes);

  // Shared: the dQ accumulator and Delta.
  const int64_t rows = s.B * s.Hq * s.Sq;
  float* shared = reinterpret_cast<float*>(impl.shared(
      static_cast<std::size_t>(rows * (plan.Dp + 1)) * sizeof(float)));
  BackwardShared sh;
  sh.dq = shared;
  sh.delta = shared + rows * plan.Dp;
  std::vector<std::atomic<int64_t>> turn(
      static_cast<std::size_t>(s.B * s.Hq * plan.q_blocks));
  sh.turn = turn.data();

  // Delta_i = dO_i . O_i; dQ accumulator cleared.
  util::ParallelFor(s.B * s.Hq, threads, [&](int64_t bh, int) {
    const int64_t b = bh / s.Hq, h = bh % s.Hq;
    std::fill(sh.dq + bh * s.Sq * plan.Dp, sh.dq + (bh + 1) * s.Sq * plan.Dp,
              0.0f);
    for (int64_t i = 0; i < s.Sq; ++i) {
      const T* o = pb.out.row(b, h, i);
      const T* dout = pb.dout.row(b, h, i);
      float delta = 0.0f;
      for (int64_t d = 0; d < s.Dv; ++d)
        delta += to_float(dout[d]) * to_float(o[d]);
      sh.delta[bh * s.Sq + i] = delta;
    }
  });

  const auto fn = ATTN_DISPATCH_FOR_TYPE(T, BackwardItem);
  util::ParallelForOrdered(plan.items, threads, [&](int64_t item, int worker) {
    fn(pb, plan, sh, item, impl.slice(worker));
  });

  util::ParallelFor(s.B * s.Hq, threads, [&](int64_t bh, int) {
    const int64_t b = bh / s.Hq, h = bh % s.Hq;
    for (int64_t i = 0; i < s.Sq; ++i) {
      const float* acc = sh.dq + (bh * s.Sq + i) * plan.Dp;
      T* dq = pb.dq.row(b, h, i);
      for (int64_t d = 0; d < s.D; ++d) dq[d] = from_float<T>(acc[d]);
    }
  });
}

template void flash_attention_backward(const detail::BackwardProblem<float>&,
                                       Workspace*);
template void flash_attention_backward(const detail::BackwardProblem<bfloat16>&,
                                       Workspace*);
template void flash_attention_backward(const detail::BackwardProblem<float16>&,
                                       Workspace*);

}  // namespace attn::kernels
#endif  // HWY_ONCE

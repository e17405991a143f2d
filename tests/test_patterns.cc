// Attention patterns (attn/pattern.h, attn/patterns.h) against the float64
// reference run on explicit boolean masks (and additive biases for score
// functors) written here from the patterns' definitions, independently of
// the functors; the classifiers and mask_bits against brute force; and the
// tiles the kernel visits.
#include <gtest/gtest.h>

#include <functional>
#include <random>
#include <set>

#include "attn/block_mask.h"
#include "attn/kv_cache.h"
#include "attn/patterns.h"
#include "src/kernels/flash.h"
#include "src/kernels/tile_walk.h"
#include "src/util/workspace_impl.h"
#include "tests/attention_grid.h"

namespace attn::testing {
namespace {

using Truth = std::function<bool(int64_t b, int64_t h, int64_t i, int64_t j)>;

// Position of query row i (attn/pattern.h).
int64_t position(const Dims& d, const AttentionOptions& o, int64_t i) {
  return o.alignment == Alignment::kTopLeft ? i : i + d.Skv - d.Sq;
}

// Runs `pattern` through naive, flash and (for few queries) decode, and
// compares with the reference given the same call with the pattern written
// out as a [B, Hq, Sq, Skv] boolean mask from `truth` (and, for score
// functors, `bias` as an additive mask).
template <class T = float>
void check_pattern(const Dims& d, AttentionOptions base, const Pattern& pattern,
                   const Truth& truth, std::mt19937& rng, Placement place = {},
                   const std::function<float(int64_t, int64_t, int64_t,
                                             int64_t)>& bias = nullptr) {
  const int64_t n = d.B * d.Hq * d.Sq * d.Skv;
  std::unique_ptr<bool[]> mask(new bool[n]);
  std::vector<float> additive(bias ? n : 0);
  int64_t visible = 0;
  for (int64_t b = 0, x = 0; b < d.B; ++b)
    for (int64_t h = 0; h < d.Hq; ++h)
      for (int64_t i = 0; i < d.Sq; ++i)
        for (int64_t j = 0; j < d.Skv; ++j, ++x) {
          mask[x] = truth(b, h, position(d, base, i), j);
          visible += mask[x];
          if (bias) additive[x] = bias(b, h, position(d, base, i), j);
        }
  AttentionOptions explicit_o = base;
  explicit_o.mask =
      TensorView<const bool>(mask.get(), {d.B, d.Hq, d.Sq, d.Skv},
                             {d.Hq * d.Sq * d.Skv, d.Sq * d.Skv, d.Skv, 1});
  if (bias) {
    explicit_o.bias =
        TensorView<const float>(additive.data(), {d.B, d.Hq, d.Sq, d.Skv},
                                {d.Hq * d.Sq * d.Skv, d.Sq * d.Skv, d.Skv, 1});
  }
  AttentionOptions with = base;
  with.pattern = pattern;

  Case<T> c(d, place, rng);
  const reference::Result ref = c.reference(explicit_o);
  SCOPED_TRACE(describe(d, "pattern", place) + " visible " +
               std::to_string(visible) + " of " + std::to_string(n));
  // The reference through the functor equals the explicit mask's.
  const reference::Result ref_fn = c.reference(with);
  if (!bias) {
    EXPECT_EQ(ref_fn.out, ref.out);
    EXPECT_EQ(ref_fn.lse, ref.lse);
  }
  const RunResult<T> naive = c.run(with, Algorithm::kNaive, ref);
  EXPECT_LE(naive.err.max_rel, tolerance<T>()) << "naive: " << naive.err.worst;
  EXPECT_TRUE(naive.err.lse_inf_match);
  std::vector<Algorithm> fast = {Algorithm::kFlash};
  if (d.Sq <= 16) fast.push_back(Algorithm::kDecode);
  for (Algorithm a : fast) {
    const RunResult<T> r = c.run(with, a, ref);
    EXPECT_LE(r.err.max_rel, 2 * naive.err.max_rel + 1e-6)
        << algorithm_name(a) << ": " << r.err.worst;
    EXPECT_LE(r.err.lse_max_abs, 2 * naive.err.lse_max_abs + 1e-6)
        << algorithm_name(a);
    EXPECT_TRUE(r.err.lse_inf_match) << algorithm_name(a);
  }
}

// Shapes around the tile edges (64 keys; 96 query rows per item for short
// banded calls with G = 1), GQA, odd head dims, decode-sized query blocks.
const std::vector<Dims>& shapes() {
  static const std::vector<Dims> s = {
      {1, 1, 1, 1, 1, 16, 16},     {2, 2, 1, 63, 63, 32, 32},
      {1, 4, 2, 65, 65, 33, 17},   {1, 2, 2, 130, 130, 64, 64},
      {2, 8, 2, 97, 200, 32, 48},  {1, 4, 1, 7, 300, 64, 64},
      {1, 3, 3, 257, 257, 16, 16},
  };
  return s;
}

// ---- User functors, the way docs/patterns.md writes them -------------------

// Prefix-LM: the first `prefix` positions attend bidirectionally, the rest
// causally.
struct PrefixLM {
  int64_t prefix;
  bool mask(int64_t, int64_t, int64_t i, int64_t j) const {
    return j <= i || j < prefix;
  }
};
struct PrefixLMClassified : PrefixLM {
  TileKind classify(int64_t, int64_t, int64_t i0, int64_t i1, int64_t j0,
                    int64_t j1) const {
    if (j1 <= prefix || j1 - 1 <= i0) return TileKind::kFull;
    if (j0 >= prefix && j0 > i1 - 1) return TileKind::kEmpty;
    return TileKind::kPartial;
  }
};

// Document masking from per-token document ids.
struct DocumentIds {
  const std::vector<int>* doc;
  bool mask(int64_t, int64_t, int64_t i, int64_t j) const {
    return i >= 0 && (*doc)[i] == (*doc)[j];
  }
};

// A relative-position score (T5-like bias without buckets) and a per-head
// sign, plus a checkerboard mask.
struct RelativeBias {
  float slope;
  float score(float s, int64_t, int64_t h, int64_t i, int64_t j) const {
    return s + (h % 2 ? slope : -slope) * static_cast<float>(j - i);
  }
};
struct ScoreAndMask : RelativeBias {
  bool mask(int64_t, int64_t, int64_t i, int64_t j) const {
    return ((i / 3) + (j / 5)) % 2 == 0;
  }
};

TEST(UserPatterns, PrefixLM) {
  std::mt19937 rng(70);
  for (const Dims& d : shapes()) {
    for (int64_t prefix : {int64_t{0}, d.Skv / 3, int64_t{64}}) {
      const auto truth = [&](int64_t, int64_t, int64_t i, int64_t j) {
        return j <= i || j < prefix;
      };
      PrefixLM plain{prefix};
      PrefixLMClassified classified{{prefix}};
      check_pattern(d, {}, plain, truth, rng);
      check_pattern(d, {}, classified, truth, rng, {Layout::kBSHD, true});
    }
  }
}

TEST(UserPatterns, DocumentIds) {
  std::mt19937 rng(71);
  for (const Dims& d : shapes()) {
    if (d.Sq != d.Skv) continue;  // self-attention on a packed sequence
    std::vector<int> doc(d.Skv);
    std::uniform_int_distribution<int> next(0, 20);
    for (int64_t j = 1, id = 0; j < d.Skv; ++j) doc[j] = id += next(rng) == 0;
    DocumentIds fn{&doc};
    for (bool causal : {false, true}) {
      AttentionOptions o;
      o.causal = causal;
      check_pattern(
          d, o, fn,
          [&](int64_t, int64_t, int64_t i, int64_t j) {
            return doc[i] == doc[j] && (!causal || j <= i);
          },
          rng);
    }
  }
}

TEST(UserPatterns, ScoreFunctorsEqualAnAdditiveMask) {
  std::mt19937 rng(72);
  const auto rel = [](float slope) {
    return [slope](int64_t, int64_t h, int64_t i, int64_t j) {
      return (h % 2 ? slope : -slope) * static_cast<float>(j - i);
    };
  };
  for (const Dims& d : shapes()) {
    RelativeBias score_only{0.05f};
    ScoreAndMask both{{0.02f}};
    AttentionOptions o;
    o.softcap = 5.0f;  // the functor's score comes after softcap
    check_pattern(
        d, {}, score_only, [](auto...) { return true; }, rng, {}, rel(0.05f));
    check_pattern(
        d, {}, both,
        [&](int64_t, int64_t, int64_t i, int64_t j) {
          return both.mask(0, 0, i, j);
        },
        rng, {}, rel(0.02f));
    AttentionOptions causal;
    causal.causal = true;
    causal.window_left = 40;
    check_pattern(
        d, causal, score_only, [](auto...) { return true; }, rng, {},
        rel(0.05f));
  }
}

// ---- Built-in patterns, against their definitions --------------------------

TEST(BuiltinPatterns, SparseStrided) {
  std::mt19937 rng(73);
  for (const Dims& d : shapes()) {
    for (auto [stride, local] :
         {std::pair<int64_t, int64_t>{5, 3}, {70, 64}, {1, 0}, {16, 16}}) {
      for (bool causal : {true, false}) {
        SparseStrided p{stride, local, causal};
        check_pattern(
            d, {}, p,
            [&](int64_t, int64_t, int64_t i, int64_t j) {
              if (causal && j > i) return false;
              const int64_t dist = i > j ? i - j : j - i;
              return dist <= local || dist % stride == 0;
            },
            rng);
      }
    }
  }
}

TEST(BuiltinPatterns, SparseFixed) {
  std::mt19937 rng(74);
  for (const Dims& d : shapes()) {
    for (auto [block, summary] : {std::pair<int64_t, int64_t>{64, 8},
                                  {7, 2},
                                  {16, 0},
                                  {10, 10},
                                  {200, 1}}) {
      for (bool causal : {true, false}) {
        SparseFixed p{block, summary, causal};
        check_pattern(
            d, {}, p,
            [&](int64_t, int64_t, int64_t i, int64_t j) {
              if (causal && j > i) return false;
              const int64_t iblock = i >= 0 ? i / block : -1 - (-i - 1) / block;
              return iblock == j / block || j % block >= block - summary;
            },
            rng);
      }
    }
  }
}

TEST(BuiltinPatterns, Longformer) {
  std::mt19937 rng(75);
  for (const Dims& d : shapes()) {
    // Global tokens at both ends and one inside; dilation per head.
    const std::vector<int64_t> global = {0, d.Skv / 2, d.Skv - 1};
    std::vector<int64_t> dil(d.Hq);
    for (int64_t h = 0; h < d.Hq; ++h) dil[h] = 1 + h % 3;
    for (bool causal : {false, true}) {
      for (int64_t window : {0, 3, 40}) {
        Longformer p(window, global, dil, causal);
        check_pattern(
            d, {}, p,
            [&](int64_t, int64_t h, int64_t i, int64_t j) {
              if (causal && j > i) return false;
              const bool gi =
                  std::find(global.begin(), global.end(), i) != global.end();
              const bool gj =
                  std::find(global.begin(), global.end(), j) != global.end();
              const int64_t dist = i > j ? i - j : j - i;
              return gi || gj ||
                     (dist % dil[h] == 0 && dist / dil[h] <= window);
            },
            rng);
      }
    }
    // No global tokens, one dilation for all heads; combined with key lengths.
    Longformer plain(9, {}, {2});
    std::vector<int64_t> lens(d.B, std::max<int64_t>(d.Skv - 5, 0));
    AttentionOptions o;
    o.key_lengths = lens;
    check_pattern(
        d, o, plain,
        [&](int64_t, int64_t, int64_t i, int64_t j) {
          const int64_t dist = i > j ? i - j : j - i;
          return dist % 2 == 0 && dist <= 18;
        },
        rng);
  }
}

TEST(BuiltinPatterns, BlockSparse) {
  std::mt19937 rng(76);
  for (const Dims& d : shapes()) {
    for (int64_t block : {16, 64, 100}) {
      for (bool per_head : {false, true}) {
        const int64_t heads = per_head ? d.Hq : 1;
        const int64_t qb = (d.Sq + block - 1) / block,
                      kb = (d.Skv + block - 1) / block;
        std::vector<uint8_t> layout(heads * qb * kb);
        std::bernoulli_distribution on(0.4);
        for (auto& x : layout) x = on(rng);
        BlockSparse p(block, heads, qb, kb, layout);
        AttentionOptions o;
        o.alignment = Alignment::kTopLeft;  // block rows are row indices
        check_pattern(
            d, o, p,
            [&](int64_t, int64_t h, int64_t i, int64_t j) {
              return layout[((per_head ? h : 0) * qb + i / block) * kb +
                            j / block] != 0;
            },
            rng);
      }
    }
  }
}

TEST(BuiltinPatterns, Documents) {
  std::mt19937 rng(77);
  for (const Dims& d : shapes()) {
    // Self-attention on packed documents, one of them empty.
    if (d.Sq == d.Skv) {
      const int64_t first = std::min<int64_t>(5, d.Sq);
      const int64_t mid = std::max(first, d.Sq / 2);
      std::vector<int64_t> cu = {0, first, mid, mid, d.Sq};
      for (bool causal : {false, true}) {
        Documents p(cu, {}, causal);
        const auto doc = [&](int64_t x) {
          int64_t k = 0;
          while (k + 1 < static_cast<int64_t>(cu.size()) - 1 && cu[k + 1] <= x)
            ++k;
          return k;
        };
        check_pattern(
            d, {}, p,
            [&](int64_t, int64_t, int64_t i, int64_t j) {
              return doc(i) == doc(j) && (!causal || j <= i);
            },
            rng);
      }
    }
    // Different query and key lengths per document (top-left positions):
    // causal aligned bottom-right inside each document.
    const std::vector<int64_t> cq = {0, d.Sq / 3, d.Sq};
    const std::vector<int64_t> ck = {0, d.Skv / 2, d.Skv};
    for (bool causal : {false, true}) {
      Documents p(cq, ck, causal);
      AttentionOptions o;
      o.alignment = Alignment::kTopLeft;
      check_pattern(
          d, o, p,
          [&](int64_t, int64_t, int64_t i, int64_t j) {
            for (int k = 0; k < 2; ++k) {
              if (i < cq[k] || i >= cq[k + 1]) continue;
              if (j < ck[k] || j >= ck[k + 1]) return false;
              const int64_t qpos =
                  (i - cq[k]) + (ck[k + 1] - ck[k]) - (cq[k + 1] - cq[k]);
              return !causal || j - ck[k] <= qpos;
            }
            return false;
          },
          rng);
    }
  }
}

TEST(BuiltinPatterns, SixteenBitInputs) {
  std::mt19937 rng(78);
  const Dims d{1, 4, 2, 130, 130, 64, 64};
  Longformer p(20, {0, 129}, {1, 2, 1, 3});
  const Truth truth = [&](int64_t, int64_t h, int64_t i, int64_t j) {
    return p.mask(0, h, i, j);
  };
  check_pattern<bfloat16>(d, {}, p, truth, rng);
  check_pattern<float16>(d, {}, p, truth, rng);
}

// ---- Classifiers and mask_bits against brute force -------------------------

template <class P>
void check_classifier(const P& p, int64_t heads, int64_t S, std::mt19937& rng) {
  std::uniform_int_distribution<int64_t> pos(-3, S), len(1, 70);
  for (int trial = 0; trial < 400; ++trial) {
    const int64_t h = trial % heads;
    const int64_t i0 = pos(rng), i1 = i0 + len(rng);
    const int64_t j0 = std::max<int64_t>(0, pos(rng)),
                  j1 = std::min(S, j0 + len(rng));
    if (j0 >= j1) continue;
    int64_t on = 0;
    for (int64_t i = i0; i < i1; ++i)
      for (int64_t j = j0; j < j1; ++j) on += p.mask(0, h, i, j);
    const TileKind kind = p.classify(0, h, i0, i1, j0, j1);
    const std::string where = "h=" + std::to_string(h) + " rows [" +
                              std::to_string(i0) + ", " + std::to_string(i1) +
                              ") keys [" + std::to_string(j0) + ", " +
                              std::to_string(j1) + ")";
    if (kind == TileKind::kEmpty) {
      EXPECT_EQ(on, 0) << where;
    }
    if (kind == TileKind::kFull) {
      EXPECT_EQ(on, (i1 - i0) * (j1 - j0)) << where;
    }
    // Exact where it is cheap to be: all-or-nothing rectangles are
    // mostly recognised (a few partial answers are allowed).
    for (int64_t i = i0; i < std::min(i1, i0 + 3); ++i) {
      const int n = static_cast<int>(std::min<int64_t>(64, S - j0));
      uint64_t want = 0;
      for (int c = 0; c < n; ++c)
        want |= uint64_t{p.mask(0, h, i, j0 + c)} << c;
      EXPECT_EQ(p.mask_bits(0, h, i, j0, n), want)
          << "mask_bits i=" << i << " j0=" << j0;
    }
  }
}

TEST(Classifiers, ExactWhereTheyClaim) {
  std::mt19937 rng(79);
  const int64_t S = 300;
  for (bool causal : {true, false}) {
    check_classifier(SparseStrided{5, 3, causal}, 1, S, rng);
    check_classifier(SparseStrided{70, 20, causal}, 1, S, rng);
    check_classifier(SparseStrided{1, 0, causal}, 1, S, rng);
    check_classifier(SparseFixed{64, 8, causal}, 1, S, rng);
    check_classifier(SparseFixed{7, 7, causal}, 1, S, rng);
    check_classifier(SparseFixed{9, 0, causal}, 1, S, rng);
    check_classifier(Longformer(10, {0, 150, 299}, {1, 2, 5}, causal), 3, S,
                     rng);
    check_classifier(Longformer(0, {}, {}, causal), 1, S, rng);
    check_classifier(Documents({0, 10, 10, 120, 290}, {}, causal), 1, S, rng);
    check_classifier(Documents({0, 100, 250}, {0, 30, 300}, causal), 1, S, rng);
  }
  std::vector<uint8_t> layout(2 * 10 * 10);
  std::bernoulli_distribution on(0.5);
  for (auto& x : layout) x = on(rng);
  check_classifier(BlockSparse(30, 2, 10, 10, layout), 2, S, rng);
}

// The kernel's walk visits exactly the tiles where some row sees a key,
// and calls a tile full only when every row sees every key of it.
TEST(TileWalk, VisitsExactlyTheCoveredTiles) {
  const int64_t S = 2000, tile = kernels::kKeyTile;
  const Longformer lf(100, {3, 1500}, {1, 2}, true);
  const Pattern p = lf;
  for (int64_t i0 : {int64_t{0}, int64_t{700}, int64_t{1490}}) {
    const int64_t i1 = i0 + 96;
    kernels::TileWalker walk(p, 0, 0, 2, i0, i1, 0, S, tile);
    std::set<int64_t> seen;
    int64_t t;
    TileKind kind;
    int64_t prev = -1;
    while (walk.next(t, kind)) {
      EXPECT_GT(t, prev);
      prev = t;
      seen.insert(t);
      int64_t on = 0, all = 0;
      for (int64_t h = 0; h < 2; ++h)
        for (int64_t i = i0; i < i1; ++i)
          for (int64_t j = t * tile; j < std::min(S, (t + 1) * tile);
               ++j, ++all)
            on += lf.mask(0, h, i, j);
      EXPECT_GT(on, 0) << "tile " << t;
      if (kind == TileKind::kFull) {
        EXPECT_EQ(on, all) << "tile " << t;
      }
    }
    for (int64_t t2 = 0; t2 * tile < S; ++t2) {
      if (seen.count(t2)) continue;
      for (int64_t h = 0; h < 2; ++h)
        for (int64_t i = i0; i < i1; ++i)
          for (int64_t j = t2 * tile; j < std::min(S, (t2 + 1) * tile); ++j)
            ASSERT_FALSE(lf.mask(0, h, i, j)) << "skipped tile " << t2;
    }
    // A window of 100 (dilation 2: 200 keys) plus two global columns: a
    // handful of tiles, except for the block holding global row 1500.
    if (i0 != 1490) {
      EXPECT_LE(seen.size(), 8u) << "i0=" << i0;
    }
  }
}

TEST(Patterns, BadParametersAreErrors) {
  std::vector<float> q(4 * 8 * 16), out(q.size());
  const auto view = TensorView<const float>::bhsd(q.data(), 1, 4, 8, 16);
  const auto out_view = TensorView<float>::bhsd(out.data(), 1, 4, 8, 16);
  const auto expect_error = [&](const Pattern& p, const std::string& what) {
    AttentionOptions o;
    o.pattern = p;
    try {
      attention(view, view, view, out_view, o);
      ADD_FAILURE() << "no error for " << what;
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find("options.pattern"),
                std::string::npos)
          << e.what();
      EXPECT_NE(std::string(e.what()).find(what), std::string::npos)
          << e.what();
    }
  };
  const SparseStrided zero_stride{0, 1, true};
  expect_error(zero_stride, "stride must be in [1, 2^40]");
  // Parameters whose products with positions would overflow (UBSan found
  // window * dilation and positions + block overflowing) are refused.
  const SparseStrided huge_local{4, INT64_MAX, false};
  expect_error(huge_local, "local must be in [0, 2^40]");
  const Longformer huge_window(int64_t{1} << 62, {}, {4});
  expect_error(huge_window, "window must be in [0, 2^40]");
  const Longformer huge_dilation(4, {}, {int64_t{1} << 40});
  expect_error(huge_dilation, "dilations must be in [1, 2^20]");
  const BlockSparse huge_block(INT64_MAX, 1, 1, 1, std::vector<uint8_t>(1, 1));
  expect_error(huge_block, "block must be in [1, 2^40]");
  const SparseFixed huge_fixed{INT64_MAX, 1, true};
  expect_error(huge_fixed, "block must be in [1, 2^40]");
  // A layout of shape (0, 2^40) allocates nothing and is refused.
  const BlockSparse empty_rows(4, 1, 0, int64_t{1} << 40, {});
  expect_error(empty_rows, "layout dimensions must be >= 1");
  const SparseFixed big_summary{4, 5, true};
  expect_error(big_summary, "summary must be in [0, block = 4]");
  const Longformer dilations(4, {}, {1, 2});
  expect_error(dilations, "one dilation per query head (4)");
  const BlockSparse wrong(4, 1, 2, 3, std::vector<uint8_t>(6, 1));
  expect_error(wrong, "expected [1 or 4, >= 2, 2]");
  const Documents past_end({0, 4, 9});
  expect_error(past_end, "past Skv = 8");
  const Documents unsorted({0, 5, 3});
  expect_error(unsorted, "never decrease");
}

}  // namespace
}  // namespace attn::testing

namespace attn::testing {
namespace {

// Every block's kind against a brute-force count over the block.
TEST(BlockMaskBuilder, KindsAgreeWithTheMask) {
  const int64_t S = 700, heads = 3;
  const Longformer lf(20, {5, 400}, {1, 2, 3}, true);
  BlockMaskShape shape;
  shape.heads = heads;
  shape.q_len = shape.kv_len = S;
  shape.q_block = 100;
  shape.kv_block = 64;
  const BlockMask m = make_block_mask(lf, shape);
  EXPECT_EQ(m.q_blocks(), 7);
  EXPECT_EQ(m.kv_blocks(), 11);
  int64_t visited = 0;
  for (int64_t h = 0; h < heads; ++h)
    for (int64_t qb = 0; qb < m.q_blocks(); ++qb)
      for (int64_t kb = 0; kb < m.kv_blocks(); ++kb) {
        int64_t on = 0, all = 0;
        for (int64_t i = qb * 100; i < std::min(S, qb * 100 + 100); ++i)
          for (int64_t j = kb * 64; j < std::min(S, kb * 64 + 64); ++j, ++all)
            on += lf.mask(0, h, i, j);
        const TileKind k = m.kind(0, h, qb, kb);
        visited += k != TileKind::kEmpty;
        const TileKind want = on == 0     ? TileKind::kEmpty
                              : on == all ? TileKind::kFull
                                          : TileKind::kPartial;
        EXPECT_EQ(k, want) << "h=" << h << " qb=" << qb << " kb=" << kb;
      }
  EXPECT_EQ(visited, m.partial_count() + m.full_count());
  EXPECT_NEAR(m.density(), double(visited) / (heads * 7 * 11), 1e-12);
  EXPECT_THROW(m.partial(0, heads, 0), Error);
  shape.q_block = 0;
  EXPECT_THROW(make_block_mask(lf, shape), Error);
}

// The work estimate counts every score of a dense call, and for a sparse
// pattern at least the visible ones and far fewer than dense.
TEST(EstimateWork, CountsVisitedTiles) {
  const int64_t S = 2048, H = 2, D = 16;
  std::vector<float> x(H * S * D, 0.0f);
  const auto v = TensorView<const float>::bhsd(x.data(), 1, H, S, D);
  AttentionOptions o;
  o.algorithm = Algorithm::kFlash;
  const WorkEstimate dense = estimate_work(v, v, v, o);
  EXPECT_EQ(dense.algorithm, Algorithm::kFlash);
  EXPECT_EQ(dense.scores, H * S * S);
  const Longformer lf(64, {0}, {1, 2}, true);
  o.pattern = lf;
  o.causal = true;
  const WorkEstimate sparse = estimate_work(v, v, v, o);
  int64_t visible = 0;
  for (int64_t h = 0; h < H; ++h)
    for (int64_t i = 0; i < S; ++i)
      for (int64_t j = 0; j <= i; ++j) visible += lf.mask(0, h, i, j);
  EXPECT_GE(sparse.scores, visible);
  EXPECT_LT(sparse.scores, dense.scores / 4);
  o.algorithm = Algorithm::kNaive;
  EXPECT_EQ(estimate_work(v, v, v, o).scores, H * S * S);
}

}  // namespace
}  // namespace attn::testing

namespace attn::testing {
namespace {

// SparseStrided runs as window + residue classes: its work follows the
// pattern (S * local + S^2 / stride), not the tile walk's near-dense cover.
TEST(EstimateWork, StridedRunsOnResidueClasses) {
  const int64_t S = 4096, H = 2, D = 16;
  std::vector<float> x(H * S * D, 0.0f);
  const auto v = TensorView<const float>::bhsd(x.data(), 1, H, S, D);
  const SparseStrided p{S / 16, 64, true};
  AttentionOptions o;
  o.pattern = p;
  const WorkEstimate w = estimate_work(v, v, v, o);
  int64_t visible = 0;
  for (int64_t i = 0; i < S; ++i)
    for (int64_t j = 0; j <= i; ++j) visible += p.mask(0, 0, i, j);
  EXPECT_EQ(w.algorithm, Algorithm::kFlash);
  EXPECT_EQ(w.rewrite, Rewrite::kStridedClasses);
  EXPECT_GE(w.scores, H * visible);
  EXPECT_LT(w.scores, 4 * H * visible);
  std::vector<int64_t> lens = {S};
  o.key_lengths = lens;  // not eligible: the tile walk's cover
  const WorkEstimate walk = estimate_work(v, v, v, o);
  EXPECT_EQ(walk.rewrite, Rewrite::kNone);
  EXPECT_GT(walk.scores, 4 * w.scores);
  o.key_lengths = {};
  o.algorithm = Algorithm::kNaive;  // the rewrite is flash's
  EXPECT_EQ(estimate_work(v, v, v, o).rewrite, Rewrite::kNone);
  EXPECT_STREQ(rewrite_name(Rewrite::kStridedClasses), "strided classes");
}

// The rewrite's part results live in the call's Workspace (no buffer of its
// own), and its output, like the tile walk's (the same call made
// ineligible by key lengths equal to Skv), matches the float64 reference.
TEST(StridedRewrite, RunsOnTheWorkspace) {
  const int64_t S = 300, G = 2, D = 24;
  std::mt19937 rng(91);
  Tensor<float> q(1, G, S, D), k(1, 1, S, D), v(1, 1, S, D);
  fill_normal(q.view(), rng);
  fill_normal(k.view(), rng);
  fill_normal(v.view(), rng);
  Workspace ws;
  AttentionOptions o;
  o.workspace = &ws;
  const SparseStrided strided{16, 5, false};
  o.pattern = strided;
  Tensor<float> scratch(1, G, S, D);
  const reference::Result ref =
      reference_result(q.cview(), k.cview(), v.cview(), scratch.view(), o);
  const auto run = [&](Rewrite expected) {
    ASSERT_EQ(estimate_work(q.cview(), k.cview(), v.cview(), o).rewrite,
              expected);
    Tensor<float> out(1, G, S, D);
    for (int64_t i = 0; i < out.numel(); ++i) out.data()[i] = NAN;
    EXPECT_EQ(attention(q.cview(), k.cview(), v.cview(), out.view(), o),
              Algorithm::kFlash);
    const ErrorStats e = compare(ref, out.cview(), TensorView<const float>{});
    EXPECT_LE(e.max_rel, 2e-6) << rewrite_name(expected) << ": " << e.worst;
  };
  run(Rewrite::kStridedClasses);
  // Window, left and right classes: 3 G S lse values and 2 G S D outputs.
  EXPECT_GE(ws.impl().rewrite_slice.bytes,
            (3 * G * S + 2 * G * S * D) * sizeof(float));
  ws.release();
  EXPECT_EQ(ws.bytes_reserved(), 0u);
  std::vector<int64_t> lens = {S};
  o.key_lengths = lens;
  run(Rewrite::kNone);
  EXPECT_EQ(ws.impl().rewrite_slice.bytes, 0u);  // the tile walk needs none
}

}  // namespace
}  // namespace attn::testing

namespace attn::testing {
namespace {

// Against a paged KV cache, a pattern sees each sequence's own positions:
// two sequences of different lengths batched equal each one alone through
// plain views (tested against the reference above), for decode and flash.
TEST(CachePatterns, EachSequenceAtItsOwnPositions) {
  std::mt19937 rng(80);
  const int64_t Hq = 4, Hkv = 2, D = 32, Sq = 3;
  const std::vector<int64_t> lens = {200, 77};
  KVCacheOptions co;
  co.num_kv_heads = Hkv;
  co.head_dim = D;
  co.max_sequences = 2;
  co.max_tokens = 256;
  co.page_size = 16;
  KVCache cache(co);
  const std::vector<int64_t> seqs = {cache.add_sequence(),
                                     cache.add_sequence()};
  std::vector<Buffer<float>> ks, vs;
  for (size_t s = 0; s < 2; ++s) {
    ks.push_back(make_buffer<float>(1, Hkv, lens[s], D, Layout::kBHSD));
    vs.push_back(make_buffer<float>(1, Hkv, lens[s], D, Layout::kBHSD));
    fill_normal(ks[s].view, rng);
    fill_normal(vs[s].view, rng);
    const int64_t one[] = {seqs[s]};
    cache.append(0, one, TensorView<const float>(ks[s].view),
                 TensorView<const float>(vs[s].view));
  }
  Buffer<float> q = make_buffer<float>(2, Hq, Sq, D, Layout::kBHSD);
  fill_normal(q.view, rng);
  const Longformer lf(9, {0, 70}, {1, 2, 1, 3}, true);
  AttentionOptions o;
  o.pattern = lf;
  for (Algorithm a : {Algorithm::kDecode, Algorithm::kFlash}) {
    o.algorithm = a;
    Buffer<float> out = make_buffer<float>(2, Hq, Sq, D, Layout::kBHSD);
    poison(out.storage);
    attention(TensorView<const float>(q.view), cache, 0, seqs, out.view, o);
    for (int64_t s = 0; s < 2; ++s) {
      const TensorView<const float> qs(q.view.row(s, 0, 0), {1, Hq, Sq, D},
                                       q.view.strides());
      Buffer<float> alone = make_buffer<float>(1, Hq, Sq, D, Layout::kBHSD);
      attention(qs, TensorView<const float>(ks[s].view),
                TensorView<const float>(vs[s].view), alone.view, o);
      for (int64_t h = 0; h < Hq; ++h)
        for (int64_t i = 0; i < Sq; ++i)
          for (int64_t d = 0; d < D; ++d) {
            ASSERT_NEAR(out.view(s, h, i, d), alone.view(0, h, i, d), 1e-6)
                << algorithm_name(a) << " seq " << s << " h " << h << " i "
                << i;
          }
    }
  }
}

}  // namespace
}  // namespace attn::testing

// attn::KVCache and attention against it: generating token by token equals
// one causal prefill (decode, flash and naive against the float64
// reference) for contiguous and paged caches, every element type, GQA 1, 4
// and 8; chunked prefill; paged == contiguous bit for bit; every split
// count; every option; forks, frees and capacity errors; RoPE on append;
// the public merge; multi-query decode.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "attn/kv_cache.h"
#include "attn/rope.h"
#include "attn/simd.h"
#include "bench/support/int8_query.h"
#include "src/util/cpu.h"
#include "tests/attention_grid.h"

namespace attn {
namespace {

using namespace attn::testing;  // NOLINT: test-local helpers

// The cache's contents of `layer` for the listed sequences as one padded
// [B, Hkv, max length, D] buffer (zeros past each end).
struct Gathered {
  std::vector<float> k, v;
  TensorView<const float> kview, vview;
};

Gathered gather(const KVCache& cache, int64_t layer,
                const std::vector<int64_t>& seqs) {
  const KVCacheOptions& o = cache.options();
  const int64_t B = seqs.size(), H = o.num_kv_heads, D = o.head_dim,
                Dv = o.value_head_dim;
  int64_t L = 0;
  for (int64_t s : seqs) L = std::max(L, cache.length(s, layer));
  Gathered g;
  g.k.assign(B * H * L * D, 0.0f);
  g.v.assign(B * H * L * Dv, 0.0f);
  for (int64_t b = 0; b < B; ++b) {
    const int64_t len = cache.length(seqs[b], layer);
    std::vector<float> k(H * len * D), v(H * len * Dv);
    cache.read(seqs[b], layer, TensorView<float>::bhsd(k.data(), 1, H, len, D),
               TensorView<float>::bhsd(v.data(), 1, H, len, Dv));
    for (int64_t h = 0; h < H; ++h)
      for (int64_t j = 0; j < len; ++j) {
        std::copy_n(&k[(h * len + j) * D], D, &g.k[((b * H + h) * L + j) * D]);
        std::copy_n(&v[(h * len + j) * Dv], Dv,
                    &g.v[((b * H + h) * L + j) * Dv]);
      }
  }
  g.kview = TensorView<const float>::bhsd(g.k.data(), B, H, L, D);
  g.vview = TensorView<const float>::bhsd(g.v.data(), B, H, L, Dv);
  return g;
}

// The float64 reference of a call against the cache: the same validation
// as the public entry point, on the gathered keys.
reference::Result cache_reference(TensorView<const float> q,
                                  const KVCache& cache, int64_t layer,
                                  const std::vector<int64_t>& seqs,
                                  TensorView<float> out, AttentionOptions o) {
  const Gathered g = gather(cache, layer, seqs);
  std::vector<int64_t> lens, key_lengths;
  for (int64_t s : seqs) lens.push_back(cache.length(s, layer));
  o.algorithm = Algorithm::kReference;
  detail::Problem<float> p = detail::validate_cached(
      util::Check("attn::attention"), q,
      {cache.options().num_kv_heads, cache.options().head_dim,
       cache.options().value_head_dim},
      lens, out, o, {}, key_lengths);
  p.k = g.kview;
  p.v = g.vview;
  return reference::attention_f64(p);
}

// One call against the cache into NaN-poisoned out / lse, with its error.
struct CallResult {
  std::vector<float> out, lse;
  ErrorStats err;
};

CallResult call(TensorView<const float> q, const KVCache& cache, int64_t layer,
                const std::vector<int64_t>& seqs, AttentionOptions o,
                Algorithm algorithm, const reference::Result& ref) {
  const int64_t B = q.extent(0), Hq = q.extent(1), Sq = q.extent(2),
                Dv = cache.options().value_head_dim;
  CallResult r;
  r.out.assign(B * Hq * Sq * Dv, NAN);
  r.lse.assign(B * Hq * Sq, NAN);
  o.algorithm = algorithm;
  const auto out = TensorView<float>::bhsd(r.out.data(), B, Hq, Sq, Dv);
  const auto lse = TensorView<float>::bhsd(r.lse.data(), B, Hq, Sq, 1);
  EXPECT_EQ(attention(q, cache, layer, seqs, out, o, lse), algorithm);
  r.err = compare<float>(ref, out, lse);
  return r;
}

KVCacheOptions cache_options(int64_t kv_heads, int64_t head_dim,
                             int64_t max_sequences, int64_t max_tokens) {
  KVCacheOptions o;
  o.num_kv_heads = kv_heads;
  o.head_dim = head_dim;
  o.max_sequences = max_sequences;
  o.max_tokens = max_tokens;
  return o;
}

struct Layout {
  const char* name;
  int64_t page_size;
};
constexpr Layout kLayouts[] = {
    {"contiguous", 0}, {"paged16", 16}, {"paged48", 48}};
constexpr CacheType kTypes[] = {CacheType::kFloat32, CacheType::kBFloat16,
                                CacheType::kFloat16, CacheType::kInt8};

std::vector<float> normal(int64_t n, std::mt19937& rng) {
  std::normal_distribution<float> dist;
  std::vector<float> x(n);
  for (float& e : x) e = dist(rng);
  return x;
}

using bench::int8_query_path;
// What decode computes with against an int8 cache (bench/support).
std::vector<float> quantised_query(TensorView<const float> q) {
  return bench::int8_quantised_query(q);
}

// Two sequences of different lengths generated token by token: after each
// step every algorithm's output for the new token must match the
// reference within the fast-path rule, and the step outputs must equal the
// rows of one causal prefill over the final cache.
class Generate
    : public ::testing::TestWithParam<std::tuple<int, int, int64_t>> {};

TEST_P(Generate, TokenByTokenEqualsPrefill) {
  const auto [type_index, layout_index, G] = GetParam();
  const int64_t Hkv = 2, Hq = Hkv * G, D = 64, Dv = 48;
  const int64_t lens[2] = {150, 97};
  std::mt19937 rng(100 + type_index * 10 + layout_index + G);
  KVCacheOptions co;
  co.num_kv_heads = Hkv;
  co.head_dim = D;
  co.value_head_dim = Dv;
  co.type = kTypes[type_index];
  co.max_sequences = 2;
  co.max_tokens = 160;
  co.page_size = kLayouts[layout_index].page_size;
  KVCache cache(co);
  const std::vector<int64_t> seqs = {cache.add_sequence(),
                                     cache.add_sequence()};
  // Inputs per sequence: q [Hq, S, D], k [Hkv, S, D], v [Hkv, S, Dv].
  std::vector<float> q[2], k[2], v[2];
  for (int s = 0; s < 2; ++s) {
    q[s] = normal(Hq * lens[s] * D, rng);
    k[s] = normal(Hkv * lens[s] * D, rng);
    v[s] = normal(Hkv * lens[s] * Dv, rng);
  }
  // Step outputs of decode per sequence: [Hq, S, Dv].
  std::vector<float> steps[2];
  for (int s = 0; s < 2; ++s) steps[s].assign(Hq * lens[s] * Dv, NAN);
  double worst_decode = 0, worst_naive = 0;
  const bool int8_path = int8_query_path(co.type, G, 1);
  for (int64_t t = 0; t < lens[0]; ++t) {
    std::vector<int64_t> active;
    for (int s = 0; s < 2; ++s)
      if (t < lens[s]) active.push_back(s);
    for (int64_t s : active) {  // one token: views into row t
      const int64_t S = lens[s];
      const std::vector<int64_t> one = {seqs[s]};
      cache.append(0, one,
                   TensorView<const float>(&k[s][t * D], {1, Hkv, 1, D},
                                           {0, S * D, D, 1}),
                   TensorView<const float>(&v[s][t * Dv], {1, Hkv, 1, Dv},
                                           {0, S * Dv, Dv, 1}));
    }
    // Batched decode of the active sequences: q [B, Hq, 1, D].
    std::vector<float> qb;
    std::vector<int64_t> ids;
    for (int64_t s : active) {
      ids.push_back(seqs[s]);
      for (int64_t h = 0; h < Hq; ++h)
        qb.insert(qb.end(), &q[s][(h * lens[s] + t) * D],
                  &q[s][(h * lens[s] + t) * D] + D);
    }
    const int64_t B = active.size();
    const auto qv = TensorView<const float>::bhsd(qb.data(), B, Hq, 1, D);
    // What decode computes with: qv, or its rows quantised.
    const std::vector<float> qq = int8_path ? quantised_query(qv) : qb;
    const auto qe = TensorView<const float>::bhsd(qq.data(), B, Hq, 1, D);
    std::vector<float> scratch(B * Hq * Dv);
    const auto ref = cache_reference(
        qe, cache, 0, ids,
        TensorView<float>::bhsd(scratch.data(), B, Hq, 1, Dv), {});
    const CallResult dec = call(qv, cache, 0, ids, {}, Algorithm::kDecode, ref);
    const CallResult nai = call(qe, cache, 0, ids, {}, Algorithm::kNaive, ref);
    worst_decode = std::max(worst_decode, dec.err.max_rel);
    worst_naive = std::max(worst_naive, nai.err.max_rel);
    ASSERT_LE(dec.err.max_rel, 2 * nai.err.max_rel + 1e-6)
        << "t=" << t << " " << dec.err.worst;
    ASSERT_LE(dec.err.lse_max_abs, 2 * nai.err.lse_max_abs + 1e-6);
    for (int64_t b = 0; b < B; ++b)
      for (int64_t h = 0; h < Hq; ++h)
        std::copy_n(&dec.out[(b * Hq + h) * Dv], Dv,
                    &steps[active[b]][(h * lens[active[b]] + t) * Dv]);
  }
  // One causal prefill over everything cached: same rows, within the rule.
  for (int s = 0; s < 2; ++s) {
    const int64_t S = lens[s];
    const auto qv = TensorView<const float>::bhsd(q[s].data(), 1, Hq, S, D);
    std::vector<float> scratch(Hq * S * Dv);
    AttentionOptions causal;
    causal.causal = true;
    const std::vector<int64_t> one = {seqs[s]};
    const auto ref = cache_reference(
        qv, cache, 0, one,
        TensorView<float>::bhsd(scratch.data(), 1, Hq, S, Dv), causal);
    const CallResult flash =
        call(qv, cache, 0, one, causal, Algorithm::kFlash, ref);
    const CallResult nai =
        call(qv, cache, 0, one, causal, Algorithm::kNaive, ref);
    EXPECT_LE(flash.err.max_rel, 2 * nai.err.max_rel + 1e-6) << flash.err.worst;
    const auto steps_view =
        TensorView<const float>::bhsd(steps[s].data(), 1, Hq, S, Dv);
    if (!int8_path) {
      const ErrorStats step_err = compare<float>(ref, steps_view, {});
      EXPECT_LE(step_err.max_rel, 2 * nai.err.max_rel + 1e-6) << step_err.worst;
      continue;
    }
    // The steps computed with quantised query rows: against the prefill of
    // those rows.
    const std::vector<float> qq = quantised_query(qv);
    const auto qe = TensorView<const float>::bhsd(qq.data(), 1, Hq, S, D);
    const auto ref_q = cache_reference(
        qe, cache, 0, one,
        TensorView<float>::bhsd(scratch.data(), 1, Hq, S, Dv), causal);
    const CallResult nai_q =
        call(qe, cache, 0, one, causal, Algorithm::kNaive, ref_q);
    const ErrorStats step_err = compare<float>(ref_q, steps_view, {});
    EXPECT_LE(step_err.max_rel, 2 * nai_q.err.max_rel + 1e-6) << step_err.worst;
  }
  EXPECT_GT(worst_naive, 0.0);  // the comparison measured something
}

INSTANTIATE_TEST_SUITE_P(
    All, Generate,
    ::testing::Combine(::testing::Range(0, 4), ::testing::Range(0, 3),
                       ::testing::Values(int64_t{1}, int64_t{4}, int64_t{8})),
    [](const auto& info) {
      return std::string(cache_type_name(kTypes[std::get<0>(info.param)])) +
             "_" + kLayouts[std::get<1>(info.param)].name + "_G" +
             std::to_string(std::get<2>(info.param));
    });

// A cache holding `len` random tokens in one sequence; returns the inputs.
struct Filled {
  std::vector<float> k, v;
};
Filled fill(KVCache& cache, int64_t seq, int64_t layer, int64_t len,
            std::mt19937& rng, int64_t chunk = 1000000) {
  const KVCacheOptions& o = cache.options();
  const int64_t H = o.num_kv_heads, D = o.head_dim, Dv = o.value_head_dim;
  Filled f{normal(H * len * D, rng), normal(H * len * Dv, rng)};
  const std::vector<int64_t> one = {seq};
  for (int64_t t = 0; t < len; t += chunk) {
    const int64_t n = std::min(chunk, len - t);
    cache.append(
        layer, one,
        TensorView<const float>(&f.k[t * D], {1, H, n, D}, {0, len * D, D, 1}),
        TensorView<const float>(&f.v[t * Dv], {1, H, n, Dv},
                                {0, len * Dv, Dv, 1}));
  }
  return f;
}

TEST(KVCache, ChunkedPrefillMatchesReference) {
  // 300 tokens cached in chunks of 64, then a chunk of 37 new queries
  // attends to all of it plus itself, causally (bottom-right).
  std::mt19937 rng(7);
  for (int64_t page : {int64_t{0}, int64_t{32}}) {
    KVCacheOptions co = cache_options(2, 40, 1, 400);
    co.page_size = page;
    KVCache cache(co);
    const int64_t s = cache.add_sequence();
    fill(cache, s, 0, 337, rng, 64);
    const std::vector<float> q = normal(8 * 37 * 40, rng);
    const auto qv = TensorView<const float>::bhsd(q.data(), 1, 8, 37, 40);
    std::vector<float> scratch(8 * 37 * 40);
    AttentionOptions causal;
    causal.causal = true;
    const auto ref = cache_reference(
        qv, cache, 0, {s},
        TensorView<float>::bhsd(scratch.data(), 1, 8, 37, 40), causal);
    const CallResult nai =
        call(qv, cache, 0, {s}, causal, Algorithm::kNaive, ref);
    const CallResult fl =
        call(qv, cache, 0, {s}, causal, Algorithm::kFlash, ref);
    EXPECT_LE(fl.err.max_rel, 2 * nai.err.max_rel + 1e-6) << fl.err.worst;
    EXPECT_TRUE(fl.err.lse_inf_match);
    // auto picks flash for 37 queries
    std::vector<float> out(8 * 37 * 40);
    EXPECT_EQ(
        attention(qv, cache, 0, std::vector<int64_t>{s},
                  TensorView<float>::bhsd(out.data(), 1, 8, 37, 40), causal),
        Algorithm::kFlash);
  }
}

// Pages change where rows are read, not the arithmetic: the same bits as a
// contiguous cache. Decode-sized calls (G * Sq <= 4) against 16-token pages
// also run the items of several KV heads side by side (head_group: 2 of
// Hkv 2, 3 of Hkv 6, 4 of Hkv 8), the contiguous cache one head at a time.
TEST(KVCache, PagedEqualsContiguousBitwise) {
  struct Case {
    int64_t Hkv, G, Sq;
  };
  for (const Case c : {Case{2, 4, 3}, Case{2, 4, 1}, Case{6, 1, 1},
                       Case{8, 4, 1}, Case{3, 2, 2}}) {
    for (CacheType type :
         {CacheType::kFloat32, CacheType::kBFloat16, CacheType::kInt8}) {
      std::mt19937 rng(8 + c.Hkv);
      const int64_t D = 64, len = 1000, Hq = c.Hkv * c.G;
      KVCacheOptions co = cache_options(c.Hkv, D, 1, 1024);
      co.type = type;
      KVCache contiguous(co);
      co.page_size = 16;
      KVCache paged(co);
      const int64_t a = contiguous.add_sequence(), b = paged.add_sequence();
      std::mt19937 rng2 = rng;
      fill(contiguous, a, 0, len, rng, 100);
      fill(paged, b, 0, len, rng2, 7);
      const std::vector<float> q = normal(Hq * c.Sq * D, rng);
      const auto qv = TensorView<const float>::bhsd(q.data(), 1, Hq, c.Sq, D);
      for (int splits : {0, 1, 5}) {
        std::vector<float> o1(Hq * c.Sq * D, NAN), o2(o1.size(), NAN);
        AttentionOptions o;
        o.kv_splits = splits;
        o.causal = true;
        attention(qv, contiguous, 0, std::vector<int64_t>{a},
                  TensorView<float>::bhsd(o1.data(), 1, Hq, c.Sq, D), o);
        attention(qv, paged, 0, std::vector<int64_t>{b},
                  TensorView<float>::bhsd(o2.data(), 1, Hq, c.Sq, D), o);
        EXPECT_EQ(std::memcmp(o1.data(), o2.data(), o1.size() * 4), 0)
            << cache_type_name(type) << " Hkv " << c.Hkv << " G " << c.G
            << " Sq " << c.Sq << " splits " << splits;
        EXPECT_TRUE(std::all_of(o2.begin(), o2.end(),
                                [](float x) { return std::isfinite(x); }));
      }
    }
  }
}

TEST(KVCache, EverySplitCountAndOption) {
  std::mt19937 rng(9);
  const int64_t Hkv = 2, G = 4, D = 32;
  KVCacheOptions co = cache_options(Hkv, D, 3, 1500);
  co.page_size = 64;
  KVCache cache(co);
  const std::vector<int64_t> seqs = {cache.add_sequence(), cache.add_sequence(),
                                     cache.add_sequence()};
  const int64_t lens[3] = {1400, 1, 130};
  for (int s = 0; s < 3; ++s) fill(cache, seqs[s], 0, lens[s], rng, 500);
  for (int64_t Sq : {1, 2}) {
    const std::vector<float> q = normal(3 * Hkv * G * Sq * D, rng);
    const auto qv = TensorView<const float>::bhsd(q.data(), 3, Hkv * G, Sq, D);
    std::vector<float> scratch(3 * Hkv * G * Sq * D);
    const auto out = TensorView<float>::bhsd(scratch.data(), 3, Hkv * G, Sq, D);
    for (const auto& [name, build] : option_sets()) {
      OptionSet opts;
      build(opts, {3, Hkv * G, Hkv, Sq, 1400, D, D}, rng);
      for (size_t b = 0; b < opts.lens.size(); ++b) {
        opts.lens[b] = std::min(opts.lens[b], lens[b]);
      }
      SCOPED_TRACE(name + " Sq=" + std::to_string(Sq));
      const auto ref = cache_reference(qv, cache, 0, seqs, out, opts.o);
      const CallResult nai =
          call(qv, cache, 0, seqs, opts.o, Algorithm::kNaive, ref);
      for (int splits : {0, 1, 2, 3, 22, 1000}) {
        AttentionOptions o = opts.o;
        o.kv_splits = splits;
        const CallResult dec =
            call(qv, cache, 0, seqs, o, Algorithm::kDecode, ref);
        EXPECT_LE(dec.err.max_rel, 2 * nai.err.max_rel + 1e-6)
            << "splits " << splits << ": " << dec.err.worst;
        EXPECT_LE(dec.err.lse_max_abs, 2 * nai.err.lse_max_abs + 1e-6);
        EXPECT_TRUE(dec.err.lse_inf_match);
      }
    }
  }
}

// Multi-query attention (one KV head shared by every query head), G = 8
// and G = 3 (item rows 8 and 3: the packed and the row-read K paths),
// every cache type, contiguous and paged, a batch of two different
// lengths: decode against the float64 reference within the fast-path rule.
TEST(KVCache, MultiQueryDecodeMatchesReference) {
  std::mt19937 rng(12);
  const int64_t D = 64, lens[2] = {300, 77};
  for (CacheType type : kTypes) {
    for (int64_t page : {int64_t{0}, int64_t{16}}) {
      for (int64_t Hq : {int64_t{8}, int64_t{3}}) {
        SCOPED_TRACE(std::string(cache_type_name(type)) + " page " +
                     std::to_string(page) + " Hq " + std::to_string(Hq));
        KVCacheOptions co = cache_options(1, D, 2, 400);
        co.type = type;
        co.page_size = page;
        KVCache cache(co);
        const std::vector<int64_t> seqs = {cache.add_sequence(),
                                           cache.add_sequence()};
        for (int s = 0; s < 2; ++s) fill(cache, seqs[s], 0, lens[s], rng, 64);
        const std::vector<float> q = normal(2 * Hq * D, rng);
        const auto qv = TensorView<const float>::bhsd(q.data(), 2, Hq, 1, D);
        // What decode computes with (int8_query_path).
        const std::vector<float> qq =
            int8_query_path(type, Hq, 1) ? quantised_query(qv) : q;
        const auto qe = TensorView<const float>::bhsd(qq.data(), 2, Hq, 1, D);
        std::vector<float> scratch(2 * Hq * D);
        const auto ref = cache_reference(
            qe, cache, 0, seqs,
            TensorView<float>::bhsd(scratch.data(), 2, Hq, 1, D), {});
        const CallResult nai =
            call(qe, cache, 0, seqs, {}, Algorithm::kNaive, ref);
        const CallResult dec =
            call(qv, cache, 0, seqs, {}, Algorithm::kDecode, ref);
        EXPECT_GT(nai.err.max_rel, 0.0);
        EXPECT_LE(dec.err.max_rel, 2 * nai.err.max_rel + 1e-6) << dec.err.worst;
        EXPECT_LE(dec.err.lse_max_abs, 2 * nai.err.lse_max_abs + 1e-6);
      }
    }
  }
}

TEST(KVCache, Int8WithinDocumentedBound) {
  // int8 against the float32 keys it was quantised from: |error| <= 0.03 of
  // the output's scale for N(0, 1) inputs, D = 128 (docs/kv-cache.md).
  std::mt19937 rng(10);
  const int64_t Hkv = 2, D = 128, len = 2000;
  KVCacheOptions co = cache_options(Hkv, D, 1, len);
  KVCache exact(co);
  co.type = CacheType::kInt8;
  KVCache quant(co);
  std::mt19937 rng2 = rng;
  fill(exact, exact.add_sequence(), 0, len, rng);
  fill(quant, quant.add_sequence(), 0, len, rng2);
  const std::vector<float> q = normal(8 * D, rng);
  const auto qv = TensorView<const float>::bhsd(q.data(), 1, 8, 1, D);
  std::vector<float> scratch(8 * D);
  const auto ref =
      cache_reference(qv, exact, 0, {0},
                      TensorView<float>::bhsd(scratch.data(), 1, 8, 1, D), {});
  const CallResult r = call(qv, quant, 0, {0}, {}, Algorithm::kDecode, ref);
  EXPECT_LE(r.err.max_rel, 0.03) << r.err.worst;
  EXPECT_GT(r.err.max_rel, 1e-4);  // quantisation is really there
  // Stored values: each within half a step (scale / 2) of the input.
  std::vector<float> kq(Hkv * len * D), vq(Hkv * len * D), ke(Hkv * len * D),
      ve(Hkv * len * D);
  quant.read(0, 0, TensorView<float>::bhsd(kq.data(), 1, Hkv, len, D),
             TensorView<float>::bhsd(vq.data(), 1, Hkv, len, D));
  exact.read(0, 0, TensorView<float>::bhsd(ke.data(), 1, Hkv, len, D),
             TensorView<float>::bhsd(ve.data(), 1, Hkv, len, D));
  for (int64_t r0 = 0; r0 < Hkv * len; ++r0) {
    float amax = 0;
    for (int64_t d = 0; d < D; ++d)
      amax = std::max(amax, std::fabs(ke[r0 * D + d]));
    for (int64_t d = 0; d < D; ++d) {
      ASSERT_LE(std::fabs(kq[r0 * D + d] - ke[r0 * D + d]),
                amax / 254 * 1.0001f);
    }
  }
}

// An int8 cache paged by 16 with 2 KV heads of D, holding one sequence per
// length (random tokens appended in chunks of `chunk`).
struct Int8Cache {
  KVCache cache;
  std::vector<int64_t> seqs;
};
Int8Cache int8_cache(int64_t D, std::initializer_list<int64_t> lens,
                     int64_t chunk, std::mt19937& rng) {
  KVCacheOptions co =
      cache_options(2, D, static_cast<int64_t>(lens.size()),
                    *std::max_element(lens.begin(), lens.end()));
  co.type = CacheType::kInt8;
  co.page_size = 16;
  Int8Cache c{KVCache(co), {}};
  for (int64_t len : lens) {
    c.seqs.push_back(c.cache.add_sequence());
    fill(c.cache, c.seqs.back(), 0, len, rng, chunk);
  }
  return c;
}

// The integer q . k of int8 caches has two kernels, vpdpbusd (AVX-512
// VNNI) and int16 pair products (every target): both sum the same exact
// integer products and scale them alike, so on one target the outputs are
// the same bits with VNNI and without (ATTN_TEST_CPU_EXTENSIONS-style
// switch), over GQA ratios 1-4, key counts around tile edges and pages.
TEST(KVCache, Int8ScoresSameBitsWithAndWithoutVnni) {
  if (active_simd_target() != "AVX3" || !util::cpu_has_avx512_vnni()) {
    GTEST_SKIP() << "runs on the AVX3 target with AVX-512 VNNI";
  }
  std::mt19937 rng(41);
  for (int64_t D : {64, 128}) {
    for (int64_t G : {1, 3, 4}) {
      const Int8Cache c = int8_cache(D, {641, 63}, 100, rng);
      const KVCache& cache = c.cache;
      const std::vector<int64_t>& seqs = c.seqs;
      const std::vector<float> q = normal(2 * 2 * G * D, rng);
      const auto qv = TensorView<const float>::bhsd(q.data(), 2, 2 * G, 1, D);
      std::vector<float> with(2 * 2 * G * D, NAN), without(with.size(), NAN);
      for (bool vnni : {true, false}) {
        util::cpu_extensions_disabled() = !vnni;
        AttentionOptions o;
        o.algorithm = Algorithm::kDecode;
        attention(qv, cache, 0, seqs,
                  TensorView<float>::bhsd((vnni ? with : without).data(), 2,
                                          2 * G, 1, D),
                  o);
      }
      util::cpu_extensions_disabled() = false;
      EXPECT_EQ(std::memcmp(with.data(), without.data(), with.size() * 4), 0)
          << "D " << D << " G " << G;
      EXPECT_TRUE(std::all_of(with.begin(), with.end(),
                              [](float x) { return std::isfinite(x); }));
    }
  }
}

// The integer path for every head dim (tails past the int16 vector and
// VNNI's 64 bytes), GQA 1, 2, 4 and two query positions (G * Sq <= 4):
// within the fast-path rule of the quantised query's attention. A query
// row holding inf or NaN is not quantised (the row scores in float, rule
// 8): its output matches naive's NaN pattern.
TEST(KVCache, Int8QuantisedQueryAnyHeadDim) {
  std::mt19937 rng(43);
  for (int64_t D : {1, 24, 40, 72, 130}) {
    for (const auto [G, Sq] :
         {std::pair<int64_t, int64_t>{1, 1}, {2, 2}, {4, 1}}) {
      SCOPED_TRACE("D " + std::to_string(D) + " G " + std::to_string(G) +
                   " Sq " + std::to_string(Sq));
      const Int8Cache c = int8_cache(D, {213, 65}, 50, rng);
      const KVCache& cache = c.cache;
      const std::vector<int64_t>& seqs = c.seqs;
      const KVCacheOptions& co = cache.options();
      const int64_t Hq = 2 * G;
      std::vector<float> q = normal(2 * Hq * Sq * D, rng);
      const auto qv = TensorView<const float>::bhsd(q.data(), 2, Hq, Sq, D);
      ASSERT_TRUE(int8_query_path(co.type, G, Sq));
      std::vector<float> qq = quantised_query(qv);
      const auto qe = TensorView<const float>::bhsd(qq.data(), 2, Hq, Sq, D);
      std::vector<float> scratch(2 * Hq * Sq * D);
      AttentionOptions causal;
      causal.causal = true;
      const auto out = TensorView<float>::bhsd(scratch.data(), 2, Hq, Sq, D);
      const auto ref = cache_reference(qe, cache, 0, seqs, out, causal);
      const CallResult nai =
          call(qe, cache, 0, seqs, causal, Algorithm::kNaive, ref);
      const CallResult dec =
          call(qv, cache, 0, seqs, causal, Algorithm::kDecode, ref);
      EXPECT_GT(nai.err.max_rel, 0.0);
      EXPECT_LE(dec.err.max_rel, 2 * nai.err.max_rel + 1e-6) << dec.err.worst;
      EXPECT_LE(dec.err.lse_max_abs, 2 * nai.err.lse_max_abs + 1e-6);
      // Non-finite query values: batch entry 1, head 0, position 0 gets inf,
      // head 1 NaN.
      q[(Hq * Sq) * D + D / 2] = INFINITY;
      q[(Hq * Sq + Sq) * D] = NAN;
      const CallResult nai_nf =
          call(qv, cache, 0, seqs, causal, Algorithm::kNaive, ref);
      const CallResult dec_nf =
          call(qv, cache, 0, seqs, causal, Algorithm::kDecode, ref);
      for (size_t e = 0; e < dec_nf.out.size(); ++e) {
        ASSERT_EQ(std::isnan(dec_nf.out[e]), std::isnan(nai_nf.out[e]))
            << "element " << e;
      }
      EXPECT_TRUE(std::isnan(dec_nf.out[(Hq * Sq + Sq) * D]));
    }
  }
}

// bfloat16 queries on a bfloat16 cache, decode and naive into poisoned
// outputs: decode-sized items (G <= 4) score on vdpbf16ps from the K rows
// where the CPU has AVX-512 BF16 (head dims a multiple of 32, or with a
// masked tail: 48, 80), else as float32 rows; G = 8 takes the bf16-pair
// path there; D 40 the packed one. Held to the rule of every path (at most
// twice naive's error + 1e-6, output and lse) on a 700-token paged cache
// (partial last tile and page).
TEST(KVCache, BFloat16QueriesOnBFloat16Cache) {
  std::mt19937 rng(11);
  const int64_t len = 700;
  struct Shape {
    int64_t Hkv, Hq, D;
  };
  for (const Shape& sh : {Shape{2, 8, 64}, Shape{2, 16, 64}, Shape{3, 3, 48},
                          Shape{2, 6, 80}, Shape{1, 4, 128}, Shape{2, 4, 40}}) {
    const int64_t Hkv = sh.Hkv, Hq = sh.Hq, D = sh.D;
    SCOPED_TRACE("Hkv " + std::to_string(Hkv) + " Hq " + std::to_string(Hq) +
                 " D " + std::to_string(D));
    KVCacheOptions co = cache_options(Hkv, D, 1, len);
    co.type = CacheType::kBFloat16;
    co.page_size = 16;
    KVCache cache(co);
    fill(cache, cache.add_sequence(), 0, len, rng, 100);
    std::vector<bfloat16> q(Hq * D);
    const std::vector<float> qf_src = normal(Hq * D, rng);
    std::vector<float> qf(Hq * D);
    for (int64_t i = 0; i < Hq * D; ++i) {
      q[i] = bfloat16::from_float(qf_src[i]);
      qf[i] = q[i].to_float();
    }
    std::vector<float> scratch(Hq * D);
    const auto ref = cache_reference(
        TensorView<const float>::bhsd(qf.data(), 1, Hq, 1, D), cache, 0, {0},
        TensorView<float>::bhsd(scratch.data(), 1, Hq, 1, D), {});
    ErrorStats err[2];
    int i = 0;
    for (Algorithm a : {Algorithm::kNaive, Algorithm::kDecode}) {
      std::vector<bfloat16> out(Hq * D, bfloat16::from_float(NAN));
      std::vector<float> lse(Hq, NAN);
      AttentionOptions o;
      o.algorithm = a;
      EXPECT_EQ(
          attention(TensorView<const bfloat16>::bhsd(q.data(), 1, Hq, 1, D),
                    cache, 0, std::vector<int64_t>{0},
                    TensorView<bfloat16>::bhsd(out.data(), 1, Hq, 1, D), o,
                    TensorView<float>::bhsd(lse.data(), 1, Hq, 1, 1)),
          a);
      err[i++] = compare<bfloat16>(
          ref, TensorView<const bfloat16>::bhsd(out.data(), 1, Hq, 1, D),
          TensorView<const float>::bhsd(lse.data(), 1, Hq, 1, 1));
    }
    const ErrorStats &naive = err[0], &dec = err[1];
    EXPECT_LE(dec.max_rel, 2 * naive.max_rel + 1e-6) << dec.worst;
    EXPECT_LE(dec.lse_max_abs, 2 * naive.lse_max_abs + 1e-6);
    EXPECT_LE(dec.max_rel, tolerance<bfloat16>()) << dec.worst;
  }
}

TEST(KVCache, ForksShareAndCopyOnWrite) {
  std::mt19937 rng(12);
  const int64_t H = 1, D = 8;
  KVCacheOptions co = cache_options(H, D, 4, 100);
  co.num_layers = 2;
  co.page_size = 16;
  co.num_pages = 20;
  KVCache cache(co);
  const int64_t a = cache.add_sequence();
  const Filled prompt0 = fill(cache, a, 0, 40, rng);  // 3 pages
  const Filled prompt1 = fill(cache, a, 1, 40, rng);
  EXPECT_EQ(cache.pages_free(), 17);
  const uint64_t used_one = cache.bytes_used();
  const int64_t b = cache.fork(a), c = cache.fork(a);
  EXPECT_EQ(cache.pages_free(), 17);  // shared, nothing copied
  EXPECT_EQ(cache.bytes_used(), used_one);
  EXPECT_EQ(cache.length(b, 1), 40);
  // Each appends its own token to layer 0: the shared last page is copied
  // for b and c, a keeps the original.
  const Filled ta = fill(cache, a, 0, 1, rng), tb = fill(cache, b, 0, 1, rng),
               tc = fill(cache, c, 0, 1, rng);
  EXPECT_EQ(cache.pages_free(), 15);
  auto expect_contents = [&](int64_t seq, const Filled& own, int64_t layer,
                             const Filled& prefix) {
    const int64_t len = cache.length(seq, layer);
    std::vector<float> k(len * D), v(len * D);
    cache.read(seq, layer, TensorView<float>::bhsd(k.data(), 1, H, len, D),
               TensorView<float>::bhsd(v.data(), 1, H, len, D));
    for (int64_t i = 0; i < 40 * D; ++i) ASSERT_EQ(k[i], prefix.k[i]) << seq;
    for (int64_t i = 40 * D; i < len * D; ++i)
      ASSERT_EQ(k[i], own.k[i - 40 * D]) << seq;
    for (int64_t i = 40 * D; i < len * D; ++i)
      ASSERT_EQ(v[i], own.v[i - 40 * D]) << seq;
  };
  expect_contents(a, ta, 0, prompt0);
  expect_contents(b, tb, 0, prompt0);
  expect_contents(c, tc, 0, prompt0);
  // Layer 1 of b: its page was copied with every layer, contents intact.
  expect_contents(b, {}, 1, prompt1);
  cache.free_sequence(a);
  expect_contents(b, tb, 0, prompt0);
  expect_contents(c, tc, 0, prompt0);
  cache.free_sequence(b);
  cache.free_sequence(c);
  EXPECT_EQ(cache.pages_free(), 20);
  EXPECT_EQ(cache.bytes_used(), 0u);
  EXPECT_EQ(cache.num_sequences(), 0);
  // Ids are reused; a fresh sequence starts empty.
  const int64_t d = cache.add_sequence();
  EXPECT_EQ(cache.length(d, 0), 0);
  // Many rounds of fork / append / free leave no page behind (ASan checks
  // the memory side).
  for (int round = 0; round < 50; ++round) {
    const int64_t f = cache.fork(d);
    fill(cache, f, round % 2, 1 + round % 20, rng);
    if (round % 3 == 0) fill(cache, d, 0, 1, rng);
    cache.free_sequence(f);
  }
  cache.free_sequence(d);
  EXPECT_EQ(cache.pages_free(), 20);
}

TEST(KVCache, ContiguousForkCopiesOnFirstAppend) {
  std::mt19937 rng(13);
  KVCacheOptions co = cache_options(2, 4, 2, 10);
  KVCache cache(co);
  const int64_t a = cache.add_sequence();
  const Filled p = fill(cache, a, 0, 5, rng);
  const int64_t b = cache.fork(a);
  EXPECT_EQ(cache.pages_free(), 1);
  fill(cache, b, 0, 2, rng);
  EXPECT_EQ(cache.pages_free(), 0);
  EXPECT_EQ(cache.length(a, 0), 5);
  EXPECT_EQ(cache.length(b, 0), 7);
  std::vector<float> k(2 * 5 * 4), v(2 * 5 * 4);
  cache.read(a, 0, TensorView<float>::bhsd(k.data(), 1, 2, 5, 4),
             TensorView<float>::bhsd(v.data(), 1, 2, 5, 4));
  EXPECT_EQ(k, p.k);
  EXPECT_EQ(v, p.v);
}

// Runs f, expects attn::Error containing every fragment.
template <class F>
void expect_error(F f, std::initializer_list<std::string> fragments) {
  try {
    f();
    ADD_FAILURE() << "no attn::Error";
  } catch (const Error& e) {
    for (const std::string& s : fragments) {
      EXPECT_NE(std::string(e.what()).find(s), std::string::npos)
          << "'" << s << "' not in: " << e.what();
    }
  }
}

TEST(KVCache, CapacityErrorsLeaveTheCacheAsItWas) {
  std::mt19937 rng(14);
  KVCacheOptions co = cache_options(1, 4, 2, 20);
  co.page_size = 4;
  co.num_pages = 5;
  KVCache cache(co);
  const int64_t a = cache.add_sequence();
  const Filled before = fill(cache, a, 0, 15, rng);  // 4 pages
  expect_error([&] { fill(cache, a, 0, 6, rng); },
               {"max_tokens = 20", "15 tokens + 6"});
  const int64_t b = cache.add_sequence();
  expect_error([&] { fill(cache, b, 0, 5, rng); },
               {"out of pages", "needs 2", "1 of 5"});
  EXPECT_EQ(cache.length(a, 0), 15);
  EXPECT_EQ(cache.length(b, 0), 0);
  EXPECT_EQ(cache.pages_free(), 1);
  std::vector<float> k(15 * 4), v(15 * 4);
  cache.read(a, 0, TensorView<float>::bhsd(k.data(), 1, 1, 15, 4),
             TensorView<float>::bhsd(v.data(), 1, 1, 15, 4));
  EXPECT_EQ(k, before.k);
  expect_error([&] { cache.add_sequence(); }, {"max_sequences = 2"});
  expect_error([&] { cache.fork(a); }, {"max_sequences = 2"});
  // A fork appending into a shared page needs a copy the pool cannot give.
  cache.free_sequence(b);
  const int64_t f = cache.fork(a);
  fill(cache, f, 0, 1, rng);  // copies page 3: the last free page
  expect_error([&] { fill(cache, a, 0, 2, rng); }, {"out of pages"});
  EXPECT_EQ(cache.length(a, 0), 15);
}

// Options whose cache could never be held are refused with attn::Error
// before anything is allocated (these threw std::bad_alloc, or aborted
// under a sanitizer, from the bookkeeping arrays).
TEST(KVCache, AbsurdSizesAreErrorsBeforeAllocation) {
  KVCacheOptions co = cache_options(2, 4, 1, 8);
  co.num_layers = int64_t{1} << 40;
  expect_error([&] { KVCache c(co); },
               {"attn::KVCache::KVCache", "bytes", "2^40-byte limit"});
  co = cache_options(2, 4, 1, 8);
  co.max_tokens = int64_t{1} << 40;
  co.page_size = int64_t{1} << 20;  // 2^20 pages of 2^20 tokens
  expect_error([&] { KVCache c(co); }, {"attn::KVCache::KVCache", "bytes"});
  co = cache_options(2, 4, 1, 8);
  co.max_sequences = int64_t{1} << 30;
  co.max_tokens = int64_t{1} << 12;
  expect_error([&] { KVCache c(co); }, {"attn::KVCache::KVCache", "bytes"});
}

TEST(KVCache, BadArguments) {
  KVCacheOptions co = cache_options(2, 4, 1, 8);
  expect_error(
      [&] {
        KVCacheOptions o = co;
        o.num_kv_heads = 0;
        KVCache c(o);
      },
      {"options.num_kv_heads", "[1, 2^40]"});
  expect_error(
      [&] {
        KVCacheOptions o = co;
        o.max_tokens = -1;
        KVCache c(o);
      },
      {"options.max_tokens"});
  expect_error(
      [&] {
        KVCacheOptions o = co;
        o.page_size = -4;
        KVCache c(o);
      },
      {"options.page_size"});
  expect_error(
      [&] {
        KVCacheOptions o = co;
        o.rope = [] {
          RopeOptions r;
          r.rotary_dim = 6;
          return r;
        }();
        KVCache c(o);
      },
      {"rotary_dim 6 exceeds head_dim 4"});
  expect_error(
      [&] {
        KVCacheOptions o = co;
        o.rope = [] {
          RopeOptions r;
          r.theta = -1;
          return r;
        }();
        KVCache c(o);
      },
      {"theta"});
  KVCache cache(co);
  const int64_t s = cache.add_sequence();
  std::vector<float> k(2 * 3 * 4, 1.0f), v(2 * 3 * 4, 1.0f);
  const auto kv = TensorView<const float>::bhsd(k.data(), 1, 2, 3, 4);
  const std::vector<int64_t> one = {s}, bad = {7}, twice = {s, s};
  expect_error([&] { cache.append(1, one, kv, kv); },
               {"layer must be in [0, 1)"});
  expect_error([&] { cache.append(0, bad, kv, kv); },
               {"sequence 7 is not a live"});
  expect_error([&] { cache.append(0, twice, kv, kv); }, {"listed twice"});
  expect_error(
      [&] {
        cache.append(0, one,
                     TensorView<const float>::bhsd(k.data(), 1, 1, 6, 4), kv);
      },
      {"k: expected shape [1, 2, 6, 4]"});
  expect_error([&] { cache.free_sequence(3); },
               {"free_sequence", "not a live"});
  expect_error([&] { cache.length(s, 2); }, {"layer"});
  // int8 rejects non-finite values.
  KVCacheOptions q8 = co;
  q8.type = CacheType::kInt8;
  KVCache c8(q8);
  const int64_t s8 = c8.add_sequence();
  k[5] = INFINITY;
  expect_error([&] { c8.append(0, std::vector<int64_t>{s8}, kv, kv); },
               {"int8 caches need finite values"});
  EXPECT_EQ(c8.length(s8, 0), 0);
  // Attention: wrong head dim, sequence count, 16-bit q on a float cache.
  cache.append(0, one, TensorView<const float>::bhsd(v.data(), 1, 2, 3, 4),
               TensorView<const float>::bhsd(v.data(), 1, 2, 3, 4));
  std::vector<float> q(4 * 8, 0.5f), out(4 * 8, NAN);
  const auto qv = TensorView<const float>::bhsd(q.data(), 1, 4, 1, 8);
  expect_error(
      [&] {
        attention(qv, cache, 0, one,
                  TensorView<float>::bhsd(out.data(), 1, 4, 1, 8));
      },
      {"q", "head dim of the cache"});
  const auto q4 = TensorView<const float>::bhsd(q.data(), 1, 4, 1, 4);
  const auto o4 = TensorView<float>::bhsd(out.data(), 1, 4, 1, 4);
  expect_error([&] { attention(q4, cache, 0, std::vector<int64_t>{}, o4); },
               {"sequences", "one sequence id per batch entry"});
  expect_error([&] { attention(q4, cache, 1, one, o4); }, {"layer"});
  expect_error([&] { attention(q4, cache, 0, bad, o4); },
               {"not a live sequence"});
  AttentionOptions lens;
  const std::vector<int64_t> four = {4};
  lens.key_lengths = four;
  expect_error([&] { attention(q4, cache, 0, one, o4, lens); },
               {"options.key_lengths", "[0, Skv = 3]"});
  std::vector<bfloat16> qb(16), ob(16);
  expect_error(
      [&] {
        attention(TensorView<const bfloat16>::bhsd(qb.data(), 1, 4, 1, 4),
                  cache, 0, one,
                  TensorView<bfloat16>::bhsd(ob.data(), 1, 4, 1, 4));
      },
      {"same type", "float32"});
  for (float x : out) EXPECT_TRUE(std::isnan(x));
  attention(q4, cache, 0, one, o4);
  for (int i = 0; i < 16; ++i) EXPECT_FLOAT_EQ(out[i], 1.0f);  // v is all ones
}

TEST(KVCache, RopeOnAppendRotatesKeysAtTheirPositions) {
  std::mt19937 rng(15);
  const int64_t H = 2, D = 16, len = 30;
  RopeOptions rope;
  rope.theta = 500.0;
  rope.rotary_dim = 8;
  KVCacheOptions co = cache_options(H, D, 1, 64);
  co.page_size = 8;
  co.rope = rope;
  KVCache cache(co);
  const int64_t s = cache.add_sequence();
  const Filled f = fill(cache, s, 0, len, rng, 7);  // chunks: offsets 0, 7, ...
  std::vector<float> want = f.k;
  apply_rope(TensorView<float>::bhsd(want.data(), 1, H, len, D), rope);
  std::vector<float> k(H * len * D), v(H * len * D);
  cache.read(s, 0, TensorView<float>::bhsd(k.data(), 1, H, len, D),
             TensorView<float>::bhsd(v.data(), 1, H, len, D));
  EXPECT_EQ(k, want);
  EXPECT_EQ(v, f.v);  // values are not rotated
}

TEST(KVCache, LayersAreIndependent) {
  std::mt19937 rng(16);
  KVCacheOptions co = cache_options(1, 8, 1, 50);
  co.num_layers = 3;
  co.page_size = 8;
  KVCache cache(co);
  const int64_t s = cache.add_sequence();
  fill(cache, s, 0, 20, rng);
  const Filled l2 = fill(cache, s, 2, 11, rng);
  EXPECT_EQ(cache.length(s, 0), 20);
  EXPECT_EQ(cache.length(s, 1), 0);
  EXPECT_EQ(cache.length(s, 2), 11);
  std::vector<float> k(11 * 8), v(11 * 8);
  cache.read(s, 2, TensorView<float>::bhsd(k.data(), 1, 1, 11, 8),
             TensorView<float>::bhsd(v.data(), 1, 1, 11, 8));
  EXPECT_EQ(k, l2.k);
  // Layer 1 is empty: every row has no key (0 and -inf).
  std::vector<float> q(8, 1.0f), out(8, NAN), lse(1, NAN);
  attention(TensorView<const float>::bhsd(q.data(), 1, 1, 1, 8), cache, 1,
            std::vector<int64_t>{s},
            TensorView<float>::bhsd(out.data(), 1, 1, 1, 8), {},
            TensorView<float>::bhsd(lse.data(), 1, 1, 1, 1));
  for (float x : out) EXPECT_EQ(x, 0.0f);
  EXPECT_EQ(lse[0], -INFINITY);
  EXPECT_EQ(cache.bytes_reserved() > 3 * 7 * 8 * 16 * 4, true);
}

TEST(Merge, EqualsAttentionOverAllKeys) {
  std::mt19937 rng(17);
  const Dims d{2, 4, 2, 3, 200, 16, 12};
  Case<float> c(d, {}, rng);
  // Batch entry 1 hides keys 150..199, so its third part is empty.
  std::vector<float> bias(d.B * d.Skv, 0.0f);
  for (int64_t j = 150; j < 200; ++j) bias[d.Skv + j] = -INFINITY;
  AttentionOptions full;
  full.bias = TensorView<const float>(bias.data(), {d.B, 1, 1, d.Skv},
                                      {d.Skv, 0, 0, 1});
  const reference::Result ref = c.reference(full);
  // Parts over keys [0, 70), [70, 150), [150, 200) as views of k and v.
  const int64_t cuts[4] = {0, 70, 150, 200};
  std::vector<std::vector<float>> outs(3), lses(3);
  std::vector<TensorView<const float>> out_views, lse_views;
  for (int s = 0; s < 3; ++s) {
    const int64_t n = cuts[s + 1] - cuts[s];
    auto part = [&](TensorView<float> x) {
      return TensorView<const float>(x.row(0, 0, cuts[s]),
                                     {d.B, d.Hkv, n, x.extent(3)}, x.strides());
    };
    outs[s].assign(d.B * d.Hq * d.Sq * d.Dv, NAN);
    lses[s].assign(d.B * d.Hq * d.Sq, NAN);
    const auto ov =
        TensorView<float>::bhsd(outs[s].data(), d.B, d.Hq, d.Sq, d.Dv);
    const auto lv = TensorView<float>::bhsd(lses[s].data(), d.B, d.Hq, d.Sq, 1);
    AttentionOptions o;
    o.bias = TensorView<const float>(bias.data() + cuts[s], {d.B, 1, 1, n},
                                     {d.Skv, 0, 0, 1});
    attention(
        TensorView<const float>(c.q().data(), c.q().extents(), c.q().strides()),
        part(c.k()), part(c.v()), ov, o, lv);
    out_views.push_back(ov);
    lse_views.push_back(lv);
  }
  EXPECT_EQ(lses[2][d.Hq * d.Sq], -INFINITY);  // the empty part is there
  std::vector<float> out(d.B * d.Hq * d.Sq * d.Dv, NAN),
      lse(d.B * d.Hq * d.Sq, NAN);
  const auto ov = TensorView<float>::bhsd(out.data(), d.B, d.Hq, d.Sq, d.Dv);
  const auto lv = TensorView<float>::bhsd(lse.data(), d.B, d.Hq, d.Sq, 1);
  merge(out_views, lse_views, ov, lv);
  const ErrorStats e = compare<float>(ref, ov, lv);
  EXPECT_LE(e.max_rel, 5e-6) << e.worst;
  EXPECT_LE(e.lse_max_abs, 1e-5);
  // In place: out is the first part.
  const auto first =
      TensorView<float>::bhsd(outs[0].data(), d.B, d.Hq, d.Sq, d.Dv);
  merge(out_views, lse_views, first);
  EXPECT_EQ(outs[0], out);
  // Errors.
  expect_error([&] { merge({}, {}, ov); }, {"attn::merge", "outs"});
  expect_error([&] { merge(out_views, std::span(lse_views).first(2), ov); },
               {"lses"});
  std::vector<float> small(4);
  expect_error(
      [&] {
        merge(out_views, lse_views,
              TensorView<float>::bhsd(small.data(), 1, 1, 1, 4));
      },
      {"outs[0]", "expected", "extent", "the shape of out"});
}

TEST(Merge, AllPartsEmptyGiveZeroAndMinusInfinity) {
  std::vector<float> o1(4, 7.0f), o2(4, 9.0f), l1(1, -INFINITY),
      l2(1, -INFINITY);
  const std::vector<TensorView<const float>> outs = {
      TensorView<const float>::bhsd(o1.data(), 1, 1, 1, 4),
      TensorView<const float>::bhsd(o2.data(), 1, 1, 1, 4)};
  const std::vector<TensorView<const float>> lses = {
      TensorView<const float>::bhsd(l1.data(), 1, 1, 1, 1),
      TensorView<const float>::bhsd(l2.data(), 1, 1, 1, 1)};
  std::vector<float> out(4, NAN), lse(1, NAN);
  merge(outs, lses, TensorView<float>::bhsd(out.data(), 1, 1, 1, 4),
        TensorView<float>::bhsd(lse.data(), 1, 1, 1, 1));
  for (float x : out) EXPECT_EQ(x, 0.0f);
  EXPECT_EQ(lse[0], -INFINITY);
}

}  // namespace
}  // namespace attn

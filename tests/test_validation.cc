// Every invalid argument raises attn::Error before any work, with a message
// that names the argument and what was expected. One test per rule.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <functional>
#include <initializer_list>
#include <string>
#include <vector>

#include "attn/attention.h"
#include "attn/block_mask.h"
#include "attn/error.h"
#include "attn/kv_cache.h"
#include "attn/rope.h"
#include "attn/tensor.h"

namespace attn {
namespace {

// A valid call (B 2, Hq 4, Hkv 2, Sq 3, Skv 5, D 8, Dv 6) whose pieces each
// test breaks one at a time.
struct Call {
  std::vector<float> qb = std::vector<float>(2 * 4 * 3 * 8, 0.5f);
  std::vector<float> kb = std::vector<float>(2 * 2 * 5 * 8, 0.25f);
  std::vector<float> vb = std::vector<float>(2 * 2 * 5 * 6, 1.0f);
  std::vector<float> ob = std::vector<float>(2 * 4 * 3 * 6, NAN);
  std::vector<float> lb = std::vector<float>(2 * 4 * 3, NAN);
  TensorView<const float> q =
      TensorView<const float>::bhsd(qb.data(), 2, 4, 3, 8);
  TensorView<const float> k =
      TensorView<const float>::bhsd(kb.data(), 2, 2, 5, 8);
  TensorView<const float> v =
      TensorView<const float>::bhsd(vb.data(), 2, 2, 5, 6);
  TensorView<float> out = TensorView<float>::bhsd(ob.data(), 2, 4, 3, 6);
  TensorView<float> lse;
  AttentionOptions options;

  void run() { attention(q, k, v, out, options, lse); }
};

// Runs call, expects attn::Error whose message contains every fragment.
void expect_message(const std::function<void()>& call,
                    std::initializer_list<std::string> fragments) {
  try {
    call();
    ADD_FAILURE() << "no attn::Error thrown";
  } catch (const Error& e) {
    const std::string msg = e.what();
    for (const std::string& f : fragments) {
      EXPECT_NE(msg.find(f), std::string::npos)
          << "message lacks '" << f << "': " << msg;
    }
  }
}

// Runs the call, expects attn::Error whose message contains every fragment,
// and checks that nothing was written.
void expect_error(Call& c, std::initializer_list<std::string> fragments) {
  expect_message([&] { c.run(); }, fragments);
  for (float x : c.ob)
    ASSERT_TRUE(std::isnan(x)) << "output written before error";
}

TEST(Validation, ValidCallRuns) {
  Call c;
  c.run();
  for (float x : c.ob) EXPECT_FLOAT_EQ(x, 1.0f);  // v is all ones
}

TEST(Validation, BatchMismatch) {
  Call c;
  c.k = TensorView<const float>::bhsd(c.kb.data(), 1, 2, 5, 8);
  expect_error(c, {"k:", "batch extent 2", "got 1"});
}

TEST(Validation, HeadDimMismatch) {
  Call c;
  c.k = TensorView<const float>::bhsd(c.kb.data(), 2, 2, 5, 7);
  expect_error(c, {"k:", "dim extent 8", "got 7"});
}

TEST(Validation, ValueHeadsMismatch) {
  Call c;
  c.v = TensorView<const float>::bhsd(c.vb.data(), 2, 1, 5, 6);
  expect_error(c, {"v:", "heads extent 2", "got 1"});
}

// A k whose head count fits neither q nor v is blamed on k (v was blamed).
TEST(Validation, KeyHeadsMismatchBlamesK) {
  Call c;
  c.k = TensorView<const float>::bhsd(c.kb.data(), 2, 3, 5, 8);
  expect_error(c, {"k:", "KV heads (3)", "query heads (4)", "v's (2)"});
}

TEST(Validation, ValueLengthMismatch) {
  Call c;
  c.v = TensorView<const float>::bhsd(c.vb.data(), 2, 2, 4, 6);
  expect_error(c, {"v:", "seq extent 5", "got 4"});
}

TEST(Validation, QueryHeadsNotMultipleOfKvHeads) {
  Call c;
  c.q = TensorView<const float>::bhsd(c.qb.data(), 2, 3, 3, 8);
  c.out = TensorView<float>::bhsd(c.ob.data(), 2, 3, 3, 6);
  expect_error(c, {"q:", "query heads (3)", "multiple of the KV heads", "(2)"});
}

TEST(Validation, OutputShapeMismatch) {
  Call c;
  c.out = TensorView<float>::bhsd(c.ob.data(), 2, 4, 3, 5);
  expect_error(c, {"out:", "dim extent 6", "head dim of v"});
}

TEST(Validation, InnerStrideNotOne) {
  Call c;
  c.q = TensorView<const float>(c.qb.data(), {2, 4, 3, 4}, {96, 24, 8, 2});
  c.k = TensorView<const float>(c.kb.data(), {2, 2, 5, 4}, {80, 40, 8, 2});
  expect_error(c, {"q:", "dim stride must be 1", "got 2"});
}

TEST(Validation, NegativeStride) {
  Call c;
  c.v =
      TensorView<const float>(c.vb.data() + 54, {2, 2, 5, 6}, {60, 30, -6, 1});
  expect_error(c, {"v:", "seq stride", "got -6"});
}

TEST(Validation, NullData) {
  Call c;
  c.q = TensorView<const float>::bhsd(nullptr, 2, 4, 3, 8);
  expect_error(c, {"q:", "null"});
}

TEST(Validation, EmptyQueryExtent) {
  Call c;
  c.q = TensorView<const float>::bhsd(c.qb.data(), 2, 4, 0, 8);
  expect_error(c, {"q:", "seq extent", "got 0"});
}

// An empty buffer (null data) is blamed on the extent that makes it empty,
// and where the spec defines the result (Skv = 0) it is accepted.
TEST(Validation, EmptyExtentsNameTheAxis) {
  const std::vector<float> none;  // data() is null
  const char* axes[] = {"batch", "heads", "seq", "dim"};
  for (int a = 0; a < 4; ++a) {
    Call c;
    Extents e = {2, 4, 3, 8};
    e[a] = 0;
    c.q = TensorView<const float>(none.data(), e, {0, 0, 0, 1});
    expect_error(c, {"q:", std::string(axes[a]) + " extent", "got 0"});
  }
  Call c;
  c.k = TensorView<const float>::bhsd(none.data(), 2, 2, 0, 8);
  c.v = TensorView<const float>::bhsd(none.data(), 2, 2, 0, 6);
  c.lse = TensorView<float>::bhsd(c.lb.data(), 2, 4, 3, 1);
  for (Algorithm a : {Algorithm::kReference, Algorithm::kNaive,
                      Algorithm::kFlash, Algorithm::kDecode}) {
    c.options.algorithm = a;
    std::fill(c.ob.begin(), c.ob.end(), NAN);
    std::fill(c.lb.begin(), c.lb.end(), NAN);
    c.run();  // Skv = 0: every row sees no key
    for (float x : c.ob) EXPECT_EQ(x, 0.0f);
    for (float x : c.lb) EXPECT_EQ(x, -INFINITY);
  }
  // Non-empty views still need data.
  std::fill(c.ob.begin(), c.ob.end(), NAN);
  std::fill(c.lb.begin(), c.lb.end(), NAN);
  c.k = TensorView<const float>::bhsd(nullptr, 2, 2, 5, 8);
  expect_error(c, {"k:", "data pointer is null"});
}

TEST(Validation, OutputAliasesInput) {
  Call c;
  std::vector<float> shared(2 * 4 * 3 * 8, NAN);
  c.q = TensorView<const float>::bhsd(shared.data(), 2, 4, 3, 8);
  c.out = TensorView<float>::bhsd(shared.data() + 8, 2, 4, 3, 6);
  EXPECT_THROW(c.run(), Error);
  try {
    c.run();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("out: memory overlaps input q"),
              std::string::npos)
        << e.what();
  }
  for (float x : shared) EXPECT_TRUE(std::isnan(x));
}

TEST(Validation, OutputOverlapsItself) {
  Call c;
  c.out = TensorView<float>(c.ob.data(), {2, 4, 3, 6}, {72, 18, 0, 1});
  expect_error(c, {"out:", "share memory"});
}

TEST(Validation, LseShape) {
  Call c;
  c.lse = TensorView<float>::bhsd(c.lb.data(), 2, 4, 2, 1);
  expect_error(c, {"lse:", "seq extent 3", "[B, Hq, Sq, 1]"});
}

TEST(Validation, LseOverlapsOutput) {
  Call c;
  c.lse = TensorView<float>::bhsd(c.ob.data(), 2, 4, 3, 1);
  expect_error(c, {"lse:", "overlaps out"});
}

TEST(Validation, WindowBelowMinusOne) {
  Call c;
  c.options.window_left = -2;
  expect_error(c, {"options.window_left", ">= -1", "got -2"});
  Call d;
  d.options.window_right = -5;
  expect_error(d, {"options.window_right", ">= -1", "got -5"});
}

TEST(Validation, NegativeOrNanSoftcap) {
  Call c;
  c.options.softcap = -1.0f;
  expect_error(c, {"options.softcap", ">= 0"});
  Call d;
  d.options.softcap = NAN;
  expect_error(d, {"options.softcap"});
  Call e;
  e.options.softcap = INFINITY;
  expect_error(e, {"options.softcap", "finite"});
}

TEST(Validation, NonFiniteScale) {
  for (float s : {INFINITY, -INFINITY, NAN}) {
    Call c;
    c.options.scale = s;
    expect_error(c, {"options.scale", "finite"});
  }
}

TEST(Validation, MaskNotBroadcastable) {
  Call c;
  bool mask[2 * 3 * 5] = {};
  c.options.mask = TensorView<const bool>(mask, {2, 2, 3, 5}, {30, 15, 5, 1});
  expect_error(
      c, {"options.mask", "does not broadcast", "heads extent must be 4 or 1"});
}

TEST(Validation, BiasNotBroadcastable) {
  Call c;
  float bias[7] = {};
  c.options.bias = TensorView<const float>(bias, {1, 1, 1, 7}, {7, 7, 7, 1});
  expect_error(c, {"options.bias", "[B, Hq, Sq, Skv] = [2, 4, 3, 5]"});
}

TEST(Validation, KeyLengthOutOfRange) {
  for (int64_t bad : {int64_t{-1}, int64_t{6}}) {
    Call c;
    const int64_t lens[2] = {3, bad};
    c.options.key_lengths = lens;
    expect_error(c, {"options.key_lengths", "entry 1", "[0, Skv = 5]"});
  }
}

TEST(Validation, KeyLengthCount) {
  Call c;
  const int64_t lens[3] = {1, 2, 3};
  c.options.key_lengths = lens;
  expect_error(
      c, {"options.key_lengths", "one length per batch entry (2)", "got 3"});
}

TEST(Validation, AlibiSlopeCount) {
  Call c;
  const float slopes[2] = {0.5f, 0.25f};
  c.options.alibi_slopes = slopes;
  expect_error(
      c, {"options.alibi_slopes", "one slope per query head (4)", "got 2"});
}

TEST(Validation, AlibiSlopeNotFinite) {
  Call c;
  const float slopes[4] = {0.5f, NAN, 0.1f, 0.1f};
  c.options.alibi_slopes = slopes;
  expect_error(c, {"options.alibi_slopes", "slope 1"});
}

// The rule "an algorithm that cannot serve the options": the materialising
// algorithms refuse calls whose score matrices would not fit.
TEST(Validation, AlgorithmCannotServe) {
  // Sq = Skv = 2^17 through zero strides: no input memory, but S alone would
  // be 64 GiB.
  const int64_t S = int64_t{1} << 17;
  float zero = 0.0f;
  std::vector<float> out(S, NAN);
  Call c;
  c.q = TensorView<const float>(&zero, {1, 1, S, 1}, {0, 0, 0, 1});
  c.k = TensorView<const float>(&zero, {1, 1, S, 1}, {0, 0, 0, 1});
  c.v = c.k;
  c.out = TensorView<float>::bhsd(out.data(), 1, 1, S, 1);
  for (Algorithm a : {Algorithm::kNaive, Algorithm::kReference}) {
    c.options.algorithm = a;
    try {
      c.run();
      ADD_FAILURE() << algorithm_name(a) << " accepted";
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find("options.algorithm"),
                std::string::npos)
          << e.what();
    }
  }
  c.options.algorithm = Algorithm::kNaive;
  EXPECT_THROW(c.run(), Error);
  try {
    c.run();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("GiB limit"), std::string::npos)
        << e.what();
  }
  for (float x : out) ASSERT_TRUE(std::isnan(x));
}

TEST(Validation, DropoutProbabilityRange) {
  for (float p : {1.0f, -0.1f, 2.0f, NAN}) {
    Call c;
    c.options.dropout_p = p;
    expect_error(c, {"options.dropout_p", "[0, 1)"});
  }
}

// Absurd extents: each within 2^40, their products not. Refused before any
// kernel reads (this crashed in the kernel, or wrapped the element count).
TEST(Validation, ViewsSpanningMoreThanMemoryAreRefused) {
  Call c;
  const int64_t e = int64_t{1} << 21;
  c.q = TensorView<const float>(c.qb.data(), {1, e, e, e},
                                {0, int64_t{1} << 40, e, 1});
  expect_error(c, {"q", "spans more than 2^48 bytes"});
  Call d;
  const int64_t big = int64_t{1} << 40;
  d.k = TensorView<const float>(d.kb.data(), {2, 2, big, 8}, {0, 0, big, 1});
  expect_error(d, {"k", "spans more than 2^48 bytes"});
}

TEST(Validation, TensorElementCountOverflowIsAnError) {
  const int64_t e = int64_t{1} << 32;
  EXPECT_THROW(Tensor<float>(e, e, 1, 1), Error);
  EXPECT_THROW(Tensor<float>(1, 1, -1, 4), Error);
  try {
    Tensor<double>(int64_t{1} << 31, int64_t{1} << 31, 1, 1);
    ADD_FAILURE() << "no attn::Error";
  } catch (const Error& err) {
    EXPECT_NE(std::string(err.what()).find("more than 2^62 bytes"),
              std::string::npos)
        << err.what();
  }
}

TEST(Validation, ThreadCountOutOfRange) {
  for (int threads : {-1, kMaxThreads + 1, 100000}) {
    Call c;
    c.options.num_threads = threads;
    expect_error(c,
                 {"options.num_threads", "[0, 1024]", std::to_string(threads)});
  }
}

TEST(Validation, KvSplits) {
  Call c;
  c.options.kv_splits = -2;
  expect_error(c, {"options.kv_splits", ">= 0"});
  Call d;
  d.options.kv_splits = 4;
  d.options.algorithm = Algorithm::kFlash;
  expect_error(d, {"options.kv_splits", "decode", "flash"});
}

TEST(Validation, DecodeNeedsFewQueries) {
  // Sq = 17 > kDecodeMaxQueries.
  std::vector<float> qb(17 * 8, 0.5f), ob(17 * 6, NAN);
  Call c;
  c.q = TensorView<const float>::bhsd(qb.data(), 1, 1, 17, 8);
  c.k = TensorView<const float>::bhsd(c.kb.data(), 1, 1, 5, 8);
  c.v = TensorView<const float>::bhsd(c.vb.data(), 1, 1, 5, 6);
  c.out = TensorView<float>::bhsd(ob.data(), 1, 1, 17, 6);
  c.options.algorithm = Algorithm::kDecode;
  try {
    c.run();
    ADD_FAILURE() << "decode accepted Sq = 17";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("Sq must be <= 16"), std::string::npos)
        << e.what();
  }
  for (float x : ob) ASSERT_TRUE(std::isnan(x));
  c.options.algorithm = Algorithm::kAuto;  // auto picks flash instead
  c.options.kv_splits = 3;                 // a decode hint, ignored
  c.run();
  for (float x : ob) EXPECT_FLOAT_EQ(x, 1.0f);
}

TEST(Validation, AlibiSlopesHelper) {
  EXPECT_THROW(alibi_slopes(0), Error);
  // Powers of two: 2^(-8 (h+1) / n).
  const std::vector<float> s8 = alibi_slopes(8);
  for (int h = 0; h < 8; ++h) EXPECT_FLOAT_EQ(s8[h], std::exp2(-(h + 1.0f)));
  // 12 heads: the 8 slopes above, then slopes 0, 2, 4, 6 of 16 heads.
  const std::vector<float> s12 = alibi_slopes(12);
  ASSERT_EQ(s12.size(), 12u);
  for (int h = 0; h < 8; ++h) EXPECT_FLOAT_EQ(s12[h], s8[h]);
  for (int e = 0; e < 4; ++e) {
    EXPECT_FLOAT_EQ(s12[8 + e], std::exp2(-0.5f * (2 * e + 1)));
  }
}

// Every entry point applies the same view rules through its own name: the
// absurd views attention refuses are refused by rope, merge and the cache
// too (these used to be checked by hand, without the span limit).
TEST(Validation, EveryEntryPointAppliesTheViewRules) {
  std::vector<float> buf(64, 1.0f);
  const int64_t e = int64_t{1} << 21;
  const TensorView<float> huge(buf.data(), {1, e, e, 2},
                               {0, int64_t{1} << 40, 2, 1});
  expect_message([&] { apply_rope(huge, {}); },
                 {"attn::apply_rope: x:", "spans more than 2^48 bytes"});
  const TensorView<float> long_seq(buf.data(), {1, 1, int64_t{1} << 41, 2},
                                   {0, 0, 2, 1});
  expect_message([&] { apply_rope(long_seq, {}); },
                 {"attn::apply_rope: x:", "seq extent must be in [1, 2^40]"});
  const TensorView<float> shared(buf.data(), {1, 1, 4, 4}, {0, 0, 2, 1});
  expect_message([&] { apply_rope(shared, {}); },
                 {"attn::apply_rope: x:", "share memory"});

  const auto part = TensorView<const float>::bhsd(buf.data(), 1, 1, 2, 4);
  const auto part_lse = TensorView<const float>::bhsd(buf.data(), 1, 1, 2, 1);
  const std::vector<TensorView<const float>> outs = {part}, lses = {part_lse};
  std::vector<float> ob(8);
  expect_message(
      [&] {
        merge(outs, lses,
              TensorView<float>(nullptr, {1, 1, 2, 4}, {8, 8, 4, 1}));
      },
      {"attn::merge: out:", "null"});
  expect_message(
      [&] {
        merge(outs, lses,
              TensorView<float>(ob.data(), {1, 1, 2, 4}, {8, 8, 0, 1}));
      },
      {"attn::merge: out:", "share memory"});

  KVCacheOptions co;
  co.num_layers = 1;
  co.num_kv_heads = 1;
  co.head_dim = 4;
  co.max_sequences = 1;
  co.max_tokens = 8;
  KVCache cache(co);
  const int64_t seq = cache.add_sequence();
  const std::vector<int64_t> seqs = {seq};
  cache.append(0, seqs, part, part);
  std::vector<float> kb(8), vb(8);
  expect_message(
      [&] {
        cache.read(seq, 0,
                   TensorView<float>(kb.data(), {1, 1, 2, 4}, {8, 8, 0, 1}),
                   TensorView<float>::bhsd(vb.data(), 1, 1, 2, 4));
      },
      {"attn::KVCache::read: k:", "share memory"});
  const TensorView<const float> bad_stride(buf.data(), {1, 1, 2, 4},
                                           {8, 8, 4, 2});
  expect_message([&] { cache.append(0, seqs, bad_stride, part); },
                 {"attn::KVCache::append: k:", "dim stride must be 1"});
}

// An output over what the options point to is refused: the kernels read
// the bias, mask, slopes and lengths while they write out and lse (this
// was accepted and gave wrong results).
TEST(Validation, OutputsClearOfOptionInputs) {
  {  // out over the bias
    Call c;
    std::vector<float> bias(2 * 4 * 3 * 6 + 2 * 4 * 3 * 5, 0.0f);
    c.options.bias = TensorView<const float>::bhsd(bias.data(), 2, 4, 3, 5);
    c.out = TensorView<float>::bhsd(bias.data(), 2, 4, 3, 6);
    expect_message([&] { c.run(); }, {"out:", "overlaps input options.bias"});
  }
  {  // lse over the key lengths
    Call c;
    std::vector<int64_t> lens(8, 5);
    c.options.key_lengths = std::span<const int64_t>(lens.data(), 2);
    c.lse = TensorView<float>(reinterpret_cast<float*>(lens.data()),
                              {2, 4, 3, 1}, {12, 3, 1, 1});
    expect_error(c, {"lse:", "overlaps input options.key_lengths"});
  }
  {  // out over the ALiBi slopes
    Call c;
    std::vector<float> slopes(2 * 4 * 3 * 6, 0.5f);
    c.options.alibi_slopes = std::span<const float>(slopes.data(), 4);
    c.out = TensorView<float>::bhsd(slopes.data(), 2, 4, 3, 6);
    expect_message([&] { c.run(); },
                   {"out:", "overlaps input options.alibi_slopes"});
  }
  {  // out over the mask
    Call c;
    std::vector<float> storage(2 * 4 * 3 * 6, 0.0f);
    c.options.mask =
        TensorView<const bool>(reinterpret_cast<const bool*>(storage.data()),
                               {1, 1, 3, 5}, {0, 0, 5, 1});
    c.out = TensorView<float>::bhsd(storage.data(), 2, 4, 3, 6);
    expect_message([&] { c.run(); }, {"out:", "overlaps input options.mask"});
  }
}

// Naive's scratch and its 8 GiB limit follow the workers it uses (no more
// than its (b, head) items), not the thread count asked for: one head of
// 4096 x 4096 scores is 64 MiB whatever num_threads says (it was refused as
// 64 GiB at 1024 threads, and allocated that much at lower counts).
TEST(Validation, NaiveMemoryFollowsTheWorkersUsed) {
  const int64_t S = 4096;
  std::vector<float> x(S, 0.25f);
  const auto v = TensorView<const float>::bhsd(x.data(), 1, 1, S, 1);
  AttentionOptions o;
  o.algorithm = Algorithm::kNaive;
  o.num_threads = kMaxThreads;
  EXPECT_EQ(estimate_work(v, v, v, o).algorithm, Algorithm::kNaive);
  // 256 heads at that length, 256 workers of 64 MiB, still exceed it.
  std::vector<float> y(256 * S, 0.25f);
  const auto w = TensorView<const float>::bhsd(y.data(), 1, 256, S, 1);
  expect_message([&] { estimate_work(w, w, w, o); },
                 {"options.algorithm", "naive", "GiB"});
}

}  // namespace
}  // namespace attn

// Rules 5 and 8 of docs/semantics.md on hostile inputs: NaN and infinity in
// the values of hidden keys, in visible keys, queries and biases, and
// scores past float32's range. The float64 reference is checked against
// what the rules say of each case; every other algorithm (naive, flash,
// decode with several split counts, the KV-cache paths) must then agree
// with the reference element by element: NaN where it has NaN, -inf lse
// where it has -inf, finite values within tolerance. Part of the kernel
// suites, so every SIMD target runs it.
#include <gtest/gtest.h>

#include <cmath>
#include <functional>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "attn/attention.h"
#include "attn/kv_cache.h"
#include "tests/attention_grid.h"

namespace attn {
namespace {

using testing::Dims;

// What the rules say about one element of out or lse.
enum class Want { kAny, kFinite, kNaN, kMinusInf };

struct Inputs {
  Dims d;
  std::vector<float> q, k, v, bias;
  std::unique_ptr<bool[]> mask;
  std::vector<int64_t> lens;
  AttentionOptions o;

  float& q_at(int64_t b, int64_t h, int64_t i, int64_t x) {
    return q[((b * d.Hq + h) * d.Sq + i) * d.D + x];
  }
  float& k_at(int64_t b, int64_t h, int64_t j, int64_t x) {
    return k[((b * d.Hkv + h) * d.Skv + j) * d.D + x];
  }
  float& v_at(int64_t b, int64_t h, int64_t j, int64_t x) {
    return v[((b * d.Hkv + h) * d.Skv + j) * d.Dv + x];
  }
  // A [1, 1, Sq, Skv] bias of small normal values (bias_at writes it).
  void add_bias(std::mt19937& rng) {
    bias.resize(d.Sq * d.Skv);
    std::normal_distribution<float> normal(0.0f, 0.5f);
    for (float& x : bias) x = normal(rng);
    o.bias = TensorView<const float>(bias.data(), {1, 1, d.Sq, d.Skv},
                                     {0, 0, d.Skv, 1});
  }
  float& bias_at(int64_t i, int64_t j) { return bias[i * d.Skv + j]; }
  int64_t pos(int64_t i) const { return i + d.Skv - d.Sq; }  // bottom-right
};

// One hostile case: the inputs it edits and what the rules say of out
// (per element) and lse (per row).
struct Scenario {
  std::string name;
  std::function<void(Inputs&, std::mt19937&)> edit;
  std::function<Want(const Inputs&, int64_t b, int64_t h, int64_t i, int64_t x)>
      out;
  std::function<Want(const Inputs&, int64_t b, int64_t h, int64_t i)> lse;
};

// The key the cases plant their NaN at, one some rows see and causality
// hides from others: with fewer queries than keys, the position of the
// middle query; else the last key of the first tile (or the last key), so
// rows before it share its tile.
int64_t nan_key(const Dims& d) {
  if (d.Sq < d.Skv) return d.Skv - d.Sq + d.Sq / 2;
  return d.Skv > 64 ? 63 : d.Skv - 1;
}

Want finite_or_nan(bool nan) { return nan ? Want::kNaN : Want::kFinite; }

std::vector<Scenario> scenarios() {
  std::vector<Scenario> s;
  s.push_back(
      {"value NaN at a key causality hides",
       [](Inputs& in, std::mt19937&) {
         in.o.causal = true;
         in.v_at(0, 0, nan_key(in.d), 0) = NAN;
       },
       [](const Inputs& in, int64_t b, int64_t h, int64_t i, int64_t x) {
         const bool reads = b == 0 && h / (in.d.Hq / in.d.Hkv) == 0 &&
                            in.pos(i) >= nan_key(in.d) && x == 0;
         return finite_or_nan(reads);
       },
       [](const Inputs& in, int64_t, int64_t, int64_t i) {
         return in.pos(i) < 0 ? Want::kMinusInf : Want::kFinite;
       }});
  s.push_back(
      {"value NaN at a key the mask hides",
       [](Inputs& in, std::mt19937& rng) {
         const Dims& d = in.d;
         in.mask = std::make_unique<bool[]>(d.Sq * d.Skv);
         std::bernoulli_distribution keep(0.7);
         for (int64_t n = 0; n < d.Sq * d.Skv; ++n) in.mask[n] = keep(rng);
         // Seen by the even rows only.
         for (int64_t i = 0; i < d.Sq; ++i)
           in.mask[i * d.Skv + nan_key(d)] = i % 2 == 0;
         in.o.mask = TensorView<const bool>(in.mask.get(), {1, 1, d.Sq, d.Skv},
                                            {0, 0, d.Skv, 1});
         in.v_at(0, 0, nan_key(d), 1) = NAN;
       },
       [](const Inputs& in, int64_t b, int64_t h, int64_t i, int64_t x) {
         if (x != 1 || b != 0 || h / (in.d.Hq / in.d.Hkv) != 0)
           return Want::kAny;  // finite unless a row sees no key
         return i % 2 == 0 ? Want::kNaN : Want::kAny;
       },
       [](const Inputs&, int64_t, int64_t, int64_t) { return Want::kAny; }});
  s.push_back(
      {"value NaN at a key biased to -inf",
       [](Inputs& in, std::mt19937& rng) {
         in.add_bias(rng);
         for (int64_t i = 0; i < in.d.Sq; i += 2)
           in.bias_at(i, nan_key(in.d)) = -INFINITY;
         in.v_at(0, 0, nan_key(in.d), 0) = INFINITY;
         in.v_at(0, 0, nan_key(in.d), 1) = NAN;
       },
       [](const Inputs& in, int64_t b, int64_t h, int64_t i, int64_t x) {
         const bool reads =
             b == 0 && h / (in.d.Hq / in.d.Hkv) == 0 && i % 2 == 1 && x < 2;
         return reads ? (x == 0 ? Want::kAny : Want::kNaN) : Want::kFinite;
       },
       [](const Inputs&, int64_t, int64_t, int64_t) { return Want::kFinite; }});
  s.push_back({"bias +inf at a visible key",
               [](Inputs& in, std::mt19937& rng) {
                 in.add_bias(rng);
                 in.bias_at(0, 0) = INFINITY;
               },
               [](const Inputs&, int64_t, int64_t, int64_t i, int64_t) {
                 return finite_or_nan(i == 0);
               },
               [](const Inputs&, int64_t, int64_t, int64_t i) {
                 return finite_or_nan(i == 0);
               }});
  s.push_back({"bias NaN at a visible key",
               [](Inputs& in, std::mt19937& rng) {
                 in.add_bias(rng);
                 in.bias_at(in.d.Sq - 1, in.d.Skv / 2) = NAN;
               },
               [](const Inputs& in, int64_t, int64_t, int64_t i, int64_t) {
                 return finite_or_nan(i == in.d.Sq - 1);
               },
               [](const Inputs& in, int64_t, int64_t, int64_t i) {
                 return finite_or_nan(i == in.d.Sq - 1);
               }});
  s.push_back({"key NaN at a visible key",
               [](Inputs& in, std::mt19937&) {
                 in.o.causal = true;
                 in.k_at(0, 0, nan_key(in.d), in.d.D - 1) = NAN;
               },
               [](const Inputs& in, int64_t b, int64_t h, int64_t i, int64_t) {
                 if (in.pos(i) < 0)
                   return Want::kFinite;  // zero: no visible key
                 return finite_or_nan(b == 0 && h / (in.d.Hq / in.d.Hkv) == 0 &&
                                      in.pos(i) >= nan_key(in.d));
               },
               [](const Inputs& in, int64_t b, int64_t h, int64_t i) {
                 if (in.pos(i) < 0) return Want::kMinusInf;
                 return finite_or_nan(b == 0 && h / (in.d.Hq / in.d.Hkv) == 0 &&
                                      in.pos(i) >= nan_key(in.d));
               }});
  s.push_back({"score past float32's range",
               [](Inputs& in, std::mt19937&) {
                 for (int64_t x = 0; x < in.d.D; ++x) {
                   in.q_at(0, 0, 0, x) = 1e20f;
                   in.k_at(0, 0, 0, x) = 1e20f;
                 }
               },
               [](const Inputs&, int64_t b, int64_t h, int64_t i, int64_t) {
                 return finite_or_nan(b == 0 && h == 0 && i == 0);
               },
               [](const Inputs&, int64_t b, int64_t h, int64_t i) {
                 return finite_or_nan(b == 0 && h == 0 && i == 0);
               }});
  s.push_back({"query NaN",
               [](Inputs& in, std::mt19937&) {
                 // Row 0 of batch entry 0 sees keys; that of the last entry
                 // none.
                 in.lens.assign(in.d.B, in.d.Skv);
                 in.lens.back() = in.d.B > 1 ? 0 : in.d.Skv;
                 in.o.key_lengths = in.lens;
                 for (int64_t b = 0; b < in.d.B; ++b) in.q_at(b, 0, 0, 0) = NAN;
               },
               [](const Inputs& in, int64_t b, int64_t h, int64_t i, int64_t) {
                 if (in.d.B > 1 && b == in.d.B - 1)
                   return Want::kFinite;  // zero
                 return finite_or_nan(h == 0 && i == 0);
               },
               [](const Inputs& in, int64_t b, int64_t h, int64_t i) {
                 if (in.d.B > 1 && b == in.d.B - 1) return Want::kMinusInf;
                 return finite_or_nan(h == 0 && i == 0);
               }});
  s.push_back(
      {"value NaN with dropout",
       [](Inputs& in, std::mt19937&) {
         in.o.dropout_p = 0.5f;
         in.o.seed = 11;
         in.v_at(0, 0, nan_key(in.d), 0) = NAN;
       },
       // Which rows drop the key is the generator's: the reference
       // decides, and rows of other heads never read it.
       [](const Inputs& in, int64_t b, int64_t h, int64_t, int64_t x) {
         return b == 0 && h / (in.d.Hq / in.d.Hkv) == 0 && x == 0
                    ? Want::kAny
                    : Want::kFinite;
       },
       [](const Inputs&, int64_t, int64_t, int64_t) { return Want::kFinite; }});
  return s;
}

const Dims kShapes[] = {
    {1, 1, 1, 4, 4, 4, 4},        // the case
    {2, 4, 2, 100, 100, 33, 40},  // two tiles, GQA 2, odd D
    {1, 8, 2, 3, 300, 64, 64},    // few queries, many keys (decode)
    {2, 4, 4, 16, 130, 48, 16},  {2, 2, 1, 70, 70, 128, 24},
};

// Out (gathered BHSD) and lse of one call.
struct Outputs {
  std::vector<float> out, lse;
};

constexpr float kUnwritten = 1e30f;  // never a result: outputs are |v|-bounded

template <class T>
std::vector<T> as(const std::vector<float>& x) {
  std::vector<T> y(x.size());
  for (size_t n = 0; n < x.size(); ++n) y[n] = from_float<T>(x[n]);
  return y;
}

template <class T>
Outputs run(const Inputs& in, AttentionOptions o) {
  const Dims& d = in.d;
  const std::vector<T> q = as<T>(in.q), k = as<T>(in.k), v = as<T>(in.v);
  std::vector<T> out(d.B * d.Hq * d.Sq * d.Dv, from_float<T>(kUnwritten));
  Outputs r;
  r.lse.assign(d.B * d.Hq * d.Sq, kUnwritten);
  const Algorithm used =
      attention(TensorView<const T>::bhsd(q.data(), d.B, d.Hq, d.Sq, d.D),
                TensorView<const T>::bhsd(k.data(), d.B, d.Hkv, d.Skv, d.D),
                TensorView<const T>::bhsd(v.data(), d.B, d.Hkv, d.Skv, d.Dv),
                TensorView<T>::bhsd(out.data(), d.B, d.Hq, d.Sq, d.Dv), o,
                TensorView<float>::bhsd(r.lse.data(), d.B, d.Hq, d.Sq, 1));
  EXPECT_EQ(used, o.algorithm);
  for (const T& x : out) r.out.push_back(to_float(x));
  return r;
}

bool matches(Want w, float x) {
  switch (w) {
    case Want::kAny:
      return x != kUnwritten;
    case Want::kFinite:
      return std::isfinite(x);
    case Want::kNaN:
      return std::isnan(x);
    case Want::kMinusInf:
      return x == -INFINITY;
  }
  return false;
}

// The reference against the rules.
void expect_rules(const Scenario& sc, const Inputs& in, const Outputs& ref) {
  const Dims& d = in.d;
  int bad = 0;
  for (int64_t b = 0; b < d.B; ++b)
    for (int64_t h = 0; h < d.Hq; ++h)
      for (int64_t i = 0; i < d.Sq; ++i) {
        const int64_t row = (b * d.Hq + h) * d.Sq + i;
        if (!matches(sc.lse(in, b, h, i), ref.lse[row]) && bad++ < 5) {
          ADD_FAILURE() << "reference lse at b=" << b << " h=" << h
                        << " i=" << i << ": " << ref.lse[row];
        }
        for (int64_t x = 0; x < d.Dv; ++x) {
          const float got = ref.out[row * d.Dv + x];
          if (!matches(sc.out(in, b, h, i, x), got) && bad++ < 5) {
            ADD_FAILURE() << "reference out at b=" << b << " h=" << h
                          << " i=" << i << " x=" << x << ": " << got;
          }
        }
      }
}

// An algorithm's outputs against the reference's: the same class of value
// everywhere, finite values within tol (absolute: values are O(1)).
void expect_agrees(const Outputs& ref, const Outputs& got, double tol,
                   const std::string& what) {
  SCOPED_TRACE(what);
  const auto same = [&](float r, float g) {
    if (std::isnan(r)) return std::isnan(g);
    if (std::isinf(r)) return g == r;
    return std::isfinite(g) && std::abs(g - r) <= tol * (1.0 + std::abs(r));
  };
  int bad = 0;
  for (size_t n = 0; n < ref.out.size(); ++n) {
    if (!same(ref.out[n], got.out[n]) && bad++ < 5) {
      ADD_FAILURE() << "out[" << n << "] = " << got.out[n] << ", reference "
                    << ref.out[n];
    }
  }
  for (size_t n = 0; n < ref.lse.size(); ++n) {
    if (!same(ref.lse[n], got.lse[n]) && bad++ < 5) {
      ADD_FAILURE() << "lse[" << n << "] = " << got.lse[n] << ", reference "
                    << ref.lse[n];
    }
  }
}

Inputs make_inputs(const Dims& d, const Scenario& sc, std::mt19937& rng) {
  Inputs in;
  in.d = d;
  std::normal_distribution<float> normal;
  in.q.resize(d.B * d.Hq * d.Sq * d.D);
  in.k.resize(d.B * d.Hkv * d.Skv * d.D);
  in.v.resize(d.B * d.Hkv * d.Skv * d.Dv);
  for (auto* x : {&in.q, &in.k, &in.v})
    for (float& e : *x) e = normal(rng);
  sc.edit(in, rng);
  return in;
}

template <class T>
void every_algorithm(double tol) {
  std::mt19937 rng(1500);
  for (const Scenario& sc : scenarios()) {
    for (const Dims& d : kShapes) {
      SCOPED_TRACE(sc.name + ", " + testing::describe(d, "", {}));
      const Inputs in = make_inputs(d, sc, rng);
      AttentionOptions o = in.o;
      o.algorithm = Algorithm::kReference;
      const Outputs ref = run<T>(in, o);
      expect_rules(sc, in, ref);
      for (Algorithm a : {Algorithm::kNaive, Algorithm::kFlash}) {
        o.algorithm = a;
        expect_agrees(ref, run<T>(in, o), tol,
                      a == Algorithm::kNaive ? "naive" : "flash");
      }
      o.algorithm = Algorithm::kDecode;
      for (int splits : {1, 2, 5}) {
        if (d.Sq > 16) break;  // decode serves few queries
        o.kv_splits = splits;
        expect_agrees(ref, run<T>(in, o), tol,
                      "decode, splits " + std::to_string(splits));
      }
    }
  }
}

TEST(NonFinite, EveryAlgorithmFollowsTheRulesFloat) {
  every_algorithm<float>(1e-4);
}
TEST(NonFinite, EveryAlgorithmFollowsTheRulesBFloat16) {
  every_algorithm<bfloat16>(2e-2);
}

// The same rules reading a KV cache in place (contiguous and paged, 16-bit
// storage): a chunk of queries attends causally to keys that include a
// value NaN some of them must not see, and a +inf-biased visible key.
TEST(NonFinite, KVCachePathsFollowTheRules) {
  std::mt19937 rng(1501);
  // 16 queries (decode's most) at the end of 100 keys.
  const Dims d{1, 4, 2, 16, 100, 32, 32};
  const std::vector<Scenario> all = scenarios();
  for (const Scenario& sc : {all[0], all[3]}) {
    const Inputs in = make_inputs(d, sc, rng);
    for (CacheType type : {CacheType::kFloat32, CacheType::kBFloat16}) {
      for (int64_t page : {int64_t{0}, int64_t{16}}) {
        SCOPED_TRACE(sc.name + ", page " + std::to_string(page) +
                     (type == CacheType::kFloat32 ? ", float32" : ", bf16"));
        KVCacheOptions co;
        co.num_kv_heads = d.Hkv;
        co.head_dim = d.D;
        co.max_sequences = 1;
        co.max_tokens = d.Skv;
        co.page_size = page;
        co.type = type;
        KVCache cache(co);
        const int64_t seq = cache.add_sequence();
        const int64_t seqs[1] = {seq};
        // append takes [B, Hkv, S, D] views of the new tokens.
        cache.append(
            0, seqs,
            TensorView<const float>::bhsd(in.k.data(), 1, d.Hkv, d.Skv, d.D),
            TensorView<const float>::bhsd(in.v.data(), 1, d.Hkv, d.Skv, d.Dv));
        const auto qv =
            TensorView<const float>::bhsd(in.q.data(), 1, d.Hq, d.Sq, d.D);
        const auto call = [&](Algorithm a, int splits) {
          Outputs r;
          r.out.assign(d.Hq * d.Sq * d.Dv, kUnwritten);
          r.lse.assign(d.Hq * d.Sq, kUnwritten);
          AttentionOptions o = in.o;
          o.algorithm = a;
          o.kv_splits = splits;
          EXPECT_EQ(
              attention(
                  qv, cache, 0, std::vector<int64_t>{seq},
                  TensorView<float>::bhsd(r.out.data(), 1, d.Hq, d.Sq, d.Dv), o,
                  TensorView<float>::bhsd(r.lse.data(), 1, d.Hq, d.Sq, 1)),
              a);
          return r;
        };
        const Outputs ref = call(Algorithm::kReference, 0);
        expect_rules(sc, in, ref);
        expect_agrees(ref, call(Algorithm::kNaive, 0), 2e-2, "naive");
        expect_agrees(ref, call(Algorithm::kFlash, 0), 2e-2, "flash");
        expect_agrees(ref, call(Algorithm::kDecode, 3), 2e-2, "decode");
      }
    }
  }
}

// merge: a part poisoned by rule 8 (lse NaN) poisons the merged row; a part
// of weight 0 is never read, whatever its out holds.
TEST(NonFinite, MergePropagatesPoisonAndSkipsEmptyParts) {
  std::vector<float> o1 = {1, 2}, o2 = {NAN, NAN}, l1 = {0.5f}, l2 = {NAN};
  std::vector<float> out(2), lse(1);
  const auto view = [](std::vector<float>& x, int64_t dv) {
    return TensorView<const float>::bhsd(x.data(), 1, 1, 1, dv);
  };
  std::vector<TensorView<const float>> outs = {view(o1, 2), view(o2, 2)};
  std::vector<TensorView<const float>> lses = {view(l1, 1), view(l2, 1)};
  merge(outs, lses, TensorView<float>::bhsd(out.data(), 1, 1, 1, 2),
        TensorView<float>::bhsd(lse.data(), 1, 1, 1, 1));
  EXPECT_TRUE(std::isnan(out[0]) && std::isnan(out[1]) && std::isnan(lse[0]));
  l2 = {-INFINITY};  // o2 (NaN) has weight 0
  merge(outs, lses, TensorView<float>::bhsd(out.data(), 1, 1, 1, 2),
        TensorView<float>::bhsd(lse.data(), 1, 1, 1, 1));
  EXPECT_EQ(out[0], 1.0f);
  EXPECT_EQ(out[1], 2.0f);
  EXPECT_EQ(lse[0], 0.5f);
  l2 = {-200.0f};  // weight exp(-200.5) underflows to 0 in float32
  merge(outs, lses, TensorView<float>::bhsd(out.data(), 1, 1, 1, 2),
        TensorView<float>::bhsd(lse.data(), 1, 1, 1, 1));
  EXPECT_EQ(out[0], 1.0f);
  EXPECT_EQ(out[1], 2.0f);
}

}  // namespace
}  // namespace attn

// The smallest complete use of attn: causal self-attention over a BSHD
// buffer with grouped-query heads, checked against the float64 reference.
//
//   q [B=1, S=16, Hq=8, D=64]  (BSHD in memory)   k, v [1, 16, Hkv=2, 64]
#include <attn/attn.h>

#include <cmath>
#include <cstdio>
#include <random>
#include <vector>

#include "common.h"

int main() {
  const int64_t B = 1, S = 16, Hq = 8, Hkv = 2, D = 64;
  std::mt19937 rng(42);
  auto random_buffer = [&](int64_t n) {
    return example::random_buffer(n, rng);
  };
  std::vector<float> q = random_buffer(B * S * Hq * D);
  std::vector<float> k = random_buffer(B * S * Hkv * D);
  std::vector<float> v = random_buffer(B * S * Hkv * D);
  std::vector<float> out(q.size()), expected(q.size());

  using View = attn::TensorView<float>;
  attn::AttentionOptions options;
  options.causal = true;
  const attn::Algorithm ran = attn::attention(
      View::bshd(q.data(), B, S, Hq, D), View::bshd(k.data(), B, S, Hkv, D),
      View::bshd(v.data(), B, S, Hkv, D), View::bshd(out.data(), B, S, Hq, D),
      options);

  options.algorithm = attn::Algorithm::kReference;
  attn::attention(View::bshd(q.data(), B, S, Hq, D),
                  View::bshd(k.data(), B, S, Hkv, D),
                  View::bshd(v.data(), B, S, Hkv, D),
                  View::bshd(expected.data(), B, S, Hq, D), options);

  double max_diff = 0.0;
  for (size_t i = 0; i < out.size(); ++i) {
    max_diff = std::max(max_diff, std::fabs(double(out[i]) - expected[i]));
  }
  std::printf(
      "attn %s: causal GQA attention with algorithm %s, "
      "max |out - reference| = %.3g\n",
      attn::version(), attn::algorithm_name(ran), max_diff);
  // Bad input is an attn::Error that names the argument.
  try {
    attn::attention(View::bshd(q.data(), B, S, Hq, D),
                    View::bshd(k.data(), B, S, 3, D),
                    View::bshd(v.data(), B, S, Hkv, D),
                    View::bshd(out.data(), B, S, Hq, D));
  } catch (const attn::Error& e) {
    std::printf("rejected as expected: %s\n", e.what());
  }
  return max_diff < 1e-5 ? 0 : 1;
}

// Prefix-LM: the first `prefix` tokens (the prompt) attend to each other
// bidirectionally, the rest causally — a user functor of one line, checked
// against the reference.
#include <attn/attn.h>

#include <cstdio>

#include "common.h"

struct PrefixLM {
  int64_t prefix;
  bool mask(int64_t, int64_t, int64_t i, int64_t j) const {
    return j <= i || j < prefix;
  }
};

int main() {
  const int64_t S = 200, Hq = 8, Hkv = 2, D = 64;
  std::mt19937 rng(8);
  const auto q = example::random_buffer(Hq * S * D, rng);
  const auto k = example::random_buffer(Hkv * S * D, rng);
  const auto v = example::random_buffer(Hkv * S * D, rng);
  using View = attn::TensorView<const float>;
  const PrefixLM prefix_lm{70};
  attn::AttentionOptions o;
  o.pattern = prefix_lm;
  std::vector<float> out(q.size()), expected(q.size());
  for (auto* dst : {&out, &expected}) {
    attn::attention(View::bhsd(q.data(), 1, Hq, S, D),
                    View::bhsd(k.data(), 1, Hkv, S, D),
                    View::bhsd(v.data(), 1, Hkv, S, D),
                    attn::TensorView<float>::bhsd(dst->data(), 1, Hq, S, D), o);
    o.algorithm = attn::Algorithm::kReference;
  }
  const double err = example::max_abs_diff(out, expected);
  std::printf("prefix-LM (prefix %lld of %lld): max |out - reference| = %.3g\n",
              static_cast<long long>(prefix_lm.prefix),
              static_cast<long long>(S), err);
  return err < 1e-5 ? 0 : 1;
}

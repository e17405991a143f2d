// Document masking: three sequences packed into one batch row attend only
// within themselves, causally. First as a user functor of a few lines,
// then as the built-in attn::Documents (cumulative lengths, like
// FlashAttention's cu_seqlens); both checked against the reference.
#include <attn/attn.h>

#include <cstdio>

#include "common.h"

// Any object with mask() is a pattern; classify() lets the kernel skip
// whole tiles (here: a tile whose rows and keys lie in different
// documents). Positions are token indices in the packed row.
struct SameDocument {
  const std::vector<int>* doc;  // document id per token
  bool mask(int64_t, int64_t, int64_t i, int64_t j) const {
    return (*doc)[i] == (*doc)[j];
  }
  attn::TileKind classify(int64_t, int64_t, int64_t i0, int64_t i1, int64_t j0,
                          int64_t j1) const {
    // Ids never decrease along the packed row.
    if ((*doc)[i1 - 1] < (*doc)[j0] || (*doc)[j1 - 1] < (*doc)[i0]) {
      return attn::TileKind::kEmpty;
    }
    const bool one = (*doc)[i0] == (*doc)[i1 - 1] &&
                     (*doc)[j0] == (*doc)[j1 - 1] && (*doc)[i0] == (*doc)[j0];
    return one ? attn::TileKind::kFull : attn::TileKind::kPartial;
  }
};

int main() {
  const int64_t S = 300, H = 4, D = 64;
  const std::vector<int64_t> cu_seqlens = {0, 100, 130, 300};
  std::vector<int> doc(S);
  for (size_t d = 0; d + 1 < cu_seqlens.size(); ++d) {
    for (int64_t t = cu_seqlens[d]; t < cu_seqlens[d + 1]; ++t) doc[t] = int(d);
  }
  std::mt19937 rng(7);
  const auto q = example::random_buffer(S * H * D, rng);
  const auto k = example::random_buffer(S * H * D, rng);
  const auto v = example::random_buffer(S * H * D, rng);
  using View = attn::TensorView<const float>;
  const auto run = [&](const attn::AttentionOptions& o) {
    std::vector<float> out(q.size());
    attn::attention(View::bshd(q.data(), 1, S, H, D),
                    View::bshd(k.data(), 1, S, H, D),
                    View::bshd(v.data(), 1, S, H, D),
                    attn::TensorView<float>::bshd(out.data(), 1, S, H, D), o);
    return out;
  };

  const SameDocument same_doc{&doc};
  attn::AttentionOptions o;
  o.causal = true;
  o.pattern = same_doc;
  const std::vector<float> with_functor = run(o);

  const attn::Documents docs(cu_seqlens, {}, /*causal=*/true);
  attn::AttentionOptions built_in;
  built_in.pattern = docs;
  const std::vector<float> with_builtin = run(built_in);

  o.algorithm = attn::Algorithm::kReference;
  const std::vector<float> expected = run(o);
  const double e1 = example::max_abs_diff(with_functor, expected);
  const double e2 = example::max_abs_diff(with_builtin, expected);
  std::printf(
      "document mask, %zu documents: max |out - reference| functor %.3g, "
      "attn::Documents %.3g\n",
      cu_seqlens.size() - 1, e1, e2);
  return e1 < 1e-5 && e2 < 1e-5 ? 0 : 1;
}

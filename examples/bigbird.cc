// A BigBird-style block-sparse layout (Zaheer et al. 2020): per head, each
// query block sees a window of neighbouring blocks, a few global blocks
// (which also see everything) and a few random blocks. The layout feeds
// attn::BlockSparse; the result is checked against the reference, and the
// share of the score matrix computed is printed.
#include <attn/attn.h>

#include <cstdio>

#include "common.h"

// layout[h][qb][kb] for n blocks each way.
std::vector<uint8_t> bigbird_layout(int64_t heads, int64_t n, int64_t window,
                                    int64_t global, int64_t random,
                                    std::mt19937& rng) {
  std::vector<uint8_t> layout(static_cast<size_t>(heads * n * n), 0);
  std::uniform_int_distribution<int64_t> pick(0, n - 1);
  for (int64_t h = 0; h < heads; ++h) {
    uint8_t* l = layout.data() + h * n * n;
    for (int64_t qb = 0; qb < n; ++qb) {
      for (int64_t kb = std::max<int64_t>(0, qb - window);
           kb <= std::min(n - 1, qb + window); ++kb) {
        l[qb * n + kb] = 1;
      }
      for (int64_t r = 0; r < random; ++r) l[qb * n + pick(rng)] = 1;
    }
    for (int64_t g = 0; g < global; ++g) {
      for (int64_t x = 0; x < n; ++x) l[g * n + x] = l[x * n + g] = 1;
    }
  }
  return layout;
}

int main() {
  const int64_t S = 1024, H = 4, D = 64, block = 64, n = S / block;
  std::mt19937 rng(9);
  const attn::BlockSparse pattern(block, H, n, n,
                                  bigbird_layout(H, n, 1, 1, 2, rng));
  const auto q = example::random_buffer(H * S * D, rng);
  const auto k = example::random_buffer(H * S * D, rng);
  const auto v = example::random_buffer(H * S * D, rng);
  using View = attn::TensorView<const float>;
  attn::AttentionOptions o;
  o.pattern = pattern;
  std::vector<float> out(q.size()), expected(q.size());
  for (auto* dst : {&out, &expected}) {
    attn::attention(View::bhsd(q.data(), 1, H, S, D),
                    View::bhsd(k.data(), 1, H, S, D),
                    View::bhsd(v.data(), 1, H, S, D),
                    attn::TensorView<float>::bhsd(dst->data(), 1, H, S, D), o);
    o.algorithm = attn::Algorithm::kReference;
  }
  const double err = example::max_abs_diff(out, expected);
  std::printf(
      "BigBird layout: %lld of %lld blocks on (%.1f%%), max |out - reference| "
      "= %.3g\n",
      static_cast<long long>(pattern.count()),
      static_cast<long long>(H * n * n),
      100.0 * double(pattern.count()) / double(H * n * n), err);
  return err < 1e-5 ? 0 : 1;
}

// The dropout mask (docs/semantics.md, rule 7): a counter-based generator,
// so the reference, naive, flash and decode forwards and every backward
// draw the same keep/drop decision for (seed, b, h, i, j), whatever the
// thread count or tile order.
//
//   row(seed, b, h, i) = f(f(f(f(seed) + b) + h) + i)
//   u(seed, b, h, i, j) = high 32 bits of f(row + j)
//   key j is kept for query row i iff u >= threshold = floor(p * 2^32)
//
// with f the SplitMix64 step (add the golden gamma, then its 64-bit
// finaliser; a bijection, so distinct counters give independent-looking
// draws). Kept probabilities are multiplied by 1 / (1 - p) after the
// softmax; lse stays the forward's log-sum-exp before dropout.
#ifndef ATTN_SRC_CORE_DROPOUT_H_
#define ATTN_SRC_CORE_DROPOUT_H_

#include <cstdint>

namespace attn::detail {

inline uint64_t splitmix64(uint64_t x) {
  x += 0x9E3779B97F4A7C15ull;
  x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
  x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
  return x ^ (x >> 31);
}

struct Dropout {
  float p = 0.0f;  // 0: off
  uint64_t seed = 0;
  uint32_t threshold = 0;   // floor(p * 2^32)
  float keep_scale = 1.0f;  // 1 / (1 - p)

  bool on() const { return p > 0.0f; }
  uint64_t row(int64_t b, int64_t h, int64_t i) const {
    uint64_t r = splitmix64(seed);
    r = splitmix64(r + static_cast<uint64_t>(b));
    r = splitmix64(r + static_cast<uint64_t>(h));
    return splitmix64(r + static_cast<uint64_t>(i));
  }
  bool keep(uint64_t row_key, int64_t j) const {
    return static_cast<uint32_t>(
               splitmix64(row_key + static_cast<uint64_t>(j)) >> 32) >=
           threshold;
  }
  // Bit c set iff key j0 + c is kept, for c < n <= 64.
  uint64_t keep_bits(uint64_t row_key, int64_t j0, int n) const {
    uint64_t bits = 0;
    for (int c = 0; c < n; ++c) {
      bits |= static_cast<uint64_t>(keep(row_key, j0 + c)) << c;
    }
    return bits;
  }
  // The factor probability P(i, j) is multiplied by: 1 / (1 - p) or 0.
  float factor(uint64_t row_key, int64_t j) const {
    return keep(row_key, j) ? keep_scale : 0.0f;
  }
};

inline Dropout make_dropout(float p, uint64_t seed) {
  Dropout d;
  if (p <= 0.0f) return d;
  d.p = p;
  d.seed = seed;
  d.threshold = static_cast<uint32_t>(static_cast<double>(p) * 4294967296.0);
  d.keep_scale = static_cast<float>(1.0 / (1.0 - static_cast<double>(p)));
  return d;
}

}  // namespace attn::detail

#endif  // ATTN_SRC_CORE_DROPOUT_H_

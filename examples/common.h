// What every example needs besides attn: random inputs and a comparison.
#ifndef ATTN_EXAMPLES_COMMON_H_
#define ATTN_EXAMPLES_COMMON_H_

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <random>
#include <vector>

namespace example {

inline std::vector<float> random_buffer(int64_t n, std::mt19937& rng) {
  std::normal_distribution<float> normal;
  std::vector<float> x(static_cast<size_t>(n));
  for (float& e : x) e = normal(rng);
  return x;
}

inline double max_abs_diff(const std::vector<float>& a,
                           const std::vector<float>& b) {
  double d = 0.0;
  for (size_t i = 0; i < a.size(); ++i) {
    d = std::max(d, std::fabs(double(a[i]) - double(b[i])));
  }
  return d;
}

}  // namespace example

#endif  // ATTN_EXAMPLES_COMMON_H_

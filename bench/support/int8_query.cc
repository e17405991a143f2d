#include "bench/support/int8_query.h"

#include <algorithm>
#include <cmath>

namespace attn::bench {

std::vector<float> int8_quantised_query(TensorView<const float> q) {
  const int64_t B = q.extent(0), H = q.extent(1), S = q.extent(2),
                D = q.extent(3);
  std::vector<float> out;
  out.reserve(static_cast<size_t>(B * H * S * D));
  for (int64_t b = 0; b < B; ++b)
    for (int64_t h = 0; h < H; ++h)
      for (int64_t i = 0; i < S; ++i) {
        const float* row = q.row(b, h, i);
        float amax = 0.0f;
        bool finite = true;
        for (int64_t d = 0; d < D; ++d) {
          finite = finite && std::isfinite(row[d]);
          amax = std::max(amax, std::fabs(row[d]));
        }
        if (!finite) {
          out.insert(out.end(), row, row + D);
          continue;
        }
        const float inv = amax > 0.0f ? 127.0f / amax : 0.0f;
        for (int64_t d = 0; d < D; ++d) {
          const float q8 =
              std::clamp(std::nearbyint(row[d] * inv), -127.0f, 127.0f);
          out.push_back(q8 * (amax / 127.0f));
        }
      }
  return out;
}

}  // namespace attn::bench

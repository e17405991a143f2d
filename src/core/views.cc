#include "src/core/views.h"

#include <utility>
#include <vector>

namespace attn::detail {

std::optional<int64_t> checked_numel(const Extents& extents) {
  int64_t n = 1;
  for (const int64_t e : extents) {
    const auto next = checked_mul(n, e);
    if (!next) return std::nullopt;
    n = *next;
  }
  return n;
}

std::optional<int64_t> last_offset(const Extents& extents,
                                   const Strides& strides) {
  int64_t last = 0;
  for (int a = 0; a < 4; ++a) {
    if (extents[a] == 0) return 0;
  }
  for (int a = 0; a < 4; ++a) {
    const auto term = checked_mul(extents[a] - 1, strides[a]);
    if (!term) return std::nullopt;
    const auto sum = checked_add(last, *term);
    if (!sum) return std::nullopt;
    last = *sum;
  }
  return last;
}

// With the axes of extent > 1 sorted by stride, each stride must clear the
// span of the axes inside it; otherwise two indices reach one element.
bool has_self_overlap(const Extents& extents, const Strides& strides) {
  std::vector<std::pair<int64_t, int64_t>> axes;  // (stride, extent)
  for (int a = 0; a < 4; ++a) {
    if (extents[a] > 1) axes.emplace_back(strides[a], extents[a]);
  }
  std::sort(axes.begin(), axes.end());
  int64_t span = 0;  // largest offset reachable by the inner axes
  for (const auto& [stride, extent] : axes) {
    if (stride <= span) return true;
    span += (extent - 1) * stride;
  }
  return false;
}

}  // namespace attn::detail

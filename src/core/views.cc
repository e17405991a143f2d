#include "src/core/views.h"

#include <string>
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

namespace {
constexpr const char* kAxisName[4] = {"batch", "heads", "seq", "dim"};
}  // namespace

std::string shape_str(const Extents& e) {
  return "[" + std::to_string(e[0]) + ", " + std::to_string(e[1]) + ", " +
         std::to_string(e[2]) + ", " + std::to_string(e[3]) + "]";
}

ByteRange check_view_geometry(const util::Check& check, std::string_view arg,
                              const void* data, const Extents& extents,
                              const Strides& strides, std::size_t element_size,
                              ViewRule rule) {
  if (data == nullptr && extents == Extents{}) {
    check.fail(arg,
               "missing: a default (empty) view where a tensor is "
               "required");
  }
  // Extents first, so an empty view is blamed on its zero extent, not on
  // the null data an empty buffer has.
  for (int a = 0; a < 4; ++a) {
    const int64_t e = extents[a], s = strides[a];
    const int64_t min_extent = (a == kSeq && rule.empty_seq_ok) ? 0 : 1;
    if (e < min_extent || e > kMaxExtent) {
      check.fail(arg, std::string(kAxisName[a]) + " extent must be in [" +
                          std::to_string(min_extent) + ", 2^40], got " +
                          std::to_string(e));
    }
    if (s < 0 || s > kMaxExtent) {
      check.fail(arg, std::string(kAxisName[a]) +
                          " stride must be in [0, 2^40], got " +
                          std::to_string(s));
    }
  }
  const std::optional<int64_t> n = checked_numel(extents);
  if (data == nullptr && !(n && *n == 0)) {
    check.fail(arg, "data pointer is null");
  }
  if (extents[kDim] > 1 && strides[kDim] != 1) {
    check.fail(arg, "dim stride must be 1 (innermost axis contiguous), got " +
                        std::to_string(strides[kDim]));
  }
  // Each extent and stride is at most 2^40, but their products are not:
  // the span must stay inside what a process can address.
  const std::optional<int64_t> last = last_offset(extents, strides);
  if (!last || *last >= kMaxSpanBytes / static_cast<int64_t>(element_size)) {
    check.fail(arg, "shape " + shape_str(extents) + " with strides " +
                        shape_str(strides) + " spans more than 2^48 bytes");
  }
  if (!n || *n == 0) return {};
  const auto base = reinterpret_cast<uintptr_t>(data);
  return {base, base + static_cast<uintptr_t>(*last + 1) * element_size};
}

void check_extent(const util::Check& check, std::string_view arg,
                  const Extents& got, int axis, int64_t expected,
                  std::string_view from) {
  if (got[axis] != expected) {
    check.fail(arg, "expected " + std::string(kAxisName[axis]) + " extent " +
                        std::to_string(expected) + " (" + std::string(from) +
                        "), got " + std::to_string(got[axis]) + " in shape " +
                        shape_str(got));
  }
}

void check_shape(const util::Check& check, std::string_view arg,
                 const Extents& got, const Extents& want,
                 std::string_view from) {
  for (int a = 0; a < 4; ++a) check_extent(check, arg, got, a, want[a], from);
}

}  // namespace attn::detail

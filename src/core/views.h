// Geometry of strided views, shared by validation (src/api) and the few
// kernels that check their own arguments: the memory a view spans, whether
// its strides make two indices reach one element, and whether two views
// that share a byte range still share no element. Every size product here
// is overflow-checked, since extents and strides come from callers.
#ifndef ATTN_SRC_CORE_VIEWS_H_
#define ATTN_SRC_CORE_VIEWS_H_

#include <algorithm>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "attn/tensor.h"
#include "src/util/check.h"

namespace attn::detail {

// Byte range [lo, hi) a view can touch; empty views touch nothing.
struct ByteRange {
  uintptr_t lo = 0, hi = 0;
  bool overlaps(const ByteRange& o) const {
    return lo < hi && o.lo < o.hi && lo < o.hi && o.lo < hi;
  }
};

// a * b and a + b, or nullopt when the result leaves int64_t.
inline std::optional<int64_t> checked_mul(int64_t a, int64_t b) {
  int64_t r = 0;
  if (__builtin_mul_overflow(a, b, &r)) return std::nullopt;
  return r;
}
inline std::optional<int64_t> checked_add(int64_t a, int64_t b) {
  int64_t r = 0;
  if (__builtin_add_overflow(a, b, &r)) return std::nullopt;
  return r;
}

// The number of elements of extents (all >= 0), or nullopt on overflow.
std::optional<int64_t> checked_numel(const Extents& extents);

// The element offset of a view's last element, sum (e - 1) * s over axes
// with e >= 1 (strides >= 0), or nullopt when it overflows; 0 for an empty
// view.
std::optional<int64_t> last_offset(const Extents& extents,
                                   const Strides& strides);

// Whether a view of these extents and (non-negative) strides reaches one
// element through two indices: such a view cannot be written to.
bool has_self_overlap(const Extents& extents, const Strides& strides);

// Whether two views whose byte ranges overlap still share no element
// because they interleave: the same strides, each a contiguous run per
// "row" (the dim axis merged with axes of stride equal to the run so far)
// at row offsets that are multiples of the smallest remaining stride P,
// with the two runs at disjoint positions modulo P. E.g. the K and V halves
// of one [S, 2 H D] projection output viewed as [B, H, S, D] each.
template <class T>
bool interleaved_disjoint(const TensorView<T>& a, const TensorView<T>& b) {
  if (a.strides() != b.strides()) return false;
  auto run_and_rest = [](const TensorView<T>& v, int64_t& run,
                         int64_t& period) {
    run = v.extent(3);
    bool merged[4] = {false, false, false, true};
    for (bool grew = true; grew;) {
      grew = false;
      for (int x = 0; x < 3; ++x) {
        if (!merged[x] && (v.extent(x) == 1 || v.stride(x) == run)) {
          run *= v.extent(x);
          merged[x] = true;
          grew = true;
        }
      }
    }
    period = 0;
    for (int x = 0; x < 3; ++x) {
      if (merged[x]) continue;
      period = period == 0 ? v.stride(x) : std::min(period, v.stride(x));
    }
    for (int x = 0; x < 3; ++x) {
      if (!merged[x] && period > 0 && v.stride(x) % period != 0) return false;
    }
    return period > 0;
  };
  int64_t run_a = 0, run_b = 0, pa = 0, pb = 0;
  if (!run_and_rest(a, run_a, pa) || !run_and_rest(b, run_b, pb) || pa != pb) {
    return false;
  }
  const int64_t delta = static_cast<int64_t>(b.data() - a.data());
  const int64_t off =
      ((delta % pa) + pa) % pa;  // b's run start within a period
  // a occupies [0, run_a), b [off, off + run_b), both modulo the period.
  return off >= run_a && off + run_b <= pa;
}

// Contract checks on views, applied by every entry point through its Check
// (each throws attn::Error naming the argument; see docs/semantics.md).

// Extents and strides above this would let offset arithmetic overflow.
inline constexpr int64_t kMaxExtent = int64_t{1} << 40;
// No view may span more bytes than this (x86-64 addresses have 48 bits).
inline constexpr int64_t kMaxSpanBytes = int64_t{1} << 48;

// "[a, b, c, d]".
std::string shape_str(const Extents& e);

// What a view may be besides the rule every view meets.
struct ViewRule {
  bool empty_seq_ok = false;  // the seq axis may have extent 0
};

// Every view: extents in [1, 2^40] (seq from 0 under rule.empty_seq_ok,
// the one case where a view has no element, and its data may then be null
// as an empty std::vector's is), non-null data otherwise, strides in
// [0, 2^40], stride 1 along dim when dim has more than one element, and a
// span under 2^48 bytes. Returns the byte range it spans (empty for a view
// with no element).
ByteRange check_view_geometry(const util::Check& check, std::string_view arg,
                              const void* data, const Extents& extents,
                              const Strides& strides, std::size_t element_size,
                              ViewRule rule);
template <class T>
ByteRange check_view(const util::Check& check, std::string_view arg,
                     const TensorView<T>& view, ViewRule rule = {}) {
  return check_view_geometry(check, arg, view.data(), view.extents(),
                             view.strides(), sizeof(T), rule);
}

// An output: no two indices reach one element.
template <class T>
void check_writable(const util::Check& check, std::string_view arg,
                    const TensorView<T>& view) {
  if (has_self_overlap(view.extents(), view.strides())) {
    check.fail(arg,
               "strides make distinct elements share memory (an output "
               "needs non-overlapping strides)");
  }
}

// got[axis] == expected, else "expected <axis> extent E (<from>), got ...".
void check_extent(const util::Check& check, std::string_view arg,
                  const Extents& got, int axis, int64_t expected,
                  std::string_view from);
// Every axis of got equals want (`from` says where want comes from).
void check_shape(const util::Check& check, std::string_view arg,
                 const Extents& got, const Extents& want,
                 std::string_view from);

}  // namespace attn::detail

#endif  // ATTN_SRC_CORE_VIEWS_H_

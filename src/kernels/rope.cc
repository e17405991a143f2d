// Rotary position embeddings: validation, the cos/sin table, the rotation.
//
// Per call: inv_freq [R/2] in float64; then, for each distinct row position
// needed, cos/sin [R/2] in float (angles in float64, so large positions keep
// their accuracy); then every row (b, h, s) is rotated in place in float32.
// Memory: the table, S (or B*S) x R floats; parallel over (b, h).
#include "attn/rope.h"

#include <cmath>
#include <string>

#include "attn/error.h"
#include "src/core/views.h"
#include "src/util/check.h"
#include "src/util/parallel.h"

namespace attn {
namespace {

void check_options(const util::Check& check, const RopeOptions& o,
                   int64_t rotary_dim) {
  check.finite_at_least("options.theta", o.theta, 0.0, /*strict=*/true);
  if (rotary_dim < 2 || rotary_dim % 2 != 0) {
    check.fail("options.rotary_dim",
               "must be even and >= 2, got " + std::to_string(rotary_dim));
  }
  if (o.style != RopeStyle::kRotateHalf && o.style != RopeStyle::kInterleaved) {
    check.fail("options.style", "must be kRotateHalf or kInterleaved");
  }
  if (o.scaling) {
    const RopeScaling& s = *o.scaling;
    if (!(s.factor >= 1.0) || !std::isfinite(s.factor)) {
      check.fail("options.scaling.factor", "must be finite and >= 1");
    }
    if (!(s.low_freq_factor > 0.0) ||
        !(s.high_freq_factor > s.low_freq_factor) ||
        !std::isfinite(s.high_freq_factor)) {
      check.fail("options.scaling",
                 "needs 0 < low_freq_factor < high_freq_factor (finite)");
    }
    if (s.original_max_positions < 1) {
      check.fail("options.scaling.original_max_positions", "must be >= 1");
    }
  }
}

template <class T>
void rope(TensorView<T> x, const RopeOptions& o, int64_t offset,
          std::span<const int64_t> positions) {
  const util::Check check("attn::apply_rope");
  detail::check_view(check, "x", x);
  detail::check_writable(check, "x", x);  // rotated in place
  const int64_t B = x.extent(kBatch), H = x.extent(kHeads), S = x.extent(kSeq),
                D = x.extent(kDim);
  const int64_t R = o.rotary_dim == 0 ? D : o.rotary_dim;
  check_options(check, o, R);
  if (R > D) {
    check.fail(
        "options.rotary_dim",
        std::to_string(R) + " exceeds the head dim " + std::to_string(D));
  }
  const bool per_batch = static_cast<int64_t>(positions.size()) == B * S;
  if (!positions.empty() && !per_batch &&
      static_cast<int64_t>(positions.size()) != S) {
    check.fail("positions", "expected S = " + std::to_string(S) +
                                " or B * S = " + std::to_string(B * S) +
                                " entries, got " +
                                std::to_string(positions.size()));
  }
  const std::vector<double> inv_freq = rope_inverse_frequencies(R, o);
  const int64_t half = R / 2;
  const int64_t rows = per_batch ? B * S : S;  // distinct position rows
  std::vector<float> cos_t(rows * half), sin_t(rows * half);
  for (int64_t r = 0; r < rows; ++r) {
    const double pos =
        positions.empty() ? double(offset + r) : double(positions[r]);
    for (int64_t i = 0; i < half; ++i) {
      const double angle = pos * inv_freq[i];
      cos_t[r * half + i] = static_cast<float>(std::cos(angle));
      sin_t[r * half + i] = static_cast<float>(std::sin(angle));
    }
  }
  const bool interleaved = o.style == RopeStyle::kInterleaved;
  util::ParallelFor(B * H, 0, [&](int64_t item, int) {
    const int64_t b = item / H, h = item % H;
    for (int64_t s = 0; s < S; ++s) {
      T* row = x.row(b, h, s);
      const int64_t r = per_batch ? b * S + s : s;
      const float* c = &cos_t[r * half];
      const float* sn = &sin_t[r * half];
      for (int64_t i = 0; i < half; ++i) {
        const int64_t ia = interleaved ? 2 * i : i;
        const int64_t ib = interleaved ? 2 * i + 1 : i + half;
        const float a = to_float(row[ia]), bv = to_float(row[ib]);
        row[ia] = from_float<T>(a * c[i] - bv * sn[i]);
        row[ib] = from_float<T>(bv * c[i] + a * sn[i]);
      }
    }
  });
}

}  // namespace

std::vector<double> rope_inverse_frequencies(int64_t rotary_dim,
                                             const RopeOptions& o) {
  check_options(util::Check("attn::rope_inverse_frequencies"), o, rotary_dim);
  const int64_t half = rotary_dim / 2;
  std::vector<double> inv(half);
  for (int64_t i = 0; i < half; ++i) {
    inv[i] = std::pow(o.theta, -2.0 * double(i) / double(rotary_dim));
  }
  if (o.scaling) {
    const RopeScaling& s = *o.scaling;
    const double old_len = double(s.original_max_positions);
    const double low_wavelen = old_len / s.low_freq_factor;
    const double high_wavelen = old_len / s.high_freq_factor;
    constexpr double kTwoPi = 6.283185307179586476925286766559;
    for (double& f : inv) {
      const double wavelen = kTwoPi / f;
      if (wavelen < high_wavelen) continue;
      if (wavelen > low_wavelen) {
        f /= s.factor;
        continue;
      }
      const double smooth = (old_len / wavelen - s.low_freq_factor) /
                            (s.high_freq_factor - s.low_freq_factor);
      f = (1.0 - smooth) * f / s.factor + smooth * f;
    }
  }
  return inv;
}

void apply_rope(TensorView<float> x, const RopeOptions& o, int64_t offset,
                std::span<const int64_t> positions) {
  rope(x, o, offset, positions);
}
void apply_rope(TensorView<bfloat16> x, const RopeOptions& o, int64_t offset,
                std::span<const int64_t> positions) {
  rope(x, o, offset, positions);
}
void apply_rope(TensorView<float16> x, const RopeOptions& o, int64_t offset,
                std::span<const int64_t> positions) {
  rope(x, o, offset, positions);
}

}  // namespace attn

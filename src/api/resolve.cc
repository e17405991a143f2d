// Option resolution for attn::attention and the calls built on it: each
// AttentionOptions field is checked once, against the shape, and stored in
// the form the algorithms take.
#include "src/api/resolve.h"

#include <cmath>
#include <string>

#include "src/core/views.h"

namespace attn::detail {
namespace {

constexpr const char* kAxisName[4] = {"batch", "heads", "seq", "dim"};

// A mask or bias must broadcast to [B, Hq, Sq, Skv]: each extent is the full
// one or 1. Returns the view with zero strides on broadcast axes.
template <class T>
TensorView<const T> broadcast(const util::Check& check, const char* arg,
                              TensorView<const T> view, const Shape& s) {
  if (view.data() == nullptr) return {};
  check_view(check, arg, view);
  const Extents full{s.B, s.Hq, s.Sq, s.Skv};
  Strides strides = view.strides();
  for (int a = 0; a < 4; ++a) {
    if (view.extent(a) == full[a]) continue;
    if (view.extent(a) != 1) {
      check.fail(arg, "shape " + shape_str(view.extents()) +
                          " does not broadcast to [B, Hq, Sq, Skv] = " +
                          shape_str(full) + ": " + kAxisName[a] +
                          " extent must be " + std::to_string(full[a]) +
                          " or 1");
    }
    strides[a] = 0;
  }
  return TensorView<const T>(view.data(), full, strides);
}

}  // namespace

void resolve_options(const util::Check& check, const AttentionOptions& o,
                     Params& pr) {
  const Shape& s = pr.shape;
  const float default_scale = 1.0f / std::sqrt(static_cast<float>(s.D));
  pr.scale = o.scale.value_or(default_scale);
  if (!std::isfinite(pr.scale)) {
    check.fail("options.scale",
               "must be finite, got " + std::to_string(pr.scale));
  }
  pr.causal = o.causal;
  if (o.alignment != Alignment::kBottomRight &&
      o.alignment != Alignment::kTopLeft) {
    check.fail("options.alignment", "must be kBottomRight or kTopLeft");
  }
  pr.offset = o.alignment == Alignment::kBottomRight ? s.Skv - s.Sq : 0;
  if (o.window_left < -1) {
    check.fail("options.window_left", "must be >= -1 (-1 = unbounded), got " +
                                          std::to_string(o.window_left));
  }
  if (o.window_right < -1) {
    check.fail("options.window_right", "must be >= -1 (-1 = unbounded), got " +
                                           std::to_string(o.window_right));
  }
  pr.window_left = o.window_left;
  pr.window_right = o.window_right;
  check.finite_at_least("options.softcap", o.softcap, 0.0, false,
                        " (0 disables)");
  pr.softcap = o.softcap;
  if (!o.alibi_slopes.empty()) {
    if (static_cast<int64_t>(o.alibi_slopes.size()) != s.Hq) {
      check.fail("options.alibi_slopes",
                 "expected one slope per query head (" + std::to_string(s.Hq) +
                     "), got " + std::to_string(o.alibi_slopes.size()));
    }
    for (size_t h = 0; h < o.alibi_slopes.size(); ++h) {
      if (!std::isfinite(o.alibi_slopes[h])) {
        check.fail("options.alibi_slopes",
                   "slope " + std::to_string(h) + " is not finite");
      }
    }
  }
  pr.alibi_slopes = o.alibi_slopes;
  pr.mask = broadcast<bool>(check, "options.mask", o.mask, s);
  pr.bias = broadcast<float>(check, "options.bias", o.bias, s);
  if (!o.key_lengths.empty()) {
    if (static_cast<int64_t>(o.key_lengths.size()) != s.B) {
      check.fail("options.key_lengths",
                 "expected one length per batch entry (" + std::to_string(s.B) +
                     "), got " + std::to_string(o.key_lengths.size()));
    }
    for (size_t b = 0; b < o.key_lengths.size(); ++b) {
      const int64_t len = o.key_lengths[b];
      if (len < 0 || len > s.Skv) {
        check.fail("options.key_lengths",
                   "entry " + std::to_string(b) + " is " + std::to_string(len) +
                       ", expected a value in [0, Skv = " +
                       std::to_string(s.Skv) + "]");
      }
    }
  }
  pr.key_lengths = o.key_lengths;
  pr.pattern = o.pattern;
  if (const std::string why = o.pattern.check(s.B, s.Hq, s.Sq, s.Skv);
      !why.empty()) {
    check.fail("options.pattern", why);
  }
  if (!(o.dropout_p >= 0.0f && o.dropout_p < 1.0f)) {
    check.fail("options.dropout_p",
               "must be in [0, 1), got " + std::to_string(o.dropout_p));
  }
  pr.dropout = detail::make_dropout(o.dropout_p, o.seed);
  check.threads("options.num_threads", o.num_threads);
  pr.num_threads = o.num_threads;
  if (o.kv_splits < 0) {
    check.fail("options.kv_splits", "must be >= 0 (0 = automatic), got " +
                                        std::to_string(o.kv_splits));
  }
  pr.kv_splits = o.kv_splits;
}

}  // namespace attn::detail

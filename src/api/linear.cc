// attn::linear_attention and attn::LinearState: validate, then run the
// chosen algorithm (src/kernels/linear.cc, src/reference/linear_reference.cc).
#include "attn/linear.h"

#include <cmath>
#include <string>
#include <vector>

#include "attn/error.h"
#include "src/api/validate.h"
#include "src/kernels/linear.h"
#include "src/reference/linear_reference.h"
#include "src/util/check.h"

namespace attn {
namespace {

// Largest head dim of q and k (the kernels' per-row buffers).
constexpr int64_t kMaxDim = 1024;

void check_options(const util::Check& check, const LinearOptions& o,
                   int64_t D) {
  if (o.feature_map != FeatureMap::kEluPlusOne &&
      o.feature_map != FeatureMap::kRelu &&
      o.feature_map != FeatureMap::kCustom) {
    check.fail("options.feature_map", "must be kEluPlusOne, kRelu or kCustom");
  }
  if (D > kMaxDim) {
    check.fail("q", "linear attention takes head dims up to " +
                        std::to_string(kMaxDim) + ", got " + std::to_string(D));
  }
  if (o.feature_map == FeatureMap::kCustom) {
    if (o.custom == nullptr)
      check.fail("options.custom", "kCustom needs a feature function");
  } else if (o.custom != nullptr) {
    check.fail("options.custom",
               "given, but options.feature_map is not kCustom");
  }
  check.finite_at_least("options.eps", o.eps, 0.0);
  check.threads("options.num_threads", o.num_threads);
}

// Causal linear attention pairs query i with key i.
void check_causal_lengths(const util::Check& check, const LinearOptions& o,
                          const detail::Shape& s, const char* hint) {
  if (o.causal && s.Sq != s.Skv) {
    check.fail("q",
               "causal linear attention needs as many queries as keys "
               "(Sq " +
                   std::to_string(s.Sq) + ", Skv " + std::to_string(s.Skv) +
                   ")" + hint);
  }
}

template <class T>
LinearAlgorithm run(TensorView<const T> q, TensorView<const T> k,
                    TensorView<const T> v, TensorView<T> out,
                    const LinearOptions& o) {
  const util::Check check("attn::linear_attention");
  const detail::Shape s = detail::validate_views(check, q, k, v, out);
  check_options(check, o, s.D);
  check_causal_lengths(check, o, s,
                       "; continue a sequence with attn::LinearState");
  detail::LinearProblem<T> p = detail::make_linear_problem<T>(o, s);
  p.q = q;
  p.k = k;
  p.v = v;
  p.out = out;
  switch (o.algorithm) {
    case LinearAlgorithm::kReference:
      reference::linear_attention(p);
      return LinearAlgorithm::kReference;
    case LinearAlgorithm::kNaive:
      kernels::linear_naive(p);
      return LinearAlgorithm::kNaive;
    case LinearAlgorithm::kAuto:
    case LinearAlgorithm::kChunked:
      kernels::linear_chunked(p, nullptr);
      return LinearAlgorithm::kChunked;
  }
  check.fail("options.algorithm", "unknown value");
}

template <class T>
LinearAlgorithm run_backward(TensorView<const T> q, TensorView<const T> k,
                             TensorView<const T> v, TensorView<const T> dout,
                             TensorView<T> dq, TensorView<T> dk,
                             TensorView<T> dv, const LinearOptions& o) {
  const util::Check check("attn::linear_attention_backward");
  const detail::Shape s =
      detail::validate_linear_backward(check, q, k, v, dout, dq, dk, dv);
  check_options(check, o, s.D);
  if (o.feature_map == FeatureMap::kCustom) {
    check.fail("options.feature_map",
               "a custom feature map has no known derivative (kEluPlusOne or "
               "kRelu)");
  }
  check_causal_lengths(check, o, s, "");
  detail::LinearBackwardProblem<T> p;
  p.forward = detail::make_linear_problem<T>(o, s);
  p.forward.q = q;
  p.forward.k = k;
  p.forward.v = v;
  p.dout = dout;
  p.dq = dq;
  p.dk = dk;
  p.dv = dv;
  switch (o.algorithm) {
    case LinearAlgorithm::kReference:
      reference::linear_attention_backward(p);
      return LinearAlgorithm::kReference;
    case LinearAlgorithm::kAuto:
    case LinearAlgorithm::kChunked:
      kernels::linear_backward_scan(p);
      return LinearAlgorithm::kChunked;
    case LinearAlgorithm::kNaive:
      break;
  }
  check.fail("options.algorithm",
             "the backward runs as auto, chunked or reference");
}

}  // namespace

LinearAlgorithm linear_attention_backward(
    TensorView<const float> q, TensorView<const float> k,
    TensorView<const float> v, TensorView<const float> dout,
    TensorView<float> dq, TensorView<float> dk, TensorView<float> dv,
    const LinearOptions& options) {
  return run_backward(q, k, v, dout, dq, dk, dv, options);
}
LinearAlgorithm linear_attention_backward(
    TensorView<const bfloat16> q, TensorView<const bfloat16> k,
    TensorView<const bfloat16> v, TensorView<const bfloat16> dout,
    TensorView<bfloat16> dq, TensorView<bfloat16> dk, TensorView<bfloat16> dv,
    const LinearOptions& options) {
  return run_backward(q, k, v, dout, dq, dk, dv, options);
}
LinearAlgorithm linear_attention_backward(
    TensorView<const float16> q, TensorView<const float16> k,
    TensorView<const float16> v, TensorView<const float16> dout,
    TensorView<float16> dq, TensorView<float16> dk, TensorView<float16> dv,
    const LinearOptions& options) {
  return run_backward(q, k, v, dout, dq, dk, dv, options);
}

const char* linear_algorithm_name(LinearAlgorithm a) {
  switch (a) {
    case LinearAlgorithm::kAuto:
      return "auto";
    case LinearAlgorithm::kReference:
      return "reference";
    case LinearAlgorithm::kNaive:
      return "naive";
    case LinearAlgorithm::kChunked:
      return "chunked";
  }
  return "unknown";
}

LinearAlgorithm linear_attention(TensorView<const float> q,
                                 TensorView<const float> k,
                                 TensorView<const float> v,
                                 TensorView<float> out,
                                 const LinearOptions& options) {
  return run(q, k, v, out, options);
}
LinearAlgorithm linear_attention(TensorView<const bfloat16> q,
                                 TensorView<const bfloat16> k,
                                 TensorView<const bfloat16> v,
                                 TensorView<bfloat16> out,
                                 const LinearOptions& options) {
  return run(q, k, v, out, options);
}
LinearAlgorithm linear_attention(TensorView<const float16> q,
                                 TensorView<const float16> k,
                                 TensorView<const float16> v,
                                 TensorView<float16> out,
                                 const LinearOptions& options) {
  return run(q, k, v, out, options);
}

struct LinearState::Impl {
  int64_t B, Hkv, D, Dv, length = 0;
  LinearOptions options;
  std::vector<float> state;  // B * Hkv blocks of D * Dv + D
  Workspace workspace;
};

LinearState::LinearState(int64_t batch, int64_t kv_heads, int64_t head_dim,
                         int64_t value_dim, const LinearOptions& options) {
  const util::Check check("attn::LinearState");
  constexpr int64_t kMaxExtent = int64_t{1} << 20;
  check.in_range("batch", batch, 1, kMaxExtent);
  check.in_range("kv_heads", kv_heads, 1, kMaxExtent);
  check.in_range("head_dim", head_dim, 1, kMaxExtent);
  check.in_range("value_dim", value_dim, 1, kMaxExtent);
  check_options(check, options, head_dim);
  const double floats = double(batch) * kv_heads * head_dim * (value_dim + 1);
  if (floats > double(int64_t{1} << 32)) {
    check.fail("the state would need " +
               std::to_string(floats * 4 / (1 << 30)) + " GiB");
  }
  impl_ = std::make_unique<Impl>();
  impl_->B = batch;
  impl_->Hkv = kv_heads;
  impl_->D = head_dim;
  impl_->Dv = value_dim;
  impl_->options = options;
  impl_->options.causal = true;
  impl_->state.assign(static_cast<size_t>(floats), 0.0f);
}

LinearState::~LinearState() = default;
LinearState::LinearState(LinearState&&) noexcept = default;
LinearState& LinearState::operator=(LinearState&&) noexcept = default;

void LinearState::append(TensorView<const float> q, TensorView<const float> k,
                         TensorView<const float> v, TensorView<float> out) {
  const util::Check check("attn::LinearState::append");
  const detail::Shape s = detail::validate_views(check, q, k, v, out);
  const Impl& m = *impl_;
  const auto expect = [&](const char* arg, const char* what, int64_t got,
                          int64_t want) {
    if (got != want) {
      check.fail(arg, std::string("expected ") + what + " " +
                          std::to_string(want) + " (the state's), got " +
                          std::to_string(got));
    }
  };
  expect("q", "batch", s.B, m.B);
  expect("k", "KV heads", s.Hkv, m.Hkv);
  expect("q", "head dim", s.D, m.D);
  expect("v", "value head dim", s.Dv, m.Dv);
  expect("k", "new tokens (as many as q's)", s.Skv, s.Sq);
  detail::LinearProblem<float> p =
      detail::make_linear_problem<float>(m.options, s);
  p.q = q;
  p.k = k;
  p.v = v;
  p.out = out;
  kernels::linear_chunked(p, &impl_->workspace, impl_->state.data());
  impl_->length += s.Sq;
}

int64_t LinearState::length() const { return impl_->length; }

void LinearState::reset() {
  std::fill(impl_->state.begin(), impl_->state.end(), 0.0f);
  impl_->length = 0;
}

const float* LinearState::state(int64_t b, int64_t kv_head) const {
  const Impl& m = *impl_;
  if (b < 0 || b >= m.B || kv_head < 0 || kv_head >= m.Hkv) {
    util::Check("attn::LinearState::state")
        .fail("(b, kv_head)", "(" + std::to_string(b) + ", " +
                                  std::to_string(kv_head) + ") outside [" +
                                  std::to_string(m.B) + ", " +
                                  std::to_string(m.Hkv) + ")");
  }
  return m.state.data() + (b * m.Hkv + kv_head) * m.D * (m.Dv + 1);
}

}  // namespace attn

// Norms, activations, the MLP and the position tables of attn/nn.h.
//   LayerNorm: y = (x - mean) / sqrt(var + eps) * w + b, var biased
//   RMSNorm:   y = x / sqrt(mean(x^2) + eps) * w
// Statistics per row in float64 (two passes), one rounding to float.
#include <algorithm>
#include <cmath>

#include "attn/nn.h"
#include "src/nn/rows.h"
#include "src/util/parallel.h"

namespace attn::nn {
namespace {

// Rows per parallel task: enough work to pay for a task.
int64_t rows_per_task(int64_t features) {
  return std::max<int64_t>(1, 16384 / std::max<int64_t>(features, 1));
}

}  // namespace

Norm::Norm(NormKind k, int64_t d, float e, bool with_bias)
    : kind(k), dim(d), eps(e) {
  if (d < 0) detail::fail("nn::Norm", "dim must be >= 0");
  weight.assign(static_cast<size_t>(d), 1.0f);
  if (with_bias && k == NormKind::kLayerNorm) {
    bias.assign(static_cast<size_t>(d), 0.0f);
  }
}

void Norm::forward(TensorView<const float> x, TensorView<float> y) const {
  const char* where = "nn::Norm::forward";
  if (weight.size() != static_cast<size_t>(dim)) {
    detail::fail(where, "weight must hold dim = " + std::to_string(dim) +
                            " floats, has " + std::to_string(weight.size()));
  }
  if (!bias.empty() && bias.size() != static_cast<size_t>(dim)) {
    detail::fail(where, "bias must be empty or hold dim floats");
  }
  if (kind == NormKind::kRMSNorm && !bias.empty()) {
    detail::fail(where, "RMSNorm takes no bias");
  }
  if (!(eps >= 0.0f) || !std::isfinite(eps)) {
    detail::fail(where, "eps must be finite and >= 0");
  }
  detail::check_rows(x, where, "x", dim);
  detail::check_rows(y, where, "y", dim, x.extent(0), x.extent(2));
  const int64_t S = x.extent(2), n = x.extent(0) * S;
  const int64_t per = rows_per_task(dim);
  const double inv_n = dim > 0 ? 1.0 / static_cast<double>(dim) : 0.0;
  util::ParallelFor((n + per - 1) / per, 0, [&](int64_t t, int) {
    for (int64_t r = t * per; r < std::min(n, (t + 1) * per); ++r) {
      const float* xr = detail::row(x, r / S, r % S);
      float* yr = detail::row(y, r / S, r % S);
      double mean = 0.0, sq = 0.0;
      if (kind == NormKind::kLayerNorm) {
        for (int64_t c = 0; c < dim; ++c) mean += xr[c];
        mean *= inv_n;
      }
      for (int64_t c = 0; c < dim; ++c) {
        const double d = xr[c] - mean;
        sq += d * d;
      }
      const double rstd = 1.0 / std::sqrt(sq * inv_n + eps);
      for (int64_t c = 0; c < dim; ++c) {
        double v = (xr[c] - mean) * rstd * weight[c];
        if (!bias.empty()) v += bias[c];
        yr[c] = static_cast<float>(v);
      }
    }
  });
}

void activate(Activation a, float* x, int64_t n) {
  switch (a) {
    case Activation::kRelu:
      for (int64_t i = 0; i < n; ++i) x[i] = x[i] > 0.0f ? x[i] : 0.0f;
      break;
    case Activation::kGelu:
      for (int64_t i = 0; i < n; ++i) {
        const double v = x[i];
        x[i] = static_cast<float>(0.5 * v * (1.0 + std::erf(v * M_SQRT1_2)));
      }
      break;
    case Activation::kGeluTanh:
      for (int64_t i = 0; i < n; ++i) {
        const double v = x[i];
        const double c = std::sqrt(2.0 / M_PI);
        x[i] = static_cast<float>(
            0.5 * v * (1.0 + std::tanh(c * (v + 0.044715 * v * v * v))));
      }
      break;
    case Activation::kSilu:
      for (int64_t i = 0; i < n; ++i) {
        const float v = x[i];
        x[i] = v / (1.0f + std::exp(-v));
      }
      break;
  }
}

Mlp::Mlp(const MlpConfig& c) : config_(c) {
  if (c.d_model <= 0 || c.hidden <= 0) {
    detail::fail("nn::Mlp", "d_model and hidden must be > 0");
  }
  up = Linear(c.d_model, c.gated ? 2 * c.hidden : c.hidden, c.bias);
  down = Linear(c.hidden, c.d_model, c.bias);
}

void Mlp::forward(TensorView<const float> x, TensorView<float> y,
                  bool accumulate, Profile* profile) const {
  const char* where = "nn::Mlp::forward";
  const int64_t E = config_.d_model, F = config_.hidden;
  if (E <= 0) detail::fail(where, "the MLP is not configured");
  if (up.in_features != E || up.out_features != (config_.gated ? 2 : 1) * F ||
      down.in_features != F || down.out_features != E ||
      up.weight.size() !=
          static_cast<size_t>(up.in_features * up.out_features) ||
      down.weight.size() !=
          static_cast<size_t>(down.in_features * down.out_features)) {
    detail::fail(where, "up / down weights do not match the config");
  }
  detail::check_rows(x, where, "x", E);
  detail::check_rows(y, where, "y", E, x.extent(0), x.extent(2));
  if (x.data() == y.data() && !accumulate) {
    detail::fail(where, "y may alias x only with accumulate = true");
  }
  detail::Timer timer(profile ? &profile->mlp : nullptr);
  const int64_t W = up.out_features;
  detail::for_each_block(
      x, y,
      [&](const float* xr, int64_t ldx, float* yr, int64_t ldy, int64_t rows) {
        hidden_.resize(static_cast<size_t>(rows * W));
        float* h = hidden_.data();
        linear_rows(xr, rows, ldx, up.weight.data(), E, W,
                    up.bias.empty() ? nullptr : up.bias.data(), h, W, false);
        const int64_t per = rows_per_task(W);
        util::ParallelFor((rows + per - 1) / per, 0, [&](int64_t t, int) {
          for (int64_t r = t * per; r < std::min(rows, (t + 1) * per); ++r) {
            float* hr = h + r * W;
            activate(config_.activation, hr, F);
            if (config_.gated) {
              for (int64_t f = 0; f < F; ++f) hr[f] *= hr[F + f];
            }
          }
        });
        linear_rows(h, rows, W, down.weight.data(), F, E,
                    down.bias.empty() ? nullptr : down.bias.data(), yr, ldy,
                    accumulate);
      });
}

int64_t t5_bucket(int64_t relative_position, const T5Buckets& t) {
  int64_t buckets = t.num_buckets, result = 0, n = relative_position;
  if (t.bidirectional) {
    buckets /= 2;
    if (n > 0) result += buckets;
    n = n < 0 ? -n : n;
  } else {
    n = n < 0 ? -n : 0;
  }
  const int64_t max_exact = buckets / 2;
  if (n < max_exact) return result + n;
  // float32 throughout, as the reference implementation's tensors are.
  const float ratio = static_cast<float>(n) / static_cast<float>(max_exact);
  const float denom = static_cast<float>(
      std::log(static_cast<double>(t.max_distance) / max_exact));
  const float scaled =
      std::log(ratio) / denom * static_cast<float>(buckets - max_exact);
  const int64_t large =
      std::min<int64_t>(max_exact + static_cast<int64_t>(scaled), buckets - 1);
  return result + large;
}

std::vector<float> sinusoidal_positions(int64_t positions, int64_t dim) {
  if (positions < 0 || dim < 0) {
    detail::fail("nn::sinusoidal_positions", "sizes must be >= 0");
  }
  std::vector<float> pe(static_cast<size_t>(positions * dim));
  for (int64_t p = 0; p < positions; ++p) {
    for (int64_t c = 0; c < dim; ++c) {
      const int64_t i2 = c - c % 2;  // 2i
      const double angle =
          p * std::exp(-std::log(10000.0) * static_cast<double>(i2) / dim);
      pe[p * dim + c] =
          static_cast<float>(c % 2 == 0 ? std::sin(angle) : std::cos(angle));
    }
  }
  return pe;
}

}  // namespace attn::nn

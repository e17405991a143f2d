// Norms, activations, the MLP and the position tables of attn/nn/layers.h.
//   LayerNorm: y = (x - mean) / sqrt(var + eps) * w + b, var biased
//   RMSNorm:   y = x / sqrt(mean(x^2) + eps) * w
// Statistics per row in float64 (two passes), one rounding to float.
#include "attn/nn/layers.h"

#include <algorithm>
#include <cmath>
#include <utility>

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
  if (d < 0) util::Check("attn::nn::Norm").fail("dim must be >= 0");
  weight.assign(static_cast<size_t>(d), 1.0f);
  if (with_bias && k == NormKind::kLayerNorm) {
    bias.assign(static_cast<size_t>(d), 0.0f);
  }
}

namespace {

// A row's mean (0 for RMSNorm) and 1 / sqrt(mean of squared deviations +
// eps), in float64.
std::pair<double, double> row_stats(NormKind kind, const float* xr, int64_t dim,
                                    float eps) {
  const double inv_n = dim > 0 ? 1.0 / static_cast<double>(dim) : 0.0;
  double mean = 0.0, sq = 0.0;
  if (kind == NormKind::kLayerNorm) {
    for (int64_t c = 0; c < dim; ++c) mean += xr[c];
    mean *= inv_n;
  }
  for (int64_t c = 0; c < dim; ++c) {
    const double d = xr[c] - mean;
    sq += d * d;
  }
  return {mean, 1.0 / std::sqrt(sq * inv_n + eps)};
}

}  // namespace

void Norm::forward(TensorView<const float> x, TensorView<float> y) const {
  const util::Check where("attn::nn::Norm::forward");
  if (weight.size() != static_cast<size_t>(dim)) {
    where.fail("weight must hold dim = " + std::to_string(dim) +
               " floats, has " + std::to_string(weight.size()));
  }
  if (!bias.empty() && bias.size() != static_cast<size_t>(dim)) {
    where.fail("bias must be empty or hold dim floats");
  }
  if (kind == NormKind::kRMSNorm && !bias.empty()) {
    where.fail("RMSNorm takes no bias");
  }
  if (!(eps >= 0.0f) || !std::isfinite(eps)) {
    where.fail("eps must be finite and >= 0");
  }
  detail::check_rows(x, where, "x", dim);
  detail::check_rows(y, where, "y", dim, x.extent(0), x.extent(2));
  const int64_t S = x.extent(2), n = x.extent(0) * S;
  const int64_t per = rows_per_task(dim);
  util::ParallelFor((n + per - 1) / per, 0, [&](int64_t t, int) {
    for (int64_t r = t * per; r < std::min(n, (t + 1) * per); ++r) {
      const float* xr = detail::row(x, r / S, r % S);
      float* yr = detail::row(y, r / S, r % S);
      const auto [mean, rstd] = row_stats(kind, xr, dim, eps);
      for (int64_t c = 0; c < dim; ++c) {
        double v = (xr[c] - mean) * rstd * weight[c];
        if (!bias.empty()) v += bias[c];
        yr[c] = static_cast<float>(v);
      }
    }
  });
}

void Norm::backward(TensorView<const float> x, TensorView<const float> dy,
                    TensorView<float> dx, std::vector<float>& grad_weight,
                    std::vector<float>& grad_bias, bool accumulate) const {
  const util::Check where("attn::nn::Norm::backward");
  if (weight.size() != static_cast<size_t>(dim)) {
    where.fail("weight must hold dim floats");
  }
  detail::check_rows(x, where, "x", dim);
  const int64_t B = x.extent(0), S = x.extent(2), n = B * S;
  detail::check_rows(dy, where, "dy", dim, B, S);
  detail::check_rows(dx, where, "dx", dim, B, S);
  if (dx.data() == x.data()) where.fail("dx must not alias x");
  if (grad_weight.empty()) grad_weight.assign(static_cast<size_t>(dim), 0.0f);
  if (!bias.empty() && grad_bias.empty()) grad_bias.assign(bias.size(), 0.0f);
  if (grad_weight.size() != static_cast<size_t>(dim) ||
      grad_bias.size() != bias.size()) {
    where.fail(
        "grad_weight / grad_bias must be empty or sized like "
        "weight / bias");
  }
  // Rows in order on one thread for the parameter sums (deterministic),
  // float64 throughout.
  const double inv_n = dim > 0 ? 1.0 / static_cast<double>(dim) : 0.0;
  std::vector<double> gw(static_cast<size_t>(dim), 0.0), gb(gw.size(), 0.0),
      xhat(gw.size()), g(gw.size());
  for (int64_t r = 0; r < n; ++r) {
    const float* xr = detail::row(x, r / S, r % S);
    const float* dyr = detail::row(dy, r / S, r % S);
    float* dxr = detail::row(dx, r / S, r % S);
    const auto [mean, rstd] = row_stats(kind, xr, dim, eps);
    double mean_g = 0.0, mean_gx = 0.0;
    for (int64_t c = 0; c < dim; ++c) {
      xhat[c] = (xr[c] - mean) * rstd;
      g[c] = double(dyr[c]) * weight[c];
      gw[c] += double(dyr[c]) * xhat[c];
      gb[c] += dyr[c];
      mean_g += g[c];
      mean_gx += g[c] * xhat[c];
    }
    mean_g *= inv_n;
    mean_gx *= inv_n;
    // LayerNorm: dx = rstd (g - mean(g) - xhat mean(g xhat)); RMSNorm has
    // no mean term.
    if (kind == NormKind::kRMSNorm) mean_g = 0.0;
    for (int64_t c = 0; c < dim; ++c) {
      const float v =
          static_cast<float>(rstd * (g[c] - mean_g - xhat[c] * mean_gx));
      dxr[c] = accumulate ? dxr[c] + v : v;
    }
  }
  for (int64_t c = 0; c < dim; ++c) {
    grad_weight[c] += static_cast<float>(gw[c]);
    if (!bias.empty()) grad_bias[c] += static_cast<float>(gb[c]);
  }
}

void activation_backward(Activation a, const float* u, const float* dy,
                         float* du, int64_t n) {
  for (int64_t i = 0; i < n; ++i) {
    const double v = u[i];
    double d = 0.0;
    switch (a) {
      case Activation::kRelu:
        d = v > 0.0 ? 1.0 : 0.0;
        break;
      case Activation::kGelu:  // Phi(v) + v phi(v)
        d = 0.5 * (1.0 + std::erf(v * M_SQRT1_2)) +
            v * std::exp(-0.5 * v * v) * (0.5 * M_2_SQRTPI * M_SQRT1_2);
        break;
      case Activation::kGeluTanh: {
        const double c = std::sqrt(2.0 / M_PI);
        const double t = std::tanh(c * (v + 0.044715 * v * v * v));
        d = 0.5 * (1.0 + t) +
            0.5 * v * (1.0 - t * t) * c * (1.0 + 3.0 * 0.044715 * v * v);
        break;
      }
      case Activation::kSilu: {
        const double sg = 1.0 / (1.0 + std::exp(-v));
        d = sg * (1.0 + v * (1.0 - sg));
        break;
      }
    }
    du[i] = static_cast<float>(dy[i] * d);
  }
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
    util::Check("attn::nn::Mlp").fail("d_model and hidden must be > 0");
  }
  up = Linear(c.d_model, c.gated ? 2 * c.hidden : c.hidden, c.bias);
  down = Linear(c.hidden, c.d_model, c.bias);
}

void Mlp::forward(TensorView<const float> x, TensorView<float> y,
                  bool accumulate, Profile* profile) const {
  const util::Check where("attn::nn::Mlp::forward");
  const int64_t E = config_.d_model, F = config_.hidden;
  if (E <= 0) where.fail("the MLP is not configured");
  if (up.in_features != E || up.out_features != (config_.gated ? 2 : 1) * F ||
      down.in_features != F || down.out_features != E ||
      up.weight.size() !=
          static_cast<size_t>(up.in_features * up.out_features) ||
      down.weight.size() !=
          static_cast<size_t>(down.in_features * down.out_features)) {
    where.fail("up / down weights do not match the config");
  }
  detail::check_rows(x, where, "x", E);
  detail::check_rows(y, where, "y", E, x.extent(0), x.extent(2));
  if (x.data() == y.data() && !accumulate) {
    where.fail("y may alias x only with accumulate = true");
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
    util::Check("attn::nn::sinusoidal_positions").fail("sizes must be >= 0");
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

void Mlp::backward(TensorView<const float> x, TensorView<const float> dy,
                   TensorView<float> dx, Grads& grads, bool accumulate) const {
  const util::Check where("attn::nn::Mlp::backward");
  const int64_t E = config_.d_model, F = config_.hidden;
  if (E <= 0) where.fail("the MLP is not configured");
  detail::check_rows(x, where, "x", E);
  const int64_t B = x.extent(0), S = x.extent(2);
  detail::check_rows(dy, where, "dy", E, B, S);
  detail::check_rows(dx, where, "dx", E, B, S);
  if (dx.data() == x.data() || dx.data() == dy.data()) {
    where.fail("dx must not alias x or dy");
  }
  const int64_t W = up.out_features;
  // u = up(x) again, a = act(u) (gated: act(gate) * up).
  std::vector<float> u(static_cast<size_t>(B * S * W)),
      a(static_cast<size_t>(B * S * F)), du(u.size()), da(a.size());
  auto rows = [&](std::vector<float>& v, int64_t w) {
    return TensorView<float>::bhsd(v.data(), B, 1, S, w);
  };
  up.forward(x, rows(u, W));
  for (int64_t r = 0; r < B * S; ++r) {
    const float* ur = &u[r * W];
    float* ar = &a[r * F];
    std::copy(ur, ur + F, ar);
    activate(config_.activation, ar, F);
    if (config_.gated) {
      for (int64_t f = 0; f < F; ++f) ar[f] *= ur[F + f];
    }
  }
  down.backward(rows(a, F), dy, rows(da, F), grads.down_weight,
                grads.down_bias);
  for (int64_t r = 0; r < B * S; ++r) {
    const float* ur = &u[r * W];
    const float* dar = &da[r * F];
    float* dur = &du[r * W];
    if (config_.gated) {  // a = act(gate) * up
      std::vector<float> act(ur, ur + F), g(static_cast<size_t>(F));
      activate(config_.activation, act.data(), F);
      for (int64_t f = 0; f < F; ++f) {
        g[f] = dar[f] * ur[F + f];
        dur[F + f] = dar[f] * act[f];
      }
      activation_backward(config_.activation, ur, g.data(), dur, F);
    } else {
      activation_backward(config_.activation, ur, dar, dur, F);
    }
  }
  up.backward(x, rows(du, W), dx, grads.up_weight, grads.up_bias, accumulate);
}

}  // namespace attn::nn

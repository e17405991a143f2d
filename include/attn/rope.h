// Rotary position embeddings (RoPE, Su et al.), applied in place to q or k.
//
// For a row at position p and rotary pair i (0 <= i < R / 2, R the rotary
// dims), with inv_freq[i] = theta^(-2i / R) (optionally rescaled for long
// context, Llama 3.1 style) and angle = p * inv_freq[i]:
//   (a, b) -> (a cos(angle) - b sin(angle), b cos(angle) + a sin(angle))
// where the pair (a, b) is (x[i], x[i + R/2]) in the rotate-half convention
// (GPT-NeoX, Llama) and (x[2i], x[2i + 1]) in the interleaved one (GPT-J).
// Dims at R and beyond pass through unchanged (partial rotary).
// Angles are computed in float64 and rounded to float; the rotation runs in
// float32 and is rounded to the element type.
#ifndef ATTN_ROPE_H_
#define ATTN_ROPE_H_

#include <cstdint>
#include <optional>
#include <span>
#include <vector>

#include "attn/tensor.h"
#include "attn/types.h"

namespace attn {

enum class RopeStyle { kRotateHalf, kInterleaved };

// Llama 3.1's frequency rescaling: wavelengths longer than
// original_max_positions / low_freq_factor are divided by `factor`,
// shorter than original_max_positions / high_freq_factor kept, and those in
// between interpolated smoothly.
struct RopeScaling {
  double factor = 8.0;
  double low_freq_factor = 1.0;
  double high_freq_factor = 4.0;
  int64_t original_max_positions = 8192;
};

struct RopeOptions {
  double theta = 10000.0;
  int64_t rotary_dim = 0;  // R; 0 = the whole head dim
  RopeStyle style = RopeStyle::kRotateHalf;
  std::optional<RopeScaling> scaling;
};

// The inverse frequencies inv_freq[i], i < R / 2, after scaling.
std::vector<double> rope_inverse_frequencies(int64_t rotary_dim,
                                             const RopeOptions& options);

// Rotates x [B, H, S, D] in place. Row s of batch b sits at position
//   positions[b * S + s]  when positions has B * S entries,
//   positions[s]          when it has S entries,
//   offset + s            when it is empty.
// Throws attn::Error for a bad view, rotary dim (must be even, <= D),
// theta, scaling or positions count.
void apply_rope(TensorView<float> x, const RopeOptions& options,
                int64_t offset = 0, std::span<const int64_t> positions = {});
void apply_rope(TensorView<bfloat16> x, const RopeOptions& options,
                int64_t offset = 0, std::span<const int64_t> positions = {});
void apply_rope(TensorView<float16> x, const RopeOptions& options,
                int64_t offset = 0, std::span<const int64_t> positions = {});

}  // namespace attn

#endif  // ATTN_ROPE_H_

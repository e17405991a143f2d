// Published attention shapes of well-known models (decoder self-attention
// for encoder-decoder models): the rows `attn kv-memory` and the benchmarks
// print. Tooling, not library API.
#ifndef ATTN_BENCH_SUPPORT_MODEL_SHAPES_H_
#define ATTN_BENCH_SUPPORT_MODEL_SHAPES_H_

#include <cstdint>
#include <string>
#include <vector>

namespace attn::bench {

struct ModelShape {
  std::string name;
  int64_t layers, q_heads, kv_heads, head_dim;
};
const std::vector<ModelShape>& model_shapes();

}  // namespace attn::bench

#endif  // ATTN_BENCH_SUPPORT_MODEL_SHAPES_H_

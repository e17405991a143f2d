#include "bench/support/model_shapes.h"

namespace attn::bench {

const std::vector<ModelShape>& model_shapes() {
  static const std::vector<ModelShape> shapes = {
      {"transformer-base", 6, 8, 8, 64},  // Vaswani et al., decoder
      {"bert-base", 12, 12, 12, 64},     {"gpt2-small", 12, 12, 12, 64},
      {"gpt2-xl", 48, 25, 25, 64},       {"llama-3.1-8b", 32, 32, 8, 128},
      {"llama-3.1-70b", 80, 64, 8, 128}, {"llama-3.1-405b", 126, 128, 8, 128},
  };
  return shapes;
}

}  // namespace attn::bench

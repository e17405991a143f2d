// `attn generate`: continue token ids with a checkpoint (config.json +
// safetensors shards) through attn::nn::generate.
#ifndef ATTN_CLI_GENERATE_H_
#define ATTN_CLI_GENERATE_H_

#include <CLI/CLI.hpp>
#include <cstdint>
#include <string>
#include <vector>

namespace attn_cli {

struct GenerateArgs {
  std::string config;                // config.json
  std::vector<std::string> weights;  // safetensors shards
  std::vector<std::string> prompts;  // comma-separated ids, one per prompt
  int64_t max_new_tokens = 16;
  float temperature = 0.0f;
  int64_t top_k = 0;
  float top_p = 1.0f;
  uint64_t seed = 0;
  int64_t eos = -1;
};

void add_generate_options(CLI::App& cmd, GenerateArgs& args);
int generate_command(const GenerateArgs& args);

}  // namespace attn_cli

#endif  // ATTN_CLI_GENERATE_H_

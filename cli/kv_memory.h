// `attn kv-memory`: KV-cache bytes per model, for MHA, GQA and MQA.
#ifndef ATTN_CLI_KV_MEMORY_H_
#define ATTN_CLI_KV_MEMORY_H_

#include <CLI/CLI.hpp>
#include <string>
#include <vector>

namespace attn_cli {

struct KvMemoryArgs {
  std::vector<std::string> models;  // empty: every known model
  int64_t layers = 0, q_heads = 0, kv_heads = 0, head_dim = 0;  // explicit
  int64_t context = 131072;
  int64_t batch = 1;
  std::vector<std::string> dtypes = {"bfloat16"};
};

void add_kv_memory_options(CLI::App& cmd, KvMemoryArgs& args);
int kv_memory_command(const KvMemoryArgs& args);

}  // namespace attn_cli

#endif  // ATTN_CLI_KV_MEMORY_H_

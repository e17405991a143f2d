// `attn run`: attention over tensors read from .npy files.
#ifndef ATTN_CLI_RUN_H_
#define ATTN_CLI_RUN_H_

#include <CLI/CLI.hpp>
#include <optional>
#include <string>

#include "cli/run_pattern.h"

namespace attn_cli {

struct RunArgs {
  std::string q, k, v;          // input files; all empty: built-in example
  std::string layout = "bhsd";  // or "bshd"
  bool causal = false;
  std::string align = "bottom-right";
  std::string window;  // "L,R"
  float softcap = 0.0f;
  std::optional<float> scale;
  bool alibi = false;
  std::string alibi_slopes, mask, key_len;
  std::string algorithm = "auto";
  int threads = 0;
  std::string out, lse;
  PatternArgs pattern;
  bool linear = false;              // --linear: linear attention
  std::string feature_map = "elu";  // or "relu"
};

void add_run_options(CLI::App& cmd, RunArgs& args);
int run_command(const RunArgs& args);

}  // namespace attn_cli

#endif  // ATTN_CLI_RUN_H_

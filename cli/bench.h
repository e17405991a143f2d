// `attn bench`: machine peaks, then a table of attention runs against them.
#ifndef ATTN_CLI_BENCH_H_
#define ATTN_CLI_BENCH_H_

#include <CLI/CLI.hpp>
#include <string>
#include <vector>

namespace attn_cli {

struct BenchArgs {
  std::vector<std::string> presets;  // empty: "quick"
  int threads = 0;
  int repeats = 5;
  bool json = false;
  bool no_naive = false;
  std::string simd;
};

void add_bench_options(CLI::App& cmd, BenchArgs& args);
int bench_command(const BenchArgs& args);

}  // namespace attn_cli

#endif  // ATTN_CLI_BENCH_H_

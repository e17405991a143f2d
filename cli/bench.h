// `attn bench`: machine peaks, then a table of attention runs against them.
#ifndef ATTN_CLI_BENCH_H_
#define ATTN_CLI_BENCH_H_

#include <CLI/CLI.hpp>
#include <functional>
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

// Median of `repeats` timed calls after one untimed call (fewer when one
// call takes over a second).
double time_ms(int repeats, const std::function<void()>& call);

// KV-cache rows (bench_decode.cc): decode and chunked prefill.
std::vector<std::string> decode_preset_names();
bool is_decode_preset(const std::string& name);
struct DecodeResult {
  bool ok = true;
  std::vector<std::string> json_rows;  // filled in --json mode
};
DecodeResult run_decode_presets(const std::vector<std::string>& names,
                                const BenchArgs& args, double fp32_peak,
                                double bandwidth_gbs);
int bench_command(const BenchArgs& args);

}  // namespace attn_cli

#endif  // ATTN_CLI_BENCH_H_

// `attn bench`: machine peaks, then a table of attention runs against them.
#ifndef ATTN_CLI_BENCH_H_
#define ATTN_CLI_BENCH_H_

#include <attn/attn.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <cmath>
#include <functional>
#include <nlohmann/json.hpp>
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
  // --scaling: time per sequence length for each pattern instead.
  bool scaling = false;
  int64_t scaling_min = 1024, scaling_max = 131072;
  bool scaling_all = false;  // also run quadratic patterns past 32K
  // --model: transformer layers (bench_model.cc).
  bool model = false;
  int64_t model_tokens = 512, model_context = 4096;
  // KV-cache rows: tokens per page of the paged rows (0: each row's own).
  int64_t page_size = 0;
};

void add_bench_options(CLI::App& cmd, BenchArgs& args);

// Batch 0 of a view as float (exact for 16-bit types): what the float64
// reference checks run on.
template <class T>
attn::Tensor<float> widened(attn::TensorView<const T> x) {
  attn::Tensor<float> w(x.extents());
  for (int64_t h = 0; h < x.extent(1); ++h)
    for (int64_t i = 0; i < x.extent(2); ++i)
      for (int64_t d = 0; d < x.extent(3); ++d) {
        w.view()(0, h, i, d) = attn::to_float(x(0, h, i, d));
      }
  return w;
}

// max |got - ref| over max |ref| (at least 1e-6), batch 0 of both.
template <class T>
double slice_error(const attn::Tensor<float>& ref,
                   attn::TensorView<const T> got) {
  double err = 0, scale = 1e-6;
  const auto want_v = ref.cview();
  for (int64_t h = 0; h < got.extent(1); ++h)
    for (int64_t i = 0; i < got.extent(2); ++i)
      for (int64_t d = 0; d < got.extent(3); ++d) {
        const double want = want_v(0, h, i, d);
        scale = std::max(scale, std::fabs(want));
        err = std::max(err, std::fabs(attn::to_float(got(0, h, i, d)) - want));
      }
  return err / scale;
}

// Median of `repeats` timed calls after one untimed call (fewer when one
// call takes over a second).
// `before` (if set) runs untimed before each call.
double time_ms(int repeats, const std::function<void()>& call,
               const std::function<void()>& before = {});

// Checks a result before it is timed: the last 16 query rows of every head
// of batch 0 in `out` against the float64 reference, and the
// naive path's error on the same rows (both relative to the rows' scale).
// The project's rule: err <= 2 * naive_err + 1e-6.
struct SliceCheck {
  double err = 0, naive_err = 0;
  bool ok() const { return err <= 2 * naive_err + 1e-6; }
};
SliceCheck check_slice(attn::TensorView<const float> q,
                       attn::TensorView<const float> k,
                       attn::TensorView<const float> v,
                       attn::TensorView<const float> out,
                       const attn::AttentionOptions& options);

// KV-cache rows (bench_decode.cc): decode and chunked prefill.
std::vector<std::string> decode_preset_names();
bool is_decode_preset(const std::string& name);
// What a suite of rows returns: whether every row passed its check, and
// its rows as JSON objects (cli/bench_report.h).
struct SuiteResult {
  bool ok = true;
  nlohmann::json rows = nlohmann::json::array();
};
SuiteResult run_decode_presets(const std::vector<std::string>& names,
                               const BenchArgs& args, double fp32_peak,
                               double bandwidth_gbs);
int bench_command(const BenchArgs& args);

// bench_backward.cc: attention_backward rows.
std::vector<std::string> backward_preset_names();
bool is_backward_preset(const std::string& name);
SuiteResult run_backward_presets(const std::vector<std::string>& names,
                                 const BenchArgs& args, double fp32_peak);

// bench_scaling.cc: the --scaling table.
int run_scaling(const BenchArgs& args, double fp32_peak);

// bench_model.cc: the --model table (BERT-base and Llama-3-8B-like layers).
int run_model_bench(const BenchArgs& args);

}  // namespace attn_cli

#endif  // ATTN_CLI_BENCH_H_

// `attn bench`: measures this machine's fp32 FMA peak, bf16 dot peak and
// read bandwidth, then runs a grid of attention shapes taken from real
// models and prints, per row: shape, dtype, algorithm, median time,
// GFLOP/s (4 B Hq Sq Skv (D + Dv) / 2, halved for causal), % of the fp32
// peak, speed-up over naive where naive fits, and the scratch memory the
// algorithm held. Every result is checked against the float64 reference on
// a slice (batch 0, every head, the last 16 query rows) before it is
// timed; a row that fails the check is reported and makes the command fail.
#include "cli/bench.h"

#include <attn/attn.h>
#include <fmt/core.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdlib>
#include <functional>
#include <map>
#include <random>
#include <stdexcept>
#include <vector>

#include "bench/support/machine.h"
#include "cli/bench_report.h"

namespace attn_cli {
namespace {

struct Shape {
  std::string model;
  int64_t B, Hq, Hkv, Sq, Skv, D, Dv;
  bool causal;
  std::string dtype;  // "float32" or "bfloat16"
  bool naive;         // also time the naive path for the speed-up column
};

// Named presets; "quick" (the default, what `make run` runs) stays under two
// minutes on a 2-core machine.
const std::map<std::string, std::vector<Shape>>& presets() {
  static const std::map<std::string, std::vector<Shape>> p = {
      {"transformer",  // Vaswani et al.: 8 heads x 64
       {{"transformer", 1, 8, 8, 512, 512, 64, 64, false, "float32", true},
        {"transformer", 1, 8, 8, 512, 512, 64, 64, true, "float32", true}}},
      {"bert-base",
       {{"bert-base", 1, 12, 12, 512, 512, 64, 64, false, "float32", true}}},
      {"gpt2-small",
       {{"gpt2-small", 1, 12, 12, 1024, 1024, 64, 64, true, "float32", true}}},
      {"llama3-8b",  // 32 query heads, 8 KV heads, 128
       {{"llama3-8b", 1, 32, 8, 2048, 2048, 128, 128, true, "float32", false},
        {"llama3-8b", 1, 32, 8, 2048, 2048, 128, 128, true, "bfloat16",
         false}}},
      {"targets",
       {{"h8-s4096", 1, 8, 8, 4096, 4096, 64, 64, false, "float32", false},
        {"h8-s4096", 1, 8, 8, 4096, 4096, 64, 64, false, "bfloat16", false},
        {"h8-s4096", 1, 8, 8, 4096, 4096, 128, 128, false, "float32", false},
        {"h8-s4096", 1, 8, 8, 4096, 4096, 128, 128, false, "bfloat16", false}}},
      {"naive-4096",
       {{"h8-s4096", 1, 8, 8, 4096, 4096, 64, 64, false, "float32", true}}},
      {"long-32k",
       {{"long-32k", 1, 8, 8, 32768, 32768, 128, 128, true, "float32", false}}},
      {"long-128k",
       {{"long-128k", 1, 8, 8, 131072, 131072, 128, 128, true, "float32",
         false}}},
  };
  return p;
}

const std::map<std::string, std::vector<std::string>> kGroups = {
    {"quick",
     {"transformer", "bert-base", "gpt2-small", "llama3-8b", "targets",
      "decode-quick", "backward-quick"}},
    {"full",
     {"transformer", "bert-base", "gpt2-small", "llama3-8b", "targets",
      "naive-4096", "long-32k", "decode", "prefill-16k", "backward"}},
};

double now_s() {
  return std::chrono::duration<double>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

double flops(const Shape& s) {
  const double f =
      2.0 * s.B * s.Hq * double(s.Sq) * double(s.Skv) * (s.D + s.Dv);
  return s.causal ? f / 2 : f;
}

struct Row {
  Shape shape;
  std::string algorithm;
  double ms = 0, gflops = 0, pct_fp32 = 0, pct_bf16 = 0;
  double naive_ms = NAN;
  double scratch_mib = 0;
  double max_err = 0;    // on the checked slice, relative to its scale
  double naive_err = 0;  // naive's error on the same slice
  bool ok = true;
};

template <class T>
struct Inputs {
  attn::Tensor<T> q, k, v, out;
  explicit Inputs(const Shape& s)
      : q(s.B, s.Hq, s.Sq, s.D),
        k(s.B, s.Hkv, s.Skv, s.D),
        v(s.B, s.Hkv, s.Skv, s.Dv),
        out(s.B, s.Hq, s.Sq, s.Dv) {
    std::mt19937 rng(123);
    std::normal_distribution<float> normal;
    for (auto* t : {&q, &k, &v}) {
      for (int64_t i = 0; i < t->numel(); ++i) {
        t->data()[i] = attn::from_float<T>(normal(rng));
      }
    }
  }
};

// View of the rows [first, first + n) of heads [h0, h0 + heads) of batch 0.
template <class T>
attn::TensorView<T> slice(attn::TensorView<T> v, int64_t h0, int64_t heads,
                          int64_t first, int64_t n) {
  return {v.row(0, h0, first), {1, heads, n, v.extent(3)}, v.strides()};
}

// See check_slice in bench.h.
template <class T>
SliceCheck check_rows(attn::TensorView<const T> q_all,
                      attn::TensorView<const T> k_all,
                      attn::TensorView<const T> v_all,
                      attn::TensorView<const T> out_all,
                      const attn::AttentionOptions& o) {
  // Every head: head-dependent options (ALiBi, patterns) keep their meaning.
  const int64_t Hq = q_all.extent(1), Hkv = k_all.extent(1);
  const int64_t Sq = q_all.extent(2), Skv = k_all.extent(2),
                Dv = v_all.extent(3);
  const int64_t rows = std::min<int64_t>(Sq, 16);
  const int64_t first = Sq - rows;  // bottom-right alignment keeps meaning
  const auto q = slice<const T>(q_all, 0, Hq, first, rows);
  const auto k = slice<const T>(k_all, 0, Hkv, 0, Skv);
  const auto v = slice<const T>(v_all, 0, Hkv, 0, Skv);
  // The reference runs on the same values widened to float (exact), so its
  // output is rounded to float32, not to T.
  const attn::Tensor<float> qf = widened(q), kf = widened(k), vf = widened(v);
  attn::Tensor<float> ref(1, Hq, rows, Dv);
  attn::Tensor<T> naive(1, Hq, rows, Dv);
  attn::AttentionOptions r = o;
  r.workspace = nullptr;
  r.algorithm = attn::Algorithm::kReference;
  attn::attention(qf.cview(), kf.cview(), vf.cview(), ref.view(), r);
  r.algorithm = attn::Algorithm::kNaive;
  attn::attention(q, k, v, naive.view(), r);
  return {slice_error(ref, slice<const T>(out_all, 0, Hq, first, rows)),
          slice_error(ref, naive.cview())};
}

template <class T>
SliceCheck check_slice(const Shape&, Inputs<T>& in,
                       const attn::AttentionOptions& o) {
  return check_rows<T>(in.q.cview(), in.k.cview(), in.v.cview(), in.out.cview(),
                       o);
}

}  // namespace

SliceCheck check_slice(attn::TensorView<const float> q,
                       attn::TensorView<const float> k,
                       attn::TensorView<const float> v,
                       attn::TensorView<const float> out,
                       const attn::AttentionOptions& options) {
  return check_rows<float>(q, k, v, out, options);
}

double time_ms(int repeats, const std::function<void()>& call,
               const std::function<void()>& before) {
  if (before) before();
  const double t0 = now_s();
  call();
  const double first = now_s() - t0;
  const int n =
      first > 1.0 ? 1 : std::max(1, std::min(repeats, int(3.0 / first)));
  std::vector<double> ms;
  for (int i = 0; i < n; ++i) {
    if (before) before();
    const double t = now_s();
    call();
    ms.push_back((now_s() - t) * 1e3);
  }
  std::sort(ms.begin(), ms.end());
  return ms[ms.size() / 2];
}

namespace {

template <class T>
Row run_shape(const Shape& s, const BenchArgs& args, double fp32_peak,
              double bf16_peak) {
  Row row{s, "flash"};
  Inputs<T> in(s);
  attn::Workspace ws;
  attn::AttentionOptions o;
  o.causal = s.causal;
  o.num_threads = args.threads;
  o.workspace = &ws;
  o.algorithm = attn::Algorithm::kFlash;
  auto call = [&] {
    attn::attention(in.q.cview(), in.k.cview(), in.v.cview(), in.out.view(), o);
  };
  call();
  const SliceCheck check = check_slice(s, in, o);
  row.max_err = check.err;
  row.naive_err = check.naive_err;
  // The project's accuracy rule: at most twice naive float32's error + 1e-6.
  row.ok = row.max_err <= 2 * row.naive_err + 1e-6;
  row.ms = time_ms(args.repeats, call);
  row.gflops = flops(s) / (row.ms * 1e-3) / 1e9;
  row.pct_fp32 = 100.0 * row.gflops / fp32_peak;
  row.pct_bf16 = bf16_peak > 0 ? 100.0 * row.gflops / bf16_peak : 0;
  row.scratch_mib = ws.bytes_reserved() / 1048576.0;
  if (s.naive && !args.no_naive) {
    o.algorithm = attn::Algorithm::kNaive;
    row.naive_ms = time_ms(1, call);
  }
  return row;
}

std::string shape_text(const Shape& s) {
  return fmt::format("{} B{} H{}/{} S{}x{} D{}{}", s.model, s.B, s.Hq, s.Hkv,
                     s.Sq, s.Skv, s.D, s.causal ? " causal" : "");
}

std::vector<Column> attention_columns() {
  return {{"shape", "shape", 42, true},
          {"dtype", "dtype", 8, true},
          {"algorithm", "", 0},
          {"model", "", 0},
          {"B", "", 0},
          {"Hq", "", 0},
          {"Hkv", "", 0},
          {"Sq", "", 0},
          {"Skv", "", 0},
          {"D", "", 0},
          {"Dv", "", 0},
          {"causal", "", 0},
          {"median_ms", "median ms", 10},
          {"gflops", "GFLOP/s", 9},
          {"pct_fp32_peak", "%fp32", 7},
          {"pct_bf16_peak", "", 0},
          {"naive_ms", "vs naive", 10},
          {"scratch_bytes", "scratch", 9},
          {"max_rel_err", "", 0},
          {"naive_max_rel_err", "", 0},
          {"ok", "err/naive err", 17}};
}

std::vector<Cell> attention_cells(const Row& r) {
  const Shape& s = r.shape;
  return {Cell::str(shape_text(s)),
          Cell::str(s.dtype),
          Cell::str(r.algorithm),
          Cell::str(s.model),
          Cell::integer(s.B),
          Cell::integer(s.Hq),
          Cell::integer(s.Hkv),
          Cell::integer(s.Sq),
          Cell::integer(s.Skv),
          Cell::integer(s.D),
          Cell::integer(s.Dv),
          Cell::shown(s.causal ? "causal" : "", s.causal),
          Cell::num(r.ms, "{:.2f}"),
          Cell::num(r.gflops, "{:.1f}"),
          Cell::percent(r.pct_fp32),
          Cell::num(r.pct_bf16, "{:.2f}"),
          Cell::speedup(r.naive_ms, r.ms),
          Cell::scratch(r.scratch_mib),
          Cell::num(r.max_err, "{:.3g}"),
          Cell::num(r.naive_err, "{:.3g}"),
          Cell::check(r.max_err, r.naive_err, r.ok)};
}

}  // namespace

void add_bench_options(CLI::App& cmd, BenchArgs& a) {
  std::string names = "quick (default), full";
  for (const auto& [name, shapes] : presets()) names += ", " + name;
  for (const std::string& name : decode_preset_names()) names += ", " + name;
  for (const std::string& name : backward_preset_names()) names += ", " + name;
  names += ", scaling (= --scaling), model (= --model)";
  cmd.add_option("--preset", a.presets,
                 "what to run, by name (several may be given): " + names);
  cmd.add_option("--threads", a.threads, "worker threads (0 = all cores)")
      ->check(CLI::Range(0, attn::kMaxThreads));
  cmd.add_option("--repeats", a.repeats, "timed runs per row (median)")
      ->check(CLI::PositiveNumber);
  cmd.add_flag("--json", a.json, "print JSON instead of a table");
  cmd.add_flag("--no-naive", a.no_naive, "skip the naive comparison runs");
  cmd.add_option("--simd", a.simd,
                 "force a SIMD target (see attn::available_simd_targets)");
  cmd.add_flag(
      "--scaling", a.scaling,
      "time each sparse pattern for S = 1K, 2K, ... (causal, 8 heads, D 64) "
      "and fit time ~ S^k");
  cmd.add_option("--scaling-min", a.scaling_min, "--scaling: shortest S")
      ->check(CLI::Range(int64_t{64}, int64_t{1} << 24));
  cmd.add_option("--scaling-max", a.scaling_max, "--scaling: longest S")
      ->check(CLI::Range(int64_t{64}, int64_t{1} << 24));
  cmd.add_flag("--model", a.model,
               "time one BERT-base and one Llama-3-8B-like layer (prefill and "
               "decode) with the time split by part; uses all cores");
  cmd.add_option("--model-tokens", a.model_tokens, "--model: prefill tokens")
      ->capture_default_str();
  cmd.add_option("--model-context", a.model_context,
                 "--model: KV cache tokens before decode")
      ->capture_default_str();
  cmd.add_option("--page-size", a.page_size,
                 "KV-cache rows: tokens per page of the paged rows (default: "
                 "16, as vLLM uses)")
      ->check(CLI::Range(int64_t{1}, int64_t{1} << 20));
  cmd.add_flag("--scaling-all", a.scaling_all,
               "--scaling: run full causal and fixed past 32K too (slow)");
}

int bench_command(const BenchArgs& given) {
  // One selection mechanism: every suite is named by --preset; --scaling
  // and --model are the presets "scaling" and "model", which run alone.
  BenchArgs args = given;
  std::vector<std::string> rest;
  for (const std::string& p : given.presets) {
    if (p == "scaling") {
      args.scaling = true;
    } else if (p == "model") {
      args.model = true;
    } else {
      rest.push_back(p);
    }
  }
  args.presets = rest;
  if (args.scaling && args.model) {
    throw attn::Error("--preset: scaling and model run alone, not together");
  }
  std::vector<Shape> shapes;
  std::vector<std::string> decode_names, backward_names;
  for (const std::string& p : args.presets.empty()
                                  ? std::vector<std::string>{"quick"}
                                  : args.presets) {
    std::vector<std::string> names = {p};
    if (auto g = kGroups.find(p); g != kGroups.end()) names = g->second;
    for (const std::string& n : names) {
      if (is_decode_preset(n)) {
        decode_names.push_back(n);
        continue;
      }
      if (is_backward_preset(n)) {
        backward_names.push_back(n);
        continue;
      }
      const auto it = presets().find(n);
      if (it == presets().end()) {
        throw attn::Error("--preset: unknown preset '" + n + "'");
      }
      shapes.insert(shapes.end(), it->second.begin(), it->second.end());
    }
  }
  if (args.scaling_min > args.scaling_max) {
    throw attn::Error("--scaling-min (" + std::to_string(args.scaling_min) +
                      ") must be <= --scaling-max (" +
                      std::to_string(args.scaling_max) + ")");
  }
  // Automatic target choice comes back however the bench ends.
  struct SimdGuard {
    bool forced;
    ~SimdGuard() {
      if (forced) attn::force_simd_target("");
    }
  } simd_guard{!args.simd.empty()};
  if (!args.simd.empty()) attn::force_simd_target(args.simd);
  {
    // The BLAS baseline and projections run the instruction set attn runs:
    // OpenBLAS (a DYNAMIC_ARCH build, as Debian's) picks its kernels when
    // attn::nn first loads it, from OPENBLAS_CORETYPE if set, else from its
    // own CPU table, which can be older than the CPU (Debian's 0.3.21
    // picks its AVX2 kernels on AMD Zen 4). A value the caller set is kept
    // (the backward table names the kernels that ran).
    static const std::map<std::string, const char*> kCoreType = {
        {"AVX3_SPR", "SkylakeX"}, {"AVX3_ZEN4", "SkylakeX"},
        {"AVX3_DL", "SkylakeX"},  {"AVX3", "SkylakeX"},
        {"AVX2", "Haswell"},      {"SSE4", "Nehalem"},
        {"SSSE3", "Core2"}};
    const auto core = kCoreType.find(attn::active_simd_target());
    if (core != kCoreType.end()) setenv("OPENBLAS_CORETYPE", core->second, 0);
  }
  const int threads = args.threads;
  if (args.model) {
    if (!args.presets.empty()) {
      throw attn::Error("--model: runs alone (no other --preset)");
    }
    return run_model_bench(args);
  }
  if (args.scaling) {
    if (!args.presets.empty())
      throw attn::Error("--scaling: runs alone (no other --preset)");
    return run_scaling(args, attn::bench::measure_fma_peak_gflops(threads));
  }
  const double fp32_peak = attn::bench::measure_fma_peak_gflops(threads);
  const double bf16_peak = attn::bench::measure_bf16_dot_peak_gflops(threads);
  const std::string target = attn::active_simd_target();

  if (!args.json) {
    fmt::print("attn {} bench on {} | SIMD {} | threads {}\n", attn::version(),
               attn::bench::cpu_model_name(), target,
               threads ? std::to_string(threads) : "all");
    fmt::print("measured: fp32 FMA peak {:.1f} GFLOP/s, bf16 dot peak {}\n\n",
               fp32_peak,
               bf16_peak > 0 ? fmt::format("{:.1f} GFLOP/s", bf16_peak)
                             : std::string("n/a (no AVX-512 BF16)"));
  }
  Table table("", attention_columns(), args.json);
  if (!shapes.empty()) table.begin();
  std::vector<Row> rows;
  bool all_ok = true;
  for (const Shape& s : shapes) {
    Row r = s.dtype == "bfloat16"
                ? run_shape<attn::bfloat16>(s, args, fp32_peak, bf16_peak)
                : run_shape<float>(s, args, fp32_peak, bf16_peak);
    all_ok = all_ok && r.ok;
    table.add(attention_cells(r));
    rows.push_back(r);
  }
  // Peak memory before the bandwidth test, whose buffer would dominate it.
  const double peak_rss_mib = attn::bench::peak_resident_bytes() / 1048576.0;
  const double bandwidth = attn::bench::measure_read_bandwidth_robust_gbs(
      threads, std::size_t{256} << 20);
  const SuiteResult decode =
      run_decode_presets(decode_names, args, fp32_peak, bandwidth);
  all_ok = all_ok && decode.ok;
  const SuiteResult backward =
      run_backward_presets(backward_names, args, fp32_peak);
  all_ok = all_ok && backward.ok;
  if (args.json) {
    const nlohmann::json doc = {
        {"version", attn::version()},
        {"cpu", attn::bench::cpu_model_name()},
        {"simd", target},
        {"threads", threads},
        {"fp32_peak_gflops", fp32_peak},
        {"bf16_peak_gflops",
         bf16_peak > 0 ? nlohmann::json(bf16_peak) : nlohmann::json()},
        {"read_bandwidth_gbs", bandwidth},
        {"peak_resident_mib", peak_rss_mib},
        {"rows", table.rows()},
        {"kv_rows", decode.rows},
        {"backward_rows", backward.rows},
    };
    fmt::print("{}\n", doc.dump(2));
  }
  if (!args.json) {
    double io_mib = 0;  // the largest row's q, k, v and out
    for (const Row& r : rows) {
      const Shape& s = r.shape;
      const double elems = double(s.B) * (s.Hq * s.Sq * (s.D + s.Dv) +
                                          s.Hkv * s.Skv * (s.D + s.Dv));
      io_mib =
          std::max(io_mib, elems * (s.dtype == "float32" ? 4 : 2) / 1048576.0);
    }
    fmt::print(
        "\nprocess peak resident memory {:.0f} MiB; largest row's q, k, v, "
        "out {:.0f} MiB; scratch = what the algorithm held beyond them\n"
        "measured read bandwidth {:.1f} GB/s (best median of 3 x 5 passes)\n",
        peak_rss_mib, io_mib, bandwidth);
  }
  if (!args.simd.empty()) attn::force_simd_target("");
  if (!all_ok) {
    fmt::print(stderr, "attn bench: a result disagreed with the reference\n");
    return 1;
  }
  return 0;
}

}  // namespace attn_cli

// `attn bench --scaling`: how the cost of each attention pattern grows with
// the sequence length. For S = 1K, 2K, ... (causal, batch 1, 8 heads, D 64,
// float32) it times full causal attention and each sparse pattern, checks
// each against the float64 reference first (last 16 rows), and prints the
// median time per S, the exponent k of a least-squares fit time ~ S^k over
// S >= 4K, GFLOP/s counted over the tiles the kernel visits
// (attn::estimate_work: 4 * scores * D), that as a share of full causal's
// GFLOP/s at the same S, and the speed-up over full causal. The last
// column is causal linear attention (attn::linear_attention).
#include <attn/attn.h>
#include <fmt/core.h>

#include <cmath>
#include <functional>
#include <memory>
#include <nlohmann/json.hpp>
#include <random>
#include <string>
#include <vector>

#include "cli/bench.h"
#include "cli/bench_report.h"

namespace attn_cli {
namespace {

constexpr int64_t kHeads = 8, kDim = 64;

// One pattern of the table: a name, the longest S it runs at by default
// (quadratic ones stop early), and how to set up options for a length.
struct PatternColumn {
  std::string name;
  int64_t max_len;
  bool linear = false;  // linear attention (attn/linear.h) instead
  // Fills options for length S; `keep` owns what they point to.
  std::function<void(int64_t S, attn::AttentionOptions&,
                     std::shared_ptr<void>& keep)>
      setup;
};

// BigBird-style layout: window of one block each side, one global block,
// two random blocks per block row (examples/bigbird.cc).
std::vector<uint8_t> bigbird(int64_t n) {
  std::vector<uint8_t> l(static_cast<size_t>(n * n), 0);
  std::mt19937 rng(5);
  std::uniform_int_distribution<int64_t> pick(0, n - 1);
  for (int64_t q = 0; q < n; ++q) {
    for (int64_t k = std::max<int64_t>(0, q - 1); k <= std::min(n - 1, q + 1);
         ++k) {
      l[q * n + k] = 1;
    }
    l[q * n + pick(rng)] = l[q * n + pick(rng)] = 1;
    l[q * n] = l[q] = 1;  // block 0 is global
  }
  return l;
}

std::vector<PatternColumn> columns() {
  using Keep = std::shared_ptr<void>;
  return {
      {"full", 32768, false, [](int64_t, attn::AttentionOptions&, Keep&) {}},
      {"window512", 1 << 30, false,
       [](int64_t, attn::AttentionOptions& o, Keep&) { o.window_left = 512; }},
      {"longformer", 1 << 30, false,
       [](int64_t, attn::AttentionOptions& o, Keep& keep) {
         // 128 keys back, dilation 1, 1, 1, 1, 2, 2, 4, 4; 8 global tokens.
         auto p = std::make_shared<attn::Longformer>(
             128, std::vector<int64_t>{0, 1, 2, 3, 4, 5, 6, 7},
             std::vector<int64_t>{1, 1, 1, 1, 2, 2, 4, 4}, true);
         o.pattern = *p;
         keep = p;
       }},
      {"strided", 1 << 30, false,
       [](int64_t S, attn::AttentionOptions& o, Keep& keep) {
         // Fixed budget: 256 local keys and 64 strided ones per query.
         auto p = std::make_shared<attn::SparseStrided>(
             attn::SparseStrided{std::max<int64_t>(S / 64, 1), 256, true});
         o.pattern = *p;
         keep = p;
       }},
      {"bigbird", 1 << 30, false,
       [](int64_t S, attn::AttentionOptions& o, Keep& keep) {
         const int64_t n = (S + 63) / 64;
         auto p = std::make_shared<attn::BlockSparse>(64, 1, n, n, bigbird(n));
         o.pattern = *p;
         keep = p;
       }},
      {"documents", 1 << 30, false,
       [](int64_t S, attn::AttentionOptions& o, Keep& keep) {
         std::vector<int64_t> cu;  // documents of 2048 tokens
         for (int64_t t = 0; t < S; t += 2048) cu.push_back(t);
         cu.push_back(S);
         auto p = std::make_shared<attn::Documents>(cu, std::vector<int64_t>{},
                                                    true);
         o.pattern = *p;
         keep = p;
       }},
      {"fixed", 32768, false,
       [](int64_t, attn::AttentionOptions& o, Keep& keep) {
         // Not a fixed budget: every query sees 8 of every 128 keys.
         auto p = std::make_shared<attn::SparseFixed>(
             attn::SparseFixed{128, 8, true});
         o.pattern = *p;
         keep = p;
       }},
      {"linear", 1 << 30, true, [](int64_t, attn::AttentionOptions&, Keep&) {}},
  };
}

// Linear attention, causal (elu + 1): checked on the first 256 positions,
// which depend on nothing after them, against the reference and naive.
SliceCheck check_linear(const attn::Tensor<float>& q,
                        const attn::Tensor<float>& k,
                        const attn::Tensor<float>& v,
                        const attn::Tensor<float>& out) {
  const int64_t n = std::min<int64_t>(q.view().extent(2), 256);
  const auto head = [n](attn::TensorView<const float> x) {
    return attn::TensorView<const float>(x.data(), {1, kHeads, n, kDim},
                                         x.strides());
  };
  attn::Tensor<float> ref(1, kHeads, n, kDim), naive(1, kHeads, n, kDim);
  attn::LinearOptions o;
  o.causal = true;
  o.algorithm = attn::LinearAlgorithm::kReference;
  attn::linear_attention(head(q.cview()), head(k.cview()), head(v.cview()),
                         ref.view(), o);
  o.algorithm = attn::LinearAlgorithm::kNaive;
  attn::linear_attention(head(q.cview()), head(k.cview()), head(v.cview()),
                         naive.view(), o);
  const auto err = [&](attn::TensorView<const float> x) {
    double e = 0, scale = 1e-6;
    for (int64_t h = 0; h < kHeads; ++h)
      for (int64_t i = 0; i < n; ++i)
        for (int64_t d = 0; d < kDim; ++d) {
          scale = std::max(scale, double(std::fabs(ref.cview()(0, h, i, d))));
          e = std::max(
              e, double(std::fabs(x(0, h, i, d) - ref.cview()(0, h, i, d))));
        }
    return e / scale;
  };
  return {err(head(out.cview())), err(naive.cview())};
}

// FLOPs causal linear attention executes per position and head
// (linear.cc, chunk C = 64): the segment totals, the state read and its
// update (2 D Dv each), the chunk's scores phi(Q) phi(K)^T (2 C D) and their
// product with V (2 C Dv).
double linear_flops(int64_t S) {
  return double(S) * kHeads * (6.0 * kDim * kDim + 2.0 * 64 * (kDim + kDim));
}

struct Point {
  double ms = NAN, gflops = NAN;
  bool ok = true;
};

// Least-squares slope of log(ms) against log(S) over the cells with S >= 4K.
double fitted_exponent(const std::vector<int64_t>& lens,
                       const std::vector<Point>& cells) {
  double n = 0, sx = 0, sy = 0, sxx = 0, sxy = 0;
  for (size_t i = 0; i < lens.size(); ++i) {
    if (lens[i] < 4096 || std::isnan(cells[i].ms)) continue;
    const double x = std::log(double(lens[i])), y = std::log(cells[i].ms);
    n += 1;
    sx += x;
    sy += y;
    sxx += x * x;
    sxy += x * y;
  }
  if (n < 2) return NAN;
  return (n * sxy - sx * sy) / (n * sxx - sx * sx);
}

// The two tables: per S, each pattern's median ms (JSON: ms, GFLOP/s over
// visited tiles and the check, per pattern); then per figure (fitted
// exponent, GFLOP/s, share of full's, speed-up over full) one value per
// pattern.
std::vector<Column> table_columns(const std::vector<PatternColumn>& cols,
                                  const char* first) {
  std::vector<Column> c = {{first, first, 24, true}};
  for (const PatternColumn& p : cols) c.push_back({p.name, p.name, 11});
  return c;
}

Cell point_cell(const Point& x) {
  if (std::isnan(x.ms)) return {"-", nullptr};
  return Cell::shown(
      fmt::format("{:.2f}{}", x.ms, x.ok ? "" : "!"),
      {{"median_ms", x.ms}, {"gflops_visited", x.gflops}, {"ok", x.ok}});
}

}  // namespace

int run_scaling(const BenchArgs& args, double fp32_peak) {
  std::vector<int64_t> lens;
  for (int64_t S = args.scaling_min; S <= args.scaling_max; S *= 2)
    lens.push_back(S);
  const std::vector<PatternColumn> cols = columns();
  std::vector<std::vector<Point>> cells(cols.size(),
                                        std::vector<Point>(lens.size()));
  bool all_ok = true;
  attn::Workspace ws;
  for (size_t si = 0; si < lens.size(); ++si) {
    const int64_t S = lens[si];
    attn::Tensor<float> q(1, kHeads, S, kDim), k(1, kHeads, S, kDim),
        v(1, kHeads, S, kDim), out(1, kHeads, S, kDim);
    std::mt19937 rng(11);
    std::normal_distribution<float> normal;
    for (auto* t : {&q, &k, &v}) {
      for (int64_t i = 0; i < t->numel(); ++i) t->data()[i] = normal(rng);
    }
    for (size_t c = 0; c < cols.size(); ++c) {
      if (S > cols[c].max_len && !args.scaling_all) continue;
      attn::AttentionOptions o;
      std::shared_ptr<void> keep;
      cols[c].setup(S, o, keep);
      o.causal = true;
      o.num_threads = args.threads;
      o.workspace = &ws;
      o.algorithm = attn::Algorithm::kFlash;
      attn::LinearOptions lo;
      lo.causal = true;
      lo.num_threads = args.threads;
      auto call = [&] {
        if (cols[c].linear) {
          attn::linear_attention(q.cview(), k.cview(), v.cview(), out.view(),
                                 lo);
        } else {
          attn::attention(q.cview(), k.cview(), v.cview(), out.view(), o);
        }
      };
      call();
      const SliceCheck check =
          cols[c].linear
              ? check_linear(q, k, v, out)
              : check_slice(q.cview(), k.cview(), v.cview(), out.cview(), o);
      Point& cell = cells[c][si];
      cell.ok = check.ok();
      all_ok = all_ok && cell.ok;
      cell.ms = time_ms(args.repeats, call);
      const double flops =
          cols[c].linear ? linear_flops(S)
                         : 4.0 *
                               double(attn::estimate_work(q.cview(), k.cview(),
                                                          v.cview(), o)
                                          .scores) *
                               kDim;
      cell.gflops = flops / (cell.ms * 1e-3) / 1e9;
      if (!cell.ok) {
        fmt::print(stderr,
                   "attn bench --scaling: {} at S={} disagrees with the "
                   "reference: error {:.2e}, naive {:.2e}\n",
                   cols[c].name, S, check.err, check.naive_err);
      }
    }
  }

  if (!args.json) {
    fmt::print(
        "scaling: causal, B1 H{} D{} float32, flash; median ms per S "
        "(each checked against the reference first; ! marks a failed "
        "check)\n",
        kHeads, kDim);
  }
  Table by_length("", table_columns(cols, "S"), args.json);
  by_length.begin();
  for (size_t si = 0; si < lens.size(); ++si) {
    std::vector<Cell> row = {Cell::integer(lens[si])};
    for (size_t c = 0; c < cols.size(); ++c)
      row.push_back(point_cell(cells[c][si]));
    by_length.add(std::move(row));
  }
  // Per-pattern figures at the longest S full causal ran at.
  size_t at = 0;
  for (size_t si = 0; si < lens.size(); ++si) {
    if (!std::isnan(cells[0][si].ms)) at = si;
  }
  // Printed under the first table, in its columns (no headings of its own).
  Table figures("", table_columns(cols, "figure"), args.json);
  const auto figure = [&](const std::string& name, const char* spec,
                          const std::function<double(size_t)>& value) {
    std::vector<Cell> row = {Cell::str(name)};
    for (size_t c = 0; c < cols.size(); ++c)
      row.push_back(Cell::num(value(c), spec));
    figures.add(std::move(row));
  };
  figure("exponent (S >= 4K)", "{:.3f}",
         [&](size_t c) { return fitted_exponent(lens, cells[c]); });
  figure(fmt::format("GFLOP/s visited, S={}", lens[at]), "{:.1f}",
         [&](size_t c) { return cells[c][at].gflops; });
  figure("% of full's GFLOP/s", "{:.1f}%", [&](size_t c) {
    return 100.0 * cells[c][at].gflops / cells[0][at].gflops;
  });
  figure("speed-up over full", "{:.1f}x",
         [&](size_t c) { return cells[0][at].ms / cells[c][at].ms; });
  if (args.json) {
    const nlohmann::json doc = {{"scaling",
                                 {{"heads", kHeads},
                                  {"head_dim", kDim},
                                  {"causal", true},
                                  {"fp32_peak_gflops", fp32_peak},
                                  {"rows", by_length.rows()},
                                  {"figures", figures.rows()}}}};
    fmt::print("{}\n", doc.dump(2));
    return all_ok ? 0 : 1;
  }
  fmt::print(
      "fp32 FMA peak {:.1f} GFLOP/s; GFLOP/s count 4 * D per score in the "
      "tiles the kernel visits (attn::estimate_work); linear: elu + 1, "
      "6 D Dv + 128 (D + Dv) per position and head as executed\n",
      fp32_peak);
  if (!all_ok) fmt::print(stderr, "attn bench --scaling: a result disagreed\n");
  return all_ok ? 0 : 1;
}

}  // namespace attn_cli

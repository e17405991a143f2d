// `attn bench` backward rows: attention_backward (flash) per shape, with
// FLOPs counted as 2.5x the forward's (five matrix products instead of
// two), % of the measured fp32 peak, the speed-up over the naive
// materialising backward where it is run, and the scratch the call held
// (a Workspace: per-worker tiles plus the float32 dQ accumulator, linear in
// Sq, never Sq x Skv). Before timing, dq of the last 16 query rows of every
// head of batch 0 is checked against the float64 reference backward of
// those rows, next to the naive backward's error on the same rows.
// float32 rows also time the framework baseline (bench/support/
// math_path.h: the score matrix materialised, every product through BLAS)
// forward + backward, beside the flash forward + backward; its dq is
// checked on the same rows by the same rule.
#include <attn/attn.h>
#include <attn/nn/layers.h>
#include <fmt/core.h>

#include <algorithm>
#include <cmath>
#include <map>
#include <random>
#include <string>
#include <type_traits>
#include <vector>

#include "bench/support/math_path.h"
#include "cli/bench.h"
#include "cli/bench_report.h"

namespace attn_cli {
namespace {

struct BackwardShape {
  std::string model;
  int64_t B, Hq, Hkv, S, D;
  bool causal;
  std::string dtype;  // "float32" or "bfloat16"
  bool naive;
};

const std::map<std::string, std::vector<BackwardShape>>& backward_presets() {
  static const std::map<std::string, std::vector<BackwardShape>> p = {
      {"backward-quick",
       {{"bert-base", 1, 12, 12, 512, 64, false, "float32", true},
        {"gpt2-small", 1, 12, 12, 1024, 64, true, "float32", true}}},
      {"backward",
       {{"h8-s4096", 1, 8, 8, 4096, 128, false, "float32", true},
        {"h8-s4096", 1, 8, 8, 4096, 128, true, "float32", false},
        {"h8-s4096", 1, 8, 8, 4096, 128, false, "bfloat16", false},
        {"h8-s2048", 1, 8, 8, 2048, 128, false, "float32", false},
        {"llama3-8b", 1, 32, 8, 2048, 128, true, "float32", false}}},
  };
  return p;
}

template <class T>
struct BackwardInputs {
  attn::Tensor<T> q, k, v, out, dout, dq, dk, dv;
  attn::Tensor<float> lse;
  explicit BackwardInputs(const BackwardShape& s)
      : q(s.B, s.Hq, s.S, s.D),
        k(s.B, s.Hkv, s.S, s.D),
        v(s.B, s.Hkv, s.S, s.D),
        out(s.B, s.Hq, s.S, s.D),
        dout(s.B, s.Hq, s.S, s.D),
        dq(s.B, s.Hq, s.S, s.D),
        dk(s.B, s.Hkv, s.S, s.D),
        dv(s.B, s.Hkv, s.S, s.D),
        lse(s.B, s.Hq, s.S, 1) {
    std::mt19937 rng(321);
    std::normal_distribution<float> normal;
    for (auto* t : {&q, &k, &v, &dout}) {
      for (int64_t i = 0; i < t->numel(); ++i) {
        t->data()[i] = attn::from_float<T>(normal(rng));
      }
    }
  }
};

// Rows [first, first + n) of every head of batch 0.
template <class T>
attn::TensorView<T> rows_of(attn::TensorView<T> v, int64_t first, int64_t n) {
  return {v.row(0, 0, first), {1, v.extent(1), n, v.extent(3)}, v.strides()};
}

// dq of the last rows: the timed call's against the reference's (on the
// values widened to float), and the naive backward's on the same rows.
template <class T>
SliceCheck check_dq(BackwardInputs<T>& in, const attn::AttentionOptions& o,
                    attn::Tensor<float>* reference_dq = nullptr) {
  const int64_t S = in.q.extents()[2], n = std::min<int64_t>(S, 16),
                first = S - n;
  auto sl = [&](const attn::Tensor<T>& t) {
    return rows_of<const T>(t.cview(), first, n);
  };
  auto all = [&](const attn::Tensor<T>& t) {
    return rows_of<const T>(t.cview(), 0, S);
  };
  const auto lse = rows_of<const float>(in.lse.cview(), first, n);
  attn::AttentionOptions r = o;
  r.workspace = nullptr;
  r.algorithm = attn::Algorithm::kReference;
  const attn::Tensor<float> qf = widened(sl(in.q)), kf = widened(all(in.k)),
                            vf = widened(all(in.v)), of = widened(sl(in.out)),
                            gf = widened(sl(in.dout));
  attn::Tensor<float> dq(qf.extents()), dk(kf.extents()), dv(vf.extents());
  attn::attention_backward(qf.cview(), kf.cview(), vf.cview(), of.cview(), lse,
                           gf.cview(), dq.view(), dk.view(), dv.view(), r);
  attn::Tensor<T> ndq(qf.extents()), ndk(kf.extents()), ndv(vf.extents());
  r.algorithm = attn::Algorithm::kNaive;
  attn::attention_backward(sl(in.q), all(in.k), all(in.v), sl(in.out), lse,
                           sl(in.dout), ndq.view(), ndk.view(), ndv.view(), r);
  SliceCheck check{slice_error<T>(dq, sl(in.dq)),
                   slice_error<T>(dq, ndq.cview())};
  if (reference_dq != nullptr) *reference_dq = std::move(dq);
  return check;
}

struct BackwardRow {
  double ms = 0, gflops = 0, pct = 0, naive_ms = NAN, scratch_mib = 0;
  // Forward + backward: flash, and the BLAS math path (float32 rows).
  double train_ms = NAN, blas_ms = NAN, blas_err = NAN;
  SliceCheck check;
  bool blas_ok = true;
};

template <class T>
BackwardRow run_backward_shape(const BackwardShape& s, const BenchArgs& args,
                               double fp32_peak) {
  BackwardInputs<T> in(s);
  attn::Workspace ws;
  attn::AttentionOptions o;
  o.causal = s.causal;
  o.num_threads = args.threads;
  o.workspace = &ws;
  attn::attention(in.q.cview(), in.k.cview(), in.v.cview(), in.out.view(), o,
                  in.lse.view());
  ws.release();  // what the backward holds, not the forward
  o.algorithm = attn::Algorithm::kFlash;
  auto call = [&] {
    attn::attention_backward(in.q.cview(), in.k.cview(), in.v.cview(),
                             in.out.cview(), in.lse.cview(), in.dout.cview(),
                             in.dq.view(), in.dk.view(), in.dv.view(), o);
  };
  call();
  BackwardRow row;
  attn::Tensor<float> reference_dq;
  row.check = check_dq(in, o, &reference_dq);
  row.ms = time_ms(args.repeats, call);
  if constexpr (std::is_same_v<T, float>) {
    attn::AttentionOptions fwd = o;
    fwd.algorithm = attn::Algorithm::kAuto;
    row.train_ms = time_ms(args.repeats, [&] {
      attn::attention(in.q.cview(), in.k.cview(), in.v.cview(), in.out.view(),
                      fwd, in.lse.view());
      call();
    });
    attn::bench::MathPathAttention math(s.B, s.Hq, s.Hkv, s.S, s.D, s.causal,
                                        args.threads);
    attn::Tensor<float> out(in.out.extents()), dq(in.dq.extents()),
        dk(in.dk.extents()), dv(in.dv.extents());
    auto blas = [&] {
      math.forward(in.q.data(), in.k.data(), in.v.data(), out.data());
      math.backward(in.q.data(), in.k.data(), in.v.data(), out.data(),
                    in.dout.data(), dq.data(), dk.data(), dv.data());
    };
    blas();
    const int64_t n = std::min<int64_t>(s.S, 16);
    row.blas_err = slice_error<float>(
        reference_dq, rows_of<const float>(dq.cview(), s.S - n, n));
    row.blas_ok = row.blas_err <= 2 * row.check.naive_err + 1e-6;
    row.blas_ms = time_ms(args.repeats, blas);
  }
  double f = 2.0 * s.B * s.Hq * double(s.S) * double(s.S) * (2 * s.D) * 2.5;
  if (s.causal) f /= 2;
  row.gflops = f / (row.ms * 1e-3) / 1e9;
  row.pct = 100.0 * row.gflops / fp32_peak;
  row.scratch_mib = ws.bytes_reserved() / 1048576.0;
  if (s.naive && !args.no_naive) {
    o.algorithm = attn::Algorithm::kNaive;
    row.naive_ms = time_ms(1, call);
  }
  return row;
}

// A number, or "-" (JSON null) where the row has none (NaN).
Cell optional_num(double x, const char* format) {
  if (std::isnan(x)) return {"-", nullptr};
  return Cell::num(x, format);
}

}  // namespace

bool is_backward_preset(const std::string& name) {
  return backward_presets().count(name) > 0;
}

std::vector<std::string> backward_preset_names() {
  std::vector<std::string> names;
  for (const auto& [name, shapes] : backward_presets()) names.push_back(name);
  return names;
}

SuiteResult run_backward_presets(const std::vector<std::string>& names,
                                 const BenchArgs& args, double fp32_peak) {
  SuiteResult result;
  if (names.empty()) return result;
  Table table(fmt::format("\nbackward (attention_backward, flash; FLOPs = "
                          "2.5x forward); BLAS baseline: {}",
                          attn::nn::blas_info()),
              {{"shape", "shape", 42, true},
               {"dtype", "dtype", 8, true},
               {"model", "", 0},
               {"B", "", 0},
               {"Hq", "", 0},
               {"Hkv", "", 0},
               {"S", "", 0},
               {"D", "", 0},
               {"causal", "", 0},
               {"median_ms", "median ms", 10},
               {"gflops", "GFLOP/s", 9},
               {"pct_fp32_peak", "%fp32", 7},
               {"naive_ms", "vs naive", 10},
               {"train_ms", "fwd+bwd ms", 11},
               {"blas_ms", "BLAS ms", 9},
               {"vs_blas", "vs BLAS", 8},
               {"blas_dq_max_rel_err", "", 0},
               {"scratch_bytes", "scratch", 9},
               {"dq_max_rel_err", "", 0},
               {"naive_dq_max_rel_err", "", 0},
               {"ok", "dq err/naive err", 17}},
              args.json);
  table.begin();
  for (const std::string& name : names) {
    for (const BackwardShape& s : backward_presets().at(name)) {
      const BackwardRow r =
          s.dtype == "bfloat16"
              ? run_backward_shape<attn::bfloat16>(s, args, fp32_peak)
              : run_backward_shape<float>(s, args, fp32_peak);
      result.ok = result.ok && r.check.ok() && r.blas_ok;
      table.add(
          {Cell::str(fmt::format("{} B{} H{}/{} S{} D{}{}", s.model, s.B, s.Hq,
                                 s.Hkv, s.S, s.D, s.causal ? " causal" : "")),
           Cell::str(s.dtype),
           Cell::str(s.model),
           Cell::integer(s.B),
           Cell::integer(s.Hq),
           Cell::integer(s.Hkv),
           Cell::integer(s.S),
           Cell::integer(s.D),
           Cell::shown("", s.causal),
           Cell::num(r.ms, "{:.2f}"),
           Cell::num(r.gflops, "{:.1f}"),
           Cell::percent(r.pct),
           Cell::speedup(r.naive_ms, r.ms),
           optional_num(r.train_ms, "{:.2f}"),
           optional_num(r.blas_ms, "{:.2f}"),
           Cell::speedup(r.blas_ms, r.train_ms),
           optional_num(r.blas_err, "{:.3g}"),
           Cell::scratch(r.scratch_mib),
           Cell::num(r.check.err, "{:.3g}"),
           Cell::num(r.check.naive_err, "{:.3g}"),
           Cell::check(r.check.err, r.check.naive_err, r.check.ok())});
    }
  }
  result.rows = table.rows();
  return result;
}

}  // namespace attn_cli

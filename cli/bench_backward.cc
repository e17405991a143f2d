// `attn bench` backward rows: attention_backward (flash) per shape, with
// FLOPs counted as 2.5x the forward's (five matrix products instead of
// two), % of the measured fp32 peak, the speed-up over the naive
// materialising backward where it is run, and the scratch the call held
// (a Workspace: per-worker tiles plus the float32 dQ accumulator, linear in
// Sq, never Sq x Skv). Before timing, dq of the last 16 query rows of every
// head of batch 0 is checked against the float64 reference backward of
// those rows, next to the naive backward's error on the same rows.
#include <attn/attn.h>
#include <fmt/core.h>

#include <algorithm>
#include <cmath>
#include <map>
#include <random>
#include <string>
#include <vector>

#include "cli/bench.h"

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
      : q(s.B, s.Hq, s.S, s.D), k(s.B, s.Hkv, s.S, s.D), v(s.B, s.Hkv, s.S, s.D),
        out(s.B, s.Hq, s.S, s.D), dout(s.B, s.Hq, s.S, s.D), dq(s.B, s.Hq, s.S, s.D),
        dk(s.B, s.Hkv, s.S, s.D), dv(s.B, s.Hkv, s.S, s.D), lse(s.B, s.Hq, s.S, 1) {
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
SliceCheck check_dq(BackwardInputs<T>& in, const attn::AttentionOptions& o) {
  const int64_t S = in.q.extents()[2], n = std::min<int64_t>(S, 16), first = S - n;
  auto sl = [&](const attn::Tensor<T>& t) {
    return rows_of<const T>(t.cview(), first, n);
  };
  auto all = [&](const attn::Tensor<T>& t) { return rows_of<const T>(t.cview(), 0, S); };
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
  return {slice_error<T>(dq, sl(in.dq)), slice_error<T>(dq, ndq.cview())};
}

struct BackwardRow {
  double ms = 0, gflops = 0, pct = 0, naive_ms = NAN, scratch_mib = 0;
  SliceCheck check;
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
  row.check = check_dq(in, o);
  row.ms = time_ms(args.repeats, call);
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

}  // namespace

bool is_backward_preset(const std::string& name) {
  return backward_presets().count(name) > 0;
}

std::vector<std::string> backward_preset_names() {
  std::vector<std::string> names;
  for (const auto& [name, shapes] : backward_presets()) names.push_back(name);
  return names;
}

DecodeResult run_backward_presets(const std::vector<std::string>& names,
                                  const BenchArgs& args, double fp32_peak) {
  DecodeResult result;
  if (names.empty()) return result;
  if (!args.json) {
    fmt::print("\nbackward (attention_backward, flash; FLOPs = 2.5x forward)\n");
    fmt::print("{:<42} {:<8} {:>10} {:>9} {:>7} {:>10} {:>9} {:>17}\n", "shape",
               "dtype", "median ms", "GFLOP/s", "%fp32", "vs naive", "scratch",
               "dq err/naive err");
  }
  for (const std::string& name : names) {
    for (const BackwardShape& s : backward_presets().at(name)) {
      const BackwardRow r =
          s.dtype == "bfloat16"
              ? run_backward_shape<attn::bfloat16>(s, args, fp32_peak)
              : run_backward_shape<float>(s, args, fp32_peak);
      result.ok = result.ok && r.check.ok();
      if (args.json) {
        result.json_rows.push_back(fmt::format(
            "{{\"model\": \"{}\", \"B\": {}, \"Hq\": {}, \"Hkv\": {}, "
            "\"S\": {}, \"D\": {}, \"causal\": {}, \"dtype\": \"{}\", "
            "\"median_ms\": {:.4f}, \"gflops\": {:.2f}, "
            "\"pct_fp32_peak\": {:.2f}, \"naive_ms\": {}, "
            "\"scratch_bytes\": {:.0f}, \"dq_max_rel_err\": {:.3g}, "
            "\"naive_dq_max_rel_err\": {:.3g}, \"ok\": {}}}",
            s.model, s.B, s.Hq, s.Hkv, s.S, s.D, s.causal, s.dtype, r.ms,
            r.gflops, r.pct,
            std::isnan(r.naive_ms) ? "null" : fmt::format("{:.4f}", r.naive_ms),
            r.scratch_mib * 1048576.0, r.check.err, r.check.naive_err,
            r.check.ok()));
        continue;
      }
      fmt::print(
          "{:<42} {:<8} {:>10.2f} {:>9.1f} {:>6.1f}% {:>10} {:>6.2f}MiB {:>17}\n",
          fmt::format("{} B{} H{}/{} S{} D{}{}", s.model, s.B, s.Hq, s.Hkv, s.S,
                      s.D, s.causal ? " causal" : ""),
          s.dtype, r.ms, r.gflops, r.pct,
          std::isnan(r.naive_ms) ? "-" : fmt::format("{:.1f}x", r.naive_ms / r.ms),
          r.scratch_mib,
          fmt::format("{:.1e}/{:.1e}{}", r.check.err, r.check.naive_err,
                      r.check.ok() ? "" : " FAILED"));
    }
  }
  return result;
}

}  // namespace attn_cli

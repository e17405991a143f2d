// `attn run`: reads q, k, v (and optional masks, slopes, key lengths) from
// .npy files, runs attn::attention and writes out / lse as .npy. With no
// input files it runs the built-in example: the original Transformer's
// attention (8 heads, d_k = 64, 128 tokens), causal and not, with the
// reference and the naive path, and prints how far apart they are.
#include "cli/run.h"

#include <attn/attn.h>
#include <fmt/core.h>

#include <chrono>
#include <cmath>
#include <random>
#include <vector>

namespace attn_cli {
namespace {

using attn::Error;
using attn::npy::Array;

double now_ms() {
  using clock = std::chrono::steady_clock;
  return std::chrono::duration<double, std::milli>(
             clock::now().time_since_epoch())
      .count();
}

std::string shape_str(const std::vector<int64_t>& shape) {
  std::string s = "[";
  for (size_t i = 0; i < shape.size(); ++i) {
    s += (i ? ", " : "") + std::to_string(shape[i]);
  }
  return s + "]";
}

attn::Algorithm parse_algorithm(const std::string& name) {
  if (name == "auto") return attn::Algorithm::kAuto;
  if (name == "reference") return attn::Algorithm::kReference;
  if (name == "naive") return attn::Algorithm::kNaive;
  if (name == "flash") return attn::Algorithm::kFlash;
  if (name == "decode") return attn::Algorithm::kDecode;
  throw Error(
      "--algorithm: expected auto, reference, naive, flash or decode, got '" +
      name + "'");
}

// A q/k/v tensor read from .npy: float data plus its logical view.
struct Input {
  std::vector<float> data;
  std::vector<int64_t> shape;  // as stored in the file
  attn::TensorView<float> view;
};

Input read_qkv(const std::string& flag, const std::string& path, bool bshd) {
  const Array a = attn::npy::load(path);
  if (a.shape.size() != 4) {
    throw Error(flag + " '" + path + "': expected a 4-D array " +
                (bshd ? "[B, S, H, D]" : "[B, H, S, D]") + ", got shape " +
                shape_str(a.shape));
  }
  if (a.dtype != attn::npy::DType::kFloat32) {
    throw Error(flag + " '" + path + "': expected dtype float32, got " +
                attn::npy::dtype_name(a.dtype));
  }
  Input in{a.to_float(), a.shape, {}};
  const auto& s = a.shape;
  in.view = bshd ? attn::TensorView<float>::bshd(in.data.data(), s[0], s[1],
                                                 s[2], s[3])
                 : attn::TensorView<float>::bhsd(in.data.data(), s[0], s[1],
                                                 s[2], s[3]);
  return in;
}

// A mask or bias file, NumPy-broadcast (shape right-aligned, missing leading
// axes of extent 1) onto [B, Hq, Sq, Skv]; validation checks the extents.
template <class T>
attn::TensorView<const T> mask_view(const Array& a, const std::string& path) {
  if (a.shape.size() > 4) {
    throw Error("--mask '" + path + "': expected at most 4 dimensions " +
                "broadcastable to [B, Hq, Sq, Skv], got shape " +
                shape_str(a.shape));
  }
  attn::Extents e{1, 1, 1, 1};
  std::copy(a.shape.begin(), a.shape.end(), e.end() - a.shape.size());
  attn::Strides st{e[1] * e[2] * e[3], e[2] * e[3], e[3], 1};
  return {reinterpret_cast<const T*>(a.data.data()), e, st};
}

// --linear: linear attention (attn/linear.h) on the inputs; no lse.
int run_linear(const RunArgs& args, const Input& q, const Input& k,
               const Input& v, bool bshd) {
  const auto refuse = [](bool given, const std::string& flag) {
    if (given) throw Error(flag + ": does not apply to --linear");
  };
  refuse(!args.window.empty(), "--window");
  refuse(args.softcap != 0.0f, "--softcap");
  refuse(args.scale.has_value(), "--scale");
  refuse(args.alibi || !args.alibi_slopes.empty(), "--alibi");
  refuse(!args.mask.empty(), "--mask");
  refuse(!args.key_len.empty(), "--key-len");
  refuse(!args.pattern.name.empty(), "--pattern");
  refuse(!args.lse.empty(), "--lse");
  refuse(args.align != "bottom-right", "--align");
  attn::LinearOptions o;
  o.causal = args.causal;
  o.feature_map = args.feature_map == "relu" ? attn::FeatureMap::kRelu
                                             : attn::FeatureMap::kEluPlusOne;
  o.num_threads = args.threads;
  if (args.algorithm == "reference") {
    o.algorithm = attn::LinearAlgorithm::kReference;
  } else if (args.algorithm == "naive") {
    o.algorithm = attn::LinearAlgorithm::kNaive;
  } else if (args.algorithm == "chunked") {
    o.algorithm = attn::LinearAlgorithm::kChunked;
  } else if (args.algorithm != "auto") {
    throw Error(
        "--algorithm: with --linear, expected auto, reference, naive or "
        "chunked, got '" +
        args.algorithm + "'");
  }
  const int64_t B = q.view.extent(attn::kBatch),
                Hq = q.view.extent(attn::kHeads),
                Sq = q.view.extent(attn::kSeq), Dv = v.view.extent(attn::kDim);
  std::vector<float> out(B * Hq * Sq * Dv);
  const auto out_view =
      bshd ? attn::TensorView<float>::bshd(out.data(), B, Sq, Hq, Dv)
           : attn::TensorView<float>::bhsd(out.data(), B, Hq, Sq, Dv);
  const double t0 = now_ms();
  const attn::LinearAlgorithm ran = attn::linear_attention(
      attn::TensorView<const float>(q.view),
      attn::TensorView<const float>(k.view),
      attn::TensorView<const float>(v.view), out_view, o);
  const double ms = now_ms() - t0;
  std::vector<int64_t> out_shape = q.shape;
  out_shape[3] = Dv;
  if (!args.out.empty()) attn::npy::save(args.out, out, out_shape);
  fmt::print(
      "attn run --linear: q {} k {} v {} ({}) -> out {} with {} in {:.3f} ms\n",
      shape_str(q.shape), shape_str(k.shape), shape_str(v.shape), args.layout,
      shape_str(out_shape), attn::linear_algorithm_name(ran), ms);
  return 0;
}

int builtin_example(const RunArgs& args) {
  const int64_t B = 1, H = 8, S = 128, D = 64;
  fmt::print(
      "attn {} run: built-in example, the original Transformer's "
      "attention\n",
      attn::version());
  fmt::print("q, k, v: [B={}, H={}, S={}, D={}] float32, fixed seed\n", B, H, S,
             D);
  std::mt19937 rng(2017);
  std::normal_distribution<float> normal;
  attn::Tensor<float> q(B, H, S, D), k(B, H, S, D), v(B, H, S, D);
  for (auto* t : {&q, &k, &v}) {
    for (int64_t i = 0; i < t->numel(); ++i) t->data()[i] = normal(rng);
  }
  fmt::print("{:<8} {:>16} {:>12} {:>12} {:>12}\n", "mask", "max|naive-ref|",
             "ref ms", "naive ms", "speed-up");
  for (bool causal : {false, true}) {
    attn::AttentionOptions o;
    o.causal = causal;
    o.num_threads = args.threads;
    attn::Tensor<float> ref(B, H, S, D), naive(B, H, S, D);
    o.algorithm = attn::Algorithm::kReference;
    double t0 = now_ms();
    attn::attention(q.cview(), k.cview(), v.cview(), ref.view(), o);
    const double ref_ms = now_ms() - t0;
    o.algorithm = attn::Algorithm::kNaive;
    t0 = now_ms();
    attn::attention(q.cview(), k.cview(), v.cview(), naive.view(), o);
    const double naive_ms = now_ms() - t0;
    double diff = 0.0;
    for (int64_t i = 0; i < ref.numel(); ++i) {
      diff = std::max(diff, double(std::fabs(ref.data()[i] - naive.data()[i])));
    }
    fmt::print("{:<8} {:>16.3g} {:>12.3f} {:>12.3f} {:>11.1f}x\n",
               causal ? "causal" : "none", diff, ref_ms, naive_ms,
               ref_ms / naive_ms);
    if (!(diff < 1e-4)) {
      fmt::print(stderr, "attn: error: naive and reference disagree\n");
      return 1;
    }
  }
  return 0;
}

}  // namespace

void add_run_options(CLI::App& cmd, RunArgs& a) {
  cmd.add_option("--q", a.q, "queries, float32 .npy [B, Hq, Sq, D]");
  cmd.add_option("--k", a.k, "keys, float32 .npy [B, Hkv, Skv, D]");
  cmd.add_option("--v", a.v, "values, float32 .npy [B, Hkv, Skv, Dv]");
  cmd.add_option("--layout", a.layout,
                 "bhsd (default) or bshd: axis order of q, k, v and out")
      ->check(CLI::IsMember({"bhsd", "bshd"}));
  cmd.add_flag("--causal", a.causal, "hide keys after each query's position");
  cmd.add_option("--align", a.align,
                 "bottom-right (default) or top-left: where query i sits "
                 "among the keys")
      ->check(CLI::IsMember({"bottom-right", "top-left"}));
  cmd.add_option("--window", a.window,
                 "L,R: only keys in [pos - L, pos + R] are visible; -1 = "
                 "unbounded");
  cmd.add_option("--softcap", a.softcap, "s = X * tanh(s / X); 0 disables");
  cmd.add_option("--scale", a.scale, "score scale (default 1/sqrt(D))");
  cmd.add_flag("--alibi", a.alibi, "ALiBi with the standard slopes for Hq");
  cmd.add_option("--alibi-slopes", a.alibi_slopes,
                 "ALiBi slopes, float32 .npy [Hq]")
      ->excludes(cmd.get_option("--alibi"));
  cmd.add_option("--mask", a.mask,
                 "bool (true = visible) or float32 (added to scores) .npy, "
                 "broadcastable to [B, Hq, Sq, Skv]");
  cmd.add_option("--key-len", a.key_len,
                 "valid keys per batch entry, int32/int64 .npy [B]");
  cmd.add_option(
         "--algorithm", a.algorithm,
         "auto (default), reference, naive, flash or decode; with --linear "
         "auto, reference, naive or chunked")
      ->check(CLI::IsMember(
          {"auto", "reference", "naive", "flash", "decode", "chunked"}));
  cmd.add_option("--threads", a.threads, "worker threads (0 = all cores)")
      ->check(CLI::Range(0, attn::kMaxThreads));
  add_pattern_options(cmd, a.pattern);
  cmd.add_flag(
      "--linear", a.linear,
      "linear attention (docs/linear.md) instead of softmax; with --causal, "
      "--feature-map, --algorithm auto|reference|naive|chunked");
  cmd.add_option("--feature-map", a.feature_map,
                 "--linear: elu (elu + 1) or relu")
      ->check(CLI::IsMember({"elu", "relu"}));
  cmd.add_option("--out", a.out, "output .npy, float32, in --layout order");
  cmd.add_option("--lse", a.lse, "log-sum-exp .npy, float32 [B, Hq, Sq]");
}

int run_command(const RunArgs& args) {
  const attn::Algorithm algorithm =
      args.linear ? attn::Algorithm::kAuto : parse_algorithm(args.algorithm);
  if (args.q.empty() && args.k.empty() && args.v.empty()) {
    if (args.linear) throw Error("--linear: give --q, --k and --v");
    if (algorithm != attn::Algorithm::kAuto) {
      throw Error(
          "--algorithm: the built-in example runs reference and "
          "naive side by side; give --q, --k and --v to choose one");
    }
    return builtin_example(args);
  }
  if (args.q.empty() || args.k.empty() || args.v.empty()) {
    throw Error(
        "--q, --k and --v must be given together (or none of them "
        "for the built-in example)");
  }
  // Outputs are checked before the computation, not found bad after it.
  if (!args.out.empty() && args.out == args.lse) {
    throw Error("--out and --lse name the same file '" + args.out + "'");
  }
  for (const std::string* path : {&args.out, &args.lse}) {
    if (!path->empty()) attn::npy::check_writable(*path);
  }
  const bool bshd = args.layout == "bshd";
  Input q = read_qkv("--q", args.q, bshd);
  Input k = read_qkv("--k", args.k, bshd);
  Input v = read_qkv("--v", args.v, bshd);
  if (args.linear) return run_linear(args, q, k, v, bshd);

  attn::AttentionOptions o;
  o.causal = args.causal;
  o.alignment = args.align == "top-left" ? attn::Alignment::kTopLeft
                                         : attn::Alignment::kBottomRight;
  if (!args.window.empty()) {
    const size_t comma = args.window.find(',');
    try {
      if (comma == std::string::npos) throw std::invalid_argument("comma");
      size_t used_l = 0, used_r = 0;
      const std::string l = args.window.substr(0, comma);
      const std::string r = args.window.substr(comma + 1);
      o.window_left = std::stoll(l, &used_l);
      o.window_right = std::stoll(r, &used_r);
      if (used_l != l.size() || used_r != r.size()) {
        throw std::invalid_argument("trailing");
      }
    } catch (const std::logic_error&) {
      throw Error(
          "--window: expected two integers L,R (e.g. 128,0 or -1,0), "
          "got '" +
          args.window + "'");
    }
  }
  // Documents carry their own causal rule, aligned within each document.
  PatternHolder pattern;
  o.pattern = make_pattern(args.pattern, args.causal, pattern);
  if (args.pattern.name == "documents") o.causal = false;
  o.softcap = args.softcap;
  o.scale = args.scale;
  o.algorithm = algorithm;
  o.num_threads = args.threads;

  const int64_t B = q.view.extent(attn::kBatch);
  const int64_t Hq = q.view.extent(attn::kHeads);
  const int64_t Sq = q.view.extent(attn::kSeq);
  const int64_t Dv = v.view.extent(attn::kDim);

  std::vector<float> slopes;
  if (args.alibi) slopes = attn::alibi_slopes(Hq);
  if (!args.alibi_slopes.empty()) {
    const Array a = attn::npy::load(args.alibi_slopes);
    if (a.shape.size() != 1 || a.dtype != attn::npy::DType::kFloat32) {
      throw Error("--alibi-slopes '" + args.alibi_slopes +
                  "': expected a float32 array [Hq], got " +
                  attn::npy::dtype_name(a.dtype) + " " + shape_str(a.shape));
    }
    slopes = a.to_float();
  }
  o.alibi_slopes = slopes;

  Array mask;
  if (!args.mask.empty()) {
    mask = attn::npy::load(args.mask);
    if (mask.dtype == attn::npy::DType::kBool) {
      o.mask = mask_view<bool>(mask, args.mask);
    } else if (mask.dtype == attn::npy::DType::kFloat32) {
      o.bias = mask_view<float>(mask, args.mask);
    } else {
      throw Error("--mask '" + args.mask + "': expected dtype bool or " +
                  "float32, got " + attn::npy::dtype_name(mask.dtype));
    }
  }
  std::vector<int64_t> key_len;
  if (!args.key_len.empty()) {
    const Array a = attn::npy::load(args.key_len);
    if (a.shape.size() != 1 || (a.dtype != attn::npy::DType::kInt32 &&
                                a.dtype != attn::npy::DType::kInt64)) {
      throw Error("--key-len '" + args.key_len +
                  "': expected an int32 or int64 array [B], got " +
                  attn::npy::dtype_name(a.dtype) + " " + shape_str(a.shape));
    }
    key_len = a.to_int64();
    // An empty file is not "no key lengths": it would silently mean that.
    if (static_cast<int64_t>(key_len.size()) != B) {
      throw Error("--key-len '" + args.key_len + "': expected " +
                  std::to_string(B) + " lengths (one per batch entry), got " +
                  std::to_string(key_len.size()));
    }
  }
  o.key_lengths = key_len;

  std::vector<float> out(B * Hq * Sq * Dv), lse(B * Hq * Sq);
  const auto out_view =
      bshd ? attn::TensorView<float>::bshd(out.data(), B, Sq, Hq, Dv)
           : attn::TensorView<float>::bhsd(out.data(), B, Hq, Sq, Dv);
  const double t0 = now_ms();
  attn::Algorithm ran;
  try {
    ran = attn::attention(
        q.view, k.view, v.view, out_view, o,
        attn::TensorView<float>::bhsd(lse.data(), B, Hq, Sq, 1));
  } catch (const Error& e) {
    // A head or length mismatch of q, k or v is often files in the other
    // axis order (not so a pattern's or mask's complaint about heads).
    const std::string what = e.what();
    const bool qkv = what.rfind("attn::attention: q:", 0) == 0 ||
                     what.rfind("attn::attention: k:", 0) == 0 ||
                     what.rfind("attn::attention: v:", 0) == 0;
    if (!qkv || (what.find("heads") == std::string::npos &&
                 what.find("length") == std::string::npos &&
                 what.find("seq") == std::string::npos)) {
      throw;
    }
    throw Error(what + " (the files are read as " +
                (bshd ? "[B, S, H, D] (--layout bshd)" : "[B, H, S, D]") +
                "; is --layout " + (bshd ? "bhsd" : "bshd") + " meant?)");
  }
  const double ms = now_ms() - t0;

  std::vector<int64_t> out_shape = q.shape;
  out_shape[3] = Dv;
  if (!args.out.empty()) attn::npy::save(args.out, out, out_shape);
  if (!args.lse.empty())
    attn::npy::save(args.lse, lse, std::vector<int64_t>{B, Hq, Sq});
  // The exact rewrite the algorithm ran through, if any (the same choice
  // validation made for the call).
  const attn::Rewrite rewrite =
      attn::estimate_work(q.view, k.view, v.view, o).rewrite;
  const std::string how =
      rewrite == attn::Rewrite::kNone
          ? std::string(attn::algorithm_name(ran))
          : fmt::format("{} ({})", attn::algorithm_name(ran),
                        attn::rewrite_name(rewrite));
  fmt::print("attn run: q {} k {} v {} ({}) -> out {} with {} in {:.3f} ms\n",
             shape_str(q.shape), shape_str(k.shape), shape_str(v.shape),
             args.layout, shape_str(out_shape), how, ms);
  return 0;
}

}  // namespace attn_cli

// `attn bench --model`: one transformer layer of two real models, with the
// time split between projections, attention, the MLP and the rest
// (attn::nn::Profile), float32, random weights:
//   bert-base   E 768, 12 heads, MLP 3072 GELU, post-LayerNorm, bidirectional,
//               prefill of --model-tokens tokens;
//   llama-3-8b  E 4096, 32 query / 8 KV heads of 128, SwiGLU 14336,
//               pre-RMSNorm, RoPE (theta 500000): prefill of --model-tokens
//               tokens, and decode steps of one token against a KV cache
//               holding --model-context tokens.
// Two targets are printed: BERT's attention part against the stand-alone
// flash kernel on the same shape (contiguous BHSD inputs), and Llama
// decode's projections + attention as bandwidth: bytes of Q/K/V/O weights
// plus the K and V read, over their time, against the measured read
// bandwidth. Every row is checked before it is timed: the layer's output
// with the naive attention path must match the timed path's.
#include <attn/attn.h>
#include <attn/nn.h>
#include <fmt/core.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "bench/support/machine.h"
#include "cli/bench.h"
#include "cli/bench_report.h"

namespace attn_cli {
namespace {

using attn::nn::Activation;
using attn::nn::BlockConfig;
using attn::nn::NormKind;
using attn::nn::Position;
using attn::nn::Profile;
using attn::nn::TransformerBlock;

// Uniform values in [-a, a] from a 64-bit LCG: 218M weights in well under
// a second, deterministic.
void fill(std::vector<float>& v, float a, uint64_t seed) {
  uint64_t s = seed * 0x9E3779B97F4A7C15ull + 1;
  for (float& x : v) {
    s = s * 6364136223846793005ull + 1442695040888963407ull;
    x = a * (static_cast<float>(s >> 40) / 8388608.0f - 1.0f);
  }
}

void randomize(TransformerBlock& b) {
  uint64_t seed = 1;
  for (attn::nn::Linear* l : {&b.self_attn.q_proj, &b.self_attn.kv_proj,
                              &b.self_attn.o_proj, &b.mlp.up, &b.mlp.down}) {
    fill(l->weight, 1.0f / std::sqrt(float(l->in_features)), seed++);
    fill(l->bias, 0.02f, seed++);
  }
}

BlockConfig bert_base() {
  BlockConfig c;
  c.attention = {.d_model = 768, .num_heads = 12};
  c.mlp = {.d_model = 768, .hidden = 3072, .activation = Activation::kGelu};
  c.norm_eps = 1e-12f;
  c.pre_norm = false;
  return c;
}

BlockConfig llama3_8b() {
  BlockConfig c;
  c.attention = {.d_model = 4096,
                 .num_heads = 32,
                 .num_kv_heads = 8,
                 .head_dim = 128,
                 .qkv_bias = false,
                 .out_bias = false,
                 .causal = true,
                 .position = Position::kRope};
  c.attention.rope.theta = 500000.0;
  c.mlp = {.d_model = 4096,
           .hidden = 14336,
           .activation = Activation::kSilu,
           .gated = true,
           .bias = false};
  c.norm = NormKind::kRMSNorm;
  return c;
}

double max_rel_diff(const std::vector<float>& a, const std::vector<float>& b) {
  double err = 0, scale = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    if (!std::isfinite(a[i])) return INFINITY;
    err = std::max(err, std::abs(double(a[i]) - b[i]));
    scale = std::max(scale, std::abs(double(b[i])));
  }
  return scale > 0 ? err / scale : err;
}

// Float32 sums in different orders; 1e-4 of the output scale is far above
// their error and far below any wrong result's.
constexpr double kCheckTolerance = 1e-4;

struct Row {
  std::string name;
  int64_t tokens = 0;
  double ms = 0;
  Profile split;  // per forward, ms
  double check = 0;
};

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v.empty() ? 0.0 : v[v.size() / 2];
}

// Times `forward(profile)` (median of the calls time_ms makes); each part
// of the split is the median of that part over the same calls.
Row time_layer(const std::string& name, int64_t tokens, int repeats,
               const std::function<void(Profile*)>& forward) {
  Row r;
  r.name = name;
  r.tokens = tokens;
  std::vector<double> proj, att, mlp, other;
  r.ms = time_ms(repeats, [&] {
    Profile p;
    forward(&p);
    proj.push_back(p.projections * 1e3);
    att.push_back(p.attention * 1e3);
    mlp.push_back(p.mlp * 1e3);
    other.push_back(p.other * 1e3);
  });
  // time_ms's first call is its untimed warm-up: not in the split either.
  for (auto* v : {&proj, &att, &mlp, &other}) {
    if (v->size() > 1) v->erase(v->begin());
  }
  r.split = {median(proj), median(att), median(mlp), median(other)};
  return r;
}

std::vector<Column> model_columns() {
  std::vector<Column> c = {{"layer", "layer", 28, true},
                           {"tokens", "tokens", 6},
                           {"median_ms", "ms", 10},
                           {"tokens_per_s", "tokens/s", 10}};
  for (const char* part : {"projections", "attention", "mlp", "other"}) {
    c.push_back({std::string(part) + "_ms", std::string(part) + " ms",
                 std::max<int>(9, std::string(part).size() + 3)});
    c.push_back({std::string(part) + "_pct", "%", 4});
  }
  c.push_back({"check", "check", 8});
  c.push_back({"ok", "", 0});
  return c;
}

std::vector<Cell> model_cells(const Row& r, bool ok) {
  const double sum =
      r.split.projections + r.split.attention + r.split.mlp + r.split.other;
  std::vector<Cell> c = {Cell::str(r.name), Cell::integer(r.tokens),
                         Cell::num(r.ms, "{:.2f}"),
                         Cell::num(r.tokens / (r.ms * 1e-3), "{:.1f}")};
  for (double part :
       {r.split.projections, r.split.attention, r.split.mlp, r.split.other}) {
    c.push_back(Cell::num(part, "{:.2f}"));
    c.push_back(Cell::num(sum > 0 ? 100.0 * part / sum : 0.0, "{:.0f}%"));
  }
  c.push_back(Cell::shown(fmt::format("{:.1e}{}", r.check, ok ? "" : " FAILED"),
                          r.check));
  c.push_back({ok ? "yes" : "no", ok});
  return c;
}

}  // namespace

int run_model_bench(const BenchArgs& args) {
  const int64_t S = args.model_tokens, ctx = args.model_context;
  if (S < 1) throw attn::Error("--model-tokens: must be >= 1");
  if (ctx < 1) throw attn::Error("--model-context: must be >= 1");
  bool ok = true;
  const std::string blas = attn::nn::blas_info();
  const bool blas_avx2_on_avx512 =
      (blas.find("core Haswell") != std::string::npos ||
       blas.find("core Zen") != std::string::npos) &&
      attn::active_simd_target().find("AVX3") != std::string::npos;
  if (!args.json) {
    fmt::print(
        "attn bench --model on {} | SIMD {} | all cores | float32, random "
        "weights | BLAS: {}\n",
        attn::bench::cpu_model_name(), attn::active_simd_target(), blas);
    if (blas_avx2_on_avx512) {
      fmt::print(
          "note: OpenBLAS runs its AVX2 kernels on this AVX-512 CPU; "
          "OPENBLAS_CORETYPE=SkylakeX selects the AVX-512 ones\n");
    }
  }
  std::vector<Row> rows;

  // --- BERT-base, prefill -------------------------------------------------
  double bert_attention_ms = 0, flash_ms = 0, flash_layout_ms = 0,
         flash_fresh_ms = 0;
  {
    TransformerBlock b(bert_base());
    randomize(b);
    std::vector<float> x0(static_cast<size_t>(S * 768)), x, ref;
    fill(x0, 1.0f, 99);
    auto view = [&](std::vector<float>& v) {
      return attn::TensorView<float>::bhsd(v.data(), 1, 1, S, 768);
    };
    ref = x0;
    b.forward(view(ref), {.self = {.algorithm = attn::Algorithm::kNaive}});
    x = x0;
    b.forward(view(x));
    Row r =
        time_layer("bert-base layer prefill", S, args.repeats, [&](Profile* p) {
          x = x0;
          b.forward(view(x), {.self = {.profile = p}});
        });
    r.check = max_rel_diff(x, ref);
    bert_attention_ms = r.split.attention;
    rows.push_back(r);

    // The stand-alone kernel on the same shape, contiguous [1, 12, S, 64].
    attn::Tensor<float> q(1, 12, S, 64), k(1, 12, S, 64), v(1, 12, S, 64),
        o(1, 12, S, 64);
    std::vector<float> qkv(static_cast<size_t>(3 * 12 * S * 64));
    fill(qkv, 1.0f, 7);
    std::copy_n(qkv.begin(), q.numel(), q.data());
    std::copy_n(qkv.begin() + q.numel(), k.numel(), k.data());
    std::copy_n(qkv.begin() + 2 * q.numel(), v.numel(), v.data());
    attn::Workspace ws;
    attn::AttentionOptions opt;
    opt.workspace = &ws;
    flash_ms = time_ms(args.repeats, [&] {
      attn::attention(q.cview(), k.cview(), v.cview(), o.view(), opt);
    });
    // The same kernel on the layer's layout: q and ctx as [S, 12 * 64]
    // rows, k and v interleaved in [S, 2 * 12 * 64] rows (BSHD strides).
    std::vector<float> qr(static_cast<size_t>(S * 768)),
        kvr(static_cast<size_t>(S * 1536)), cr(qr.size());
    fill(qr, 1.0f, 8);
    fill(kvr, 1.0f, 9);
    using CV = attn::TensorView<const float>;
    const CV qv(qr.data(), {1, 12, S, 64}, {S * 768, 64, 768, 1});
    const CV kv(kvr.data(), {1, 12, S, 64}, {S * 1536, 64, 1536, 1});
    const CV vv(kvr.data() + 768, {1, 12, S, 64}, {S * 1536, 64, 1536, 1});
    const attn::TensorView<float> cv(cr.data(), {1, 12, S, 64},
                                     {S * 768, 64, 768, 1});
    flash_layout_ms =
        time_ms(args.repeats, [&] { attn::attention(qv, kv, vv, cv, opt); });
    // The same again with q, k and v written by the layer's own projections
    // (x W^T + b, OpenBLAS) just before each call, only the attention call
    // timed: its inputs are where the layer's attention finds them, fresh
    // from the GEMMs rather than warm from the previous call. This is the
    // fair stand-alone figure for the layer's attention part.
    const auto xv =
        attn::TensorView<const float>::bhsd(x0.data(), 1, 1, S, 768);
    const auto qout = attn::TensorView<float>::bhsd(qr.data(), 1, 1, S, 768);
    const auto kvout = attn::TensorView<float>::bhsd(kvr.data(), 1, 1, S, 1536);
    flash_fresh_ms = time_ms(
        args.repeats, [&] { attn::attention(qv, kv, vv, cv, opt); },
        [&] {
          b.self_attn.q_proj.forward(xv, qout);
          b.self_attn.kv_proj.forward(xv, kvout);
        });
  }

  // --- Llama-3-8B-like: prefill, then decode against a long cache ---------
  double decode_bytes = 0, decode_proj_attn_ms = 0, bandwidth = 0;
  {
    const BlockConfig cfg = llama3_8b();
    TransformerBlock b(cfg);
    randomize(b);
    const int64_t E = 4096, steps = std::max(args.repeats, 3) + 2;
    attn::KVCacheOptions co;
    co.num_kv_heads = 8;
    co.head_dim = 128;
    co.max_sequences = 3;
    co.max_tokens = std::max(S, ctx) + 2 * steps + 2;
    co.page_size = 64;
    attn::KVCache cache(co);
    // Prefill S tokens into a fresh sequence.
    std::vector<float> x0(static_cast<size_t>(S * E)), x, ref;
    fill(x0, 1.0f, 11);
    auto view = [&](std::vector<float>& v, int64_t n) {
      return attn::TensorView<float>::bhsd(v.data(), 1, 1, n, E);
    };
    {
      // Checked on a short prefix (naive attention materialises S x S).
      const int64_t n = std::min<int64_t>(S, 256);
      std::vector<float> a(x0.begin(), x0.begin() + n * E), c = a;
      b.forward(view(a, n), {.self = {.algorithm = attn::Algorithm::kNaive}});
      b.forward(view(c, n));
      const double check = max_rel_diff(c, a);
      Row r = time_layer("llama-3-8b layer prefill", S, 1, [&](Profile* p) {
        x = x0;
        b.forward(view(x, S), {.self = {.profile = p}});
      });
      r.check = check;
      rows.push_back(r);
    }
    // A context of ctx tokens: random keys and values appended directly (a
    // prefill of ctx tokens would only cost time here).
    const int64_t seq = cache.add_sequence();
    {
      std::vector<float> kv(static_cast<size_t>(8 * ctx * 128));
      fill(kv, 1.0f, 12);
      const auto t =
          attn::TensorView<const float>::bhsd(kv.data(), 1, 8, ctx, 128);
      cache.append(0, std::vector<int64_t>{seq}, t, t);
    }
    // Check: one step with naive attention on a fork, the same step with
    // the default path on another fork.
    std::vector<float> tok(static_cast<size_t>(E)), a = tok, c;
    fill(tok, 1.0f, 13);
    {
      const int64_t f1 = cache.fork(seq), f2 = cache.fork(seq);
      a = tok;
      c = tok;
      const std::vector<int64_t> s1{f1}, s2{f2};
      b.forward(view(a, 1), {.self = {.cache = &cache,
                                      .sequences = s1,
                                      .algorithm = attn::Algorithm::kNaive}});
      b.forward(view(c, 1), {.self = {.cache = &cache, .sequences = s2}});
      cache.free_sequence(f1);
      cache.free_sequence(f2);
    }
    const std::vector<int64_t> s{seq};
    // The bandwidth just before and after the decode rows (the higher
    // one: this machine is shared and its bandwidth drifts).
    bandwidth =
        attn::bench::measure_read_bandwidth_gbs(0, std::size_t{256} << 20);
    Row r = time_layer(
        fmt::format("llama-3-8b layer decode @{}", ctx), 1, steps - 2,
        [&](Profile* p) {
          x = tok;
          b.forward(view(x, 1),
                    {.self = {.cache = &cache, .sequences = s, .profile = p}});
        });
    r.check = max_rel_diff(c, a);
    bandwidth = std::max(bandwidth, attn::bench::measure_read_bandwidth_gbs(
                                        0, std::size_t{256} << 20));
    rows.push_back(r);
    const double weights = 4.0 * (b.self_attn.q_proj.weight.size() +
                                  b.self_attn.kv_proj.weight.size() +
                                  b.self_attn.o_proj.weight.size());
    const double kv_bytes = 2.0 * 4.0 * 8 * 128 * double(ctx);
    decode_bytes = weights + kv_bytes;
    decode_proj_attn_ms = r.split.projections + r.split.attention;
  }

  Table table("", model_columns(), args.json);
  table.begin();
  for (const Row& r : rows) {
    const bool row_ok = r.check <= kCheckTolerance;
    ok = ok && row_ok;
    table.add(model_cells(r, row_ok));
    if (!row_ok) {
      fmt::print(stderr,
                 "attn bench --model: {} differs from its naive-attention run "
                 "by {:.2e} of the output scale\n",
                 r.name, r.check);
    }
  }
  const double gbs = decode_bytes / (decode_proj_attn_ms * 1e-3) / 1e9;
  if (args.json) {
    const nlohmann::json doc = {
        {"model",
         {{"cpu", attn::bench::cpu_model_name()},
          {"simd", attn::active_simd_target()},
          {"blas", blas},
          {"rows", table.rows()},
          {"bert_attention_ms", bert_attention_ms},
          {"bert_standalone_flash_ms", flash_ms},
          {"bert_standalone_flash_bshd_ms", flash_layout_ms},
          {"bert_standalone_flash_fresh_ms", flash_fresh_ms},
          {"llama_decode_bytes", decode_bytes},
          {"llama_decode_proj_attention_ms", decode_proj_attn_ms},
          {"llama_decode_gbs", gbs},
          {"read_bandwidth_gbs", bandwidth}}}};
    fmt::print("{}\n", doc.dump(2));
    return ok ? 0 : 1;
  }
  fmt::print(
      "\nbert-base attention part {:.2f} ms vs stand-alone flash {:.2f} ms "
      "on contiguous [1, 12, {}, 64]: {:.2f}x; the stand-alone kernel on "
      "the layer's BSHD layout: {:.2f} ms ({:.2f}x), and on it fresh from "
      "the layer's own projections: {:.2f} ms, the layer's part {:.2f}x of "
      "that (target <= 1.10)\n",
      bert_attention_ms, flash_ms, S,
      flash_ms > 0 ? bert_attention_ms / flash_ms : 0.0, flash_layout_ms,
      flash_ms > 0 ? flash_layout_ms / flash_ms : 0.0, flash_fresh_ms,
      flash_fresh_ms > 0 ? bert_attention_ms / flash_fresh_ms : 0.0);
  fmt::print(
      "llama decode projections + attention: {:.1f} MB (Q/K/V/O weights + "
      "K/V of {} tokens) in {:.2f} ms = {:.1f} GB/s, {:.0f}% of measured "
      "read bandwidth {:.1f} GB/s, the higher of two measurements around "
      "the decode rows (target >= 70%)\n",
      decode_bytes / 1e6, ctx, decode_proj_attn_ms, gbs,
      100.0 * gbs / bandwidth, bandwidth);
  return ok ? 0 : 1;
}

}  // namespace attn_cli

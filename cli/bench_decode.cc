// `attn bench` rows for generation against a KV cache: one new token per
// sequence (decode) against 4K / 16K / 128K cached tokens, batch 1 and 8,
// each cache type, reported as GB/s of KV bytes read against the measured
// read bandwidth and tokens per second; and chunked prefill (512 new tokens
// onto a 16K cache), reported as GFLOP/s against the fp32 peak. The cache
// is paged (16-token pages, as vLLM uses) unless the row says contiguous.
// Before timing, batch entry 0's output is checked against the float64
// reference (through the same cache API) with the rule "at most twice
// naive's error + 1e-6"; int8 rows are checked against the reference on
// the dequantised cache, which is what the kernel computes with.
#include <attn/attn.h>
#include <fmt/core.h>

#include <algorithm>
#include <cmath>
#include <map>
#include <random>
#include <vector>

#include "bench/support/int8_query.h"
#include "cli/bench.h"
#include "cli/bench_report.h"

namespace attn_cli {
namespace {

struct DecodeShape {
  std::string model;
  int64_t B, Hq, Hkv, D, cached, Sq;
  attn::CacheType type;
  int64_t page_size;        // 0 = contiguous
  bool bf16_query = false;  // queries and output bfloat16 (else float32)
};

std::vector<DecodeShape> llama_rows(std::initializer_list<int64_t> lengths,
                                    std::initializer_list<int64_t> batches) {
  std::vector<DecodeShape> rows;
  for (int64_t len : lengths)
    for (int64_t b : batches)
      for (attn::CacheType t :
           {attn::CacheType::kFloat32, attn::CacheType::kBFloat16,
            attn::CacheType::kFloat16, attn::CacheType::kInt8}) {
        rows.push_back({"llama3-8b", b, 32, 8, 128, len, 1, t, 16});
      }
  return rows;
}

const std::map<std::string, std::vector<DecodeShape>>& decode_presets() {
  using attn::CacheType;
  static const std::map<std::string, std::vector<DecodeShape>> p = {
      {"decode-quick",
       {{"llama3-8b", 1, 32, 8, 128, 16384, 1, CacheType::kBFloat16, 16},
        {"llama3-8b", 1, 32, 8, 128, 16384, 1, CacheType::kInt8, 16}}},
      {"decode",
       [] {
         auto rows = llama_rows({4096, 16384}, {1, 8});
         rows.push_back(
             {"llama3-8b", 1, 32, 8, 128, 16384, 1, CacheType::kBFloat16, 0});
         rows.push_back({"llama3-8b", 1, 32, 8, 128, 16384, 1,
                         CacheType::kBFloat16, 16, /*bf16_query=*/true});
         return rows;
       }()},
      {"decode-128k", llama_rows({131072}, {1, 8})},
      {"prefill-16k",
       {{"llama3-8b", 1, 32, 8, 128, 16384, 512, CacheType::kFloat32, 16},
        {"llama3-8b", 1, 32, 8, 128, 16384, 512, CacheType::kBFloat16, 16}}},
  };
  return p;
}

std::size_t element_bytes(attn::CacheType t) {
  return t == attn::CacheType::kFloat32 ? 4
         : t == attn::CacheType::kInt8  ? 1
                                        : 2;
}

// Fills every sequence with `len` tokens of random keys and values, in
// chunks cut from one random pool (offset per chunk and sequence).
void fill_cache(attn::KVCache& cache, const std::vector<int64_t>& seqs,
                int64_t len) {
  const auto& o = cache.options();
  const int64_t H = o.num_kv_heads, D = o.head_dim, chunk = 512;
  const int64_t B = seqs.size();
  std::mt19937 rng(321);
  std::normal_distribution<float> normal;
  std::vector<float> pool((chunk + 97) * H * D);
  for (float& x : pool) x = normal(rng);
  std::vector<float> k(B * H * chunk * D), v(k.size());
  for (int64_t t = 0; t < len; t += chunk) {
    const int64_t n = std::min(chunk, len - t);
    for (int64_t b = 0; b < B; ++b) {
      const int64_t shift = ((t / chunk) * 7 + b * 13) % 97;
      std::copy_n(pool.begin() + shift * D, H * n * D,
                  k.begin() + b * H * n * D);
      std::copy_n(pool.begin() + (96 - shift) * D, H * n * D,
                  v.begin() + b * H * n * D);
    }
    cache.append(0, seqs,
                 attn::TensorView<const float>::bhsd(k.data(), B, H, n, D),
                 attn::TensorView<const float>::bhsd(v.data(), B, H, n, D));
  }
}

// Max error of out relative to the reference's scale.
double max_rel_error(const std::vector<float>& out,
                     const std::vector<float>& want) {
  double err = 0, scale = 1e-6;
  for (size_t i = 0; i < out.size(); ++i) {
    scale = std::max(scale, double(std::fabs(want[i])));
    err = std::max(err, double(std::fabs(out[i] - want[i])));
  }
  return err / scale;
}

// Batch entry 0's output for one algorithm against the cache, with queries
// and output of type T (float, or bfloat16 from q's values, which are
// bfloat16 values already for those rows), as float.
template <class T>
std::vector<float> entry0_output(attn::TensorView<const float> q,
                                 const attn::KVCache& cache, int64_t seq,
                                 const attn::AttentionOptions& base,
                                 attn::Algorithm algorithm) {
  const int64_t Hq = q.extent(1), Sq = q.extent(2), D = q.extent(3);
  std::vector<T> qt(Hq * Sq * D), out(Hq * Sq * D);
  for (int64_t h = 0; h < Hq; ++h)
    for (int64_t i = 0; i < Sq; ++i)
      for (int64_t d = 0; d < D; ++d) {
        const float x = q.data()[h * q.strides()[1] + i * q.strides()[2] + d];
        if constexpr (std::is_same_v<T, float>) {
          qt[(h * Sq + i) * D + d] = x;
        } else {
          qt[(h * Sq + i) * D + d] = T::from_float(x);
        }
      }
  attn::AttentionOptions o = base;
  o.algorithm = algorithm;
  o.workspace = nullptr;
  attn::attention(attn::TensorView<const T>::bhsd(qt.data(), 1, Hq, Sq, D),
                  cache, 0, std::vector<int64_t>{seq},
                  attn::TensorView<T>::bhsd(out.data(), 1, Hq, Sq, D), o);
  std::vector<float> f(out.size());
  for (size_t i = 0; i < out.size(); ++i) {
    if constexpr (std::is_same_v<T, float>) {
      f[i] = out[i];
    } else {
      f[i] = out[i].to_float();
    }
  }
  return f;
}

}  // namespace

std::vector<std::string> decode_preset_names() {
  std::vector<std::string> names;
  for (const auto& [name, rows] : decode_presets()) names.push_back(name);
  return names;
}

bool is_decode_preset(const std::string& name) {
  return decode_presets().count(name) > 0;
}

SuiteResult run_decode_presets(const std::vector<std::string>& names,
                               const BenchArgs& args, double fp32_peak,
                               double bandwidth_gbs) {
  SuiteResult result;
  std::vector<DecodeShape> shapes;
  for (const std::string& n : names) {
    const auto& rows = decode_presets().at(n);
    shapes.insert(shapes.end(), rows.begin(), rows.end());
  }
  if (shapes.empty()) return result;
  Table table(
      fmt::format(
          "\nKV cache: decode (GB/s of KV read vs measured {:.1f} GB/s) and "
          "chunked prefill (GFLOP/s vs fp32 peak); query float32 unless the "
          "row says q bf16 (then bfloat16 queries and output); roof = "
          "max(KV bytes / bandwidth, FLOPs / fp32 peak), %roof = roof / "
          "median",
          bandwidth_gbs),
      {{"shape", "shape", 44, true},
       {"cache", "cache", 9, true},
       {"median_ms", "median ms", 9},
       {"kv_gbs", "KV GB/s", 9},
       {"pct_bandwidth", "%bw", 7},
       {"tokens_per_s", "tokens/s", 10},
       {"gflops", "GFLOP/s", 9},
       {"pct_fp32_peak", "%fp32", 7},
       {"roofline_ms", "roof ms", 9},
       {"pct_roofline", "%roof", 7},
       {"cache_bytes", "cache MiB", 10},
       {"max_rel_err", "", 0},
       {"naive_max_rel_err", "", 0},
       {"ok", "err/naive err", 17}},
      args.json);
  table.begin();
  for (DecodeShape s : shapes) {
    if (s.page_size && args.page_size) s.page_size = args.page_size;
    attn::KVCacheOptions co;
    co.num_kv_heads = s.Hkv;
    co.head_dim = s.D;
    co.type = s.type;
    co.max_sequences = s.B;
    co.max_tokens = s.cached + s.Sq;
    co.page_size = s.page_size;
    attn::KVCache cache(co);
    std::vector<int64_t> seqs;
    for (int64_t b = 0; b < s.B; ++b) seqs.push_back(cache.add_sequence());
    fill_cache(cache, seqs,
               s.cached + s.Sq);  // the Sq new tokens appended last
    std::vector<float> q(s.B * s.Hq * s.Sq * s.D);
    std::mt19937 rng(5);
    std::normal_distribution<float> normal;
    for (float& x : q) x = normal(rng);
    // bfloat16 rows: the float copy holds the bfloat16 values exactly.
    std::vector<attn::bfloat16> qb, outb;
    if (s.bf16_query) {
      for (float& x : q) {
        qb.push_back(attn::bfloat16::from_float(x));
        x = qb.back().to_float();
      }
      outb.resize(q.size());
    }
    const auto qv =
        attn::TensorView<const float>::bhsd(q.data(), s.B, s.Hq, s.Sq, s.D);
    std::vector<float> out(q.size());
    attn::Workspace ws;
    attn::AttentionOptions o;
    o.causal = true;  // bottom-right: decode sees everything, prefill is causal
    o.num_threads = args.threads;
    o.workspace = &ws;
    o.algorithm =
        s.Sq <= 16 ? attn::Algorithm::kDecode : attn::Algorithm::kFlash;
    auto call = [&] {
      if (s.bf16_query) {
        attn::attention(attn::TensorView<const attn::bfloat16>::bhsd(
                            qb.data(), s.B, s.Hq, s.Sq, s.D),
                        cache, 0, seqs,
                        attn::TensorView<attn::bfloat16>::bhsd(outb.data(), s.B,
                                                               s.Hq, s.Sq, s.D),
                        o);
        for (size_t i = 0; i < out.size(); ++i) out[i] = outb[i].to_float();
        return;
      }
      attn::attention(
          qv, cache, 0, seqs,
          attn::TensorView<float>::bhsd(out.data(), s.B, s.Hq, s.Sq, s.D), o);
    };
    call();
    // Check batch entry 0 (a slice of the queries for prefill rows).
    const int64_t rows = std::min<int64_t>(s.Sq, 16);
    const auto q0 = attn::TensorView<const float>(
        qv.row(0, 0, s.Sq - rows), {1, s.Hq, rows, s.D}, qv.strides());
    // Against an int8 cache, decode-sized calls compute with the query rows
    // quantised (bench/support/int8_query.h): the reference and naive get
    // that query.
    const std::vector<float> q0_quantised =
        attn::bench::int8_query_path(s.type, s.Hq / s.Hkv, s.Sq)
            ? attn::bench::int8_quantised_query(q0)
            : std::vector<float>();
    const auto q0_ref = q0_quantised.empty()
                            ? q0
                            : attn::TensorView<const float>::bhsd(
                                  q0_quantised.data(), 1, s.Hq, rows, s.D);
    std::vector<float> want(s.Hq * rows * s.D);
    {
      attn::AttentionOptions r = o;
      r.algorithm = attn::Algorithm::kReference;
      r.workspace = nullptr;
      // The slice's queries are the last `rows` of the chunk: with the
      // sequence shortened to end at them, bottom-right alignment holds.
      attn::attention(
          q0_ref, cache, 0, std::vector<int64_t>{seqs[0]},
          attn::TensorView<float>::bhsd(want.data(), 1, s.Hq, rows, s.D), r);
    }
    const double naive_err = max_rel_error(
        s.bf16_query ? entry0_output<attn::bfloat16>(q0_ref, cache, seqs[0], o,
                                                     attn::Algorithm::kNaive)
                     : entry0_output<float>(q0_ref, cache, seqs[0], o,
                                            attn::Algorithm::kNaive),
        want);
    std::vector<float> got(s.Hq * rows * s.D);
    for (int64_t h = 0; h < s.Hq; ++h)
      for (int64_t i = 0; i < rows; ++i)
        std::copy_n(&out[((h * s.Sq) + s.Sq - rows + i) * s.D], s.D,
                    &got[(h * rows + i) * s.D]);
    const double err = max_rel_error(got, want);
    const bool ok = err <= 2 * naive_err + 1e-6;
    result.ok = result.ok && ok;

    const double ms = time_ms(std::max(args.repeats, 20), call);
    // KV bytes read: every cached token of every sequence, K and V, plus
    // int8's two scales per token and head.
    const double tokens = double(s.B) * double(s.cached + s.Sq);
    double kv_bytes = tokens * s.Hkv * 2.0 * s.D * element_bytes(s.type);
    if (s.type == attn::CacheType::kInt8)
      kv_bytes += tokens * s.Hkv * 2.0 * sizeof(float);
    const double gbs = kv_bytes / (ms * 1e-3) / 1e9;
    // FLOPs: query i of the chunk sees cached + i + 1 keys.
    double pairs = 0;
    for (int64_t i = 0; i < s.Sq; ++i) pairs += double(s.cached + i + 1);
    const double gflops = 4.0 * s.B * s.Hq * pairs * s.D / (ms * 1e-3) / 1e9;
    const double tok_s = double(s.B) * s.Sq / (ms * 1e-3);
    const std::string shape = fmt::format(
        "{} B{} H{}/{} D{} {} cached{}{}{}", s.model, s.B, s.Hq, s.Hkv, s.D,
        s.cached, s.Sq > 1 ? fmt::format(" +{} chunk", s.Sq) : "",
        s.page_size ? fmt::format(" paged{}", s.page_size) : " contiguous",
        s.bf16_query ? " q bf16" : "");
    const double bw_pct = 100 * gbs / bandwidth_gbs,
                 fp_pct = 100 * gflops / fp32_peak;
    // The roofline: the longer of streaming the cache once at the measured
    // bandwidth and the products at the fp32 peak.
    const double roof_ms =
        1e3 * std::max(kv_bytes / (bandwidth_gbs * 1e9),
                       4.0 * s.B * s.Hq * pairs * s.D / (fp32_peak * 1e9));
    table.add(
        {Cell::str(shape), Cell::str(attn::cache_type_name(s.type)),
         Cell::num(ms, "{:.3f}"), Cell::num(gbs, "{:.1f}"),
         Cell::percent(bw_pct), Cell::num(tok_s, "{:.1f}"),
         Cell::num(gflops, "{:.1f}"), Cell::percent(fp_pct),
         Cell::num(roof_ms, "{:.3f}"), Cell::percent(100 * roof_ms / ms),
         Cell::shown(fmt::format("{:.0f}", cache.bytes_used() / 1048576.0),
                     cache.bytes_used()),
         Cell::num(err, "{:.3g}"), Cell::num(naive_err, "{:.3g}"),
         Cell::check(err, naive_err, ok)});
  }
  result.rows = table.rows();
  return result;
}

}  // namespace attn_cli

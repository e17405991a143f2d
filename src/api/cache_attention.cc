// Attention against a KV cache, and the public merge of partial results.
//
// Decode and flash read the cache's pages in place through PagedKV (the
// same work item as attention on views); reference and naive, the
// materialising oracles, get the keys copied out into contiguous tensors.
#include <algorithm>
#include <string>
#include <vector>

#include "attn/error.h"
#include "attn/kv_cache.h"
#include "src/api/validate.h"
#include "src/cache/kv_cache_impl.h"
#include "src/kernels/flash.h"
#include "src/kernels/merge.h"
#include "src/kernels/naive.h"
#include "src/reference/reference.h"
#include "src/util/check.h"
#include "src/util/parallel.h"

namespace attn {
namespace {

// Reference and naive: the cached keys as contiguous [B, Hkv, Skv, D]
// tensors of T (zeros past each sequence's end, hidden by key_lengths).
template <class T>
void run_materialised(detail::Problem<T> p, const KVCache& cache, int64_t layer,
                      std::span<const int64_t> sequences) {
  const detail::Shape& s = p.params.shape;
  Tensor<T> k(s.B, s.Hkv, s.Skv, s.D), v(s.B, s.Hkv, s.Skv, s.Dv);  // zeros
  for (int64_t b = 0; b < s.B; ++b) {
    const int64_t len = cache.length(sequences[b], layer);
    std::vector<float> kf(s.Hkv * len * s.D), vf(s.Hkv * len * s.Dv);
    cache.read(sequences[b], layer,
               TensorView<float>::bhsd(kf.data(), 1, s.Hkv, len, s.D),
               TensorView<float>::bhsd(vf.data(), 1, s.Hkv, len, s.Dv));
    for (int64_t h = 0; h < s.Hkv; ++h)
      for (int64_t j = 0; j < len; ++j) {
        for (int64_t d = 0; d < s.D; ++d)
          k.view()(b, h, j, d) = from_float<T>(kf[(h * len + j) * s.D + d]);
        for (int64_t d = 0; d < s.Dv; ++d)
          v.view()(b, h, j, d) = from_float<T>(vf[(h * len + j) * s.Dv + d]);
      }
  }
  p.k = k.view();
  p.v = v.view();
  if (p.params.algorithm == Algorithm::kReference) {
    reference::attention(p);
  } else {
    kernels::naive_attention(p);
  }
}

template <class T>
Algorithm run(TensorView<const T> q, const KVCache& cache, int64_t layer,
              std::span<const int64_t> sequences, TensorView<T> out,
              const AttentionOptions& options, TensorView<float> lse) {
  const util::Check check("attn::attention");
  const KVCache::Impl& c = cache.impl();
  check.in_range("layer", layer, 0, c.options.num_layers - 1);
  std::vector<int64_t> lengths;
  for (size_t b = 0; b < sequences.size(); ++b) {
    if (!cache.alive(sequences[b])) {
      check.fail("sequences", "entry " + std::to_string(b) + " (" +
                                  std::to_string(sequences[b]) +
                                  ") is not a live sequence of the cache");
    }
    for (size_t e = 0; e < b; ++e) {
      if (sequences[e] == sequences[b]) {
        // Allowed would be harmless, but it is almost always a bug.
        check.fail("sequences",
                   "id " + std::to_string(sequences[b]) + " listed twice");
      }
    }
    lengths.push_back(c.length(sequences[b], layer));
  }
  const CacheType type = c.options.type;
  const bool type_ok =
      std::is_same_v<T, float> ||
      (std::is_same_v<T, bfloat16> && type == CacheType::kBFloat16) ||
      (std::is_same_v<T, float16> && type == CacheType::kFloat16);
  if (!type_ok) {
    check.fail("q",
               std::string("16-bit queries need a cache of the same type; this "
                           "cache stores ") +
                   cache_type_name(type) + " (pass float32 queries)");
  }
  std::vector<int64_t> key_lengths;
  const detail::Problem<T> p = detail::validate_cached(
      check, q, detail::CacheShape{c.layout.Hkv, c.D, c.Dv}, lengths, out,
      options, lse, key_lengths);
  const Algorithm algorithm = p.params.algorithm;
  if (algorithm == Algorithm::kReference || algorithm == Algorithm::kNaive) {
    run_materialised(p, cache, layer, sequences);
    return algorithm;
  }
  const int64_t splits =
      algorithm == Algorithm::kDecode ? p.params.kv_splits : 1;
  auto go = [&](auto tag) {
    using E = decltype(tag);
    if constexpr (std::is_same_v<T, float> || std::is_same_v<T, E>) {
      kernels::flash_attention_paged<T, E>(
          p, c.template paged<E>(layer, sequences.data()), options.workspace,
          splits);
    }
  };
  switch (type) {
    case CacheType::kFloat32:
      go(float{});
      break;
    case CacheType::kBFloat16:
      go(bfloat16{});
      break;
    case CacheType::kFloat16:
      go(float16{});
      break;
    case CacheType::kInt8:
      go(int8_t{});
      break;
  }
  return algorithm;
}

}  // namespace

Algorithm attention(TensorView<const float> q, const KVCache& cache,
                    int64_t layer, std::span<const int64_t> sequences,
                    TensorView<float> out, const AttentionOptions& options,
                    TensorView<float> lse) {
  return run(q, cache, layer, sequences, out, options, lse);
}
Algorithm attention(TensorView<const bfloat16> q, const KVCache& cache,
                    int64_t layer, std::span<const int64_t> sequences,
                    TensorView<bfloat16> out, const AttentionOptions& options,
                    TensorView<float> lse) {
  return run(q, cache, layer, sequences, out, options, lse);
}
Algorithm attention(TensorView<const float16> q, const KVCache& cache,
                    int64_t layer, std::span<const int64_t> sequences,
                    TensorView<float16> out, const AttentionOptions& options,
                    TensorView<float> lse) {
  return run(q, cache, layer, sequences, out, options, lse);
}

void merge(std::span<const TensorView<const float>> outs,
           std::span<const TensorView<const float>> lses, TensorView<float> out,
           TensorView<float> lse) {
  const util::Check check("attn::merge");
  if (outs.empty()) check.fail("outs", "expected at least one partial result");
  if (lses.size() != outs.size()) {
    check.fail("lses", "expected one per partial output (" +
                           std::to_string(outs.size()) + "), got " +
                           std::to_string(lses.size()));
  }
  detail::check_view(check, "out", out);
  const Extents e = out.extents();
  const Extents e_lse{e[0], e[1], e[2], 1};
  detail::check_writable(check, "out", out);
  for (size_t s = 0; s < outs.size(); ++s) {
    const std::string n = "[" + std::to_string(s) + "]";
    detail::check_view(check, "outs" + n, outs[s]);
    detail::check_shape(check, "outs" + n, outs[s].extents(), e,
                        "the shape of out, [B, Hq, Sq, Dv]");
    detail::check_view(check, "lses" + n, lses[s]);
    detail::check_shape(check, "lses" + n, lses[s].extents(), e_lse,
                        "[B, Hq, Sq, 1] of out");
  }
  if (!lse.empty()) {
    detail::check_view(check, "lse", lse);
    detail::check_shape(check, "lse", lse.extents(), e_lse,
                        "[B, Hq, Sq, 1] of out");
    detail::check_writable(check, "lse", lse);
  }
  const int64_t n = static_cast<int64_t>(outs.size()), Dv = e[kDim];
  // Row by row: every part of a row is read before the row is written, so
  // out may be one of the outs (same view).
  std::vector<float> acc(Dv);
  for (int64_t b = 0; b < e[0]; ++b)
    for (int64_t h = 0; h < e[1]; ++h)
      for (int64_t i = 0; i < e[2]; ++i) {
        const float l = kernels::merge_row(
            n, Dv, [&](int64_t s) { return outs[s].row(b, h, i); },
            [&](int64_t s) { return lses[s](b, h, i, 0); }, acc.data());
        std::copy(acc.begin(), acc.end(), out.row(b, h, i));
        if (!lse.empty()) lse(b, h, i, 0) = l;
      }
}

}  // namespace attn

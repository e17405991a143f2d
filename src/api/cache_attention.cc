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
#include "src/util/parallel.h"

namespace attn {
namespace {

[[noreturn]] void fail(const std::string& arg, const std::string& what) {
  throw Error("attn::attention: " + arg + ": " + what);
}

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
  const KVCache::Impl& c = cache.impl();
  if (layer < 0 || layer >= c.options.num_layers) {
    fail("layer", "must be in [0, " + std::to_string(c.options.num_layers) +
                      "), got " + std::to_string(layer));
  }
  std::vector<int64_t> lengths;
  for (size_t b = 0; b < sequences.size(); ++b) {
    if (!cache.alive(sequences[b])) {
      fail("sequences", "entry " + std::to_string(b) + " (" +
                            std::to_string(sequences[b]) +
                            ") is not a live sequence of the cache");
    }
    for (size_t e = 0; e < b; ++e) {
      if (sequences[e] == sequences[b]) {
        // Allowed would be harmless, but it is almost always a bug.
        fail("sequences",
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
    fail("q", std::string("16-bit queries need a cache of the same type; this "
                          "cache stores ") +
                  cache_type_name(type) + " (pass float32 queries)");
  }
  std::vector<int64_t> key_lengths;
  const detail::Problem<T> p =
      detail::validate_cached(q, detail::CacheShape{c.layout.Hkv, c.D, c.Dv},
                              lengths, out, options, lse, key_lengths);
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
  auto bad = [](const std::string& arg, const std::string& what) {
    throw Error("attn::merge: " + arg + ": " + what);
  };
  if (outs.empty()) bad("outs", "expected at least one partial result");
  if (lses.size() != outs.size()) {
    bad("lses", "expected one per partial output (" +
                    std::to_string(outs.size()) + "), got " +
                    std::to_string(lses.size()));
  }
  const Extents e = out.extents();
  auto check = [&](const std::string& arg, auto view, int64_t dim) {
    if (view.data() == nullptr) bad(arg, "data pointer is null");
    for (int a = 0; a < 4; ++a) {
      const int64_t want = a == kDim ? dim : e[a];
      if (view.extent(a) != want || view.stride(a) < 0) {
        bad(arg, "expected extent " + std::to_string(want) + " along axis " +
                     std::to_string(a) + " (the shape of out, [B, Hq, Sq, " +
                     (a == kDim && dim == 1 ? std::string("1") : "Dv") +
                     "]) and non-negative strides");
      }
    }
    if (view.extent(kDim) > 1 && view.stride(kDim) != 1)
      bad(arg, "dim stride must be 1");
  };
  check("out", out, e[kDim]);
  if (detail::has_self_overlap(out.extents(), out.strides())) {
    bad("out", "strides make distinct elements share memory");
  }
  for (size_t s = 0; s < outs.size(); ++s) {
    check("outs[" + std::to_string(s) + "]", outs[s], e[kDim]);
    check("lses[" + std::to_string(s) + "]", lses[s], 1);
  }
  if (!lse.empty()) check("lse", lse, 1);
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

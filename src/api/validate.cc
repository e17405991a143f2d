// Argument checking for every attention entry point. Each names itself in
// a util::Check and composes the same rules: the views (src/core/views.h),
// the options (resolve.cc), the algorithm and its rewrite (choose.cc).
// Algorithms then trust the Problem they get.
#include "src/api/validate.h"

#include <algorithm>
#include <cstdint>
#include <initializer_list>
#include <string>
#include <vector>

#include "src/api/choose.h"
#include "src/api/resolve.h"

namespace attn::detail {
namespace {

// Hq a multiple of Hkv.
void check_group(const util::Check& check, const Shape& s,
                 const std::string& kv_heads) {
  if (s.Hq % s.Hkv != 0) {
    check.fail("q", "query heads (" + std::to_string(s.Hq) +
                        ") must be a multiple of " + kv_heads + " (" +
                        std::to_string(s.Hkv) + ")");
  }
}

// Hq a multiple of Hkv; out [B, Hq, Sq, Dv] and writable.
template <class T>
void check_group_and_out(const util::Check& check, const Shape& s,
                         const TensorView<T>& out, const std::string& kv_heads,
                         const std::string& dv_from) {
  check_group(check, s, kv_heads);
  check_extent(check, "out", out.extents(), kBatch, s.B, "batch of q");
  check_extent(check, "out", out.extents(), kHeads, s.Hq, "query heads of q");
  check_extent(check, "out", out.extents(), kSeq, s.Sq, "query length of q");
  check_extent(check, "out", out.extents(), kDim, s.Dv, dv_from);
  check_writable(check, "out", out);
}

// lse, when given: [B, Hq, Sq, 1], writable, clear of the other views.
// Returns the bytes it spans (empty when not given).
ByteRange check_lse(
    const util::Check& check, const TensorView<float>& lse, const Shape& s,
    std::initializer_list<std::pair<const char*, ByteRange>> others) {
  if (lse.empty()) return {};
  const ByteRange rl = check_view(check, "lse", lse);
  check_shape(check, "lse", lse.extents(), {s.B, s.Hq, s.Sq, 1},
              "[B, Hq, Sq, 1]");
  check_writable(check, "lse", lse);
  for (const auto& [name, r] : others) {
    if (rl.overlaps(r)) {
      check.fail("lse", std::string("memory overlaps ") + name);
    }
  }
  return rl;
}

// Outputs clear of what the options point to (mask, bias, ALiBi slopes,
// key lengths): a kernel reads those while it writes the outputs.
void check_clear_of_options(
    const util::Check& check, const AttentionOptions& o,
    std::initializer_list<std::pair<const char*, ByteRange>> outputs) {
  const auto span_range = [](const auto& s) -> ByteRange {
    if (s.empty()) return {};
    const auto lo = reinterpret_cast<uintptr_t>(s.data());
    return {lo, lo + s.size_bytes()};
  };
  const std::pair<const char*, ByteRange> inputs[] = {
      {"options.mask",
       o.mask.data() ? check_view(check, "options.mask", o.mask) : ByteRange{}},
      {"options.bias",
       o.bias.data() ? check_view(check, "options.bias", o.bias) : ByteRange{}},
      {"options.alibi_slopes", span_range(o.alibi_slopes)},
      {"options.key_lengths", span_range(o.key_lengths)},
  };
  for (const auto& [out_name, out_range] : outputs) {
    for (const auto& [in_name, in_range] : inputs) {
      if (out_range.overlaps(in_range)) {
        check.fail(out_name, std::string("memory overlaps input ") + in_name);
      }
    }
  }
}

// The views q, k, v and the shape they make; the byte ranges they span go
// to ranges[0 .. 2].
template <class T>
Shape check_inputs(const util::Check& check, TensorView<const T> q,
                   TensorView<const T> k, TensorView<const T> v,
                   ByteRange* ranges) {
  // Skv may be 0 (an empty KV cache): every row then has no visible key.
  const ViewRule keys{.empty_seq_ok = true};
  ranges[0] = check_view(check, "q", q);
  ranges[1] = check_view(check, "k", k, keys);
  ranges[2] = check_view(check, "v", v, keys);
  Shape s;
  s.B = q.extent(kBatch);
  s.Hq = q.extent(kHeads);
  s.Sq = q.extent(kSeq);
  s.D = q.extent(kDim);
  s.Hkv = k.extent(kHeads);
  s.Skv = k.extent(kSeq);
  s.Dv = v.extent(kDim);
  check_extent(check, "k", k.extents(), kBatch, s.B, "batch of q");
  check_extent(check, "k", k.extents(), kDim, s.D, "head dim of q");
  check_extent(check, "v", v.extents(), kBatch, s.B, "batch of q");
  // k's head count is checked against q before v is compared with k, so a
  // wrong k is blamed on k, not on v.
  if (s.Hq % s.Hkv != 0 && v.extent(kHeads) != s.Hkv) {
    check.fail("k", "KV heads (" + std::to_string(s.Hkv) +
                        ") must divide the query heads (" +
                        std::to_string(s.Hq) + ") and equal v's (" +
                        std::to_string(v.extent(kHeads)) + ")");
  }
  check_group(check, s, "the KV heads of k");
  check_extent(check, "v", v.extents(), kHeads, s.Hkv, "KV heads of k");
  check_extent(check, "v", v.extents(), kSeq, s.Skv, "key length of k");
  return s;
}

// validate_views() that also returns the byte ranges of q, k, v, out.
template <class T>
Shape check_views(const util::Check& check, TensorView<const T> q,
                  TensorView<const T> k, TensorView<const T> v,
                  TensorView<T> out, ByteRange* ranges) {
  const Shape s = check_inputs(check, q, k, v, ranges);
  ranges[3] = check_view(check, "out", out);
  check_group_and_out(check, s, out, "the KV heads of k and v",
                      "head dim of v");
  const char* names[3] = {"q", "k", "v"};
  for (int x = 0; x < 3; ++x) {
    if (ranges[3].overlaps(ranges[x])) {
      check.fail("out", std::string("memory overlaps input ") + names[x] +
                            " (attention cannot run in place)");
    }
  }
  return s;
}

// The gradients dq, dk, dv: shaped like q, k, v, writable, clear of each
// other and of the n inputs in `in` (named by in_names).
template <class T>
void check_gradients(const util::Check& check, TensorView<const T> q,
                     TensorView<const T> k, TensorView<const T> v,
                     TensorView<T> dq, TensorView<T> dk, TensorView<T> dv,
                     const ByteRange* in, const char* const* in_names, int n) {
  const ViewRule keys{.empty_seq_ok = true};
  const TensorView<T> grads[3] = {dq, dk, dv};
  const Extents want[3] = {q.extents(), k.extents(), v.extents()};
  const char* names[3] = {"dq", "dk", "dv"};
  ByteRange ranges[3];
  for (int g = 0; g < 3; ++g) {
    ranges[g] =
        check_view(check, names[g], grads[g], g == 0 ? ViewRule{} : keys);
    check_shape(check, names[g], grads[g].extents(), want[g],
                std::string("the shape of ") + (names[g] + 1));
    check_writable(check, names[g], grads[g]);
    for (int x = 0; x < n; ++x) {
      if (ranges[g].overlaps(in[x])) {
        check.fail(names[g],
                   std::string("memory overlaps input ") + in_names[x]);
      }
    }
  }
  for (int x = 0; x < 3; ++x) {
    for (int y = x + 1; y < 3; ++y) {
      if (ranges[x].overlaps(ranges[y]) &&
          !interleaved_disjoint(grads[x], grads[y]) &&
          !interleaved_disjoint(grads[y], grads[x])) {
        check.fail(names[y], std::string("memory overlaps output ") + names[x]);
      }
    }
  }
}

}  // namespace

template <class T>
Params validate_params(TensorView<const T> q, TensorView<const T> k,
                       TensorView<const T> v, const AttentionOptions& o) {
  const util::Check check("attn::estimate_work");
  Params p;
  ByteRange ranges[3];
  p.shape = check_inputs(check, q, k, v, ranges);
  resolve_options(check, o, p);
  choose_algorithm(check, o, kAutoOrder, std::is_same_v<T, float>, p);
  return p;
}

template <class T>
Shape validate_views(const util::Check& check, TensorView<const T> q,
                     TensorView<const T> k, TensorView<const T> v,
                     TensorView<T> out) {
  ByteRange ranges[4];
  return check_views(check, q, k, v, out, ranges);
}

template <class T>
Problem<T> validate(TensorView<const T> q, TensorView<const T> k,
                    TensorView<const T> v, TensorView<T> out,
                    const AttentionOptions& o, TensorView<float> lse) {
  const util::Check check("attn::attention");
  Problem<T> p;
  ByteRange r[4];
  p.params.shape = check_views(check, q, k, v, out, r);
  const ByteRange rl =
      check_lse(check, lse, p.params.shape,
                {{"q", r[0]}, {"k", r[1]}, {"v", r[2]}, {"out", r[3]}});
  resolve_options(check, o, p.params);
  check_clear_of_options(check, o, {{"out", r[3]}, {"lse", rl}});
  choose_algorithm(check, o, kAutoOrder, std::is_same_v<T, float>, p.params);
  p.q = q;
  p.k = k;
  p.v = v;
  p.out = out;
  p.lse = lse;
  return p;
}

template <class T>
Shape validate_linear_backward(const util::Check& check, TensorView<const T> q,
                               TensorView<const T> k, TensorView<const T> v,
                               TensorView<const T> dout, TensorView<T> dq,
                               TensorView<T> dk, TensorView<T> dv) {
  ByteRange in[4];
  const Shape s = check_inputs(check, q, k, v, in);
  in[3] = check_view(check, "dout", dout);
  check_shape(check, "dout", dout.extents(), {s.B, s.Hq, s.Sq, s.Dv},
              "[B, Hq, Sq, Dv]");
  const char* names[4] = {"q", "k", "v", "dout"};
  check_gradients(check, q, k, v, dq, dk, dv, in, names, 4);
  return s;
}

template <class T>
BackwardProblem<T> validate_backward(
    TensorView<const T> q, TensorView<const T> k, TensorView<const T> v,
    TensorView<const T> out, TensorView<const float> lse,
    TensorView<const T> dout, TensorView<T> dq, TensorView<T> dk,
    TensorView<T> dv, const AttentionOptions& o) {
  const util::Check check("attn::attention_backward");
  BackwardProblem<T> p;
  ByteRange in[6];
  Shape& s = p.params.shape;
  s = check_inputs(check, q, k, v, in);
  in[3] = check_view(check, "out", out);
  in[4] = check_view(check, "dout", dout);
  in[5] = check_view(check, "lse", lse);
  const Extents want_out{s.B, s.Hq, s.Sq, s.Dv};
  const Extents want_lse{s.B, s.Hq, s.Sq, 1};
  for (int a = 0; a < 4; ++a) {
    check_extent(check, "out", out.extents(), a, want_out[a],
                 "[B, Hq, Sq, Dv]");
    check_extent(check, "dout", dout.extents(), a, want_out[a],
                 "the shape of out");
    check_extent(check, "lse", lse.extents(), a, want_lse[a], "[B, Hq, Sq, 1]");
  }
  const char* names[6] = {"q", "k", "v", "out", "dout", "lse"};
  check_gradients(check, q, k, v, dq, dk, dv, in, names, 6);
  resolve_options(check, o, p.params);
  check_clear_of_options(
      check, o,
      {{"dq", check_view(check, "dq", dq)},
       {"dk", check_view(check, "dk", dk, {.empty_seq_ok = true})},
       {"dv", check_view(check, "dv", dv, {.empty_seq_ok = true})}});
  if (o.pattern.has_score() && !o.pattern.has_score_grad()) {
    check.fail("options.pattern",
               "a pattern with a score functor needs score_grad (d score / "
               "ds) for attention_backward");
  }
  if (o.kv_splits != 0) {
    check.fail("options.kv_splits",
               "applies to the forward decode algorithm only");
  }
  constexpr Algorithm kBackwardOrder[] = {Algorithm::kFlash};
  if (o.algorithm == Algorithm::kDecode) {
    check.fail("options.algorithm",
               "decode has no backward (use auto, flash, naive or reference)");
  }
  choose_algorithm(check, o, kBackwardOrder, /*may_rewrite=*/false, p.params);
  p.q = q;
  p.k = k;
  p.v = v;
  p.out = out;
  p.dout = dout;
  p.lse = lse;
  p.dq = dq;
  p.dk = dk;
  p.dv = dv;
  return p;
}

template <class T>
Problem<T> validate_cached(const util::Check& check, TensorView<const T> q,
                           const CacheShape& cache,
                           std::span<const int64_t> sequence_lengths,
                           TensorView<T> out, const AttentionOptions& o,
                           TensorView<float> lse,
                           std::vector<int64_t>& key_lengths) {
  Problem<T> p;
  const ByteRange rq = check_view(check, "q", q);
  const ByteRange ro = check_view(check, "out", out);
  Shape& s = p.params.shape;
  s.B = q.extent(kBatch);
  s.Hq = q.extent(kHeads);
  s.Sq = q.extent(kSeq);
  s.D = q.extent(kDim);
  s.Hkv = cache.Hkv;
  s.Dv = cache.Dv;
  if (static_cast<int64_t>(sequence_lengths.size()) != s.B) {
    check.fail("sequences", "expected one sequence id per batch entry of q (" +
                                std::to_string(s.B) + "), got " +
                                std::to_string(sequence_lengths.size()));
  }
  s.Skv = 0;
  for (int64_t len : sequence_lengths) s.Skv = std::max(s.Skv, len);
  check_extent(check, "q", q.extents(), kDim, cache.D, "head dim of the cache");
  check_group_and_out(check, s, out, "the cache's KV heads",
                      "value head dim of the cache");
  if (ro.overlaps(rq)) check.fail("out", "memory overlaps input q");
  const ByteRange rl = check_lse(check, lse, s, {{"q", rq}, {"out", ro}});

  Params& pr = p.params;
  resolve_options(check, o, pr);
  check_clear_of_options(check, o, {{"out", ro}, {"lse", rl}});
  key_lengths.assign(sequence_lengths.begin(), sequence_lengths.end());
  for (size_t b = 0; b < o.key_lengths.size(); ++b) {
    if (o.key_lengths[b] > sequence_lengths[b]) {
      check.fail("options.key_lengths",
                 "entry " + std::to_string(b) + " is " +
                     std::to_string(o.key_lengths[b]) +
                     ", more than the sequence's " +
                     std::to_string(sequence_lengths[b]) + " cached tokens");
    }
    key_lengths[b] = o.key_lengths[b];
  }
  pr.key_lengths = key_lengths;
  pr.per_sequence_offset = o.alignment == Alignment::kBottomRight;
  choose_algorithm(check, o, kAutoOrder, /*may_rewrite=*/false, pr);
  p.q = q;
  p.out = out;
  p.lse = lse;
  return p;
}

#define ATTN_INSTANTIATE(T)                                                    \
  template Problem<T> validate<T>(TensorView<const T>, TensorView<const T>,    \
                                  TensorView<const T>, TensorView<T>,          \
                                  const AttentionOptions&, TensorView<float>); \
  template Shape validate_views<T>(const util::Check&, TensorView<const T>,    \
                                   TensorView<const T>, TensorView<const T>,   \
                                   TensorView<T>);                             \
  template Params validate_params<T>(TensorView<const T>, TensorView<const T>, \
                                     TensorView<const T>,                      \
                                     const AttentionOptions&);                 \
  template Problem<T> validate_cached<T>(                                      \
      const util::Check&, TensorView<const T>, const CacheShape&,              \
      std::span<const int64_t>, TensorView<T>, const AttentionOptions&,        \
      TensorView<float>, std::vector<int64_t>&);                               \
  template BackwardProblem<T> validate_backward<T>(                            \
      TensorView<const T>, TensorView<const T>, TensorView<const T>,           \
      TensorView<const T>, TensorView<const float>, TensorView<const T>,       \
      TensorView<T>, TensorView<T>, TensorView<T>, const AttentionOptions&);   \
  template Shape validate_linear_backward<T>(                                  \
      const util::Check&, TensorView<const T>, TensorView<const T>,            \
      TensorView<const T>, TensorView<const T>, TensorView<T>, TensorView<T>,  \
      TensorView<T>);
ATTN_INSTANTIATE(float)
ATTN_INSTANTIATE(bfloat16)
ATTN_INSTANTIATE(float16)
#undef ATTN_INSTANTIATE

}  // namespace attn::detail

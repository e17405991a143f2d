// Argument checking for attn::attention. Every rule of the public contract
// that can be checked before work starts is checked here, once; algorithms
// then trust the Problem they get.
#include "src/api/validate.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <initializer_list>
#include <string>
#include <vector>

#include "attn/error.h"
#include "src/util/parallel.h"

namespace attn::detail {
namespace {

constexpr const char* kAxisName[4] = {"batch", "heads", "seq", "dim"};
// Extents and strides above this would let offset arithmetic overflow.
constexpr int64_t kMaxExtent = int64_t{1} << 40;
// No view may span more bytes than this (x86-64 addresses have 48 bits).
constexpr int64_t kMaxSpanBytes = int64_t{1} << 48;

// The public function whose arguments are being checked, for messages.
thread_local const char* entry_point = "attn::attention";

[[noreturn]] void fail(const std::string& arg, const std::string& what) {
  throw Error(std::string(entry_point) + ": " + arg + ": " + what);
}

// Sets entry_point for the duration of one check.
class EntryPoint {
 public:
  explicit EntryPoint(const char* name) : saved_(entry_point) {
    entry_point = name;
  }
  ~EntryPoint() { entry_point = saved_; }
  EntryPoint(const EntryPoint&) = delete;
  EntryPoint& operator=(const EntryPoint&) = delete;

 private:
  const char* saved_;
};

std::string shape_str(const Extents& e) {
  return "[" + std::to_string(e[0]) + ", " + std::to_string(e[1]) + ", " +
         std::to_string(e[2]) + ", " + std::to_string(e[3]) + "]";
}

// Checks what every view must satisfy: non-null data, extents >= 1 (the seq
// axis may be empty when empty_seq_ok), strides >= 0 and bounded, stride 1
// along dim when dim has more than one element. Returns the byte range the
// view spans.
template <class T>
ByteRange check_view(const std::string& arg, const TensorView<T>& view,
                     bool empty_seq_ok = false) {
  if (view.data() == nullptr) fail(arg, "data pointer is null");
  for (int a = 0; a < 4; ++a) {
    const int64_t e = view.extent(a), s = view.stride(a);
    const int64_t min_extent = (a == kSeq && empty_seq_ok) ? 0 : 1;
    if (e < min_extent || e > kMaxExtent) {
      fail(arg, std::string(kAxisName[a]) + " extent must be in [" +
                    std::to_string(min_extent) + ", 2^40], got " +
                    std::to_string(e));
    }
    if (s < 0 || s > kMaxExtent) {
      fail(arg, std::string(kAxisName[a]) +
                    " stride must be in [0, 2^40], got " + std::to_string(s));
    }
  }
  if (view.extent(kDim) > 1 && view.stride(kDim) != 1) {
    fail(arg, "dim stride must be 1 (innermost axis contiguous), got " +
                  std::to_string(view.stride(kDim)));
  }
  // Each extent and stride is at most 2^40, but their products are not:
  // the span must stay inside what a process can address.
  const std::optional<int64_t> last =
      last_offset(view.extents(), view.strides());
  if (!last || *last >= kMaxSpanBytes / int64_t{sizeof(T)}) {
    fail(arg, "shape " + shape_str(view.extents()) + " with strides " +
                  shape_str(view.strides()) + " spans more than 2^48 bytes");
  }
  const std::optional<int64_t> n = checked_numel(view.extents());
  if (!n || *n == 0) return {};
  const auto base = reinterpret_cast<uintptr_t>(view.data());
  return {base, base + static_cast<uintptr_t>(*last + 1) * sizeof(T)};
}

template <class T>
void check_no_self_overlap(const std::string& arg, const TensorView<T>& view) {
  if (has_self_overlap(view.extents(), view.strides())) {
    fail(arg,
         "strides make distinct elements share memory (an output "
         "needs non-overlapping strides)");
  }
}

void check_extent(const std::string& arg, const Extents& got, int axis,
                  int64_t expected, const std::string& from) {
  if (got[axis] != expected) {
    fail(arg, "expected " + std::string(kAxisName[axis]) + " extent " +
                  std::to_string(expected) + " (" + from + "), got " +
                  std::to_string(got[axis]) + " in shape " + shape_str(got));
  }
}

// A mask or bias must broadcast to [B, Hq, Sq, Skv]: each extent is the full
// one or 1. Returns the view with zero strides on broadcast axes.
template <class T>
TensorView<const T> broadcast(const std::string& arg, TensorView<const T> view,
                              const Shape& s) {
  if (view.data() == nullptr) return {};
  check_view(arg, view);
  const Extents full{s.B, s.Hq, s.Sq, s.Skv};
  Strides strides = view.strides();
  for (int a = 0; a < 4; ++a) {
    if (view.extent(a) == full[a]) continue;
    if (view.extent(a) != 1) {
      fail(arg, "shape " + shape_str(view.extents()) +
                    " does not broadcast to [B, Hq, Sq, Skv] = " +
                    shape_str(full) + ": " + kAxisName[a] + " extent must be " +
                    std::to_string(full[a]) + " or 1");
    }
    strides[a] = 0;
  }
  return TensorView<const T>(view.data(), full, strides);
}

// Hq a multiple of Hkv.
void check_group(const Shape& s, const std::string& kv_heads) {
  if (s.Hq % s.Hkv != 0) {
    fail("q", "query heads (" + std::to_string(s.Hq) +
                  ") must be a multiple of " + kv_heads + " (" +
                  std::to_string(s.Hkv) + ")");
  }
}

// Hq a multiple of Hkv; out [B, Hq, Sq, Dv] and writable.
template <class T>
void check_group_and_out(const Shape& s, const TensorView<T>& out,
                         const std::string& kv_heads,
                         const std::string& dv_from) {
  check_group(s, kv_heads);
  check_extent("out", out.extents(), kBatch, s.B, "batch of q");
  check_extent("out", out.extents(), kHeads, s.Hq, "query heads of q");
  check_extent("out", out.extents(), kSeq, s.Sq, "query length of q");
  check_extent("out", out.extents(), kDim, s.Dv, dv_from);
  check_no_self_overlap("out", out);
}

// lse, when given: [B, Hq, Sq, 1], writable, clear of the other views.
void check_lse(
    const TensorView<float>& lse, const Shape& s,
    std::initializer_list<std::pair<const char*, ByteRange>> others) {
  if (lse.empty()) return;
  const ByteRange rl = check_view("lse", lse);
  const Extents want{s.B, s.Hq, s.Sq, 1};
  for (int a = 0; a < 4; ++a) {
    check_extent("lse", lse.extents(), a, want[a], "[B, Hq, Sq, 1]");
  }
  check_no_self_overlap("lse", lse);
  for (const auto& [name, r] : others) {
    if (rl.overlaps(r)) fail("lse", std::string("memory overlaps ") + name);
  }
}

}  // namespace

std::optional<std::string> why_not(Algorithm algorithm, const Params& p) {
  const Shape& s = p.shape;
  // The materialising algorithms hold full score matrices; refuse rather
  // than fail an allocation halfway.
  const auto too_big = [](double bytes,
                          const char* what) -> std::optional<std::string> {
    if (bytes <= double(kMaxMaterialisedBytes)) return std::nullopt;
    return std::string(what) + " needs " + std::to_string(bytes / (1 << 30)) +
           " GiB of score matrices, over the " +
           std::to_string(kMaxMaterialisedBytes >> 30) + " GiB limit";
  };
  switch (algorithm) {
    case Algorithm::kReference:
      return too_big(2.0 * double(s.Sq) * double(s.Skv) * sizeof(double),
                     "reference (S and P in float64)");
    case Algorithm::kNaive:
      return too_big(double(util::resolve_threads(p.num_threads)) *
                         double(s.Sq) * double(s.Skv) * sizeof(float),
                     "naive (S in float32 per thread)");
    case Algorithm::kFlash:
      return std::nullopt;
    case Algorithm::kDecode:
      if (s.Sq > kDecodeMaxQueries) {
        return "decode is for few queries against many keys: Sq must be <= " +
               std::to_string(kDecodeMaxQueries) + ", got " +
               std::to_string(s.Sq) + " (flash serves longer ones)";
      }
      return std::nullopt;
    case Algorithm::kAuto:
      return "auto is resolved, never run";
  }
  return "unknown algorithm";
}

namespace {

// Every option except the algorithm, against the shape already in pr.
void resolve_options(const AttentionOptions& o, Params& pr) {
  const Shape& s = pr.shape;
  const float default_scale = 1.0f / std::sqrt(static_cast<float>(s.D));
  pr.scale = o.scale.value_or(default_scale);
  if (!std::isfinite(pr.scale)) {
    fail("options.scale", "must be finite, got " + std::to_string(pr.scale));
  }
  pr.causal = o.causal;
  if (o.alignment != Alignment::kBottomRight &&
      o.alignment != Alignment::kTopLeft) {
    fail("options.alignment", "must be kBottomRight or kTopLeft");
  }
  pr.offset = o.alignment == Alignment::kBottomRight ? s.Skv - s.Sq : 0;
  if (o.window_left < -1) {
    fail("options.window_left", "must be >= -1 (-1 = unbounded), got " +
                                    std::to_string(o.window_left));
  }
  if (o.window_right < -1) {
    fail("options.window_right", "must be >= -1 (-1 = unbounded), got " +
                                     std::to_string(o.window_right));
  }
  pr.window_left = o.window_left;
  pr.window_right = o.window_right;
  if (!(o.softcap >= 0.0f) || !std::isfinite(o.softcap)) {
    fail("options.softcap", "must be finite and >= 0 (0 disables), got " +
                                std::to_string(o.softcap));
  }
  pr.softcap = o.softcap;
  if (!o.alibi_slopes.empty()) {
    if (static_cast<int64_t>(o.alibi_slopes.size()) != s.Hq) {
      fail("options.alibi_slopes", "expected one slope per query head (" +
                                       std::to_string(s.Hq) + "), got " +
                                       std::to_string(o.alibi_slopes.size()));
    }
    for (size_t h = 0; h < o.alibi_slopes.size(); ++h) {
      if (!std::isfinite(o.alibi_slopes[h])) {
        fail("options.alibi_slopes",
             "slope " + std::to_string(h) + " is not finite");
      }
    }
  }
  pr.alibi_slopes = o.alibi_slopes;
  pr.mask = broadcast<bool>("options.mask", o.mask, s);
  pr.bias = broadcast<float>("options.bias", o.bias, s);
  if (!o.key_lengths.empty()) {
    if (static_cast<int64_t>(o.key_lengths.size()) != s.B) {
      fail("options.key_lengths", "expected one length per batch entry (" +
                                      std::to_string(s.B) + "), got " +
                                      std::to_string(o.key_lengths.size()));
    }
    for (size_t b = 0; b < o.key_lengths.size(); ++b) {
      const int64_t len = o.key_lengths[b];
      if (len < 0 || len > s.Skv) {
        fail("options.key_lengths",
             "entry " + std::to_string(b) + " is " + std::to_string(len) +
                 ", expected a value in [0, Skv = " + std::to_string(s.Skv) +
                 "]");
      }
    }
  }
  pr.key_lengths = o.key_lengths;
  pr.pattern = o.pattern;
  if (const std::string why = o.pattern.check(s.B, s.Hq, s.Sq, s.Skv);
      !why.empty()) {
    fail("options.pattern", why);
  }
  if (!(o.dropout_p >= 0.0f && o.dropout_p < 1.0f)) {
    fail("options.dropout_p",
         "must be in [0, 1), got " + std::to_string(o.dropout_p));
  }
  pr.dropout = detail::make_dropout(o.dropout_p, o.seed);
  if (o.num_threads < 0 || o.num_threads > kMaxThreads) {
    fail("options.num_threads",
         "must be in [0, " + std::to_string(kMaxThreads) +
             "] (0 = all cores), got " + std::to_string(o.num_threads));
  }
  pr.num_threads = o.num_threads;
  if (o.kv_splits < 0) {
    fail("options.kv_splits",
         "must be >= 0 (0 = automatic), got " + std::to_string(o.kv_splits));
  }
  pr.kv_splits = o.kv_splits;
}

// The algorithm: the first of `order` that can serve the call under kAuto,
// else the requested one if it can.
void choose_algorithm(const AttentionOptions& o,
                      std::span<const Algorithm> order, Params& pr) {
  if (o.algorithm == Algorithm::kAuto) {
    pr.algorithm = Algorithm::kAuto;
    std::string reasons;
    for (Algorithm a : order) {
      const auto reason = why_not(a, pr);
      if (!reason) {
        pr.algorithm = a;
        break;
      }
      reasons += std::string("; ") + algorithm_name(a) + ": " + *reason;
    }
    if (pr.algorithm == Algorithm::kAuto) {
      fail("options.algorithm",
           "auto found no algorithm that can serve this "
           "call" +
               reasons);
    }
  } else {
    if (auto reason = why_not(o.algorithm, pr)) {
      fail("options.algorithm", std::string(algorithm_name(o.algorithm)) +
                                    " cannot serve this call: " + *reason);
    }
    pr.algorithm = o.algorithm;
  }
  if (o.kv_splits > 0 && o.algorithm != Algorithm::kAuto &&
      o.algorithm != Algorithm::kDecode) {
    fail("options.kv_splits",
         std::string("applies to the decode algorithm only, not ") +
             algorithm_name(o.algorithm));
  }
}

// The views q, k, v and the shape they make; the byte ranges they span go
// to ranges[0 .. 2].
template <class T>
Shape check_inputs(TensorView<const T> q, TensorView<const T> k,
                   TensorView<const T> v, ByteRange* ranges) {
  // Skv may be 0 (an empty KV cache): every row then has no visible key.
  ranges[0] = check_view("q", q);
  ranges[1] = check_view("k", k, /*empty_seq_ok=*/true);
  ranges[2] = check_view("v", v, /*empty_seq_ok=*/true);
  Shape s;
  s.B = q.extent(kBatch);
  s.Hq = q.extent(kHeads);
  s.Sq = q.extent(kSeq);
  s.D = q.extent(kDim);
  s.Hkv = k.extent(kHeads);
  s.Skv = k.extent(kSeq);
  s.Dv = v.extent(kDim);
  check_extent("k", k.extents(), kBatch, s.B, "batch of q");
  check_extent("k", k.extents(), kDim, s.D, "head dim of q");
  check_extent("v", v.extents(), kBatch, s.B, "batch of q");
  // k's head count is checked against q before v is compared with k, so a
  // wrong k is blamed on k, not on v.
  if (s.Hq % s.Hkv != 0 && v.extent(kHeads) != s.Hkv) {
    fail("k", "KV heads (" + std::to_string(s.Hkv) +
                  ") must divide the query heads (" + std::to_string(s.Hq) +
                  ") and equal v's (" + std::to_string(v.extent(kHeads)) + ")");
  }
  check_group(s, "the KV heads of k");
  check_extent("v", v.extents(), kHeads, s.Hkv, "KV heads of k");
  check_extent("v", v.extents(), kSeq, s.Skv, "key length of k");
  return s;
}

}  // namespace

template <class T>
Params validate_params(TensorView<const T> q, TensorView<const T> k,
                       TensorView<const T> v, const AttentionOptions& o) {
  Params p;
  ByteRange ranges[3];
  p.shape = check_inputs(q, k, v, ranges);
  resolve_options(o, p);
  choose_algorithm(o, kAutoOrder, p);
  return p;
}

template <class T>
Shape validate_views(TensorView<const T> q, TensorView<const T> k,
                     TensorView<const T> v, TensorView<T> out,
                     const char* entry) {
  const EntryPoint named(entry);
  ByteRange ranges[3];
  const Shape s = check_inputs(q, k, v, ranges);
  const ByteRange ro = check_view("out", out);
  check_group_and_out(s, out, "the KV heads of k and v", "head dim of v");
  const char* names[3] = {"q", "k", "v"};
  for (int x = 0; x < 3; ++x) {
    if (ro.overlaps(ranges[x])) {
      fail("out", std::string("memory overlaps input ") + names[x] +
                      " (attention cannot run in place)");
    }
  }
  return s;
}

template <class T>
Problem<T> validate(TensorView<const T> q, TensorView<const T> k,
                    TensorView<const T> v, TensorView<T> out,
                    const AttentionOptions& o, TensorView<float> lse) {
  Problem<T> p;
  Shape& s = p.params.shape;
  s = validate_views(q, k, v, out, "attn::attention");
  // Their byte ranges again (views already checked), for lse's overlaps.
  const ByteRange rq = check_view("q", q), rk = check_view("k", k, true),
                  rv = check_view("v", v, true), ro = check_view("out", out);
  check_lse(lse, s, {{"q", rq}, {"k", rk}, {"v", rv}, {"out", ro}});

  resolve_options(o, p.params);
  choose_algorithm(o, kAutoOrder, p.params);

  p.q = q;
  p.k = k;
  p.v = v;
  p.out = out;
  p.lse = lse;
  return p;
}

namespace {

// The gradients dq, dk, dv: shaped like q, k, v, writable, clear of each
// other and of the n inputs in `in` (named by in_names).
template <class T>
void check_gradients(TensorView<const T> q, TensorView<const T> k,
                     TensorView<const T> v, TensorView<T> dq, TensorView<T> dk,
                     TensorView<T> dv, const ByteRange* in,
                     const char* const* in_names, int n) {
  struct Grad {
    const char* name;
    Extents extents, want;
    Strides strides;
    ByteRange range;
  };
  Grad grads[3] = {
      {"dq", dq.extents(), q.extents(), dq.strides(), {}},
      {"dk", dk.extents(), k.extents(), dk.strides(), {}},
      {"dv", dv.extents(), v.extents(), dv.strides(), {}},
  };
  grads[0].range = check_view("dq", dq);
  grads[1].range = check_view("dk", dk, /*empty_seq_ok=*/true);
  grads[2].range = check_view("dv", dv, /*empty_seq_ok=*/true);
  for (Grad& g : grads) {
    for (int a = 0; a < 4; ++a) {
      check_extent(g.name, g.extents, a, g.want[a],
                   std::string("the shape of ") + (g.name + 1));
    }
    if (has_self_overlap(g.extents, g.strides)) {
      fail(g.name,
           "strides make distinct elements share memory (an output needs "
           "non-overlapping strides)");
    }
    for (int x = 0; x < n; ++x) {
      if (g.range.overlaps(in[x])) {
        fail(g.name, std::string("memory overlaps input ") + in_names[x]);
      }
    }
  }
  const TensorView<T> views[3] = {dq, dk, dv};
  for (int x = 0; x < 3; ++x) {
    for (int y = x + 1; y < 3; ++y) {
      if (grads[x].range.overlaps(grads[y].range) &&
          !interleaved_disjoint(views[x], views[y]) &&
          !interleaved_disjoint(views[y], views[x])) {
        fail(grads[y].name,
             std::string("memory overlaps output ") + grads[x].name);
      }
    }
  }
}

}  // namespace

template <class T>
Shape validate_linear_backward(TensorView<const T> q, TensorView<const T> k,
                               TensorView<const T> v, TensorView<const T> dout,
                               TensorView<T> dq, TensorView<T> dk,
                               TensorView<T> dv, const char* entry) {
  const EntryPoint named(entry);
  ByteRange in[4];
  const Shape s = check_inputs(q, k, v, in);
  in[3] = check_view("dout", dout);
  const Extents want_out{s.B, s.Hq, s.Sq, s.Dv};
  for (int a = 0; a < 4; ++a) {
    check_extent("dout", dout.extents(), a, want_out[a], "[B, Hq, Sq, Dv]");
  }
  const char* names[4] = {"q", "k", "v", "dout"};
  check_gradients(q, k, v, dq, dk, dv, in, names, 4);
  return s;
}

template <class T>
BackwardProblem<T> validate_backward(
    TensorView<const T> q, TensorView<const T> k, TensorView<const T> v,
    TensorView<const T> out, TensorView<const float> lse,
    TensorView<const T> dout, TensorView<T> dq, TensorView<T> dk,
    TensorView<T> dv, const AttentionOptions& o) {
  const EntryPoint named("attn::attention_backward");
  BackwardProblem<T> p;
  ByteRange in[6];
  Shape& s = p.params.shape;
  s = check_inputs(q, k, v, in);
  in[3] = check_view("out", out);
  in[4] = check_view("dout", dout);
  in[5] = check_view("lse", lse);
  const Extents want_out{s.B, s.Hq, s.Sq, s.Dv};
  const Extents want_lse{s.B, s.Hq, s.Sq, 1};
  for (int a = 0; a < 4; ++a) {
    check_extent("out", out.extents(), a, want_out[a], "[B, Hq, Sq, Dv]");
    check_extent("dout", dout.extents(), a, want_out[a], "the shape of out");
    check_extent("lse", lse.extents(), a, want_lse[a], "[B, Hq, Sq, 1]");
  }
  const char* names[6] = {"q", "k", "v", "out", "dout", "lse"};
  check_gradients(q, k, v, dq, dk, dv, in, names, 6);
  resolve_options(o, p.params);
  if (o.pattern.has_score() && !o.pattern.has_score_grad()) {
    fail("options.pattern",
         "a pattern with a score functor needs score_grad (d score / ds) "
         "for attention_backward");
  }
  if (o.kv_splits != 0) {
    fail("options.kv_splits", "applies to the forward decode algorithm only");
  }
  constexpr Algorithm kBackwardOrder[] = {Algorithm::kFlash};
  if (o.algorithm == Algorithm::kDecode) {
    fail("options.algorithm",
         "decode has no backward (use auto, flash, naive or reference)");
  }
  choose_algorithm(o, kBackwardOrder, p.params);
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
Problem<T> validate_cached(TensorView<const T> q, const CacheShape& cache,
                           std::span<const int64_t> sequence_lengths,
                           TensorView<T> out, const AttentionOptions& o,
                           TensorView<float> lse,
                           std::vector<int64_t>& key_lengths) {
  Problem<T> p;
  const ByteRange rq = check_view("q", q);
  const ByteRange ro = check_view("out", out);
  Shape& s = p.params.shape;
  s.B = q.extent(kBatch);
  s.Hq = q.extent(kHeads);
  s.Sq = q.extent(kSeq);
  s.D = q.extent(kDim);
  s.Hkv = cache.Hkv;
  s.Dv = cache.Dv;
  if (static_cast<int64_t>(sequence_lengths.size()) != s.B) {
    fail("sequences", "expected one sequence id per batch entry of q (" +
                          std::to_string(s.B) + "), got " +
                          std::to_string(sequence_lengths.size()));
  }
  s.Skv = 0;
  for (int64_t len : sequence_lengths) s.Skv = std::max(s.Skv, len);
  check_extent("q", q.extents(), kDim, cache.D, "head dim of the cache");
  check_group_and_out(s, out, "the cache's KV heads",
                      "value head dim of the cache");
  if (ro.overlaps(rq)) fail("out", "memory overlaps input q");
  check_lse(lse, s, {{"q", rq}, {"out", ro}});

  Params& pr = p.params;
  resolve_options(o, pr);
  key_lengths.assign(sequence_lengths.begin(), sequence_lengths.end());
  for (size_t b = 0; b < o.key_lengths.size(); ++b) {
    if (o.key_lengths[b] > sequence_lengths[b]) {
      fail("options.key_lengths", "entry " + std::to_string(b) + " is " +
                                      std::to_string(o.key_lengths[b]) +
                                      ", more than the sequence's " +
                                      std::to_string(sequence_lengths[b]) +
                                      " cached tokens");
    }
    key_lengths[b] = o.key_lengths[b];
  }
  pr.key_lengths = key_lengths;
  pr.per_sequence_offset = o.alignment == Alignment::kBottomRight;
  choose_algorithm(o, kAutoOrder, pr);
  p.q = q;
  p.out = out;
  p.lse = lse;
  return p;
}

#define ATTN_INSTANTIATE(T)                                                    \
  template Problem<T> validate<T>(TensorView<const T>, TensorView<const T>,    \
                                  TensorView<const T>, TensorView<T>,          \
                                  const AttentionOptions&, TensorView<float>); \
  template Shape validate_views<T>(TensorView<const T>, TensorView<const T>,   \
                                   TensorView<const T>, TensorView<T>,         \
                                   const char*);                               \
  template Params validate_params<T>(TensorView<const T>, TensorView<const T>, \
                                     TensorView<const T>,                      \
                                     const AttentionOptions&);                 \
  template Problem<T> validate_cached<T>(                                      \
      TensorView<const T>, const CacheShape&, std::span<const int64_t>,        \
      TensorView<T>, const AttentionOptions&, TensorView<float>,               \
      std::vector<int64_t>&);                                                  \
  template BackwardProblem<T> validate_backward<T>(                            \
      TensorView<const T>, TensorView<const T>, TensorView<const T>,           \
      TensorView<const T>, TensorView<const float>, TensorView<const T>,       \
      TensorView<T>, TensorView<T>, TensorView<T>, const AttentionOptions&);   \
  template Shape validate_linear_backward<T>(                                  \
      TensorView<const T>, TensorView<const T>, TensorView<const T>,           \
      TensorView<const T>, TensorView<T>, TensorView<T>, TensorView<T>,        \
      const char*);
ATTN_INSTANTIATE(float)
ATTN_INSTANTIATE(bfloat16)
ATTN_INSTANTIATE(float16)
#undef ATTN_INSTANTIATE

}  // namespace attn::detail

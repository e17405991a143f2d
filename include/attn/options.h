// AttentionOptions: everything about an attention call except the tensors.
//
// A plain struct with defaults; the exact meaning of every field, and the
// order in which they apply, is docs/semantics.md.
#ifndef ATTN_OPTIONS_H_
#define ATTN_OPTIONS_H_

#include <cstdint>
#include <optional>
#include <span>

#include "attn/pattern.h"
#include "attn/tensor.h"
#include "attn/workspace.h"

namespace attn {

enum class Algorithm {
  kAuto,       // the fastest algorithm that serves the call
  kReference,  // float64 oracle: materialises S and P (docs/semantics.md)
  kNaive,      // float32, materialises S per (batch, head): the baseline
  kFlash,      // tiled online softmax, O(1) memory in Sq and Skv
  kDecode,     // flash with the keys split across workers and the partial
               // results merged by log-sum-exp: few queries, many keys
};

// An exact rewrite an algorithm runs a call through: the same result
// (every key in exactly one part, the parts merged by log-sum-exp) at less
// cost. attn::estimate_work reports the one a call would take.
enum class Rewrite {
  kNone,
  // A SparseStrided pattern under flash: the local window, then dense
  // causal attention within each residue class i mod stride (strided views
  // of q, k and v), instead of a tile walk that visits nearly every tile.
  kStridedClasses,
};

// Which corner of the [Sq, Skv] score matrix the causal diagonal, the window
// and ALiBi distances are anchored to. Bottom-right: query i sits at key
// position i + (Skv - Sq), right for chunked prefill and decoding against a
// KV cache. Top-left: query i sits at key position i.
enum class Alignment { kBottomRight, kTopLeft };

// The most worker threads any call accepts (num_threads beyond it is an
// error, not a request the OS may fail to start).
inline constexpr int kMaxThreads = 1024;

struct AttentionOptions {
  // Multiplies q·k. Unset: 1 / sqrt(D).
  std::optional<float> scale;
  // Key j is hidden from query i when j > i + offset.
  bool causal = false;
  Alignment alignment = Alignment::kBottomRight;
  // Keys outside [i + offset - window_left, i + offset + window_right] are
  // hidden; -1 leaves that side unbounded.
  int64_t window_left = -1;
  int64_t window_right = -1;
  // > 0: s = softcap * tanh(s / softcap). 0 disables.
  float softcap = 0.0f;
  // Empty, or one slope per query head: s -= slope[h] * |i + offset - j|.
  std::span<const float> alibi_slopes;
  // Boolean mask (true = visible), broadcastable to [B, Hq, Sq, Skv]: each
  // extent equals the full one or 1 (then the stride is ignored).
  TensorView<const bool> mask;
  // Additive mask, broadcastable to [B, Hq, Sq, Skv] the same way.
  TensorView<const float> bias;
  // A mask and/or score functor (attn/pattern.h, docs/patterns.md), on top
  // of every rule above; the object it refers to must outlive the call.
  // Built-in ones: attn/patterns.h.
  Pattern pattern;
  // Empty, or one valid key count per batch entry, each in [0, Skv]: keys
  // at j >= key_lengths[b] are hidden (padding / variable length).
  std::span<const int64_t> key_lengths;
  // Training-time dropout (docs/semantics.md rule 7), p in [0, 1): each
  // probability is dropped with chance p, kept ones scaled by 1 / (1 - p),
  // the mask drawn from (seed, b, h, i, j) alone.
  float dropout_p = 0.0f;
  uint64_t seed = 0;
  Algorithm algorithm = Algorithm::kAuto;
  // Decode only: how many chunks the keys are split into (each a multiple
  // of 64 keys; fewer when there are fewer key tiles). 0 picks from the
  // shape alone, so results never depend on the thread count. Ignored when
  // kAuto picks another algorithm; an error with an explicit other one.
  int kv_splits = 0;
  // Worker threads, in [0, kMaxThreads]; 0 uses every core OpenMP reports.
  int num_threads = 0;
  // Scratch for tiled algorithms, reused across calls; null: a per-thread
  // default (attn/workspace.h).
  Workspace* workspace = nullptr;
};

const char* algorithm_name(Algorithm a);
const char* rewrite_name(Rewrite r);  // "none", "strided classes"

}  // namespace attn

#endif  // ATTN_OPTIONS_H_

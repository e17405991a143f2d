// Sampling and the generation loops of attn/nn/model.h.
//   greedy:  argmax_v logits[v]
//   sampled: p = softmax(logits / T) over the top_k ids, cut to the
//            smallest most-likely set with mass >= top_p, renormalised;
//            the id where the cumulative mass passes u * total, with
//            u = uniform(seed, step) from a counter-based hash.
// Generation: one prefill per prompt into the KV cache, then one batched
// decode step (all unfinished prompts) per new token.
#include <algorithm>
#include <cmath>
#include <numeric>

#include "attn/nn/model.h"
#include "src/nn/rows.h"

namespace attn::nn {
namespace {

uint64_t mix64(uint64_t z) {  // splitmix64's finaliser
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

// Uniform in [0, 1) from (seed, step) alone.
double uniform(uint64_t seed, uint64_t step) {
  const uint64_t z = mix64(mix64(seed + 0x9E3779B97F4A7C15ull) ^ step);
  return static_cast<double>(z >> 11) * 0x1.0p-53;
}

void check_sampling(const SamplingOptions& o, const util::Check& where) {
  if (!(o.temperature >= 0.0f) || !std::isfinite(o.temperature)) {
    where.fail("temperature must be finite and >= 0");
  }
  if (o.top_k < 0) where.fail("top_k must be >= 0");
  if (!(o.top_p > 0.0f && o.top_p <= 1.0f)) {
    where.fail("top_p must be in (0, 1]");
  }
}

struct SequenceGuard {  // frees the sequences a generation added
  KVCache* cache;
  std::vector<int64_t> ids;
  ~SequenceGuard() {
    for (int64_t id : ids) cache->free_sequence(id);
  }
};

// Generation stops at non-finite logits (the hidden states before the LM
// head were checked, so the head's weights made them).
void check_logits(std::span<const float> logits, const util::Check& where) {
  for (size_t v = 0; v < logits.size(); ++v) {
    if (!std::isfinite(logits[v])) {
      where.fail("the LM head produced a non-finite logit: logits[" +
                 std::to_string(v) + "] = " + std::to_string(logits[v]) +
                 " (check the checkpoint's weights)");
    }
  }
}

}  // namespace

int64_t sample(std::span<const float> logits, const SamplingOptions& o,
               uint64_t step) {
  const util::Check where("attn::nn::sample");
  check_sampling(o, where);
  if (logits.empty()) where.fail("logits is empty");
  for (size_t v = 0; v < logits.size(); ++v) {
    if (std::isnan(logits[v])) {
      where.fail("logits[" + std::to_string(v) + "] is NaN");
    }
  }
  if (o.temperature == 0.0f) {
    return std::max_element(logits.begin(), logits.end()) - logits.begin();
  }
  const int64_t V = static_cast<int64_t>(logits.size());
  std::vector<int64_t> ids(static_cast<size_t>(V));
  std::iota(ids.begin(), ids.end(), 0);
  // Most likely first, lower id first on ties.
  auto order = [&](int64_t a, int64_t b) {
    return logits[a] > logits[b] || (logits[a] == logits[b] && a < b);
  };
  const int64_t k = o.top_k == 0 ? V : std::min(o.top_k, V);
  std::partial_sort(ids.begin(), ids.begin() + k, ids.end(), order);
  ids.resize(static_cast<size_t>(k));
  const double top = logits[ids[0]];
  if (std::isinf(top) && top < 0) {
    where.fail("every logit is -inf");
  }
  std::vector<double> p(ids.size());
  double total = 0;
  for (size_t i = 0; i < ids.size(); ++i) {
    p[i] = std::isinf(top) ? (logits[ids[i]] == top ? 1.0 : 0.0)
                           : std::exp((logits[ids[i]] - top) / o.temperature);
    total += p[i];
  }
  if (o.top_p < 1.0f) {
    double mass = 0;
    size_t keep = 0;
    while (keep < p.size() && mass < o.top_p * total) mass += p[keep++];
    p.resize(std::max<size_t>(keep, 1));
    total = std::accumulate(p.begin(), p.end(), 0.0);
  }
  const double target = uniform(o.seed, step) * total;
  double mass = 0;
  for (size_t i = 0; i < p.size(); ++i) {
    mass += p[i];
    if (target < mass) return ids[i];
  }
  // Rounding left target at the total: the last id with mass.
  for (size_t i = p.size(); i-- > 0;) {
    if (p[i] > 0) return ids[i];
  }
  return ids[0];
}

// Far beyond any context a KV cache can hold, small enough that prompt
// length + max_new_tokens cannot overflow.
constexpr int64_t kMaxNewTokens = int64_t{1} << 30;

std::vector<std::vector<int64_t>> generate(
    const TransformerModel& model,
    std::span<const std::vector<int64_t>> prompts,
    const GenerateOptions& options, KVCache* cache) {
  const util::Check where("attn::nn::generate");
  check_sampling(options.sampling, where);
  if (options.max_new_tokens < 0 || options.max_new_tokens > kMaxNewTokens) {
    where.fail("max_new_tokens must be in [0, 2^30], got " +
               std::to_string(options.max_new_tokens));
  }
  if (!model.config().lm_head) where.fail("the model has no LM head");
  const int64_t n = static_cast<int64_t>(prompts.size());
  int64_t longest = 0;
  for (int64_t i = 0; i < n; ++i) {
    if (prompts[i].empty()) {
      where.fail("prompts[" + std::to_string(i) + "] is empty");
    }
    longest =
        std::max<int64_t>(longest, static_cast<int64_t>(prompts[i].size()));
  }
  std::vector<std::vector<int64_t>> result(static_cast<size_t>(n));
  if (n == 0 || options.max_new_tokens == 0) return result;
  std::optional<KVCache> own;
  if (cache == nullptr) {
    // Blamed on what the caller chose, not on KVCacheOptions it never saw.
    try {
      own.emplace(model.make_cache(n, longest + options.max_new_tokens));
    } catch (const Error& e) {
      where.fail("a KV cache for " + std::to_string(n) + " prompts of up to " +
                 std::to_string(longest) + " + " +
                 std::to_string(options.max_new_tokens) +
                 " tokens (max_new_tokens) cannot be made: " + e.what());
    }
    cache = &*own;
  }
  const int64_t E = model.d_model(), V = model.config().vocab_size;
  SequenceGuard guard{cache, {}};
  std::vector<int64_t> seq(static_cast<size_t>(n));
  std::vector<float> hidden, logits(static_cast<size_t>(n * V));
  auto seed_of = [&](int64_t i) {
    return mix64(options.sampling.seed ^ mix64(static_cast<uint64_t>(i)));
  };
  auto draw = [&](int64_t i, const float* row) {
    check_logits({row, static_cast<size_t>(V)}, where);
    SamplingOptions s = options.sampling;
    s.seed = seed_of(i);
    const int64_t step = static_cast<int64_t>(result[i].size());
    result[i].push_back(sample({row, static_cast<size_t>(V)}, s, step));
  };
  // Prefill each prompt; its last row's logits give the first token.
  for (int64_t i = 0; i < n; ++i) {
    seq[i] = cache->add_sequence();
    guard.ids.push_back(seq[i]);
    const int64_t L = static_cast<int64_t>(prompts[i].size());
    hidden.resize(static_cast<size_t>(L * E));
    const std::vector<int64_t> one{seq[i]};
    model.forward(prompts[i],
                  TensorView<float>::bhsd(hidden.data(), 1, 1, L, E),
                  {.cache = cache, .sequences = one, .check_finite = true});
    model.logits(
        TensorView<const float>::bhsd(hidden.data() + (L - 1) * E, 1, 1, 1, E),
        TensorView<float>::bhsd(logits.data(), 1, 1, 1, V));
    draw(i, logits.data());
  }
  auto done = [&](int64_t i) {
    return static_cast<int64_t>(result[i].size()) >= options.max_new_tokens ||
           (options.eos && result[i].back() == *options.eos);
  };
  for (;;) {
    std::vector<int64_t> active, tokens, seqs;
    for (int64_t i = 0; i < n; ++i) {
      if (!done(i)) {
        active.push_back(i);
        tokens.push_back(result[i].back());
        seqs.push_back(seq[i]);
      }
    }
    if (active.empty()) break;
    const int64_t B = static_cast<int64_t>(active.size());
    hidden.resize(static_cast<size_t>(B * E));
    model.forward(tokens, TensorView<float>::bhsd(hidden.data(), B, 1, 1, E),
                  {.cache = cache, .sequences = seqs, .check_finite = true});
    model.logits(TensorView<const float>::bhsd(hidden.data(), B, 1, 1, E),
                 TensorView<float>::bhsd(logits.data(), B, 1, 1, V));
    for (int64_t a = 0; a < B; ++a) draw(active[a], logits.data() + a * V);
  }
  return result;
}

std::vector<std::vector<int64_t>> generate(
    const EncoderDecoderModel& model,
    std::span<const std::vector<int64_t>> inputs, int64_t start,
    const GenerateOptions& options) {
  const util::Check where("attn::nn::generate");
  check_sampling(options.sampling, where);
  if (options.max_new_tokens < 0 || options.max_new_tokens > kMaxNewTokens) {
    where.fail("max_new_tokens must be in [0, 2^30], got " +
               std::to_string(options.max_new_tokens));
  }
  const TransformerModel& enc = model.encoder;
  const TransformerModel& dec = model.decoder;
  if (!dec.config().lm_head) where.fail("the decoder has no LM head");
  if (enc.d_model() != dec.d_model()) {
    where.fail("encoder and decoder widths differ");
  }
  const int64_t E = dec.d_model(), V = dec.config().vocab_size;
  std::vector<std::vector<int64_t>> result(inputs.size());
  if (options.max_new_tokens == 0) return result;
  KVCache cache = dec.make_cache(1, options.max_new_tokens);
  std::vector<float> memory, hidden(static_cast<size_t>(E)),
      logits(static_cast<size_t>(V));
  for (size_t i = 0; i < inputs.size(); ++i) {
    const int64_t L = static_cast<int64_t>(inputs[i].size());
    if (L == 0) where.fail("inputs[" + std::to_string(i) + "] is empty");
    memory.resize(static_cast<size_t>(L * E));
    const auto mem = TensorView<float>::bhsd(memory.data(), 1, 1, L, E);
    enc.forward(inputs[i], mem, {.check_finite = true});
    const std::vector<MemoryKV> kv = dec.project_memory(mem);
    const int64_t s = cache.add_sequence();
    SequenceGuard guard{&cache, {s}};
    const std::vector<int64_t> seqs{s};
    SamplingOptions so = options.sampling;
    so.seed = mix64(options.sampling.seed ^ mix64(i));
    int64_t token = start;
    for (int64_t t = 0; t < options.max_new_tokens; ++t) {
      const std::vector<int64_t> tok{token};
      dec.forward(tok, TensorView<float>::bhsd(hidden.data(), 1, 1, 1, E),
                  {.cache = &cache,
                   .sequences = seqs,
                   .memory_kv = kv,
                   .check_finite = true});
      dec.logits(TensorView<const float>::bhsd(hidden.data(), 1, 1, 1, E),
                 TensorView<float>::bhsd(logits.data(), 1, 1, 1, V));
      check_logits(logits, where);
      token = sample(logits, so, static_cast<uint64_t>(t));
      result[i].push_back(token);
      if (options.eos && token == *options.eos) break;
    }
  }
  return result;
}

}  // namespace attn::nn

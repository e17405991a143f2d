// Generation with a paged, bfloat16 KV cache: a prompt prefilled in one
// call, then tokens decoded one at a time, with a fork for a second sample.
// Checks that the last decode step equals the same row of one causal
// attention over the whole sequence (through the cache, computed by the
// float64 reference).
//
//   per step: q [1, Hq=8, n, D=64]; k, v [1, Hkv=2, n, 64] appended first
#include <attn/attn.h>

#include <cmath>
#include <cstdio>
#include <random>
#include <vector>

#include "common.h"

int main() {
  const int64_t Hq = 8, Hkv = 2, D = 64, prompt = 40, steps = 8;
  std::mt19937 rng(7);
  auto random_buffer = [&](int64_t n) {
    return example::random_buffer(n, rng);
  };
  using View = attn::TensorView<const float>;

  attn::KVCacheOptions co;
  co.num_kv_heads = Hkv;
  co.head_dim = D;
  co.type = attn::CacheType::kBFloat16;
  co.max_sequences = 2;
  co.max_tokens = 256;
  co.page_size = 16;
  co.rope = attn::RopeOptions{};  // keys rotated as they are appended
  attn::KVCache cache(co);
  const std::vector<int64_t> seq = {cache.add_sequence()};

  attn::AttentionOptions causal;
  causal.causal = true;  // bottom-right: new queries are the last positions
  std::vector<float> q, out;
  auto step = [&](int64_t n, const std::vector<int64_t>& ids) {
    q = random_buffer(Hq * n * D);
    attn::apply_rope(attn::TensorView<float>::bhsd(q.data(), 1, Hq, n, D),
                     *co.rope, cache.length(ids[0]));
    const std::vector<float> k = random_buffer(Hkv * n * D),
                             v = random_buffer(Hkv * n * D);
    cache.append(0, ids, View::bhsd(k.data(), 1, Hkv, n, D),
                 View::bhsd(v.data(), 1, Hkv, n, D));
    out.assign(Hq * n * D, 0.0f);
    return attn::attention(
        View::bhsd(q.data(), 1, Hq, n, D), cache, 0, ids,
        attn::TensorView<float>::bhsd(out.data(), 1, Hq, n, D), causal);
  };
  const attn::Algorithm prefill = step(prompt, seq);
  const std::vector<int64_t> sample = {
      cache.fork(seq[0])};  // shares the prompt
  attn::Algorithm decode = prefill;
  for (int64_t t = 0; t < steps; ++t) {
    decode = step(1, seq);
    step(1, sample);
  }
  // The last step of `seq` again, by the float64 reference over the cache.
  decode = step(1, seq);
  std::vector<float> expected(Hq * D);
  attn::AttentionOptions reference = causal;
  reference.algorithm = attn::Algorithm::kReference;
  attn::attention(View::bhsd(q.data(), 1, Hq, 1, D), cache, 0, seq,
                  attn::TensorView<float>::bhsd(expected.data(), 1, Hq, 1, D),
                  reference);
  double err = 0;
  for (size_t i = 0; i < out.size(); ++i)
    err = std::max(err, double(std::fabs(out[i] - expected[i])));
  std::printf(
      "prefill %s, decode %s: %lld + %lld tokens, fork at %lld; cache %.1f KiB "
      "used of "
      "%.1f; last step max |decode - reference| = %.2e\n",
      attn::algorithm_name(prefill), attn::algorithm_name(decode),
      static_cast<long long>(prompt), static_cast<long long>(steps + 1),
      static_cast<long long>(prompt), cache.bytes_used() / 1024.0,
      cache.bytes_reserved() / 1024.0, err);
  return err < 1e-5 ? 0 : 1;
}

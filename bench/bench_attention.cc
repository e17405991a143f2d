// Microbenchmarks of the attention algorithms (Google Benchmark).
//
//   build/release/bench/attn_microbench --benchmark_filter=Naive
//
// Each benchmark checks its output against the reference on the same inputs
// before timing (a wrong fast result is worth nothing), then reports
// GFLOP (per second) counting 4 * B * Hq * Sq * Skv * D (halved for causal).
#include <attn/attn.h>
#include <benchmark/benchmark.h>

#include <cmath>
#include <random>

namespace {

void fill(attn::Tensor<float>& t, unsigned seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> normal;
  for (int64_t i = 0; i < t.numel(); ++i) t.data()[i] = normal(rng);
}

// Args: B, H, S, D, causal, threads.
void BM_Attention(benchmark::State& state, attn::Algorithm algorithm) {
  const int64_t B = state.range(0), H = state.range(1), S = state.range(2),
                D = state.range(3);
  const bool causal = state.range(4) != 0;
  attn::Tensor<float> q(B, H, S, D), k(B, H, S, D), v(B, H, S, D),
      out(B, H, S, D), ref(B, H, S, D);
  fill(q, 1);
  fill(k, 2);
  fill(v, 3);
  attn::AttentionOptions o;
  o.causal = causal;
  o.num_threads = static_cast<int>(state.range(5));
  o.algorithm = algorithm;
  attn::attention(q.cview(), k.cview(), v.cview(), out.view(), o);
  if (S <= 512) {  // the reference is slow: check the smaller shapes
    attn::AttentionOptions r = o;
    r.algorithm = attn::Algorithm::kReference;
    attn::attention(q.cview(), k.cview(), v.cview(), ref.view(), r);
    double err = 0;
    for (int64_t i = 0; i < out.numel(); ++i) {
      err = std::max(err, double(std::fabs(out.data()[i] - ref.data()[i])));
    }
    if (!(err < 1e-4)) {
      state.SkipWithError("result differs from the reference");
      return;
    }
  }
  for (auto _ : state) {
    attn::attention(q.cview(), k.cview(), v.cview(), out.view(), o);
    benchmark::ClobberMemory();
  }
  const double flops = 4.0 * B * H * S * S * D * (causal ? 0.5 : 1.0);
  state.counters["GFLOP"] = benchmark::Counter(flops * state.iterations() / 1e9,
                                               benchmark::Counter::kIsRate);
}

void Shapes(benchmark::internal::Benchmark* b) {
  b->ArgNames({"B", "H", "S", "D", "causal", "threads"});
  for (int64_t threads : {1, 2}) {
    b->Args({1, 8, 128, 64, 0, threads});
    b->Args({1, 8, 128, 64, 1, threads});
    b->Args({1, 8, 1024, 64, 0, threads});
    b->Args({1, 8, 1024, 128, 1, threads});
  }
  b->Unit(benchmark::kMillisecond)->UseRealTime();
}

BENCHMARK_CAPTURE(BM_Attention, naive, attn::Algorithm::kNaive)->Apply(Shapes);
BENCHMARK_CAPTURE(BM_Attention, flash, attn::Algorithm::kFlash)->Apply(Shapes);

}  // namespace

BENCHMARK_MAIN();

// Benchmark support, not library API: attention's math path as a
// framework's autograd runs it, the baseline `attn bench` times the flash
// forward and backward against. Per (batch, head) the score matrix is
// materialised and every product goes through BLAS sgemm (the OpenBLAS
// that attn::nn loads):
//
//   forward   S = scale Q K^T (causal: keys after the query -inf),
//             P = softmax(S) (kept for the backward, as autograd keeps it),
//             O = P V
//   backward  dV = P^T dO, dP = dO V^T, dS = P * (dP - rowsum(dO * O)),
//             dQ = scale dS K, dK = scale dS^T Q
//
// The softmax and the dS step are Highway code over rows (OpenMP); BLAS
// threads itself. float32, contiguous [B, H, S, D] tensors; GQA heads add
// their dK and dV into the shared KV head's.
#ifndef ATTN_BENCH_SUPPORT_MATH_PATH_H_
#define ATTN_BENCH_SUPPORT_MATH_PATH_H_

#include <cstdint>
#include <vector>

namespace attn::bench {

class MathPathAttention {
 public:
  // Holds P for B * Hq heads: B * Hq * S * S floats.
  MathPathAttention(int64_t B, int64_t Hq, int64_t Hkv, int64_t S, int64_t D,
                    bool causal, int threads);

  // q [B, Hq, S, D], k, v [B, Hkv, S, D] -> out [B, Hq, S, D].
  void forward(const float* q, const float* k, const float* v, float* out);
  // After forward on the same q, k, v: gradients for dout.
  void backward(const float* q, const float* k, const float* v,
                const float* out, const float* dout, float* dq, float* dk,
                float* dv);

 private:
  int64_t B_, Hq_, Hkv_, S_, D_;
  bool causal_;
  int threads_;
  float scale_;
  std::vector<float> p_;   // [B, Hq, S, S]
  std::vector<float> dp_;  // [S, S], one head at a time
};

}  // namespace attn::bench

#endif  // ATTN_BENCH_SUPPORT_MATH_PATH_H_

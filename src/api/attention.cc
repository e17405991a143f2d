// attn::attention: validate once, then run the chosen algorithm.
#include "attn/attention.h"

#include <cmath>

#include "attn/version.h"
#include "src/api/validate.h"
#include "src/kernels/flash.h"
#include "src/kernels/naive.h"
#include "src/kernels/strided.h"
#include "src/reference/reference.h"
#include "src/util/check.h"

namespace attn {
namespace {

template <class T>
Algorithm run(TensorView<const T> q, TensorView<const T> k,
              TensorView<const T> v, TensorView<T> out,
              const AttentionOptions& options, TensorView<float> lse) {
  const detail::Problem<T> problem =
      detail::validate(q, k, v, out, options, lse);
  if constexpr (std::is_same_v<T, float>) {  // the only rewrite so far
    if (problem.params.rewrite == Rewrite::kStridedClasses) {
      kernels::strided_attention(problem, options.workspace);
      return problem.params.algorithm;
    }
  }
  switch (problem.params.algorithm) {
    case Algorithm::kReference:
      reference::attention(problem);
      return Algorithm::kReference;
    case Algorithm::kNaive:
      kernels::naive_attention(problem);
      return Algorithm::kNaive;
    case Algorithm::kFlash:
      kernels::flash_attention(problem, options.workspace, 1);
      return Algorithm::kFlash;
    case Algorithm::kDecode:
      kernels::flash_attention(problem, options.workspace,
                               problem.params.kv_splits);
      return Algorithm::kDecode;
    case Algorithm::kAuto:
      break;  // validate() never lets these through
  }
  util::Check("attn::attention")
      .fail(std::string("internal error: no kernel for algorithm ") +
            algorithm_name(problem.params.algorithm));
}

}  // namespace

const char* version() { return ATTN_VERSION_STRING; }

const char* rewrite_name(Rewrite r) {
  switch (r) {
    case Rewrite::kNone:
      return "none";
    case Rewrite::kStridedClasses:
      return "strided classes";
  }
  return "unknown";
}

const char* algorithm_name(Algorithm a) {
  switch (a) {
    case Algorithm::kAuto:
      return "auto";
    case Algorithm::kReference:
      return "reference";
    case Algorithm::kNaive:
      return "naive";
    case Algorithm::kFlash:
      return "flash";
    case Algorithm::kDecode:
      return "decode";
  }
  return "unknown";
}

Algorithm attention(TensorView<const float> q, TensorView<const float> k,
                    TensorView<const float> v, TensorView<float> out,
                    const AttentionOptions& options, TensorView<float> lse) {
  return run(q, k, v, out, options, lse);
}
Algorithm attention(TensorView<const bfloat16> q, TensorView<const bfloat16> k,
                    TensorView<const bfloat16> v, TensorView<bfloat16> out,
                    const AttentionOptions& options, TensorView<float> lse) {
  return run(q, k, v, out, options, lse);
}
Algorithm attention(TensorView<const float16> q, TensorView<const float16> k,
                    TensorView<const float16> v, TensorView<float16> out,
                    const AttentionOptions& options, TensorView<float> lse) {
  return run(q, k, v, out, options, lse);
}

std::vector<float> alibi_slopes(int64_t num_heads) {
  util::Check("attn::alibi_slopes")
      .in_range("num_heads", num_heads, 1, int64_t{1} << 20);
  // Slopes for a power of two n: start = 2^(-8/n), slope[h] = start^(h+1).
  auto power_of_two_slopes = [](int64_t n) {
    std::vector<float> s(n);
    for (int64_t h = 0; h < n; ++h) {
      s[h] = static_cast<float>(std::exp2(-8.0 * static_cast<double>(h + 1) /
                                          static_cast<double>(n)));
    }
    return s;
  };
  int64_t p = 1;
  while (p * 2 <= num_heads) p *= 2;
  std::vector<float> slopes = power_of_two_slopes(p);
  if (p < num_heads) {
    const std::vector<float> extra = power_of_two_slopes(2 * p);
    for (int64_t h = 0; static_cast<int64_t>(slopes.size()) < num_heads;
         h += 2) {
      slopes.push_back(extra[h]);
    }
  }
  return slopes;
}

}  // namespace attn

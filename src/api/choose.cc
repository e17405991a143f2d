// Algorithm choice for attn::attention and the calls built on it.
#include "src/api/choose.h"

#include <string>

#include "src/kernels/naive.h"
#include "src/kernels/strided.h"
#include "src/util/parallel.h"

namespace attn::detail {

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
      return too_big(double(kernels::naive_workers(p, s.B * s.Hq)) *
                         double(s.Sq) * double(s.Skv) * sizeof(float),
                     "naive (S in float32 per worker)");
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

void choose_algorithm(const util::Check& check, const AttentionOptions& o,
                      std::span<const Algorithm> order, bool may_rewrite,
                      Params& pr) {
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
      check.fail("options.algorithm",
                 "auto found no algorithm that can serve this call" + reasons);
    }
  } else {
    if (auto reason = why_not(o.algorithm, pr)) {
      check.fail("options.algorithm",
                 std::string(algorithm_name(o.algorithm)) +
                     " cannot serve this call: " + *reason);
    }
    pr.algorithm = o.algorithm;
  }
  if (o.kv_splits > 0 && o.algorithm != Algorithm::kAuto &&
      o.algorithm != Algorithm::kDecode) {
    check.fail("options.kv_splits",
               std::string("applies to the decode algorithm only, not ") +
                   algorithm_name(o.algorithm));
  }
  pr.rewrite = Rewrite::kNone;
  if (may_rewrite && kernels::plan_strided(pr)) {
    pr.rewrite = Rewrite::kStridedClasses;
  }
}

}  // namespace attn::detail

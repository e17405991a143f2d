// Run-time SIMD target selection, over Highway's dispatch state.
#include "attn/simd.h"

#include <hwy/highway.h>
#include <hwy/targets.h>

#include "attn/error.h"

namespace attn {
namespace {

std::vector<int64_t> available() {
  std::vector<int64_t> out;
  // SupportedAndGeneratedTargets lists the lowest bit first, which is the
  // best target on x86.
  for (int64_t t : hwy::SupportedAndGeneratedTargets()) out.push_back(t);
  return out;
}

}  // namespace

std::vector<std::string> available_simd_targets() {
  std::vector<std::string> names;
  for (int64_t t : available()) names.push_back(hwy::TargetName(t));
  return names;
}

std::string active_simd_target() {
  // The best target among those currently allowed: what dispatch picks.
  const std::vector<int64_t> targets = available();
  return targets.empty() ? "none" : hwy::TargetName(targets.front());
}

void force_simd_target(const std::string& name) {
  hwy::SetSupportedTargetsForTest(0);
  if (name.empty()) {
    hwy::GetChosenTarget().Update(hwy::SupportedTargets());
    return;
  }
  std::string known;
  for (int64_t t : available()) {
    if (name == hwy::TargetName(t)) {
      hwy::SetSupportedTargetsForTest(t);
      hwy::GetChosenTarget().Update(hwy::SupportedTargets());
      return;
    }
    known += std::string(known.empty() ? "" : ", ") + hwy::TargetName(t);
  }
  throw Error("attn::force_simd_target: '" + name +
              "' is not a target this build can run here (available: " + known +
              ")");
}

}  // namespace attn

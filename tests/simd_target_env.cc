// ATTN_TEST_SIMD_TARGET=NAME runs the whole test binary on one Highway
// target (attn::force_simd_target), so the suites of every kernel with its
// own micro-kernels (backward, linear, KV-cache decode, the nn GEMV) run on
// each target the machine has; tests/CMakeLists.txt adds one ctest entry
// per target. A target this CPU lacks skips every test.
// ATTN_TEST_CPU_EXTENSIONS=off also turns off the CPU features the kernels
// use beyond the target (AVX-512 BF16, VNNI), so a target's plain code is
// tested on a CPU that has them.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdlib>
#include <string>
#include <vector>

#include "attn/simd.h"
#include "src/util/cpu.h"

namespace attn {
namespace {

class ForcedSimdTarget : public ::testing::Environment {
 public:
  void SetUp() override {
    const char* ext = std::getenv("ATTN_TEST_CPU_EXTENSIONS");
    if (ext != nullptr && std::string(ext) == "off") {
      util::cpu_extensions_disabled() = true;
    }
    const char* name = std::getenv("ATTN_TEST_SIMD_TARGET");
    if (name == nullptr || *name == '\0') return;
    const std::vector<std::string> targets = available_simd_targets();
    if (std::find(targets.begin(), targets.end(), name) == targets.end()) {
      GTEST_SKIP() << "SIMD target " << name << " is not available on this CPU";
    }
    force_simd_target(name);
    ASSERT_EQ(active_simd_target(), name);
  }
  void TearDown() override {
    force_simd_target("");
    util::cpu_extensions_disabled() = false;
  }
};

[[maybe_unused]] ::testing::Environment* const kForcedSimdTarget =
    ::testing::AddGlobalTestEnvironment(new ForcedSimdTarget);

}  // namespace
}  // namespace attn

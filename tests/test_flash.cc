// Flash-specific tests: every SIMD target this machine runs, lengths around
// the tile sizes, wide head dims, the workspace.
#include <gtest/gtest.h>

#include <bit>
#include <random>
#include <string>
#include <vector>

#include "attn/simd.h"
#include "attn/workspace.h"
#include "src/kernels/flash.h"
#include "tests/attention_grid.h"

namespace attn {
namespace {

using namespace attn::testing;  // NOLINT: test-local helpers
using kernels::kKeyTile;
using kernels::kTargetRows;

// Restores automatic target choice however a test ends.
struct TargetGuard {
  ~TargetGuard() { force_simd_target(""); }
};

TEST(Simd, TargetsAreListedAndForceable) {
  const std::vector<std::string> targets = available_simd_targets();
  ASSERT_FALSE(targets.empty());
  TargetGuard guard;
  for (const std::string& t : targets) {
    force_simd_target(t);
    EXPECT_EQ(active_simd_target(), t);
  }
  force_simd_target("");
  EXPECT_EQ(active_simd_target(), targets.front());
  EXPECT_THROW(force_simd_target("NEON_OF_THE_FUTURE"), Error);
}

// Each target in turn over every option set on shapes around the tiles.
class Targets : public ::testing::TestWithParam<std::string> {};

TEST_P(Targets, MatchReference) {
  TargetGuard guard;
  force_simd_target(GetParam());
  std::mt19937 rng(31);
  const Dims shapes[] = {{1, 2, 2, 5, kKeyTile + 1, 64, 64},
                         {2, 4, 1, 17, 2 * kKeyTile + 1, 80, 48},
                         {1, 3, 3, 1, 300, 7, 9},
                         {1, 8, 2, 129, 129, 128, 128}};
  for (const Dims& d : shapes) {
    for (const auto& [name, build] : option_sets()) {
      check<float>(d, name, build, {Layout::kBSHD, true}, rng,
                   Algorithm::kFlash);
    }
  }
  const Dims half{1, 4, 2, 33, 70, 64, 64};
  check<bfloat16>(half, "none", option_sets()[0].second, {}, rng,
                  Algorithm::kFlash);
  check<float16>(half, "causal", option_sets()[1].second, {}, rng,
                 Algorithm::kFlash);
}

INSTANTIATE_TEST_SUITE_P(Available, Targets,
                         ::testing::ValuesIn(available_simd_targets()),
                         [](const auto& info) { return info.param; });

// Key lengths at tile - 1, tile, tile + 1, 2 tiles + 1; query blocks the
// same way for G = 1 and G = 4, both for unmasked calls (Br = kTargetRows /
// G) and for short causal ones (Br = kTargetRows / 4 / G, make_flash_plan,
// unless the keys outnumber the queries 4 to 1).
TEST(FlashTiles, LengthsAroundTileEdges) {
  std::mt19937 rng(32);
  const auto& sets = option_sets();
  int n = 0;
  for (bool banded : {false, true}) {
    for (int64_t G : {1, 4}) {
      const int64_t br = (banded ? kTargetRows / 4 : kTargetRows) / G;
      for (int64_t Sq : {br - 1, br, br + 1, 2 * br + 1}) {
        for (int64_t Skv :
             {kKeyTile - 1, kKeyTile, kKeyTile + 1, 2 * kKeyTile + 1}) {
          ++n;
          const Dims d{1, 2 * G, 2, Sq, Skv, 32, 32};
          // A thin band (Skv >= 4 Sq, chunked prefill) keeps full items.
          const int64_t want = Skv >= 4 * Sq ? kTargetRows / G : br;
          ASSERT_EQ(kernels::make_flash_plan(
                        {1, 2 * G, 2, Sq, Skv, 32, 32},
                        banded ? kernels::Band::kWide : kernels::Band::kNone)
                        .block_positions,
                    std::min(want, Sq));
          // Banded: the causal set; otherwise the sets without causal or
          // window (none, softcap, alibi, masks, bias, key lengths).
          constexpr int kUnbanded[] = {0, 7, 8, 10, 11, 12, 13};
          const auto& [name, build] = sets[banded ? 1 : kUnbanded[n % 7]];
          check<float>(d, name, build,
                       {n % 2 ? Layout::kBSHD : Layout::kBHSD, false}, rng,
                       Algorithm::kFlash);
        }
      }
    }
  }
}

TEST(FlashTiles, WideHeadDims) {
  std::mt19937 rng(33);
  const auto& sets = option_sets();
  int n = 0;
  for (auto [D, Dv] : {std::pair<int64_t, int64_t>{80, 80},
                       {96, 96},
                       {160, 160},
                       {192, 128},
                       {512, 512},
                       {512, 64},
                       {33, 512}}) {
    for (int64_t Skv : {1, 65, 200}) {
      ++n;
      const Dims d{1, 4, 2, 37, Skv, D, Dv};
      const auto& [name, build] = sets[n % sets.size()];
      check<float>(d, name, build, {}, rng, Algorithm::kFlash);
    }
  }
}

TEST(FlashWorkspace, ReusedAcrossCallsAndSameBits) {
  const Dims d{1, 8, 2, 100, 130, 64, 64};
  std::mt19937 rng(34);
  Case<float> c(d, {}, rng);
  const reference::Result ref = c.reference({});
  Workspace ws;
  EXPECT_EQ(ws.bytes_reserved(), 0u);
  AttentionOptions o;
  o.workspace = &ws;
  const auto first = c.run(o, Algorithm::kFlash, ref, 2);
  const std::size_t held = ws.bytes_reserved();
  EXPECT_GT(held, 0u);
  const auto second = c.run(o, Algorithm::kFlash, ref, 2);
  EXPECT_EQ(ws.bytes_reserved(), held) << "a repeated call must not grow it";
  const auto own = c.run({}, Algorithm::kFlash, ref, 2);  // per-thread default
  for (size_t i = 0; i < first.out.size(); ++i) {
    ASSERT_EQ(std::bit_cast<uint32_t>(first.out[i]),
              std::bit_cast<uint32_t>(second.out[i]));
    ASSERT_EQ(std::bit_cast<uint32_t>(first.out[i]),
              std::bit_cast<uint32_t>(own.out[i]));
  }
  // Scratch does not grow with the sequence lengths.
  const auto plan_short =
      kernels::make_flash_plan({1, 8, 2, 4096, 4096, 128, 128});
  const auto plan_long =
      kernels::make_flash_plan({1, 8, 2, 131072, 131072, 128, 128});
  EXPECT_EQ(plan_short.bytes, plan_long.bytes);
  ws.release();
  EXPECT_EQ(ws.bytes_reserved(), 0u);
}

}  // namespace
}  // namespace attn

// The tiled forward kernel (Algorithm::kFlash). See flash.cc.
#ifndef ATTN_SRC_KERNELS_FLASH_H_
#define ATTN_SRC_KERNELS_FLASH_H_

#include <cstddef>
#include <cstdint>

#include "attn/workspace.h"
#include "src/api/problem.h"

namespace attn::kernels {

// Keys per KV tile: a multiple of every target's key-vector group.
inline constexpr int64_t kKeyTile = 64;
// Query rows per register block of the micro-kernels.
inline constexpr int64_t kRowBlock = 6;
// Query rows (all heads of a GQA group together) a work item aims for.
inline constexpr int64_t kTargetRows = 384;
// Padding of Dv so every target's vectors divide it.
inline constexpr int64_t kDvAlign = 16;

// How a call is cut into work items and how each worker's scratch is laid
// out. Computed once per call, before the parallel loop.
struct FlashPlan {
  int64_t block_positions = 0;  // Br: query positions per work item
  int64_t blocks_per_head = 0;  // ceil(Sq / Br)
  int64_t rows_padded = 0;      // round_up(G * Br, kRowBlock)
  int64_t dv_padded = 0;        // round_up(Dv, kDvAlign)
  // Byte offsets into a worker's scratch slice.
  std::size_t q = 0, kt = 0, v = 0, s = 0, o = 0, m = 0, l = 0, lw = 0,
              ranges = 0, pp = 0;
  std::size_t bytes = 0;  // total per worker
  int64_t items = 0;      // B * Hkv * blocks_per_head
  // bfloat16 inputs on a CPU with AVX-512 BF16: QK^T on vdpbf16ps.
  bool bf16_dot = false;
};

// banded: causal or windowed, so short sequences get smaller work items.
FlashPlan make_flash_plan(const detail::Shape& shape, bool banded = false);

template <class T>
void flash_attention(const detail::Problem<T>& problem, Workspace* workspace);

}  // namespace attn::kernels

#endif  // ATTN_SRC_KERNELS_FLASH_H_

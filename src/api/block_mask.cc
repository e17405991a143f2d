// make_block_mask and estimate_work (attn/block_mask.h): the tile walk of
// the flash kernel (src/kernels/tile_walk.h), recorded instead of run.
#include "attn/block_mask.h"

#include <algorithm>
#include <string>

#include "attn/error.h"
#include "src/api/validate.h"
#include "src/kernels/flash.h"
#include "src/kernels/strided.h"
#include "src/kernels/tile_walk.h"
#include "src/util/check.h"

namespace attn {
namespace {

constexpr util::Check kMakeBlockMask("attn::make_block_mask");

void check_positive(const char* arg, int64_t x, int64_t min) {
  if (x < min || x > (int64_t{1} << 40)) {
    kMakeBlockMask.fail(std::string("shape.") + arg,
                        "must be in [" + std::to_string(min) + ", 2^40], got " +
                            std::to_string(x));
  }
}

template <class T>
WorkEstimate estimate(TensorView<const T> q, TensorView<const T> k,
                      TensorView<const T> v, const AttentionOptions& options) {
  const detail::Params p = detail::validate_params(q, k, v, options);
  WorkEstimate w;
  w.algorithm = p.algorithm;
  w.rewrite = p.rewrite;
  if (p.algorithm == Algorithm::kFlash || p.algorithm == Algorithm::kDecode) {
    const kernels::FlashWork f =
        p.rewrite == Rewrite::kStridedClasses
            ? kernels::count_strided_work(p)
            : kernels::count_flash_work(
                  p, p.algorithm == Algorithm::kFlash ? 1 : p.kv_splits);
    w.tiles = f.tiles;
    w.scores = f.scores;
  } else {  // materialising algorithms compute every score
    w.scores = p.shape.B * p.shape.Hq * p.shape.Sq * p.shape.Skv;
  }
  return w;
}

}  // namespace

int64_t BlockMask::row(int64_t b, int64_t h, int64_t qb) const {
  if (b < 0 || b >= shape_.batch || h < 0 || h >= shape_.heads || qb < 0 ||
      qb >= q_blocks_) {
    util::Check("attn::BlockMask::row")
        .fail("(b, h, q block)", "(" + std::to_string(b) + ", " +
                                     std::to_string(h) + ", " +
                                     std::to_string(qb) + ") is outside [" +
                                     std::to_string(shape_.batch) + ", " +
                                     std::to_string(shape_.heads) + ", " +
                                     std::to_string(q_blocks_) + ")");
  }
  return (b * shape_.heads + h) * q_blocks_ + qb;
}

std::span<const int32_t> BlockMask::partial(int64_t b, int64_t h,
                                            int64_t qb) const {
  const int64_t r = row(b, h, qb);
  return {partial_.data() + partial_begin_[r],
          static_cast<size_t>(partial_begin_[r + 1] - partial_begin_[r])};
}

std::span<const int32_t> BlockMask::full(int64_t b, int64_t h,
                                         int64_t qb) const {
  const int64_t r = row(b, h, qb);
  return {full_.data() + full_begin_[r],
          static_cast<size_t>(full_begin_[r + 1] - full_begin_[r])};
}

TileKind BlockMask::kind(int64_t b, int64_t h, int64_t qb, int64_t kb) const {
  const auto has = [kb](std::span<const int32_t> s) {
    return std::binary_search(s.begin(), s.end(), static_cast<int32_t>(kb));
  };
  if (has(full(b, h, qb))) return TileKind::kFull;
  return has(partial(b, h, qb)) ? TileKind::kPartial : TileKind::kEmpty;
}

double BlockMask::density() const {
  const double all = double(shape_.batch) * double(shape_.heads) *
                     double(q_blocks_) * double(kv_blocks_);
  return all > 0 ? double(partial_.size() + full_.size()) / all : 0.0;
}

BlockMask make_block_mask(const Pattern& pattern, const BlockMaskShape& shape) {
  check_positive("batch", shape.batch, 1);
  check_positive("heads", shape.heads, 1);
  check_positive("q_len", shape.q_len, 0);
  check_positive("kv_len", shape.kv_len, 0);
  check_positive("q_block", shape.q_block, 1);
  check_positive("kv_block", shape.kv_block, 1);
  if (shape.query_offset < -(int64_t{1} << 40) ||
      shape.query_offset > (int64_t{1} << 40)) {
    kMakeBlockMask.fail("shape.query_offset", "must be within +-2^40");
  }
  BlockMask m;
  m.shape_ = shape;
  m.q_blocks_ = (shape.q_len + shape.q_block - 1) / shape.q_block;
  m.kv_blocks_ = (shape.kv_len + shape.kv_block - 1) / shape.kv_block;
  if (m.kv_blocks_ > INT32_MAX)
    kMakeBlockMask.fail("shape.kv_len", "more than 2^31 KV blocks");
  m.partial_begin_.push_back(0);
  m.full_begin_.push_back(0);
  for (int64_t b = 0; b < shape.batch; ++b) {
    for (int64_t h = 0; h < shape.heads; ++h) {
      for (int64_t qb = 0; qb < m.q_blocks_; ++qb) {
        const int64_t p0 = qb * shape.q_block + shape.query_offset;
        const int64_t p1 = std::min((qb + 1) * shape.q_block, shape.q_len) +
                           shape.query_offset;
        kernels::TileWalker walk(pattern, b, h, h + 1, p0, p1, 0, shape.kv_len,
                                 shape.kv_block);
        int64_t t = 0;
        TileKind kind;
        while (walk.next(t, kind)) {
          (kind == TileKind::kFull ? m.full_ : m.partial_)
              .push_back(static_cast<int32_t>(t));
        }
        m.partial_begin_.push_back(static_cast<int64_t>(m.partial_.size()));
        m.full_begin_.push_back(static_cast<int64_t>(m.full_.size()));
      }
    }
  }
  return m;
}

WorkEstimate estimate_work(TensorView<const float> q, TensorView<const float> k,
                           TensorView<const float> v,
                           const AttentionOptions& options) {
  return estimate(q, k, v, options);
}

}  // namespace attn

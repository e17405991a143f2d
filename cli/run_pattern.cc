#include "cli/run_pattern.h"

#include <attn/error.h>
#include <attn/npy.h>

#include <stdexcept>
#include <vector>

namespace attn_cli {
namespace {

using attn::Error;

std::vector<int64_t> parse_list(const std::string& flag,
                                const std::string& text) {
  std::vector<int64_t> values;
  size_t at = 0;
  while (at <= text.size()) {
    const size_t comma = std::min(text.find(',', at), text.size());
    const std::string item = text.substr(at, comma - at);
    try {
      size_t used = 0;
      values.push_back(std::stoll(item, &used));
      if (used != item.size()) throw std::invalid_argument("trailing");
    } catch (const std::logic_error&) {
      throw Error(flag + ": expected comma-separated integers, got '" + text +
                  "'");
    }
    at = comma + 1;
  }
  return values;
}

std::vector<int64_t> read_ints(const std::string& flag,
                               const std::string& path) {
  const attn::npy::Array a = attn::npy::load(path);
  if (a.shape.size() != 1 || (a.dtype != attn::npy::DType::kInt32 &&
                              a.dtype != attn::npy::DType::kInt64)) {
    throw Error(flag + " '" + path +
                "': expected a 1-D int32 or int64 array, got " +
                attn::npy::dtype_name(a.dtype) + " with " +
                std::to_string(a.shape.size()) + " dimensions");
  }
  return a.to_int64();
}

void require(bool ok, const std::string& flag, const std::string& pattern) {
  if (!ok) throw Error(flag + " is required with --pattern " + pattern);
}

}  // namespace

void add_pattern_options(CLI::App& cmd, PatternArgs& a) {
  cmd.add_option("--pattern", a.name,
                 "built-in sparse pattern (docs/patterns.md): strided, fixed, "
                 "longformer, block-sparse, documents")
      ->check(CLI::IsMember(
          {"strided", "fixed", "longformer", "block-sparse", "documents"}));
  cmd.add_option("--stride", a.stride, "strided: every N-th key back");
  cmd.add_option("--local", a.local,
                 "strided: keys within N positions; longformer: window keys on "
                 "each side");
  cmd.add_option("--block", a.block, "fixed, block-sparse: block size");
  cmd.add_option("--summary", a.summary,
                 "fixed: summary keys at each block's end");
  cmd.add_option(
      "--dilation", a.dilation,
      "longformer: one dilation, or one per query head, e.g. 1,1,2,4");
  cmd.add_option("--global", a.global,
                 "longformer: global positions, e.g. 0,1");
  cmd.add_option(
      "--block-layout", a.block_layout,
      "block-sparse: bool or uint8 .npy [Hq or 1, Sq/block, Skv/block] "
      "(rounded up)");
  cmd.add_option("--cu-seqlens", a.cu_seqlens,
                 "documents: int .npy of cumulative query lengths [docs + 1]");
  cmd.add_option("--cu-seqlens-k", a.cu_seqlens_k,
                 "documents: cumulative key lengths (default: --cu-seqlens)");
}

attn::Pattern make_pattern(const PatternArgs& a, bool causal,
                           PatternHolder& holder) {
  if (a.name.empty()) return {};
  if (a.name == "strided") {
    require(a.stride > 0, "--stride", a.name);
    const auto& p = holder.emplace<attn::SparseStrided>(attn::SparseStrided{
        a.stride, a.local >= 0 ? a.local : a.stride, causal});
    return p;
  }
  if (a.name == "fixed") {
    require(a.block > 0, "--block", a.name);
    const auto& p = holder.emplace<attn::SparseFixed>(
        attn::SparseFixed{a.block, a.summary, causal});
    return p;
  }
  if (a.name == "longformer") {
    require(a.local >= 0, "--local", a.name);
    const auto& p = holder.emplace<attn::Longformer>(
        a.local,
        a.global.empty() ? std::vector<int64_t>{}
                         : parse_list("--global", a.global),
        a.dilation.empty() ? std::vector<int64_t>{}
                           : parse_list("--dilation", a.dilation),
        causal);
    return p;
  }
  if (a.name == "block-sparse") {
    require(a.block > 0, "--block", a.name);
    require(!a.block_layout.empty(), "--block-layout", a.name);
    const attn::npy::Array l = attn::npy::load(a.block_layout);
    if ((l.dtype != attn::npy::DType::kBool &&
         l.dtype != attn::npy::DType::kUInt8) ||
        (l.shape.size() != 2 && l.shape.size() != 3)) {
      throw Error(
          "--block-layout '" + a.block_layout +
          "': expected a bool or uint8 array [heads, q_blocks, kv_blocks] "
          "or [q_blocks, kv_blocks], got " +
          attn::npy::dtype_name(l.dtype) + " with " +
          std::to_string(l.shape.size()) + " dimensions");
    }
    const size_t n = l.shape.size();
    const int64_t heads = n == 3 ? l.shape[0] : 1;
    std::vector<uint8_t> layout(l.data.size());
    for (size_t i = 0; i < layout.size(); ++i)
      layout[i] = static_cast<uint8_t>(l.data[i]);
    const auto& p = holder.emplace<attn::BlockSparse>(
        a.block, heads, l.shape[n - 2], l.shape[n - 1], std::move(layout));
    return p;
  }
  require(!a.cu_seqlens.empty(), "--cu-seqlens", a.name);
  const auto& p = holder.emplace<attn::Documents>(
      read_ints("--cu-seqlens", a.cu_seqlens),
      a.cu_seqlens_k.empty() ? std::vector<int64_t>{}
                             : read_ints("--cu-seqlens-k", a.cu_seqlens_k),
      causal);
  return p;
}

}  // namespace attn_cli

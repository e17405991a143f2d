// `attn run --pattern ...`: the built-in patterns of attn/patterns.h from
// command-line flags and .npy files.
#ifndef ATTN_CLI_RUN_PATTERN_H_
#define ATTN_CLI_RUN_PATTERN_H_

#include <attn/patterns.h>

#include <CLI/CLI.hpp>
#include <string>
#include <variant>

namespace attn_cli {

struct PatternArgs {
  std::string name;  // empty: none
  int64_t stride = 0, local = -1, block = 0, summary = 0;
  std::string dilation, global;  // comma-separated integers
  std::string block_layout, cu_seqlens, cu_seqlens_k;  // .npy files
};

// Owns the pattern object that AttentionOptions::pattern refers to.
using PatternHolder =
    std::variant<std::monostate, attn::SparseStrided, attn::SparseFixed,
                 attn::Longformer, attn::BlockSparse, attn::Documents>;

void add_pattern_options(CLI::App& cmd, PatternArgs& args);

// Builds the pattern named by args into holder (causal: the --causal flag)
// and returns a reference to it; an empty Pattern without --pattern. Bad
// flags throw attn::Error naming the flag.
attn::Pattern make_pattern(const PatternArgs& args, bool causal,
                           PatternHolder& holder);

}  // namespace attn_cli

#endif  // ATTN_CLI_RUN_PATTERN_H_

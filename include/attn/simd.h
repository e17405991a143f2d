// Which SIMD code attn runs. Kernels are compiled for several instruction
// sets and the best one the CPU supports is chosen at run time; these calls
// name it and, for tests and comparisons, restrict the choice.
#ifndef ATTN_SIMD_H_
#define ATTN_SIMD_H_

#include <string>
#include <vector>

namespace attn {

// Targets compiled into this build that this CPU can run, best first, by
// Highway's names: "AVX3_DL" (AVX-512 with VNNI/VBMI2...), "AVX3"
// (AVX-512), "AVX2", "SSE4", "SSSE3", "EMU128" (portable), "SCALAR".
std::vector<std::string> available_simd_targets();

// The target kernels dispatch to now.
std::string active_simd_target();

// Restricts dispatch to one target from available_simd_targets(); an empty
// name restores the automatic choice. Not thread-safe with running calls.
// Throws attn::Error for a name that is unknown or not available.
void force_simd_target(const std::string& name);

}  // namespace attn

#endif  // ATTN_SIMD_H_

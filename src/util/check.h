// Check: the one way a public function refuses its arguments. An entry
// point names itself once (`const util::Check check("attn::apply_rope")`)
// and hands the Check to every rule it applies, so every message reads
// "<function>: <argument>: <what was expected, what came>" and no checker
// keeps the name in global or thread-local state.
#ifndef ATTN_SRC_UTIL_CHECK_H_
#define ATTN_SRC_UTIL_CHECK_H_

#include <cstdint>
#include <string>
#include <string_view>

namespace attn::util {

class Check {
 public:
  explicit constexpr Check(const char* function) : function_(function) {}

  const char* function() const { return function_; }

  // Throws attn::Error "<function>: <arg>: <what>".
  [[noreturn]] void fail(std::string_view arg, std::string_view what) const;
  // Throws attn::Error "<function>: <what>" (no single argument to blame).
  [[noreturn]] void fail(std::string_view what) const;

  // value in [lo, hi], else "must be in [lo, hi]<note>, got value".
  void in_range(std::string_view arg, int64_t value, int64_t lo, int64_t hi,
                std::string_view note = {}) const;
  // A thread count in [0, kMaxThreads] (0 = all cores).
  void threads(std::string_view arg, int value) const;
  // A finite value >= lo (strictly above lo when `strict`).
  void finite_at_least(std::string_view arg, double value, double lo,
                       bool strict = false, std::string_view note = {}) const;

 private:
  const char* function_;
};

}  // namespace attn::util

#endif  // ATTN_SRC_UTIL_CHECK_H_

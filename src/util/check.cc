#include "src/util/check.h"

#include <cmath>

#include "attn/error.h"
#include "attn/options.h"

namespace attn::util {
namespace {

std::string number(double x) {
  std::string s = std::to_string(x);
  // to_string gives six decimals; drop the trailing zeros of whole values.
  if (s.find('.') != std::string::npos) {
    while (!s.empty() && s.back() == '0') s.pop_back();
    if (!s.empty() && s.back() == '.') s.pop_back();
  }
  return s;
}

}  // namespace

void Check::fail(std::string_view arg, std::string_view what) const {
  std::string m(function_);
  m += ": ";
  m += arg;
  m += ": ";
  m += what;
  throw Error(m);
}

void Check::fail(std::string_view what) const {
  std::string m(function_);
  m += ": ";
  m += what;
  throw Error(m);
}

void Check::in_range(std::string_view arg, int64_t value, int64_t lo,
                     int64_t hi, std::string_view note) const {
  if (value >= lo && value <= hi) return;
  fail(arg, "must be in [" + std::to_string(lo) + ", " + std::to_string(hi) +
                "]" + std::string(note) + ", got " + std::to_string(value));
}

void Check::threads(std::string_view arg, int value) const {
  in_range(arg, value, 0, kMaxThreads, " (0 = all cores)");
}

void Check::finite_at_least(std::string_view arg, double value, double lo,
                            bool strict, std::string_view note) const {
  const bool ok = std::isfinite(value) && (strict ? value > lo : value >= lo);
  if (ok) return;
  fail(arg, std::string("must be finite and ") + (strict ? "> " : ">= ") +
                number(lo) + std::string(note) + ", got " +
                std::to_string(value));
}

}  // namespace attn::util

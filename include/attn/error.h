// attn::Error: the one exception type of the public API.
//
// Thrown at the API boundary, before any work, for every invalid argument;
// the message names the argument and what was expected. Kernels never throw.
#ifndef ATTN_ERROR_H_
#define ATTN_ERROR_H_

#include <stdexcept>
#include <string>

namespace attn {

class Error : public std::invalid_argument {
 public:
  explicit Error(const std::string& what) : std::invalid_argument(what) {}
};

}  // namespace attn

#endif  // ATTN_ERROR_H_

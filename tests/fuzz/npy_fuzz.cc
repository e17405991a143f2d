// libFuzzer target for the .npy reader: any byte string either parses into
// a consistent Array or throws attn::Error; nothing else (crash, leak,
// overflow, other exception) is acceptable. A parsed array must survive a
// write / read round trip unchanged.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <span>

#include "attn/npy.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::span<const std::byte> bytes(
      reinterpret_cast<const std::byte*>(data), size);
  attn::npy::Array a;
  try {
    a = attn::npy::parse(bytes, "fuzz");
  } catch (const attn::Error&) {
    return 0;
  }
  if (static_cast<size_t>(a.numel()) * attn::npy::dtype_size(a.dtype) !=
      a.data.size()) {
    std::abort();
  }
  const std::vector<std::byte> again = attn::npy::serialize(a);
  const attn::npy::Array b = attn::npy::parse(again, "round trip");
  if (b.dtype != a.dtype || b.shape != a.shape || b.data != a.data) {
    std::abort();
  }
  return 0;
}

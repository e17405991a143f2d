// libFuzzer target for the safetensors reader: any byte string either
// parses into a consistent File or throws attn::Error; nothing else (crash,
// leak, overflow, other exception) is acceptable. Every tensor of a parsed
// file lies inside the buffer with the size its dtype and shape give, and
// float tensors convert.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <span>

#include "attn/safetensors.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  namespace st = attn::safetensors;
  const std::span<const std::byte> bytes(
      reinterpret_cast<const std::byte*>(data), size);
  try {
    const st::File f = st::File::parse(bytes, "fuzz");
    for (const std::string& name : f.names()) {
      const st::TensorInfo& t = f.info(name);
      if (f.bytes(name).size() !=
          static_cast<size_t>(t.numel()) * st::dtype_size(t.dtype)) {
        std::abort();
      }
      if (t.dtype == st::DType::kF32 || t.dtype == st::DType::kF16 ||
          t.dtype == st::DType::kBF16 || t.dtype == st::DType::kF64) {
        if (f.to_float(name).size() != static_cast<size_t>(t.numel()))
          std::abort();
      }
    }
  } catch (const attn::Error&) {
  }
  return 0;
}

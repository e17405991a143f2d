// safetensors files (the Hugging Face weight format): reading, as untrusted
// input, and writing.
//
// Layout: an 8-byte little-endian header length N, N bytes of JSON
//   {"<name>": {"dtype": "F32", "shape": [..], "data_offsets": [begin, end]},
//    ..., "__metadata__": {"<key>": "<string>", ...}}
// then the data buffer; offsets are relative to the buffer. The reader
// checks everything before handing out a byte: the header length against
// the file and a limit, the JSON (an object; no duplicate names; each entry
// exactly dtype, shape, data_offsets; metadata strings only), known dtypes,
// shapes whose byte size does not overflow and equals end - begin, and
// tensors that tile the buffer exactly (no overlaps, no holes, nothing
// after). A violation throws attn::Error with the file name and the reason.
#ifndef ATTN_SAFETENSORS_H_
#define ATTN_SAFETENSORS_H_

#include <cstddef>
#include <cstdint>
#include <map>
#include <span>
#include <string>
#include <vector>

#include "attn/error.h"

namespace attn::safetensors {

enum class DType { kBool, kU8, kI8, kI16, kI32, kI64, kF16, kBF16, kF32, kF64 };

const char* dtype_name(DType dtype);  // the file's spelling: "F32", "BF16", ...
std::size_t dtype_size(DType dtype);

// Largest header the reader accepts (the reference implementation's limit).
inline constexpr std::size_t kMaxHeaderBytes = std::size_t{100} << 20;
inline constexpr std::size_t kMaxDims = 64;

struct TensorInfo {
  DType dtype = DType::kF32;
  std::vector<int64_t> shape;
  std::size_t begin = 0, end = 0;  // byte range within the data buffer
  int64_t numel() const;
};

class File {
 public:
  // Parses a whole file held in memory (copied). `name` appears in errors.
  static File parse(std::span<const std::byte> bytes,
                    const std::string& name = "safetensors");
  // Reads and parses the file at `path`.
  static File load(const std::string& path);

  const std::map<std::string, std::string>& metadata() const {
    return metadata_;
  }
  // Tensor names, sorted.
  std::vector<std::string> names() const;
  bool contains(const std::string& name) const {
    return tensors_.count(name) > 0;
  }
  // Throws attn::Error naming the tensor when there is none of that name.
  const TensorInfo& info(const std::string& name) const;
  std::span<const std::byte> bytes(const std::string& name) const;
  // Values as float32: F32, F16, BF16 and F64 tensors (F64 rounded).
  std::vector<float> to_float(const std::string& name) const;
  // to_float, after checking the shape (an error names the tensor, the
  // expected and the stored shape).
  std::vector<float> to_float(const std::string& name,
                              std::span<const int64_t> expected_shape) const;

 private:
  std::string name_;
  std::map<std::string, TensorInfo> tensors_;
  std::map<std::string, std::string> metadata_;
  std::vector<std::byte> data_;  // the data buffer
};

// A tensor to write: float values stored as `dtype` (F32, F16 or BF16,
// rounded to nearest even).
struct Entry {
  std::string name;
  std::vector<int64_t> shape;
  std::span<const float> values;
  DType dtype = DType::kF32;
};
std::vector<std::byte> serialize(
    std::span<const Entry> tensors,
    const std::map<std::string, std::string>& metadata = {});
// Written like npy::save: temporary name, fsync, rename; a failed write
// leaves the old checkpoint in place.
void save(const std::string& path, std::span<const Entry> tensors,
          const std::map<std::string, std::string>& metadata = {});

}  // namespace attn::safetensors

#endif  // ATTN_SAFETENSORS_H_

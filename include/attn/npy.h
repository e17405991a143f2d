// NumPy .npy files: reading (untrusted input) and writing.
//
// The reader takes format versions 1.0, 2.0 and 3.0, little- and big-endian
// data, C and Fortran order (converted to C order), and the dtypes bool,
// uint8, int32, int64, float16, float32 and float64. Everything else, and
// every malformed file (bad magic, truncated or trailing data, a header that
// is not the dict NumPy writes, a shape whose size overflows, an absurd
// header length), throws attn::Error with the file name and the reason.
#ifndef ATTN_NPY_H_
#define ATTN_NPY_H_

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "attn/error.h"

namespace attn::npy {

enum class DType {
  kBool,
  kUInt8,
  kInt32,
  kInt64,
  kFloat16,
  kFloat32,
  kFloat64
};

const char* dtype_name(DType dtype);  // NumPy's name: "float32", ...
std::size_t dtype_size(DType dtype);

// Largest header the reader accepts; NumPy's own writer stays far below.
inline constexpr std::size_t kMaxHeaderBytes = std::size_t{1} << 20;
// Most dimensions the reader accepts (NumPy's own limit is 64).
inline constexpr std::size_t kMaxDims = 64;

// An array in C order with native (little-endian) byte order. Bool data is
// normalised to bytes 0 and 1.
struct Array {
  DType dtype = DType::kFloat32;
  std::vector<int64_t> shape;
  std::vector<std::byte> data;

  int64_t numel() const;
  // Values converted to float32 / int64. to_float takes the float dtypes,
  // to_int64 the integer ones; any other dtype throws attn::Error.
  std::vector<float> to_float() const;
  std::vector<int64_t> to_int64() const;
};

// Parses a whole .npy file held in memory. `name` appears in error messages.
Array parse(std::span<const std::byte> file, const std::string& name = "npy");
// Reads and parses the file at `path`.
Array load(const std::string& path);

// Serialises as format 1.0 (2.0 when the header needs it), little-endian,
// C order, header padded to 64 bytes like NumPy's writer.
std::vector<std::byte> serialize(const Array& array);
// Writes a regular file through a temporary name beside it, synced and
// renamed over `path`: a failed write (full disk, size limit) throws
// attn::Error and leaves the old file, never a truncated one. Devices such
// as /dev/stdout are written in place; every write is checked.
void save(const std::string& path, const Array& array);
// Convenience: float32 data of the given shape.
void save(const std::string& path, std::span<const float> data,
          std::span<const int64_t> shape);
// Throws attn::Error unless save() could write `path` (an existing
// writable file, or a new name in a writable directory): lets a caller
// refuse a bad output path before a long computation.
void check_writable(const std::string& path);

}  // namespace attn::npy

#endif  // ATTN_NPY_H_

// .npy reading and writing. The reader treats its input as hostile: every
// length is checked against what remains before it is used, every size
// computation is checked for overflow, and every malformed file gets an
// attn::Error naming the file and what was wrong.
//
// Format (numpy.lib.format): "\x93NUMPY", major, minor, header length (2
// bytes little-endian in 1.0, 4 bytes in 2.0 and 3.0), then an ASCII (UTF-8
// in 3.0) Python dict literal {'descr': ..., 'fortran_order': ...,
// 'shape': (...)} padded with spaces and ended by '\n', then the raw data.
#include "attn/npy.h"

#include <algorithm>
#include <bit>
#include <cctype>
#include <cstring>
#include <fstream>
#include <limits>
#include <optional>

#include "attn/types.h"
#include "src/util/file_io.h"

namespace attn::npy {
namespace {

constexpr char kMagic[] = "\x93NUMPY";
constexpr std::size_t kMagicLen = 6;

[[noreturn]] void fail(const std::string& name, const std::string& what) {
  throw Error("npy file '" + name + "': " + what);
}

// --- Header dict parser: the small subset of Python literals NumPy writes.

struct HeaderValue {
  enum Kind { kString, kBool, kTuple } kind = kString;
  std::string str;
  bool flag = false;
  std::vector<int64_t> ints;
};

class HeaderParser {
 public:
  HeaderParser(std::string_view text, const std::string& name)
      : text_(text), name_(name) {}

  // Returns (key, value) pairs of the dict.
  std::vector<std::pair<std::string, HeaderValue>> parse_dict() {
    std::vector<std::pair<std::string, HeaderValue>> items;
    expect('{');
    while (true) {
      skip_space();
      if (peek() == '}') break;
      std::string key = parse_string();
      expect(':');
      items.emplace_back(std::move(key), parse_value());
      skip_space();
      if (peek() == ',') {
        ++pos_;
        continue;
      }
      if (peek() != '}') error("expected ',' or '}' in header dict");
    }
    expect('}');
    skip_space();
    if (pos_ != text_.size()) error("unexpected text after header dict");
    return items;
  }

 private:
  [[noreturn]] void error(const std::string& what) {
    fail(name_,
         "malformed header at offset " + std::to_string(pos_) + ": " + what);
  }
  char peek() const { return pos_ < text_.size() ? text_[pos_] : '\0'; }
  void skip_space() {
    while (pos_ < text_.size() &&
           std::isspace(static_cast<unsigned char>(text_[pos_]))) {
      ++pos_;
    }
  }
  void expect(char c) {
    skip_space();
    if (peek() != c) error(std::string("expected '") + c + "'");
    ++pos_;
  }
  std::string parse_string() {
    skip_space();
    const char quote = peek();
    if (quote != '\'' && quote != '"') error("expected a quoted string");
    const std::size_t end = text_.find(quote, pos_ + 1);
    if (end == std::string_view::npos) error("unterminated string");
    std::string s(text_.substr(pos_ + 1, end - pos_ - 1));
    pos_ = end + 1;
    return s;
  }
  int64_t parse_int() {
    skip_space();
    const std::size_t start = pos_;
    int64_t value = 0;
    while (pos_ < text_.size() &&
           std::isdigit(static_cast<unsigned char>(text_[pos_]))) {
      const int digit = text_[pos_] - '0';
      if (value > (std::numeric_limits<int64_t>::max() - digit) / 10) {
        error("shape entry overflows 64 bits");
      }
      value = value * 10 + digit;
      ++pos_;
    }
    if (pos_ == start) error("expected a non-negative integer in shape");
    // NumPy may write Python 2 longs as "3L".
    if (peek() == 'L') ++pos_;
    return value;
  }
  HeaderValue parse_value() {
    skip_space();
    HeaderValue v;
    const char c = peek();
    if (c == '\'' || c == '"') {
      v.kind = HeaderValue::kString;
      v.str = parse_string();
    } else if (text_.substr(pos_, 4) == "True") {
      v.kind = HeaderValue::kBool;
      v.flag = true;
      pos_ += 4;
    } else if (text_.substr(pos_, 5) == "False") {
      v.kind = HeaderValue::kBool;
      pos_ += 5;
    } else if (c == '(') {
      v.kind = HeaderValue::kTuple;
      ++pos_;
      while (true) {
        skip_space();
        if (peek() == ')') break;
        if (v.ints.size() >= kMaxDims) {
          error("more than " + std::to_string(kMaxDims) + " dimensions");
        }
        v.ints.push_back(parse_int());
        skip_space();
        if (peek() == ',') {
          ++pos_;
        } else if (peek() != ')') {
          error("expected ',' or ')' in shape");
        }
      }
      ++pos_;
    } else {
      error("expected a string, True, False or a tuple");
    }
    return v;
  }

  std::string_view text_;
  const std::string& name_;
  std::size_t pos_ = 0;
};

struct Descr {
  DType dtype;
  bool big_endian;
};

Descr parse_descr(const std::string& d, const std::string& name) {
  struct Known {
    const char* code;
    DType dtype;
  };
  static constexpr Known kKnown[] = {
      {"b1", DType::kBool},    {"u1", DType::kUInt8},   {"i4", DType::kInt32},
      {"i8", DType::kInt64},   {"f2", DType::kFloat16}, {"f4", DType::kFloat32},
      {"f8", DType::kFloat64},
  };
  if (d.size() == 3) {
    const char order = d[0];
    const std::string code = d.substr(1);
    for (const Known& k : kKnown) {
      if (code != k.code) continue;
      const bool one_byte = dtype_size(k.dtype) == 1;
      if (order == '<' || (order == '|' && one_byte) ||
          (order == '=' && one_byte)) {
        return {k.dtype, false};
      }
      if (order == '>') return {k.dtype, !one_byte};
      if (order == '=')
        return {k.dtype, std::endian::native == std::endian::big};
    }
  }
  fail(name, "unsupported dtype '" + d +
                 "' (expected bool, uint8, int32, int64, float16, float32 "
                 "or float64, e.g. '<f4')");
}

// Reorders Fortran-order elements into C order.
std::vector<std::byte> fortran_to_c(const std::vector<std::byte>& src,
                                    const std::vector<int64_t>& shape,
                                    std::size_t item) {
  std::vector<std::byte> dst(src.size());
  const std::size_t nd = shape.size();
  std::vector<int64_t> index(nd, 0);
  std::vector<int64_t> fstride(nd, 1);  // Fortran strides in elements
  for (std::size_t a = 1; a < nd; ++a)
    fstride[a] = fstride[a - 1] * shape[a - 1];
  const std::size_t n = src.size() / item;
  for (std::size_t c = 0; c < n; ++c) {
    int64_t f = 0;
    for (std::size_t a = 0; a < nd; ++a) f += index[a] * fstride[a];
    std::memcpy(&dst[c * item], &src[static_cast<std::size_t>(f) * item], item);
    for (std::size_t a = nd; a-- > 0;) {  // advance the C-order index
      if (++index[a] < shape[a]) break;
      index[a] = 0;
    }
  }
  return dst;
}

uint32_t read_le(const std::byte* p, int bytes) {
  uint32_t v = 0;
  for (int i = bytes - 1; i >= 0; --i)
    v = (v << 8) | static_cast<uint8_t>(p[i]);
  return v;
}

}  // namespace

const char* dtype_name(DType dtype) {
  switch (dtype) {
    case DType::kBool:
      return "bool";
    case DType::kUInt8:
      return "uint8";
    case DType::kInt32:
      return "int32";
    case DType::kInt64:
      return "int64";
    case DType::kFloat16:
      return "float16";
    case DType::kFloat32:
      return "float32";
    case DType::kFloat64:
      return "float64";
  }
  return "unknown";
}

std::size_t dtype_size(DType dtype) {
  switch (dtype) {
    case DType::kBool:
    case DType::kUInt8:
      return 1;
    case DType::kFloat16:
      return 2;
    case DType::kInt32:
    case DType::kFloat32:
      return 4;
    case DType::kInt64:
    case DType::kFloat64:
      return 8;
  }
  return 0;
}

int64_t Array::numel() const {
  int64_t n = 1;
  for (int64_t e : shape) n *= e;
  return n;
}

std::vector<float> Array::to_float() const {
  const std::size_t n = data.size() / dtype_size(dtype);
  std::vector<float> out(n);
  const std::byte* p = data.data();
  for (std::size_t i = 0; i < n; ++i) {
    switch (dtype) {
      case DType::kFloat16: {
        uint16_t bits;
        std::memcpy(&bits, p + 2 * i, 2);
        out[i] = float16::from_bits(bits).to_float();
        break;
      }
      case DType::kFloat32:
        std::memcpy(&out[i], p + 4 * i, 4);
        break;
      case DType::kFloat64: {
        double d;
        std::memcpy(&d, p + 8 * i, 8);
        out[i] = static_cast<float>(d);
        break;
      }
      default:
        throw Error(std::string("npy: expected a float dtype, got ") +
                    dtype_name(dtype));
    }
  }
  return out;
}

std::vector<int64_t> Array::to_int64() const {
  const std::size_t n = data.size() / dtype_size(dtype);
  std::vector<int64_t> out(n);
  const std::byte* p = data.data();
  for (std::size_t i = 0; i < n; ++i) {
    switch (dtype) {
      case DType::kUInt8:
        out[i] = static_cast<uint8_t>(p[i]);
        break;
      case DType::kInt32: {
        int32_t v;
        std::memcpy(&v, p + 4 * i, 4);
        out[i] = v;
        break;
      }
      case DType::kInt64:
        std::memcpy(&out[i], p + 8 * i, 8);
        break;
      default:
        throw Error(std::string("npy: expected an integer dtype, got ") +
                    dtype_name(dtype));
    }
  }
  return out;
}

Array parse(std::span<const std::byte> file, const std::string& name) {
  if (file.size() < kMagicLen + 2 ||
      std::memcmp(file.data(), kMagic, kMagicLen) != 0) {
    fail(name, "not an .npy file (missing the \\x93NUMPY magic)");
  }
  const int major = static_cast<int>(file[kMagicLen]);
  const int minor = static_cast<int>(file[kMagicLen + 1]);
  if ((major != 1 && major != 2 && major != 3) || minor != 0) {
    fail(name, "unsupported format version " + std::to_string(major) + "." +
                   std::to_string(minor) + " (expected 1.0, 2.0 or 3.0)");
  }
  const int len_bytes = major == 1 ? 2 : 4;
  const std::size_t prefix = kMagicLen + 2 + len_bytes;
  if (file.size() < prefix) fail(name, "truncated before the header length");
  const std::size_t header_len = read_le(&file[kMagicLen + 2], len_bytes);
  if (header_len > kMaxHeaderBytes) {
    fail(name, "header length " + std::to_string(header_len) +
                   " is absurd (limit " + std::to_string(kMaxHeaderBytes) +
                   ")");
  }
  if (file.size() - prefix < header_len) {
    fail(name, "header length " + std::to_string(header_len) +
                   " runs past the end of the file (" +
                   std::to_string(file.size()) + " bytes)");
  }
  const std::string_view header(reinterpret_cast<const char*>(&file[prefix]),
                                header_len);
  if (major < 3) {
    for (char c : header) {
      if (static_cast<unsigned char>(c) > 0x7f) {
        fail(name, "header is not ASCII (version " + std::to_string(major) +
                       ".0 requires it)");
      }
    }
  }

  std::optional<Descr> descr;
  std::optional<bool> fortran;
  std::optional<std::vector<int64_t>> shape;
  for (auto& [key, value] : HeaderParser(header, name).parse_dict()) {
    if (key == "descr" && value.kind == HeaderValue::kString && !descr) {
      descr = parse_descr(value.str, name);
    } else if (key == "fortran_order" && value.kind == HeaderValue::kBool &&
               !fortran) {
      fortran = value.flag;
    } else if (key == "shape" && value.kind == HeaderValue::kTuple && !shape) {
      shape = value.ints;
    } else {
      fail(name, "unexpected, repeated or mistyped header key '" + key + "'");
    }
  }
  if (!descr || !fortran || !shape) {
    fail(name, "header lacks one of 'descr', 'fortran_order', 'shape'");
  }

  Array array;
  array.dtype = descr->dtype;
  array.shape = *shape;
  const std::size_t item = dtype_size(array.dtype);
  const std::size_t available = file.size() - prefix - header_len;
  std::size_t bytes = item;
  for (int64_t e : array.shape) {
    if (__builtin_mul_overflow(bytes, static_cast<std::size_t>(e), &bytes)) {
      fail(name, "shape's byte size overflows");
    }
  }
  if (bytes > available) {
    fail(name, "truncated: shape needs " + std::to_string(bytes) +
                   " bytes of data, file has " + std::to_string(available));
  }
  if (bytes < available) {
    fail(name, std::to_string(available - bytes) +
                   " unexpected bytes after the data");
  }
  const std::byte* src = &file[prefix + header_len];
  array.data.assign(src, src + bytes);
  if (descr->big_endian) {
    for (std::size_t i = 0; i < bytes; i += item) {
      std::reverse(&array.data[i], &array.data[i] + item);
    }
  }
  if (array.dtype == DType::kBool) {
    for (std::byte& b : array.data) b = b != std::byte{0} ? std::byte{1} : b;
  }
  if (*fortran && array.shape.size() > 1 && bytes > 0) {
    array.data = fortran_to_c(array.data, array.shape, item);
  }
  return array;
}

Array load(const std::string& path) {
  const std::vector<std::byte> bytes =
      util::read_file(path, "npy file '" + path + "'");
  return parse(bytes, path);
}

std::vector<std::byte> serialize(const Array& array) {
  static_assert(std::endian::native == std::endian::little,
                "the writer assumes a little-endian host");
  const std::size_t item = dtype_size(array.dtype);
  if (static_cast<std::size_t>(array.numel()) * item != array.data.size()) {
    throw Error("npy::serialize: data holds " +
                std::to_string(array.data.size()) + " bytes, shape needs " +
                std::to_string(array.numel() * item));
  }
  static constexpr const char* kDescr[] = {"|b1", "|u1", "<i4", "<i8",
                                           "<f2", "<f4", "<f8"};
  std::string header = "{'descr': '" +
                       std::string(kDescr[static_cast<int>(array.dtype)]) +
                       "', 'fortran_order': False, 'shape': (";
  for (int64_t e : array.shape) header += std::to_string(e) + ", ";
  if (array.shape.size() > 1) header.resize(header.size() - 2);
  if (array.shape.size() == 1) header.resize(header.size() - 1);
  header += "), }";
  const bool v2 = header.size() + 1 + kMagicLen + 4 > 65535;
  const std::size_t prefix = kMagicLen + 2 + (v2 ? 4 : 2);
  const std::size_t total = (prefix + header.size() + 1 + 63) / 64 * 64;
  header.append(total - prefix - header.size() - 1, ' ');
  header += '\n';

  std::vector<std::byte> out(prefix + header.size() + array.data.size());
  std::memcpy(out.data(), kMagic, kMagicLen);
  out[kMagicLen] = std::byte{static_cast<uint8_t>(v2 ? 2 : 1)};
  out[kMagicLen + 1] = std::byte{0};
  const uint32_t len = static_cast<uint32_t>(header.size());
  for (int i = 0; i < (v2 ? 4 : 2); ++i) {
    out[kMagicLen + 2 + i] = std::byte{static_cast<uint8_t>(len >> (8 * i))};
  }
  std::memcpy(&out[prefix], header.data(), header.size());
  if (!array.data.empty()) {
    std::memcpy(&out[prefix + header.size()], array.data.data(),
                array.data.size());
  }
  return out;
}

void check_writable(const std::string& path) {
  util::check_writable(path, "npy file '" + path + "'");
}

void save(const std::string& path, const Array& array) {
  util::write_file(path, serialize(array), "npy file '" + path + "'");
}

void save(const std::string& path, std::span<const float> data,
          std::span<const int64_t> shape) {
  Array array;
  array.dtype = DType::kFloat32;
  array.shape.assign(shape.begin(), shape.end());
  const auto* p = reinterpret_cast<const std::byte*>(data.data());
  array.data.assign(p, p + data.size_bytes());
  save(path, array);
}

}  // namespace attn::npy

// safetensors reading and writing (attn/safetensors.h). The reader treats
// its input as hostile: sizes are checked before they are used, arithmetic
// on them cannot overflow, and the JSON header is parsed by nlohmann-json
// with a callback that bounds its nesting and rejects duplicate names.
#include "attn/safetensors.h"

#include <algorithm>
#include <cstring>
#include <nlohmann/json.hpp>
#include <set>

#include "attn/types.h"
#include "src/util/file_io.h"

namespace attn::safetensors {
namespace {

using nlohmann::json;

constexpr struct {
  DType dtype;
  const char* name;
  std::size_t size;
} kDTypes[] = {
    {DType::kBool, "BOOL", 1}, {DType::kU8, "U8", 1},
    {DType::kI8, "I8", 1},     {DType::kI16, "I16", 2},
    {DType::kI32, "I32", 4},   {DType::kI64, "I64", 8},
    {DType::kF16, "F16", 2},   {DType::kBF16, "BF16", 2},
    {DType::kF32, "F32", 4},   {DType::kF64, "F64", 8},
};

[[noreturn]] void fail(const std::string& name, const std::string& what) {
  throw Error("safetensors file '" + name + "': " + what);
}

uint64_t read_le64(const std::byte* p) {
  uint64_t x = 0;
  for (int i = 7; i >= 0; --i) x = (x << 8) | static_cast<uint64_t>(p[i]);
  return x;
}

// An unsigned JSON integer, or an error naming `what`.
uint64_t unsigned_value(const json& j, const std::string& file,
                        const std::string& what) {
  if (!j.is_number_unsigned())
    fail(file, what + " must be a non-negative integer");
  return j.get<uint64_t>();
}

}  // namespace

const char* dtype_name(DType dtype) {
  for (const auto& d : kDTypes) {
    if (d.dtype == dtype) return d.name;
  }
  return "unknown";
}

std::size_t dtype_size(DType dtype) {
  for (const auto& d : kDTypes) {
    if (d.dtype == dtype) return d.size;
  }
  return 0;
}

int64_t TensorInfo::numel() const {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return n;
}

File File::parse(std::span<const std::byte> bytes, const std::string& name) {
  File f;
  f.name_ = name;
  if (bytes.size() < 8) fail(name, "shorter than the 8-byte header length");
  const uint64_t header_len = read_le64(bytes.data());
  if (header_len > kMaxHeaderBytes) {
    fail(name, "header length " + std::to_string(header_len) +
                   " exceeds the limit of " + std::to_string(kMaxHeaderBytes) +
                   " bytes");
  }
  if (header_len > bytes.size() - 8) {
    fail(name, "header length " + std::to_string(header_len) +
                   " runs past the end of the " + std::to_string(bytes.size()) +
                   "-byte file");
  }
  const char* text = reinterpret_cast<const char*>(bytes.data() + 8);
  if (header_len == 0 || text[0] != '{')
    fail(name, "header is not a JSON object");
  std::set<std::string> seen;
  json header;
  try {
    header = json::parse(
        text, text + header_len,
        [&](int depth, json::parse_event_t event, json& parsed) {
          if (depth > 3)
            fail(name, "header nests deeper than the format allows");
          if (event == json::parse_event_t::key && depth == 1) {
            const std::string key = parsed.get<std::string>();
            if (!seen.insert(key).second)
              fail(name, "tensor '" + key + "' appears twice");
          }
          return true;
        });
  } catch (const json::exception& e) {
    fail(name, std::string("header is not valid JSON: ") + e.what());
  }
  if (!header.is_object()) fail(name, "header is not a JSON object");
  const std::size_t buffer = bytes.size() - 8 - header_len;

  std::vector<std::pair<std::size_t, std::size_t>> ranges;
  for (const auto& [key, entry] : header.items()) {
    if (key == "__metadata__") {
      if (!entry.is_object())
        fail(name, "__metadata__ must be an object of strings");
      for (const auto& [mk, mv] : entry.items()) {
        if (!mv.is_string())
          fail(name, "__metadata__ value '" + mk + "' is not a string");
        f.metadata_[mk] = mv.get<std::string>();
      }
      continue;
    }
    const std::string where = "tensor '" + key + "'";
    if (!entry.is_object() || entry.size() != 3 || !entry.contains("dtype") ||
        !entry.contains("shape") || !entry.contains("data_offsets")) {
      fail(name,
           where +
               " must be an object with exactly dtype, shape and data_offsets");
    }
    TensorInfo t;
    const json& dt = entry["dtype"];
    bool known = false;
    if (dt.is_string()) {
      for (const auto& d : kDTypes) {
        if (dt.get<std::string>() == d.name) {
          t.dtype = d.dtype;
          known = true;
        }
      }
    }
    if (!known) fail(name, where + " has an unknown dtype " + dt.dump());
    const json& shape = entry["shape"];
    if (!shape.is_array() || shape.size() > kMaxDims) {
      fail(name, where + " shape must be an array of at most " +
                     std::to_string(kMaxDims) + " non-negative integers");
    }
    // Byte size, checked against the buffer at every step so it cannot
    // overflow.
    uint64_t size = dtype_size(t.dtype);
    bool zero = false;
    for (const json& d : shape) {
      const uint64_t extent = unsigned_value(d, name, where + " shape entry");
      if (extent > (uint64_t{1} << 62))
        fail(name, where + " has an absurd extent");
      t.shape.push_back(static_cast<int64_t>(extent));
      if (extent == 0) zero = true;
      if (!zero && size > buffer / std::max<uint64_t>(extent, 1)) {
        fail(name, where + " needs more bytes than the file holds");
      }
      size *= extent;
    }
    if (zero) size = 0;
    const json& off = entry["data_offsets"];
    if (!off.is_array() || off.size() != 2) {
      fail(name, where + " data_offsets must be [begin, end]");
    }
    const uint64_t begin =
        unsigned_value(off[0], name, where + " data_offsets begin");
    const uint64_t end =
        unsigned_value(off[1], name, where + " data_offsets end");
    if (begin > end || end > buffer) {
      fail(name, where + " data_offsets [" + std::to_string(begin) + ", " +
                     std::to_string(end) + "] fall outside the " +
                     std::to_string(buffer) + "-byte data buffer");
    }
    if (end - begin != size) {
      fail(name, where + " holds " + std::to_string(end - begin) +
                     " bytes, its dtype and shape need " +
                     std::to_string(size));
    }
    t.begin = static_cast<std::size_t>(begin);
    t.end = static_cast<std::size_t>(end);
    ranges.emplace_back(t.begin, t.end);
    f.tensors_.emplace(key, std::move(t));
  }
  // The tensors tile the buffer: no overlap, no hole, nothing after.
  std::sort(ranges.begin(), ranges.end());
  std::size_t at = 0;
  for (const auto& [b, e] : ranges) {
    if (b != at) {
      fail(name,
           b < at ? "tensors overlap at byte " + std::to_string(b)
                  : "the data buffer has a gap at byte " + std::to_string(at));
    }
    at = e;
  }
  if (at != buffer) {
    fail(name, std::to_string(buffer - at) +
                   " bytes after the last tensor belong to none");
  }
  const std::byte* data = bytes.data() + 8 + header_len;
  f.data_.assign(data, data + buffer);
  return f;
}

File File::load(const std::string& path) {
  return parse(util::read_file(path, "safetensors file '" + path + "'"), path);
}

std::vector<std::string> File::names() const {
  std::vector<std::string> n;
  for (const auto& [k, v] : tensors_) n.push_back(k);
  return n;
}

const TensorInfo& File::info(const std::string& name) const {
  const auto it = tensors_.find(name);
  if (it == tensors_.end()) fail(name_, "has no tensor '" + name + "'");
  return it->second;
}

std::span<const std::byte> File::bytes(const std::string& name) const {
  const TensorInfo& t = info(name);
  return {data_.data() + t.begin, t.end - t.begin};
}

std::vector<float> File::to_float(const std::string& name) const {
  const TensorInfo& t = info(name);
  const std::byte* p = data_.data() + t.begin;
  const auto n = static_cast<std::size_t>(t.numel());
  std::vector<float> out(n);
  for (std::size_t i = 0; i < n; ++i) {
    switch (t.dtype) {
      case DType::kF32:
        std::memcpy(&out[i], p + 4 * i, 4);
        break;
      case DType::kF64: {
        double x;
        std::memcpy(&x, p + 8 * i, 8);
        out[i] = static_cast<float>(x);
        break;
      }
      case DType::kF16:
      case DType::kBF16: {
        uint16_t bits;
        std::memcpy(&bits, p + 2 * i, 2);
        out[i] = t.dtype == DType::kF16 ? float16::from_bits(bits).to_float()
                                        : bfloat16::from_bits(bits).to_float();
        break;
      }
      default:
        fail(name_, "tensor '" + name + "' is " + dtype_name(t.dtype) +
                        ", not a floating-point type");
    }
  }
  return out;
}

std::vector<float> File::to_float(
    const std::string& name, std::span<const int64_t> expected_shape) const {
  const TensorInfo& t = info(name);
  if (!std::equal(t.shape.begin(), t.shape.end(), expected_shape.begin(),
                  expected_shape.end())) {
    const auto str = [](auto s) {
      std::string r = "[";
      for (size_t i = 0; i < s.size(); ++i)
        r += (i ? ", " : "") + std::to_string(s[i]);
      return r + "]";
    };
    fail(name_, "tensor '" + name + "' has shape " + str(t.shape) +
                    ", expected " + str(expected_shape));
  }
  return to_float(name);
}

std::vector<std::byte> serialize(
    std::span<const Entry> tensors,
    const std::map<std::string, std::string>& metadata) {
  json header = json::object();
  std::size_t at = 0;
  for (const Entry& e : tensors) {
    if (e.name.empty() || e.name == "__metadata__" || header.contains(e.name)) {
      throw Error("attn::safetensors::serialize: tensor name '" + e.name +
                  "' is empty, reserved or repeated");
    }
    if (e.dtype != DType::kF32 && e.dtype != DType::kF16 &&
        e.dtype != DType::kBF16) {
      throw Error("attn::safetensors::serialize: tensor '" + e.name +
                  "': dtype must be F32, F16 or BF16");
    }
    int64_t n = 1;
    for (int64_t d : e.shape) {
      if (d < 0)
        throw Error("attn::safetensors::serialize: tensor '" + e.name +
                    "': negative extent");
      n *= d;
    }
    if (static_cast<std::size_t>(n) != e.values.size()) {
      throw Error("attn::safetensors::serialize: tensor '" + e.name +
                  "': shape holds " + std::to_string(n) + " values, got " +
                  std::to_string(e.values.size()));
    }
    const std::size_t size = static_cast<std::size_t>(n) * dtype_size(e.dtype);
    header[e.name] = {{"dtype", dtype_name(e.dtype)},
                      {"shape", e.shape},
                      {"data_offsets", {at, at + size}}};
    at += size;
  }
  if (!metadata.empty()) header["__metadata__"] = metadata;
  std::string text = header.dump();
  text.append((8 - text.size() % 8) % 8, ' ');  // data starts 8-byte aligned
  std::vector<std::byte> out(8 + text.size() + at);
  for (int i = 0; i < 8; ++i)
    out[i] = static_cast<std::byte>((text.size() >> (8 * i)) & 0xff);
  std::memcpy(out.data() + 8, text.data(), text.size());
  std::byte* data = out.data() + 8 + text.size();
  for (const Entry& e : tensors) {
    for (float x : e.values) {
      if (e.dtype == DType::kF32) {
        std::memcpy(data, &x, 4);
        data += 4;
      } else {
        const uint16_t bits = e.dtype == DType::kF16
                                  ? float16::from_float(x).bits
                                  : bfloat16::from_float(x).bits;
        std::memcpy(data, &bits, 2);
        data += 2;
      }
    }
  }
  return out;
}

void save(const std::string& path, std::span<const Entry> tensors,
          const std::map<std::string, std::string>& metadata) {
  util::write_file(path, serialize(tensors, metadata),
                   "safetensors file '" + path + "'");
}

}  // namespace attn::safetensors

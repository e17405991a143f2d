#include "src/util/file_io.h"

#include <fstream>

#include "attn/error.h"

namespace attn::util {

std::vector<std::byte> read_file(const std::string& path, const std::string& label) {
  const auto fail = [&](const std::string& why) { throw Error(label + ": " + why); };
  std::ifstream in(path, std::ios::binary);
  if (!in) fail("cannot open for reading");
  in.seekg(0, std::ios::end);
  const std::streamoff size = in.tellg();
  if (size < 0) fail("cannot determine its size");
  in.seekg(0, std::ios::beg);
  std::vector<std::byte> bytes(static_cast<std::size_t>(size));
  if (!in.read(reinterpret_cast<char*>(bytes.data()), size)) fail("read failed");
  return bytes;
}

void write_file(const std::string& path, std::span<const std::byte> bytes,
                const std::string& label) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  if (!out) throw Error(label + ": cannot open for writing");
  out.write(reinterpret_cast<const char*>(bytes.data()),
            static_cast<std::streamsize>(bytes.size()));
  if (!out) throw Error(label + ": write failed");
}

}  // namespace attn::util

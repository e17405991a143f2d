#include "src/util/file_io.h"

#include <sys/stat.h>
#include <unistd.h>

#include <fstream>
#include <new>

#include "attn/error.h"

namespace attn::util {

std::vector<std::byte> read_file(const std::string& path,
                                 const std::string& label) {
  const auto fail = [&](const std::string& why) {
    throw Error(label + ": " + why);
  };
  // Only regular files: a directory "opens" and reports a nonsense size, a
  // FIFO or a terminal would block forever.
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0)
    fail("cannot open for reading (no such file)");
  if (S_ISDIR(st.st_mode)) fail("is a directory, expected a file");
  if (!S_ISREG(st.st_mode))
    fail("is not a regular file (a FIFO, device or socket)");
  std::ifstream in(path, std::ios::binary);
  if (!in) fail("cannot open for reading");
  in.seekg(0, std::ios::end);
  const std::streamoff size = in.tellg();
  if (size < 0) fail("cannot determine its size");
  in.seekg(0, std::ios::beg);
  std::vector<std::byte> bytes;
  try {
    bytes.resize(static_cast<std::size_t>(size));
  } catch (const std::bad_alloc&) {
    fail("its " + std::to_string(size) + " bytes do not fit in memory");
  } catch (const std::length_error&) {
    fail("its " + std::to_string(size) + " bytes do not fit in memory");
  }
  if (!in.read(reinterpret_cast<char*>(bytes.data()), size))
    fail("read failed");
  return bytes;
}

void write_file(const std::string& path, std::span<const std::byte> bytes,
                const std::string& label) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  if (!out) throw Error(label + ": cannot open for writing");
  out.write(reinterpret_cast<const char*>(bytes.data()),
            static_cast<std::streamsize>(bytes.size()));
  // Errors of buffered writes (a full disk, /dev/full) show only at flush
  // and close.
  out.flush();
  out.close();
  if (!out) throw Error(label + ": write failed");
}

void check_writable(const std::string& path, const std::string& label) {
  const auto fail = [&](const std::string& why) {
    throw Error(label + ": " + why);
  };
  struct stat st {};
  if (::stat(path.c_str(), &st) == 0) {
    if (S_ISDIR(st.st_mode)) fail("is a directory, expected a file name");
    if (::access(path.c_str(), W_OK) != 0) fail("exists and is not writable");
    return;
  }
  const std::string::size_type slash = path.find_last_of('/');
  const std::string dir = slash == std::string::npos
                              ? "."
                              : (slash == 0 ? "/" : path.substr(0, slash));
  if (::stat(dir.c_str(), &st) != 0 || !S_ISDIR(st.st_mode)) {
    fail("its directory '" + dir + "' does not exist");
  }
  if (::access(dir.c_str(), W_OK) != 0)
    fail("its directory '" + dir + "' is not writable");
}

}  // namespace attn::util

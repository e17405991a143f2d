#include "src/util/file_io.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstdint>
#include <cstring>
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

namespace {

// All of `bytes` to fd, retrying short writes and interrupts; false on an
// error (errno says which).
bool write_all(int fd, std::span<const std::byte> bytes) {
  const std::byte* p = bytes.data();
  std::size_t left = bytes.size();
  while (left > 0) {
    const ssize_t n = ::write(fd, p, left);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    p += n;
    left -= static_cast<std::size_t>(n);
  }
  return true;
}

std::string reason(const char* what) {
  return std::string(what) + " (" + std::strerror(errno) + ")";
}

}  // namespace

void write_file(const std::string& path, std::span<const std::byte> bytes,
                const std::string& label) {
  const auto fail = [&](const std::string& why) {
    throw Error(label + ": " + why);
  };
  struct stat st {};
  const bool exists = ::stat(path.c_str(), &st) == 0;
  if (exists && S_ISDIR(st.st_mode)) fail("is a directory, expected a file");
  if (exists && !S_ISREG(st.st_mode)) {
    // A device or FIFO (/dev/stdout, /dev/full): written in place, every
    // write checked.
    const int fd = ::open(path.c_str(), O_WRONLY | O_CLOEXEC);
    if (fd < 0) fail(reason("cannot open for writing"));
    const bool ok = write_all(fd, bytes);
    const int saved = errno;
    if (::close(fd) != 0 || !ok) {
      errno = ok ? errno : saved;
      fail(reason("write failed"));
    }
    return;
  }
  // A regular file: written to a temporary name in the same directory,
  // synced, then renamed over the target, so a failed write (a full disk,
  // a file-size limit) leaves the old file, or none, never a truncated one.
  static std::atomic<uint64_t> counter{0};
  const std::string tmp = path + ".attn-tmp." + std::to_string(::getpid()) +
                          "." + std::to_string(counter++);
  const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC,
                        exists ? (st.st_mode & 07777) : 0666);
  if (fd < 0) fail(reason("cannot open for writing"));
  const auto abandon = [&](const char* what) {
    const std::string why = reason(what);
    ::close(fd);
    ::unlink(tmp.c_str());
    fail(why);
  };
  if (exists) (void)::fchmod(fd, st.st_mode & 07777);  // despite the umask
  if (!write_all(fd, bytes)) abandon("write failed");
  if (::fsync(fd) != 0) abandon("write failed at fsync");
  if (::close(fd) != 0) {
    const std::string why = reason("write failed at close");
    ::unlink(tmp.c_str());
    fail(why);
  }
  if (::rename(tmp.c_str(), path.c_str()) != 0) {
    const std::string why = reason("cannot replace the file");
    ::unlink(tmp.c_str());
    fail(why);
  }
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

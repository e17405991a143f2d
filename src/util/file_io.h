// Whole-file reads and writes for the file formats (npy, safetensors).
#ifndef ATTN_SRC_UTIL_FILE_IO_H_
#define ATTN_SRC_UTIL_FILE_IO_H_

#include <cstddef>
#include <span>
#include <string>
#include <vector>

namespace attn::util {

// The file's bytes; throws attn::Error "<label>: <reason>" when it cannot
// be read (label names the file, e.g. "npy file 'x.npy'").
std::vector<std::byte> read_file(const std::string& path,
                                 const std::string& label);
// Replaces the file's contents; throws like read_file. A regular file (or
// a new name) is written to a temporary name beside it, synced and renamed
// over it, so a failed write leaves the old contents (or no file), never a
// truncated one; a device or FIFO is written in place. Every write, the
// sync and the close are checked.
void write_file(const std::string& path, std::span<const std::byte> bytes,
                const std::string& label);
// Throws like read_file unless `path` could be written: an existing
// writable file, or a new name in a writable directory. For checking
// outputs before a long computation.
void check_writable(const std::string& path, const std::string& label);

}  // namespace attn::util

#endif  // ATTN_SRC_UTIL_FILE_IO_H_

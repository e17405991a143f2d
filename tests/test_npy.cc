// The .npy reader and writer: every supported form, and every malformed
// file rejected with a clear attn::Error.
#include <dirent.h>
#include <gtest/gtest.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <csignal>
#include <cstring>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#include "attn/npy.h"

namespace attn::npy {
namespace {

// A raw .npy file: magic, version, header length, header, data.
std::vector<std::byte> file(int major, const std::string& header,
                            const std::vector<uint8_t>& data,
                            int64_t claimed_len = -1) {
  std::vector<std::byte> f;
  for (char c : std::string("\x93NUMPY")) f.push_back(std::byte(c));
  f.push_back(std::byte(major));
  f.push_back(std::byte(0));
  const uint64_t len = claimed_len >= 0 ? uint64_t(claimed_len) : header.size();
  for (int i = 0; i < (major == 1 ? 2 : 4); ++i)
    f.push_back(std::byte(len >> (8 * i)));
  for (char c : header) f.push_back(std::byte(c));
  for (uint8_t b : data) f.push_back(std::byte(b));
  return f;
}

std::vector<uint8_t> bytes_of(const void* p, size_t n) {
  const auto* b = static_cast<const uint8_t*>(p);
  return {b, b + n};
}

void expect_rejected(const std::vector<std::byte>& f,
                     const std::string& fragment) {
  try {
    parse(f, "bad.npy");
    ADD_FAILURE() << "accepted; expected error containing '" << fragment << "'";
  } catch (const Error& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find("bad.npy"), std::string::npos) << msg;
    EXPECT_NE(msg.find(fragment), std::string::npos) << msg;
  }
}

TEST(Npy, RoundTripEveryDtype) {
  for (DType t : {DType::kBool, DType::kUInt8, DType::kInt32, DType::kInt64,
                  DType::kFloat16, DType::kFloat32, DType::kFloat64}) {
    Array a;
    a.dtype = t;
    a.shape = {2, 3, 1};
    for (size_t i = 0; i < 6 * dtype_size(t); ++i) {
      a.data.push_back(std::byte(t == DType::kBool ? i % 2 : i * 37 % 251));
    }
    const auto bytes = serialize(a);
    EXPECT_EQ(bytes.size() % 64, a.data.size() % 64) << "header padded to 64";
    const Array b = parse(bytes);
    EXPECT_EQ(b.dtype, t);
    EXPECT_EQ(b.shape, a.shape);
    EXPECT_EQ(b.data, a.data);
  }
  Array scalar;
  scalar.shape = {};
  scalar.data.resize(4);
  EXPECT_EQ(parse(serialize(scalar)).shape, std::vector<int64_t>{});
  Array one_d;
  one_d.shape = {1};
  one_d.data.resize(4);
  EXPECT_EQ(parse(serialize(one_d)).shape, std::vector<int64_t>{1});
}

TEST(Npy, BigEndianAndVersions) {
  const uint8_t be_one_half[8] = {0x3f, 0x80, 0, 0, 0x3f, 0, 0, 0};  // 1.0, 0.5
  for (int major : {1, 2, 3}) {
    const Array a = parse(file(major,
                               "{'descr': '>f4', 'fortran_order': False, "
                               "'shape': (2,), }\n",
                               bytes_of(be_one_half, 8)));
    EXPECT_EQ(a.to_float(), (std::vector<float>{1.0f, 0.5f})) << major;
  }
  const int64_t be = 0x0102030405060708;
  uint8_t raw[8];
  for (int i = 0; i < 8; ++i) raw[i] = uint8_t(be >> (8 * (7 - i)));
  const Array i8 =
      parse(file(1, "{'descr': '>i8', 'fortran_order': False, 'shape': (1,)}",
                 bytes_of(raw, 8)));
  EXPECT_EQ(i8.to_int64(), std::vector<int64_t>{be});
}

TEST(Npy, FortranOrderBecomesCOrder) {
  // Logical [[1, 2, 3], [4, 5, 6]] stored column-major: 1 4 2 5 3 6.
  const int32_t col_major[6] = {1, 4, 2, 5, 3, 6};
  const Array a = parse(
      file(1, "{'descr': '<i4', 'fortran_order': True, 'shape': (2, 3), }",
           bytes_of(col_major, sizeof col_major)));
  EXPECT_EQ(a.to_int64(), (std::vector<int64_t>{1, 2, 3, 4, 5, 6}));
}

TEST(Npy, BoolIsNormalised) {
  const uint8_t raw[3] = {0, 1, 7};
  const Array a =
      parse(file(1, "{'descr': '|b1', 'fortran_order': False, 'shape': (3,)}",
                 bytes_of(raw, 3)));
  EXPECT_EQ(a.data[2], std::byte{1});
}

TEST(Npy, ConversionsCheckDtype) {
  Array a;
  a.dtype = DType::kInt32;
  a.shape = {1};
  a.data.resize(4);
  EXPECT_THROW(a.to_float(), Error);
  a.dtype = DType::kFloat32;
  EXPECT_THROW(a.to_int64(), Error);
}

const std::string kGood =
    "{'descr': '<f4', 'fortran_order': False, 'shape': (2,), }";
const std::vector<uint8_t> kEight(8, 0);

TEST(NpyRejects, BadMagic) {
  auto f = file(1, kGood, kEight);
  f[1] = std::byte('X');
  expect_rejected(f, "magic");
  expect_rejected({}, "magic");
}

TEST(NpyRejects, UnknownVersion) {
  expect_rejected(file(4, kGood, kEight), "version 4.0");
}

TEST(NpyRejects, HeaderPastEnd) {
  expect_rejected(file(1, kGood, {}, 5000), "runs past the end");
}

TEST(NpyRejects, AbsurdHeaderLength) {
  expect_rejected(file(2, kGood, kEight, int64_t{1} << 31), "absurd");
}

TEST(NpyRejects, TruncatedData) {
  expect_rejected(file(1, kGood, std::vector<uint8_t>(7, 0)), "truncated");
  auto f = file(1, kGood, kEight);
  f.resize(9);
  expect_rejected(f, "truncated");
}

TEST(NpyRejects, TrailingData) {
  expect_rejected(file(1, kGood, std::vector<uint8_t>(9, 0)),
                  "unexpected bytes");
}

TEST(NpyRejects, UnsupportedDtype) {
  expect_rejected(
      file(1, "{'descr': '<c8', 'fortran_order': False, 'shape': (1,)}",
           kEight),
      "unsupported dtype '<c8'");
  expect_rejected(
      file(1, "{'descr': '<U3', 'fortran_order': False, 'shape': (1,)}",
           kEight),
      "unsupported dtype");
}

TEST(NpyRejects, OverflowingShape) {
  expect_rejected(file(1,
                       "{'descr': '<f8', 'fortran_order': False, 'shape': "
                       "(4294967296, 4294967296)}",
                       kEight),
                  "overflows");
  expect_rejected(file(1,
                       "{'descr': '<f4', 'fortran_order': False, 'shape': "
                       "(99999999999999999999,)}",
                       kEight),
                  "overflows 64 bits");
}

TEST(NpyRejects, MalformedHeaders) {
  expect_rejected(file(1, "{'descr': '<f4', 'shape': (2,)}", kEight), "lacks");
  expect_rejected(
      file(1, "{'descr': '<f4', 'fortran_order': False, 'shape': (2,), 'x': 1}",
           kEight),
      "expected a string, True, False or a tuple");
  expect_rejected(file(1,
                       "{'descr': '<f4', 'descr': '<f4', 'fortran_order': "
                       "False, 'shape': (2,)}",
                       kEight),
                  "repeated");
  expect_rejected(
      file(1, "{'descr': '<f4', 'fortran_order': False, 'shape': (-2,)}",
           kEight),
      "non-negative integer");
  expect_rejected(file(1, "{'descr': '<f4, 'fortran_order': False}", kEight),
                  "malformed");
  expect_rejected(
      file(1, "{'descr': '<f4', 'fortran_order': False, 'shape': (2,)} x",
           kEight),
      "after header dict");
  expect_rejected(
      file(1, "{'descr': '<f4', 'fortran_order': 0, 'shape': (2,)}", kEight),
      "malformed");
  expect_rejected(
      file(1,
           std::string(
               "{'descr': '<f4', 'fortran_order': False, 'shape': (2,)}") +
               "\xc3\xa9",
           kEight),
      "not ASCII");
  std::string deep = "{'descr': '<f4', 'fortran_order': False, 'shape': (";
  for (int i = 0; i < 65; ++i) deep += "1,";
  expect_rejected(file(1, deep + ")}", kEight), "more than 64 dimensions");
}

TEST(Npy, SaveAndLoadFile) {
  const std::string path = ::testing::TempDir() + "/attn_npy_test.npy";
  const std::vector<float> data = {1, 2, 3, 4, 5, 6};
  const std::vector<int64_t> shape = {1, 2, 3};
  save(path, data, shape);
  const Array a = load(path);
  EXPECT_EQ(a.shape, shape);
  EXPECT_EQ(a.to_float(), data);
  EXPECT_THROW(load(path + ".missing"), Error);
}

std::string contents(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

// Files in `dir` whose names start with `prefix`.
int count_files(const std::string& dir, const std::string& prefix) {
  int n = 0;
  if (DIR* d = ::opendir(dir.c_str())) {
    while (const dirent* e = ::readdir(d)) {
      n += std::string(e->d_name).rfind(prefix, 0) == 0;
    }
    ::closedir(d);
  }
  return n;
}

// A save that fails part way (here: a file-size limit, as a full disk
// would) throws and leaves the old file as it was, with no temporary file
// beside it; before, the file was truncated first and left half written.
TEST(Npy, FailedSaveLeavesTheOldFile) {
  const std::string dir = ::testing::TempDir();
  const std::string name = "attn_npy_partial.npy";
  const std::string path = dir + "/" + name;
  const std::vector<float> small = {1, 2, 3};
  save(path, small, std::vector<int64_t>{3});
  const std::string before = contents(path);
  ASSERT_FALSE(before.empty());
  const pid_t child = ::fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    std::signal(SIGXFSZ, SIG_IGN);  // the write fails with EFBIG instead
    const rlimit limit{4096, 4096};
    ::setrlimit(RLIMIT_FSIZE, &limit);
    const std::vector<float> big(1 << 16, 7.0f);
    try {
      save(path, big, std::vector<int64_t>{1 << 16});
    } catch (const Error& e) {
      const bool named = std::string(e.what()).find(path) != std::string::npos;
      ::_exit(named ? 0 : 3);
    }
    ::_exit(2);  // no error: a silent short write
  }
  int status = 0;
  ASSERT_EQ(::waitpid(child, &status, 0), child);
  ASSERT_TRUE(WIFEXITED(status));
  EXPECT_EQ(WEXITSTATUS(status), 0) << "2: no error; 3: error without the path";
  const std::string after = contents(path);
  EXPECT_TRUE(after == before) << "the file changed: " << before.size()
                               << " bytes before, " << after.size() << " after";
  EXPECT_EQ(count_files(dir, name + ".attn-tmp"), 0);
}

// Saving over an existing file keeps its permission bits; a new file gets
// the usual 0666 less the umask, not the temporary name's.
TEST(Npy, SaveKeepsPermissions) {
  const std::string path = ::testing::TempDir() + "/attn_npy_mode.npy";
  const std::vector<float> data = {1, 2};
  ::unlink(path.c_str());
  save(path, data, std::vector<int64_t>{2});
  const mode_t mask = ::umask(0);
  ::umask(mask);
  struct stat st {};
  ASSERT_EQ(::stat(path.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0666 & ~mask);
  ASSERT_EQ(::chmod(path.c_str(), 0640), 0);
  save(path, data, std::vector<int64_t>{2});
  ASSERT_EQ(::stat(path.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0640u);
}

// Devices are written in place, and their errors are errors.
TEST(Npy, SaveToAFullDeviceIsAnError) {
  const std::vector<float> data(4096, 1.0f);
  EXPECT_THROW(save("/dev/full", data, std::vector<int64_t>{4096}), Error);
  save("/dev/null", data,
       std::vector<int64_t>{4096});  // a device that takes it
}

}  // namespace
}  // namespace attn::npy

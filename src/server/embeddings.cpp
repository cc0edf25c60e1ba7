#include "server/embeddings.h"

#include <cmath>

namespace jinx::server {

using nlohmann::json;

namespace {

std::vector<int32_t> token_list(const json& a, const ModelContext& ctx) {
  std::vector<int32_t> ids;
  ids.reserve(a.size());
  for (const json& t : a) {
    if (!t.is_number_integer() || t.get<int64_t>() < 0 || t.get<int64_t>() >= ctx.vocab_size)
      bad_request("input", str("token ids must be integers in [0, ", ctx.vocab_size, ")"));
    ids.push_back(t.get<int32_t>());
  }
  return ids;
}

std::vector<int32_t> text_ids(const json& s, const ModelContext& ctx) {
  return ctx.tok->encode(s.get<std::string>(), /*add_special=*/true, /*parse_special=*/false);
}

std::vector<std::vector<int32_t>> read_inputs(const json& in, const ModelContext& ctx) {
  std::vector<std::vector<int32_t>> out;
  if (in.is_string()) {
    out.push_back(text_ids(in, ctx));
  } else if (in.is_array() && !in.empty() && in[0].is_number()) {
    out.push_back(token_list(in, ctx));
  } else if (in.is_array() && !in.empty()) {
    if (in.size() > kMaxEmbeddingInputs)
      bad_request("input", str("at most ", kMaxEmbeddingInputs, " inputs per request, got ",
                               in.size()));
    for (const json& x : in) {
      if (x.is_string()) {
        out.push_back(text_ids(x, ctx));
      } else if (x.is_array()) {
        out.push_back(token_list(x, ctx));
      } else {
        bad_request("input", "'input' items must be strings or arrays of token ids");
      }
    }
  } else {
    bad_request("input",
                "'input' must be a non-empty string, array of strings, array of token ids or "
                "array of such arrays");
  }
  for (size_t i = 0; i < out.size(); ++i) {
    if (out[i].empty()) bad_request("input", str("input ", i, " is empty"));
    if (static_cast<int64_t>(out[i].size()) > ctx.max_model_len)
      bad_request("input", str("input ", i, " has ", out[i].size(),
                               " tokens, more than the model's context (", ctx.max_model_len,
                               ")"));
  }
  return out;
}

}  // namespace

EmbeddingPlan parse_embedding_request(const json& body, const ModelContext& ctx,
                                      int64_t hidden_size) {
  if (!body.contains("input")) bad_request("input", "'input' is required");
  EmbeddingPlan plan;
  plan.inputs = read_inputs(body["input"], ctx);
  for (const auto& ids : plan.inputs) plan.n_tokens += static_cast<int64_t>(ids.size());
  if (body.contains("encoding_format") && !body["encoding_format"].is_null()) {
    const json& f = body["encoding_format"];
    if (!f.is_string() || (f != "float" && f != "base64"))
      bad_request("encoding_format", "'encoding_format' must be \"float\" or \"base64\"");
    plan.base64 = f == "base64";
  }
  if (body.contains("dimensions") && !body["dimensions"].is_null()) {
    const json& d = body["dimensions"];
    if (!d.is_number_integer() || d.get<int64_t>() < 1 || d.get<int64_t>() > hidden_size)
      bad_request("dimensions", str("'dimensions' must be an integer in [1, ", hidden_size, "]"));
    plan.dimensions = d.get<int64_t>();
  }
  return plan;
}

json embedding_response(const EmbeddingPlan& plan, const std::vector<float>& vectors,
                        int64_t hidden_size, const std::string& model) {
  const int64_t dim = plan.dimensions > 0 ? plan.dimensions : hidden_size;
  json data = json::array();
  std::vector<float> v(static_cast<size_t>(dim));
  for (size_t i = 0; i < plan.inputs.size(); ++i) {
    const float* src = vectors.data() + i * hidden_size;
    double n2 = 0;
    for (int64_t k = 0; k < dim; ++k) n2 += double{src[k]} * src[k];
    // A shortened (Matryoshka) vector is scaled back to unit length, as OpenAI does.
    const double scale = plan.dimensions > 0 && n2 > 0 ? 1.0 / std::sqrt(n2) : 1.0;
    for (int64_t k = 0; k < dim; ++k) v[k] = static_cast<float>(src[k] * scale);
    json e = {{"object", "embedding"}, {"index", i}};
    if (plan.base64) {
      e["embedding"] = base64_encode(v.data(), v.size() * sizeof(float));  // x86: little-endian
    } else {
      e["embedding"] = v;
    }
    data.push_back(std::move(e));
  }
  return {{"object", "list"},
          {"data", std::move(data)},
          {"model", model},
          {"usage", {{"prompt_tokens", plan.n_tokens}, {"total_tokens", plan.n_tokens}}}};
}

std::string base64_encode(const void* data, size_t n) {
  static const char kAlphabet[] =
      "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  const auto* p = static_cast<const unsigned char*>(data);
  std::string out;
  out.reserve((n + 2) / 3 * 4);
  for (size_t i = 0; i < n; i += 3) {
    const uint32_t b = (uint32_t{p[i]} << 16) | (i + 1 < n ? uint32_t{p[i + 1]} << 8 : 0) |
                       (i + 2 < n ? uint32_t{p[i + 2]} : 0);
    out += kAlphabet[(b >> 18) & 63];
    out += kAlphabet[(b >> 12) & 63];
    out += i + 1 < n ? kAlphabet[(b >> 6) & 63] : '=';
    out += i + 2 < n ? kAlphabet[b & 63] : '=';
  }
  return out;
}

}  // namespace jinx::server

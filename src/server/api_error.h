// Errors the HTTP layer turns into OpenAI-shaped bodies:
//   {"error": {"message": ..., "type": ..., "param": ..., "code": ...}}
#pragma once

#include <string>

#include <nlohmann/json.hpp>

#include "core/check.h"

namespace jinx::server {

struct ApiError : Error {
  int status;
  std::string type;   // invalid_request_error, authentication_error, not_found_error, ...
  std::string param;  // the offending field, "" if none
  ApiError(int st, std::string msg, std::string p = "", std::string t = "")
      : Error(std::move(msg)), status(st), type(std::move(t)), param(std::move(p)) {
    if (type.empty()) type = default_type(status);
  }
  static std::string default_type(int status) {
    switch (status) {
      case 401: return "authentication_error";
      case 404: return "not_found_error";
      case 413: return "request_too_large";
      case 429: return "rate_limit_exceeded";
      case 503: return "service_unavailable";
      case 500: return "internal_error";
      default: return "invalid_request_error";
    }
  }
};

inline nlohmann::json error_body(int status, const std::string& message,
                                 const std::string& param = "", std::string type = "") {
  if (type.empty()) type = ApiError::default_type(status);
  nlohmann::json e = {{"message", message}, {"type", type},
                      {"param", param.empty() ? nlohmann::json() : nlohmann::json(param)},
                      {"code", status}};
  return {{"error", e}};
}

// Throws ApiError(400) naming `param`.
[[noreturn]] inline void bad_request(const std::string& param, const std::string& msg) {
  throw ApiError(400, msg, param);
}

}  // namespace jinx::server

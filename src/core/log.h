// Minimal leveled logging to stderr.
#pragma once

#include "core/check.h"

namespace jinx {

enum class LogLevel { kDebug, kInfo, kWarn, kError };
void set_log_level(LogLevel level);
LogLevel log_level();
void log_line(LogLevel level, const std::string& msg);

template <typename... Args>
void log_info(Args&&... args) {
  if (log_level() <= LogLevel::kInfo) log_line(LogLevel::kInfo, str(std::forward<Args>(args)...));
}
template <typename... Args>
void log_warn(Args&&... args) {
  if (log_level() <= LogLevel::kWarn) log_line(LogLevel::kWarn, str(std::forward<Args>(args)...));
}

}  // namespace jinx

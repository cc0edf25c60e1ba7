#include "core/log.h"

#include <atomic>
#include <cstdio>

namespace jinx {

namespace {
std::atomic<LogLevel> g_level{LogLevel::kWarn};  // process-wide verbosity, set once by the CLI
}

void set_log_level(LogLevel level) { g_level.store(level); }
LogLevel log_level() { return g_level.load(); }

void log_line(LogLevel level, const std::string& msg) {
  static const char* kNames[] = {"debug", "info", "warn", "error"};
  std::fprintf(stderr, "[jinx %s] %s\n", kNames[static_cast<int>(level)], msg.c_str());
}

}  // namespace jinx

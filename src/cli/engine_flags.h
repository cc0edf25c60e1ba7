// Command-line flags of the batched engine, shared by the subcommands that run it.
#pragma once

#include <memory>
#include <string>

#include <CLI/CLI.hpp>

#include "engine/llm.h"

namespace jinx::cli {

struct EngineFlags {
  EngineOptions options;
  std::string kv_dtype = "auto";  // f32 on the CPU, bf16 on a GPU
  bool no_prefix_cache = false;
  bool enforce_eager = false;

  // The options with the string flags applied; throws jinx::Error on a bad value.
  EngineOptions resolve() const;
};

void add_engine_flags(CLI::App* sub, EngineFlags* f);

}  // namespace jinx::cli

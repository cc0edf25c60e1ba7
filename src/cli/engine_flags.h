// Command-line flags of the batched engine, shared by the subcommands that run it.
#pragma once

#include <memory>
#include <string>

#include <CLI/CLI.hpp>

#include "engine/llm.h"

namespace jinx::cli {

struct EngineFlags {
  EngineOptions options;
  std::string kv_dtype = "auto";  // f16 on the CPU (as llama.cpp), bf16 on a GPU
  bool no_prefix_cache = false;
  bool enforce_eager = false;
  std::string overlap = "auto";
  std::string speculative_sampling = "match";
  std::string quantize = "none";
  std::string scheduling_policy = "fcfs";
  int tensor_parallel_size = 1;  // processes the model is sharded over (mpirun -np N)

  // The options with the string flags applied; throws jinx::Error on a bad value.
  EngineOptions resolve() const;
};

void add_engine_flags(CLI::App* sub, EngineFlags* f);

// The MPI group this process belongs to, when started by `mpirun -np N` (main sets it on rank
// 0; null otherwise). --tensor-parallel-size N shards the model over it.
void set_process_comm(std::shared_ptr<Communicator> comm);
std::shared_ptr<Communicator> process_comm();

// A --kv-cache-dtype value: auto (f16 on the CPU, bf16 on a GPU), f32, f16, bf16, int8, fp8 /
// fp8_e4m3. Throws jinx::Error on anything else.
DType parse_kv_dtype(const std::string& value, bool gpu);

// --quantize none|q8_0|q4_0, for commands that load a model without the engine flags.
void add_quantize_flag(CLI::App* sub, std::string* value);
// The flag's value as a WeightQuant; throws jinx::Error on anything else.
WeightQuant parse_quantize(const std::string& value);

}  // namespace jinx::cli

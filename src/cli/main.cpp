// jinx: the command-line front end. Each subcommand lives in its own cmd_*.cpp.
#include <cstdio>
#include <cstdlib>
#include <string>
#include <exception>

#include <CLI/CLI.hpp>

#include "backend/cpu/kernels.h"
#include "cli/commands.h"
#include "cli/engine_flags.h"
#include "model/executor.h"
#ifdef JINX_MPI
#include "dist/mpi_comm.h"
#endif

namespace {

// JINX_ISA=scalar|avx2|avx512 lowers the CPU kernel level (benchmarks, bug reports); the
// default is the best the CPU has.
void apply_isa_env() {
  const char* v = std::getenv("JINX_ISA");
  if (!v) return;
  const std::string s(v);
  if (s == "scalar") jinx::cpu::set_isa(jinx::cpu::Isa::kScalar);
  else if (s == "avx2") jinx::cpu::set_isa(jinx::cpu::Isa::kAvx2);
  else if (s == "avx512") jinx::cpu::set_isa(jinx::cpu::Isa::kAvx512);
  else std::fprintf(stderr, "jinx: ignoring JINX_ISA=%s (scalar, avx2 or avx512)\n", v);
}

// JINX_EXACT_ACTIVATIONS=1 keeps activations in fp32 for quantized weights (fp32 FMAs
// instead of int8 dot products): slower, for accuracy checks.
void apply_exact_env() {
  const char* v = std::getenv("JINX_EXACT_ACTIVATIONS");
  if (v && std::string(v) == "1") jinx::cpu::set_exact_activations(true);
}

}  // namespace

int main(int argc, char** argv) {
  apply_isa_env();
  apply_exact_env();
#ifdef JINX_MPI
  // Under `mpirun -np N`: rank 0 runs the command (its engine shards the model over the group
  // with --tensor-parallel-size N), the other ranks serve it until it ends.
  std::shared_ptr<jinx::Communicator> comm;
  try {
    if (jinx::dist::launched_by_mpi()) comm = jinx::dist::mpi_world();
  } catch (const std::exception& e) {
    std::fprintf(stderr, "jinx: error: %s\n", e.what());
    return 1;
  }
  if (comm && comm->rank() != 0) return jinx::run_tp_worker(comm);
  jinx::cli::set_process_comm(comm);
  struct ReleaseWorkers {
    std::shared_ptr<jinx::Communicator> comm;
    ~ReleaseWorkers() {
      if (comm) jinx::end_tp_workers(*comm);
    }
  } release{comm};
#endif
  CLI::App app{"Jinx: LLM inference and serving engine"};
  app.require_subcommand(1);
  jinx::cli::add_generate(app);
  jinx::cli::add_info(app);
  jinx::cli::add_chat(app);
  jinx::cli::add_bench(app);
  jinx::cli::add_make_random_model(app);
  jinx::cli::add_tokenizer_commands(app);
  jinx::cli::add_serve(app);
  jinx::cli::add_quantize(app);
  jinx::cli::add_perplexity(app);
  jinx::cli::add_rag(app);
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "jinx: error: %s\n", e.what());
    return 1;
  }
  return 0;
}

// jinx: the command-line front end. Each subcommand lives in its own cmd_*.cpp.
#include <cstdio>
#include <exception>

#include <CLI/CLI.hpp>

#include "cli/commands.h"

int main(int argc, char** argv) {
  CLI::App app{"Jinx: LLM inference and serving engine"};
  app.require_subcommand(1);
  jinx::cli::add_generate(app);
  jinx::cli::add_info(app);
  jinx::cli::add_chat(app);
  jinx::cli::add_bench(app);
  jinx::cli::add_make_random_model(app);
  jinx::cli::add_tokenizer_commands(app);
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

#pragma once

#include <CLI/CLI.hpp>

namespace jinx::cli {

// Each registers a subcommand whose callback runs it; errors propagate as exceptions.
void add_generate(CLI::App& app);
void add_info(CLI::App& app);
void add_chat(CLI::App& app);
void add_bench(CLI::App& app);
void add_make_random_model(CLI::App& app);
void add_tokenizer_commands(CLI::App& app);  // tokenize, detokenize, template
void add_serve(CLI::App& app);
void add_quantize(CLI::App& app);  // jinx quantize IN OUT.gguf
void add_perplexity(CLI::App& app);
void add_rag(CLI::App& app);  // jinx rag index | search | ask

}  // namespace jinx::cli

// Internal helpers shared by the tokenizer loaders.
#pragma once

#include <string_view>
#include <vector>

#include "tokenizer/added_tokens.h"
#include "tokenizer/tokenizer_state.h"

namespace jinx {

// Fills s->bytes (what decode() emits per id) and s->special, and sets up the added-token
// matchers. byte_level: vocabulary strings are spelled in GPT-2's byte alphabet.
void finish_added_and_bytes(TokenizerState* s, const std::vector<AddedToken>& added,
                            bool byte_level);

// Reads bos_token / eos_token / chat_template from tokenizer_config.json text ("" = none),
// then finalizes s (eos ids, piece lookup).
void apply_tokenizer_config(TokenizerState* s, std::string_view config_json);

}  // namespace jinx

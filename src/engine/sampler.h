// Token sampling for one sequence: penalties, logit bias, temperature, top-k, top-p, min-p.
//
// Order of operations (as Hugging Face transformers and vLLM apply them):
//   1. logit_bias      l[t] += bias                       (vLLM applies it before penalties)
//   2. repetition      over tokens seen in prompt + output, once per distinct token:
//                      l > 0 ? l / rp : l * rp            (HF / vLLM semantics)
//   3. frequency and presence over generated tokens only (OpenAI semantics):
//                      l[t] -= count(t) * frequency + (count(t) > 0) * presence
//   4. temperature     l / T; T < 1e-5 means greedy: argmax of the logits after 1-3, ties to
//                      the lowest id, no random number drawn, steps 5-7 ignored
//   5. top-k           keep the k highest (ties to the lowest id); k <= 0 or k >= vocab: off
//   6. top-p           keep the smallest prefix of the sorted distribution (renormalized after
//                      top-k) whose cumulative probability is >= top_p; at least one token
//   7. min-p           keep tokens with prob >= min_p * max prob (HF order: after top-k/top-p;
//                      ratios to the max are unchanged by the truncations above)
//   then one draw from the renormalized remaining distribution.
//
// Logprobs follow vLLM's default ("raw_logprobs"): the log-softmax of the logits exactly as the
// model produced them, before bias, penalties, temperature and truncation. With
// params.logprobs >= 0 the chosen token's logprob is filled (else it is NaN: computing it costs
// an exp pass over the vocabulary) and `top` holds the `logprobs` most likely tokens under that
// same raw distribution (sorted by decreasing logprob, ties to the lowest id), whether or not
// the chosen token is among them.
//
// Cost: a few SIMD passes over the vocabulary, never a full sort: greedy is a max scan; top-k
// a max scan and a threshold-filtered selection; plain temperature sampling one exp pass;
// top-p alone tries the 256 best first and otherwise finds its cutoff with a histogram of the
// probability mass (two more passes). Logprobs add one exp pass.
#pragma once

#include <cstdint>
#include <optional>
#include <random>
#include <span>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

namespace jinx {

struct SamplingParams {
  float temperature = 1.0f;                           // [0, 2]; < 1e-5 => greedy
  int top_k = 0;                                      // >= -1; 0 or -1 => disabled
  float top_p = 1.0f;                                 // (0, 1]
  float min_p = 0.0f;                                 // [0, 1]
  float repetition_penalty = 1.0f;                    // (0, 2]; over prompt + output tokens
  float presence_penalty = 0.0f;                      // [-2, 2]; over generated tokens
  float frequency_penalty = 0.0f;                     // [-2, 2]; over generated tokens
  std::vector<std::pair<int32_t, float>> logit_bias;  // ids in [0, vocab), values [-100, 100];
                                                      // a repeated id adds up
  std::optional<uint64_t> seed;                       // unset: seeded from std::random_device
  int max_tokens = 256;                               // >= 1
  bool ignore_eos = false;
  std::vector<int32_t> stop_token_ids;  // ids in [0, vocab)
  // EOS and stop_token_ids cannot be sampled before this many tokens (vLLM's min_tokens;
  // stop strings still stop), <= max_tokens.
  int min_tokens = 0;
  // Non-empty: only these tokens may be sampled (vLLM's allowed_token_ids), ids in [0, vocab).
  std::vector<int32_t> allowed_token_ids;
  // Token sequences that are never generated (vLLM's bad_words, tokenized): a sequence's last
  // token is masked wherever the output so far ends with the rest of it. Ids in [0, vocab).
  std::vector<std::vector<int32_t>> bad_words_ids;
  bool include_stop_str_in_output = false;  // a matched stop string stays in the text
  std::vector<std::string> stop;  // stop strings, matched by the detokenizer; none may be empty
  int logprobs = -1;  // < 0: none; else how many top logprobs (<= 20) besides the chosen one
  // < 0: none; else the logprob (and rank) of every prompt token after the first, given the
  // ones before it, with this many top alternatives (<= 20): vLLM's prompt_logprobs. The
  // prompt is then computed whole (no prefix-cache hit), in chunks of at most
  // kMaxPromptLogitRows tokens.
  int prompt_logprobs = -1;
  bool skip_special_tokens = true;

  // "" if every field is in range for a model with `vocab_size` logits, else a message naming
  // the first bad field, its allowed range and the value received. Non-finite floats fail.
  std::string validate(int vocab_size) const;
};

inline constexpr int kMaxLogprobs = 20;
// Prompt tokens computed per step for a request with prompt_logprobs (each row's logits are
// kept: 256 rows of a 152k vocabulary are 155 MB).
inline constexpr int32_t kMaxPromptLogitRows = 256;
inline constexpr float kGreedyTemperature = 1e-5f;  // temperatures below this sample greedily

struct TokenLogprob {
  int32_t id;
  float logprob;
};

struct SampleResult {
  int32_t token;
  float logprob;  // raw log-softmax of the model's logits at `token`; NaN if logprobs < 0
  std::vector<TokenLogprob> top;  // the params.logprobs best raw logprobs, sorted
};

// A prompt token's logprob given the tokens before it (SamplingParams::prompt_logprobs).
struct PromptLogprob {
  int32_t token = -1;
  float logprob = 0.0f;           // raw log-softmax at `token`
  int32_t rank = 0;               // 1 + the number of tokens with a higher logit
  std::vector<TokenLogprob> top;  // the prompt_logprobs best, sorted
};

// The distribution a sampled token is drawn from (temperature, then top-k, top-p and min-p as
// Sampler::sample applies them) as probabilities over the vocabulary, 0 outside what they
// keep. `logits` are used as given (bias, penalties and masks already applied). Speculative
// sampling (engine/draft_model.h) compares such distributions of the draft and the target.
void sampling_probs(const float* logits, int32_t vocab_size, const SamplingParams& p,
                    std::vector<float>* probs);

// Raw log-softmax of `logits` at `token`, its rank, and the n_top best. Throws jinx::Error on
// NaN logits or no finite maximum.
PromptLogprob logprob_of(const float* logits, int32_t vocab_size, int32_t token, int n_top);

// One per sequence. It owns its random generator, so a seeded sequence draws the same tokens
// whatever else shares its batch, and the token counts the penalties need.
class Sampler {
 public:
  // Throws jinx::Error on a negative prompt id. Parameters are assumed validated (validate()).
  Sampler(const SamplingParams& p, std::span<const int32_t> prompt_ids);

  // logits: [vocab_size], modified in place: on return they hold the logits after bias and
  // penalties (steps 1-3, before temperature). Throws jinx::Error on NaN logits, logits that
  // are all -inf, or a prompt/output/bias id >= vocab_size.
  SampleResult sample(float* logits, int32_t vocab_size);

  // Speculative sampling: the distribution sample() would draw from (bias and penalties
  // applied to `logits` in place, then sampling_probs). Throws as sample() does.
  void probs(float* logits, int32_t vocab_size, std::vector<float>* out);

  // Records a generated token (for the penalties). Throws jinx::Error if token < 0.
  void accept(int32_t token);

  const SamplingParams& params() const { return params_; }

  // For temperature sampling with nothing but steps 4-7 (no bias, penalty or logprobs), which a
  // caller may draw elsewhere (a GPU, backend/sample_select.h): the uniform in [0, 1) that
  // sample() would take from this sequence's generator.
  double draw_uniform() { return uniform(); }

 private:
  struct Saved {
    int32_t id;
    float raw;
  };
  void apply_bias_and_penalties(float* logits, int32_t vocab_size, std::vector<Saved>* saved);
  int32_t draw(const float* logits, int32_t vocab_size, float max_logit);
  double uniform();

  SamplingParams params_;
  std::mt19937_64 rng_;
  bool track_prompt_ = false;                           // repetition penalty active
  bool track_output_ = false;                           // any penalty active
  std::vector<int32_t> prompt_ids_;                     // sorted, distinct; only if track_prompt_
  std::unordered_map<int32_t, int32_t> output_counts_;  // id -> times generated
};

}  // namespace jinx

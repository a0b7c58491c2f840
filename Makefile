# Heart: one command sets everything up and runs the demo, one runs every test.
#
#   make demo   - install what is missing, build, run `heart demo`
#   make test   - install what is missing, build, run the C tests under
#                 AddressSanitizer + UndefinedBehaviorSanitizer (ctest) and
#                 the Python tests (pytest)
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

APT_PACKAGES := build-essential pkg-config libssl-dev python3-dev python3-venv iproute2
PY_PACKAGES := "setuptools>=64" wheel "Cython>=3.0" cffi hypothesis pytest \
	pytest-benchmark psutil cryptography cmake

.PHONY: all demo test deps system-deps venv build ctest cmake-lib pytest bench clean

all: build

demo: build
	$(VENV)/bin/heart demo

test: build ctest cmake-lib pytest

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
	@$(PY) -c "import Cython, cffi, hypothesis, pytest, pytest_benchmark, psutil, cryptography, cmake" 2>/dev/null || \
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
		$(PY) -m pytest tests bench/test_codec_bench.py --benchmark-disable -q

bench: build
	$(PY) -m pytest bench/test_codec_bench.py --benchmark-only
	$(PY) bench/throughput.py
	$(PY) bench/send_timing.py

clean:
	rm -rf build heart/_core/_ext.c heart/_core/*.so *.egg-info

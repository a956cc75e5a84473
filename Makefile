# make demo   the main job against the simulated dom0 (no root needed)
# make test   every test; installs what it needs (host packages need root, see `deps`)
# make bench  the benchmarks
SHELL := /bin/bash
VENV ?= .venv
PYTHON ?= python3
PY := $(VENV)/bin/python
# Debian packages the test bed needs on the host: QEMU to boot Xen, debootstrap & co to build
# its images, gcc for the guest agent and the simulator's shim libraries.
HOST_PACKAGES := qemu-system-x86 debootstrap busybox-static e2fsprogs cpio gcc libc6-dev \
  linux-libc-dev zstd xz-utils openssh-client xenstore-utils
PYTEST := $(PY) -m pytest -p no:cacheprovider -ra

.PHONY: test deps venv test-xen clean-images help

help:
	@sed -n '1,3p' Makefile

deps:
	@missing=$$(for p in $(HOST_PACKAGES); do dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null | grep -q 'ok installed' || echo $$p; done); \
	if [ -z "$$missing" ]; then exit 0; fi; \
	if [ "$$(id -u)" = 0 ]; then \
	  echo "installing host packages: $$missing"; \
	  apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $$missing >/dev/null; \
	else \
	  echo "!!! not root: cannot install host packages ($$missing); the real-Xen tests will not run"; \
	fi

venv: $(VENV)/.installed
$(VENV)/.installed: requirements-dev.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -r requirements-dev.txt
	touch $@

# One pytest run, one summary: fast unit tests, the simulated dom0, then real Xen in QEMU.
test: deps venv
	$(PYTEST) tests/unit tests/xensim/tests tests/xen

test-xen: deps venv
	$(PYTEST) tests/xen

clean-images:
	rm -rf $${XEN_SUSPEND_CACHE:-$$HOME/.cache/xen-suspend}/images

# make demo      xen.suspend.maintenance against the simulated dom0 (no root needed)
# make demo-reboot  the same with the guests saved to disk, the simulated dom0 rebooted, the guests restored
# make rehearse  your playbook (PLAYBOOK=) or maintenance tasks file (TASKS=) against a simulated dom0 with your fleet (FLEET=)
# make test      every test; installs what it needs (host packages need root, see `deps`)
# make bench     the benchmarks
SHELL := /bin/bash
VENV ?= .venv
PYTHON ?= python3
PY := $(VENV)/bin/python
# Debian packages the test bed needs on the host: QEMU to boot Xen, debootstrap & co to build
# its images, gcc for the guest agent and the simulator's shim libraries.
HOST_PACKAGES := qemu-system-x86 debootstrap busybox-static e2fsprogs cpio gcc libc6-dev \
  linux-libc-dev zstd xz-utils openssh-client xenstore-utils
PYTEST := $(PY) -m pytest -p no:cacheprovider -ra

.PHONY: test deps venv gates test-xen clean-images help

help:
	@sed -n '1,5p' Makefile

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

# The ecosystem gates (sanity, units, lint, build, docs, ...), then one pytest run with one
# summary: unit tests, the simulated dom0, roles and modules against it, real Xen in QEMU with
# the save -> dom0 reboot -> restore round trip and the save faults. Three xdist workers, one per
# group (tests/xen/conftest.py): the simulator's tests, and each flavour's bed of one dom0 vCPU,
# side by side (about 31 min on a 2-core host; one after the other took 37 min without the
# save tests). Both always run; the target fails if either failed.
TEST_DIRS := tests/unit tests/xensim/tests tests/roles tests/integration tests/campaign tests/xen
XDIST := -n 3 --dist loadgroup
# Outside `make test` (their minutes would take it past 40 on a 2-core host): plain xl's own
# save/reboot/restore round trip and the save/restore benchmark, in `make test-xen-save`.
XEN_SAVE_ONLY_TESTS := tests/xen/test_xl_save_restore_across_reboot.py tests/xen/test_save_restore_benchmark.py
XEN_SAVE_TESTS := tests/xen/test_save_faults_on_real_xen.py tests/xen/test_save_restore_on_real_xen.py \
  $(XEN_SAVE_ONLY_TESTS)
test: deps venv
	@gates=0; VENV=$(VENV) tests/gates/run-gates.sh || gates=$$?; \
	$(PYTEST) $(XDIST) $(TEST_DIRS) $(addprefix --ignore=,$(XEN_SAVE_ONLY_TESTS)); rc=$$?; \
	if [ $$gates != 0 ]; then echo "!!! $$gates ecosystem gate(s) failed: see the gates table above"; fi; \
	exit $$(( rc != 0 || gates != 0 ))

gates: venv
	VENV=$(VENV) tests/gates/run-gates.sh

# The real-Xen part of `make test` alone, both flavours side by side.
test-xen: deps venv
	$(PYTEST) -n 2 --dist loadgroup tests/xen $(addprefix --ignore=,$(XEN_SAVE_ONLY_TESTS))

# The real-Xen save/restore tests, both flavours side by side (two xdist workers, one bed of one
# vCPU each: tests/xen/conftest.py; XEN_SUSPEND_FLAVOURS=bookworm for one): the modules' faults,
# the save -> dom0 reboot -> restore round trip with the modules and with plain xl, and the
# save/restore benchmark, plain xl's and the modules' (all at once vs one at a time as xendomains
# does, vs the dom0 disk's dd+fsync bandwidth; its ratios printed in the run's summary). About 25
# minutes. The benchmark alone, one bed of two vCPUs: XEN_SUSPEND_FLAVOURS=trixie $(PYTEST)
# tests/xen/test_save_restore_benchmark.py (about 2 minutes).
.PHONY: test-xen-save
test-xen-save: deps venv
	$(PYTEST) -n 2 --dist loadgroup $(XEN_SAVE_TESTS)

# An image saved by FROM's Xen restored by TO's (default 4.17 -> 4.20, the upgrade a dom0 reboot
# for a new Xen makes): two boots one after the other, a JSON report; exit 0 only when the restored
# guest beats on with the same memory. About 10 minutes; outside `make test`.
.PHONY: cross-version
FROM ?= bookworm
TO ?= trixie
cross-version: deps venv
	cd tests/xen && ../../$(PY) -m xenbed cross-version $(FROM) $(TO)

# plugins/module_utils/_xen_ffi.py from the C declarations in _xen_libraries.py (cffi's
# out-of-line ABI mode; a unit test fails while it is out of date).
.PHONY: xen-ffi
xen-ffi: venv
	$(PY) tests/tools/make_xen_ffi.py

clean-images:
	rm -rf $${XEN_SUSPEND_CACHE:-$$HOME/.cache/xen-suspend}/images

# xen.suspend.maintenance against a simulated dom0 of 55 guests, then the roles' per-guest table
# (tests/demo). Needs gcc for the simulator's shim libraries; no root.
.PHONY: demo demo-reboot bench rehearse
demo: venv
	$(PY) tests/demo/run_demo.py

# The reboot variant: host_maintenance_mode=save on a simulated dom0 of 24 guests, saved to disk,
# the dom0 rebooted (xensimctl reboot: every domain gone, files kept, a new boot id), restored;
# prints the per-guest table with image sizes and save/restore times. No root.
demo-reboot: venv
	$(PY) tests/demo/run_demo.py --reboot

# Your playbook, or your maintenance tasks file run by xen.suspend.maintenance, against a simulated
# dom0 with your fleet spec (tests/xensim/README.md); no root. ARGS: more ansible-playbook
# arguments, GROUP: the inventory group (default xen_dom0), KEEP=1 keeps the temporary directory,
# REBOOT=1 a dom0 that can be saved to disk and rebooted (TASKS then run in save mode with a reboot).
rehearse: venv
	@if [ -z "$(FLEET)" ] || [ -z "$(PLAYBOOK)$(TASKS)" ]; then \
	  echo "usage: make rehearse FLEET=fleet.yaml PLAYBOOK=site.yml|TASKS=maintenance.yml [GROUP=xen_dom0] [ARGS='-e k=v --check'] [KEEP=1] [REBOOT=1]" >&2; exit 2; fi
	$(PY) tests/demo/rehearse.py --fleet '$(FLEET)' $(if $(PLAYBOOK),--playbook '$(PLAYBOOK)') $(if $(TASKS),--tasks '$(TASKS)') \
	  $(if $(GROUP),--group '$(GROUP)') $(if $(KEEP),--keep) $(if $(REBOOT),--reboot) --args="$$ARGS"

# Fleet versus one-domain-at-a-time suspend/resume of 10, 100, 500 and 1000 simulated guests,
# and the resume of 500 guests whose resumes cost the real bed's figures (tests/bench); its last
# lines (fleet500, fleet1000, resume500) are machine-readable. About ten minutes.
bench: venv
	$(PY) tests/bench/fleet_bench.py

# The kill-anywhere campaign (tests/campaign): SCHEDULES random schedules from SEED (default: the
# clock) SIGKILL domain_suspended / domain_resumed / domain_saved / domain_restored mid-run on a
# simulated dom0 (with xl faults and dom0 reboots) and check that no guest or image is lost or left
# suspended or saved; its last line is machine-readable. SCHEDULE=K re-runs one, ONLY=K1,K2 a few;
# REPORT_DIR=dir keeps every failing schedule's full report.
SCHEDULES ?= 1000
JOBS ?= 3
.PHONY: campaign
campaign: venv
	$(PY) tests/campaign/campaign.py --schedules $(SCHEDULES) --jobs $(JOBS) $(if $(SEED),--seed $(SEED)) $(if $(SCHEDULE),--schedule $(SCHEDULE)) $(if $(ONLY),--only $(ONLY)) $(if $(REPORT_DIR),--report-dir $(REPORT_DIR))

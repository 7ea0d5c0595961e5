# mpm_hybrid build: everything is compiled by the installed apxs against the
# installed httpd headers.  Objects go under build/obj, modules to build/.
#
# Build-time choices (override on the command line, e.g. make ACCEPT=mutex):
#   ACCEPT            compiled-in default AcceptStrategy
#   MAX_SERVER_LIMIT  compile-time cap for ServerLimit (as httpd's MAX_SERVER_LIMIT)
#   MAX_THREAD_LIMIT  compile-time cap for ThreadLimit (as httpd's MAX_THREAD_LIMIT)

APXS             ?= apxs
ACCEPT           ?= exclusive
MAX_SERVER_LIMIT ?= 20000
MAX_THREAD_LIMIT ?= 20000
EXTRA_CFLAGS     ?=

BUILD   := build
OBJ     := $(BUILD)/obj

# mpm_hybrid is one translation unit: mod_mpm_hybrid.c includes the other
# .c files, so every symbol but the module struct stays static.
MPM_MAIN := mpm_src/mod_mpm_hybrid.c
MPM_SRCS := $(sort $(wildcard mpm_src/*.c))
MPM_HDRS := $(wildcard mpm_src/*.h)
MOD_SRCS := $(sort $(wildcard mod_src/*.c))
MOD_HDRS := $(wildcard mod_src/*.h)

WARN    := -Wc,-std=gnu99 -Wc,-Wall -Wc,-Wextra -Wc,-Werror \
           -Wc,-Wno-unused-parameter -Wc,-Wno-missing-field-initializers \
           -Wc,-fvisibility=hidden
DEFS    := -DHYBRID_DEFAULT_ACCEPT=\\\"$(ACCEPT)\\\" \
           -DHYBRID_MAX_SERVER_LIMIT=$(MAX_SERVER_LIMIT) \
           -DHYBRID_MAX_THREAD_LIMIT=$(MAX_THREAD_LIMIT)

ACCEPT_NAMES := mutex preemptive reuseport exclusive
ifeq ($(filter $(ACCEPT),$(ACCEPT_NAMES)),)
$(error ACCEPT=$(ACCEPT) is not an accept strategy ($(ACCEPT_NAMES)))
endif

.PHONY: all
all: $(BUILD)/mod_mpm_hybrid.so $(if $(MOD_SRCS),$(BUILD)/mod_child_status.so)

# apxs (libtool) writes objects next to the source it is given, so it is
# handed symlinks under build/obj and the source tree stays clean.
# $(1) module name, $(2) files to link, $(3) include dirs, $(4) to compile.
define apxs_module
	@rm -rf $(OBJ)/$(1) && mkdir -p $(OBJ)/$(1)
	@for f in $(2); do ln -s ../../../$$f $(OBJ)/$(1)/; done
	cd $(OBJ)/$(1) && $(APXS) -c -o mod_$(1).la $(WARN) $(DEFS) \
	    $(EXTRA_CFLAGS) -I../../../$(3) $(notdir $(4)) >build.log 2>&1 \
	    || { cat build.log; exit 1; }
	@grep -E 'warning:|error:' $(OBJ)/$(1)/build.log || true
	cp $(OBJ)/$(1)/.libs/mod_$(1).so $@.tmp && mv -f $@.tmp $@
endef

# Changing a build-time choice must rebuild: the stamp's name carries them.
CONFIG_ID    := $(shell printf '%s' '$(DEFS) $(EXTRA_CFLAGS)' | md5sum | cut -c1-12)
CONFIG_STAMP := $(OBJ)/config-$(CONFIG_ID).stamp

$(CONFIG_STAMP):
	@mkdir -p $(OBJ) && rm -f $(OBJ)/config-*.stamp && touch $@

$(BUILD)/mod_mpm_hybrid.so: $(MPM_SRCS) $(MPM_HDRS) apxs.mk $(CONFIG_STAMP)
	$(call apxs_module,mpm_hybrid,$(MPM_SRCS) $(MPM_HDRS),mpm_src,$(MPM_MAIN))

$(BUILD)/mod_child_status.so: $(MOD_SRCS) $(MOD_HDRS) $(MPM_HDRS) apxs.mk $(CONFIG_STAMP)
	$(call apxs_module,child_status,$(MOD_SRCS),mod_src -I../../../mpm_src,$(MOD_SRCS))

.PHONY: clean
clean:
	rm -rf $(OBJ) $(BUILD)/*.so

# ---------------------------------------------------------------------------
# Operator tooling.  Recipes stay short; the logic lives in scripts/.
#
#   make deps                 install missing Debian packages (root)
#   make run [MPM=] [PORT=]   demo server on 127.0.0.1:$(PORT), logs in $(RUNDIR)
#   make stop                 stop the demo server
#   make install [DESTDIR=]   modules to LIBEXECDIR, Debian files to mods-available
#   make uninstall [DESTDIR=] remove what install put there
#   make unit                 build and run test/unit/*.c
#   make test [TESTS=]        deps, build, unit tests, integration tests

MPM         ?= hybrid
PORT        ?= 8080
RUNDIR      ?= $(BUILD)/run
DESTDIR     ?=
TESTS       ?=
PYTEST_ARGS ?=
EXTRA_LDFLAGS ?=

# Handed to every script so command-line overrides reach them.
SCRIPT_ENV := APXS='$(APXS)' ACCEPT='$(ACCEPT)' \
              MAX_SERVER_LIMIT='$(MAX_SERVER_LIMIT)' \
              MAX_THREAD_LIMIT='$(MAX_THREAD_LIMIT)' \
              EXTRA_CFLAGS='$(EXTRA_CFLAGS)' EXTRA_LDFLAGS='$(EXTRA_LDFLAGS)'

.PHONY: deps run stop install uninstall unit test

deps:
	@scripts/deps.sh

# Sub-makes keep the order deps -> build -> action even under make -j.
run: deps
	@$(MAKE) --no-print-directory all
	@$(SCRIPT_ENV) MPM='$(MPM)' PORT='$(PORT)' RUNDIR='$(RUNDIR)' \
	    scripts/run.sh start

stop:
	@RUNDIR='$(RUNDIR)' scripts/run.sh stop

install: all
	@$(SCRIPT_ENV) DESTDIR='$(DESTDIR)' scripts/install.sh install

uninstall:
	@$(SCRIPT_ENV) DESTDIR='$(DESTDIR)' scripts/install.sh uninstall

unit:
	@$(SCRIPT_ENV) scripts/unit.sh

test: deps
	@$(MAKE) --no-print-directory all
	@$(SCRIPT_ENV) TESTS='$(TESTS)' PYTEST_ARGS='$(PYTEST_ARGS)' \
	    scripts/test.sh

.PHONY: clean-unit
clean: clean-unit
clean-unit:
	rm -rf $(BUILD)/unit

# ---------------------------------------------------------------------------
# Benchmark (test/bench/README.md).  Test-only modules live in test/modules/.
#
#   make test-modules         build/mod_bench_sleep.so (SetHandler bench-sleep)
#   make bench                all contenders, about 10 min on 2 cores
#   make bench BENCH_QUICK=1  the same, smaller, at most about 2 min

.PHONY: test-modules bench

test-modules: $(BUILD)/mod_bench_sleep.so

$(BUILD)/mod_bench_sleep.so: test/modules/mod_bench_sleep.c apxs.mk
	$(call apxs_module,bench_sleep,test/modules/mod_bench_sleep.c,test/modules,mod_bench_sleep.c)

# The hybrid contenders are optional: if our modules do not build, the
# benchmark still runs the stock MPMs and says so.
bench: test-modules
	@$(MAKE) --no-print-directory all || \
	    echo "bench: make all failed; hybrid contenders will be skipped"
	@BENCH_QUICK='$(BENCH_QUICK)' /usr/bin/python3 test/bench/bench.py

# ---------------------------------------------------------------------------
# Fault suite (test/integration/test_faults.py, test/faults/README.md).
#
#   make test          runs test_faults.py REDUCED (HYB_FAULTS_FULL unset):
#                      every scenario, fewer repetitions and combinations
#                      (20 gracefuls, 10 s of MaxConnectionsPerChild 20,
#                      5 s kill -9 storms, 200 slowloris clients), ~6 min
#   make test-faults   only test_faults.py, FULL (HYB_FAULTS_FULL=1): the
#                      issue's numbers (100 gracefuls and a minute of
#                      MaxConnectionsPerChild 20 per strategy/mechanism,
#                      500 slowloris clients, ...), ~25 min; the numbers
#                      go to build/faults-report.jsonl and are printed
#   make asan          both modules with ASan+UBSan into build/asan (build/
#                      is untouched), the integration suite against them
#                      with libasan preloaded into apache2, zero sanitizer
#                      reports required; then apache2 -X under valgrind
#                      with zero errors from our modules

FAULTS_REPORT ?= $(BUILD)/faults-report.jsonl

.PHONY: test-faults asan

test-faults: deps
	@$(MAKE) --no-print-directory all
	@rm -f $(FAULTS_REPORT)
	@rc=0; $(SCRIPT_ENV) HYB_FAULTS_FULL=1 \
	    HYB_FAULTS_REPORT='$(abspath $(FAULTS_REPORT))' \
	    TEST_TIMEOUT=900 TESTS='test_faults.py' PYTEST_ARGS='$(PYTEST_ARGS)' \
	    scripts/test.sh || rc=$$?; \
	    /usr/bin/python3 test/faults/summary.py $(FAULTS_REPORT); exit $$rc

asan: deps
	@$(SCRIPT_ENV) TESTS='$(TESTS)' PYTEST_ARGS='$(PYTEST_ARGS)' \
	    test/faults/asan.sh

# ---------------------------------------------------------------------------
# Debian package (scripts/deb.sh, packaging/debian/).
#
#   make deb           build/deb/libapache2-mpm-hybrid_VERSION_ARCH.deb, built
#                      by dpkg-buildpackage from a copy of the tree in a
#                      scratch directory, then checked with lintian

.PHONY: deb

deb: deps
	@scripts/deb.sh

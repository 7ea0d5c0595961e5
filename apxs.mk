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

# Every mpm_src/*.c is a translation unit of its own; MPM_UNITS is the one
# list of them: the apxs rule compiles exactly these, and
# scripts/httpd-tree.sh asks for them (make -s print-mpm-units) to write
# the object list of httpd's server/mpm/hybrid/config3.m4.
# -fvisibility=hidden keeps every symbol but the module struct inside the
# DSO.
MPM_UNITS := $(sort $(wildcard mpm_src/*.c))
MPM_SRCS := $(MPM_UNITS)
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
# $(1) module name, $(2) files to link, $(3) include dirs, $(4) to compile,
# $(5) libraries to link (-lm ...).
define apxs_module
	@rm -rf $(OBJ)/$(1) && mkdir -p $(OBJ)/$(1)
	@for f in $(2); do ln -s ../../../$$f $(OBJ)/$(1)/; done
	cd $(OBJ)/$(1) && $(APXS) -c -o mod_$(1).la $(WARN) $(DEFS) \
	    $(EXTRA_CFLAGS) -I../../../$(3) $(notdir $(4)) $(5) >build.log 2>&1 \
	    || { cat build.log; exit 1; }
	@grep -E 'warning:|error:' $(OBJ)/$(1)/build.log || true
	cp $(OBJ)/$(1)/.libs/mod_$(1).so $@.tmp && mv -f $@.tmp $@
endef

# Changing a build-time choice must rebuild: the stamp's name carries them,
# and the apxs (another httpd's, make APXS=, builds against its headers).
CONFIG_ID    := $(shell printf '%s' '$(DEFS) $(EXTRA_CFLAGS) $(APXS)' | md5sum | cut -c1-12)
CONFIG_STAMP := $(OBJ)/config-$(CONFIG_ID).stamp

$(CONFIG_STAMP):
	@mkdir -p $(OBJ) && rm -f $(OBJ)/config-*.stamp && touch $@

$(BUILD)/mod_mpm_hybrid.so: $(MPM_SRCS) $(MPM_HDRS) apxs.mk $(CONFIG_STAMP)
	$(call apxs_module,mpm_hybrid,$(MPM_SRCS) $(MPM_HDRS),mpm_src,$(MPM_UNITS))

# One unit per line, relative to the repository (for scripts/httpd-tree.sh).
.PHONY: print-mpm-units
print-mpm-units:
	@printf '%s\n' $(MPM_UNITS)

# -lm: the renderers call floor()/fabs().  Built with Debian's apxs (-O2)
# the compiler inlines them; an apxs of an httpd built from source (make
# httpd-tree) passes no -O2, and that httpd does not link libm itself.
$(BUILD)/mod_child_status.so: $(MOD_SRCS) $(MOD_HDRS) $(MPM_HDRS) apxs.mk $(CONFIG_STAMP)
	$(call apxs_module,child_status,$(MOD_SRCS),mod_src -I../../../mpm_src,$(MOD_SRCS),-lm)

.PHONY: clean
clean:
	rm -rf $(OBJ) $(BUILD)/*.so

# ---------------------------------------------------------------------------
# Operator tooling.  Recipes stay short; the logic lives in scripts/.
#
#   make deps [PURPOSE=]      install missing Debian packages (root): all of
#                             them, or one purpose's (scripts/deps.sh)
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
PURPOSE     ?=
EXTRA_LDFLAGS ?=

# Handed to every script so command-line overrides reach them.
SCRIPT_ENV := APXS='$(APXS)' ACCEPT='$(ACCEPT)' \
              MAX_SERVER_LIMIT='$(MAX_SERVER_LIMIT)' \
              MAX_THREAD_LIMIT='$(MAX_THREAD_LIMIT)' \
              EXTRA_CFLAGS='$(EXTRA_CFLAGS)' EXTRA_LDFLAGS='$(EXTRA_LDFLAGS)'

.PHONY: deps run stop install uninstall unit test

# make deps installs every list; each target below asks only for the
# purposes it needs (deps-run, deps-test, ...; the lists are in deps.sh).
deps:
	@scripts/deps.sh $(PURPOSE)

DEPS_PURPOSES := run test bench deb httpd
.PHONY: $(addprefix deps-,$(DEPS_PURPOSES)) deps-test-bench
$(addprefix deps-,$(DEPS_PURPOSES)): deps-%:
	@scripts/deps.sh $*
deps-test-bench:
	@scripts/deps.sh test bench

# Sub-makes keep the order deps -> build -> action even under make -j.
run: deps-run
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

test: deps-test
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
#   make bench-idle           idle capacity: 10,000 idle keep-alive
#                             connections against event, ~1-3 min
#   make bench-tpc1           ThreadsPerChild 1: AsyncConnections On or
#                             Off, against prefork, ~2.5 min

.PHONY: test-modules bench bench-idle bench-tpc1

test-modules: $(BUILD)/mod_bench_sleep.so

$(BUILD)/mod_bench_sleep.so: test/modules/mod_bench_sleep.c apxs.mk
	$(call apxs_module,bench_sleep,test/modules/mod_bench_sleep.c,test/modules,mod_bench_sleep.c)

# The hybrid contenders are optional: if our modules do not build, the
# benchmark still runs the stock MPMs and says so.
bench: deps-bench
	@$(MAKE) --no-print-directory test-modules
	@$(MAKE) --no-print-directory all || \
	    echo "bench: make all failed; hybrid contenders will be skipped"
	@BENCH_QUICK='$(BENCH_QUICK)' /usr/bin/python3 test/bench/bench.py

bench-idle: deps-bench
	@$(MAKE) --no-print-directory all test-modules
	@/usr/bin/python3 test/bench/idle.py

bench-tpc1: deps-bench
	@$(MAKE) --no-print-directory all test-modules
	@/usr/bin/python3 test/bench/tpc1.py

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

test-faults: deps-test-bench
	@$(MAKE) --no-print-directory all
	@rm -f $(FAULTS_REPORT)
	@rc=0; $(SCRIPT_ENV) HYB_FAULTS_FULL=1 \
	    HYB_FAULTS_REPORT='$(abspath $(FAULTS_REPORT))' \
	    TEST_TIMEOUT=900 TESTS='test_faults.py' PYTEST_ARGS='$(PYTEST_ARGS)' \
	    scripts/test.sh || rc=$$?; \
	    /usr/bin/python3 test/faults/summary.py $(FAULTS_REPORT); exit $$rc

asan: deps-test-bench
	@$(SCRIPT_ENV) TESTS='$(TESTS)' PYTEST_ARGS='$(PYTEST_ARGS)' \
	    test/faults/asan.sh

# ---------------------------------------------------------------------------
# mpm_hybrid inside httpd's own source tree, chosen at build time
# (./configure --with-mpm=hybrid or --enable-mpms-shared='hybrid ...');
# README "Choosing the MPM at build time".
#
#   make httpd-source [HTTPD_SRC=DIR]   Debian's apache2 source, unpacked into
#                                       DIR (default build/httpd-src); the
#                                       download is cached in build/debian-src
#   make httpd-tree HTTPD_SRC=DIR       place server/mpm/hybrid/ into the
#                                       httpd 2.4 source tree DIR
#   make test-build                     test_build_httpd.py: Debian's source
#                                       built with --with-mpm=hybrid and with
#                                       --enable-mpms-shared='hybrid event',
#                                       both run; .ci/run runs it after make test

HTTPD_SRC ?=

.PHONY: httpd-source httpd-tree test-build

httpd-source:
	@scripts/debian-source.sh '$(or $(HTTPD_SRC),$(BUILD)/httpd-src)'

httpd-tree:
	@scripts/httpd-tree.sh '$(HTTPD_SRC)'

test-build: deps-httpd deps-test
	@$(MAKE) --no-print-directory all
	@$(SCRIPT_ENV) TESTS='test_build_httpd.py' PYTEST_ARGS='$(PYTEST_ARGS)' \
	    TEST_TIMEOUT=$${TEST_TIMEOUT:-1200} scripts/test.sh

# ---------------------------------------------------------------------------
# Debian package (scripts/deb.sh, packaging/debian/).
#
#   make deb           build/deb/libapache2-mpm-hybrid_VERSION_ARCH.deb, built
#                      by dpkg-buildpackage from a copy of the tree in a
#                      scratch directory, then checked with lintian

.PHONY: deb

deb: deps-deb
	@scripts/deb.sh

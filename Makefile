# lorahub - GNU Makefile.
#   make            build/lorahub, build/liblorahub.a and build/liblorahub.so
#   make check      unit tests (Check), CLI tests, man page lint
#   make asan       the same tests under ASan+UBSan, in build-asan/
#   make demo       adapt to one bundled task and show the result
#   make bench      benchmarks (ratios against this machine's limits)
#   make fuzz       libFuzzer over every parser (tests/fuzz/), FUZZ_SECONDS each
#   make fuzz-long  the same, each target to FUZZ_RUNS executions (10 million)
#   make install    PREFIX=/usr/local DESTDIR=
# check, asan and demo first install missing Debian packages (tools/install-deps.sh).

O ?= build
PREFIX ?= /usr/local
BINDIR ?= $(PREFIX)/bin
LIBDIR ?= $(PREFIX)/lib
INCLUDEDIR ?= $(PREFIX)/include
MANDIR ?= $(PREFIX)/share/man
PKGCONFIGDIR ?= $(LIBDIR)/pkgconfig
PKG_CONFIG ?= pkg-config
CC ?= cc
# The version has one definition: the LH_VERSION_* macros of the public header.
version_part = $(shell sed -n 's/^\#define LH_VERSION_$(1) *\([0-9][0-9]*\).*/\1/p' include/lorahub.h)
VERSION := $(call version_part,MAJOR).$(call version_part,MINOR).$(call version_part,PATCH)
SOVERSION := $(call version_part,MAJOR)

PKGS := openblas nlopt yaml-0.1 libpcre2-8 libcurl
DEP_CFLAGS := $(shell $(PKG_CONFIG) --cflags $(PKGS) 2>/dev/null)
DEP_LIBS := $(shell $(PKG_CONFIG) --libs $(PKGS) 2>/dev/null) -lm -lpthread
CHECK_CFLAGS := $(shell $(PKG_CONFIG) --cflags check 2>/dev/null)
CHECK_LIBS := $(shell $(PKG_CONFIG) --libs check 2>/dev/null)

# llama.cpp (optional): --backend llamacpp links libllama when LLAMA_PREFIX
# names an install of it (tools/install-llamacpp.sh writes one; build/llamacpp
# is used when it holds one), else when pkg-config finds llama. LLAMACPP=no
# builds without it. liblorahub.so and lorahub then find libllama through
# an rpath to its libdir.
LLAMACPP ?= auto
ifeq ($(LLAMACPP),no)
LLAMA_PREFIX :=
else
ifeq ($(origin LLAMA_PREFIX),undefined)
LLAMA_PREFIX := $(if $(wildcard build/llamacpp/lib/pkgconfig/llama.pc),$(abspath build/llamacpp))
endif
LLAMA_PC := $(if $(LLAMA_PREFIX),PKG_CONFIG_PATH='$(LLAMA_PREFIX)/lib/pkgconfig' )$(PKG_CONFIG)
LLAMA_FOUND := $(shell $(LLAMA_PC) --exists llama 2>/dev/null && echo yes)
endif
ifeq ($(LLAMA_FOUND),yes)
LLAMA_LIBDIR := $(shell $(LLAMA_PC) --variable=libdir llama)
LLAMA_CFLAGS := -DLH_HAVE_LLAMACPP $(patsubst -I%,-isystem %,$(shell $(LLAMA_PC) --cflags llama))
LLAMA_LIBS := $(shell $(LLAMA_PC) --libs llama) -Wl,-rpath,$(LLAMA_LIBDIR)
LLAMA_BINDIR := $(abspath $(LLAMA_LIBDIR)/../bin)
DEP_CFLAGS += $(LLAMA_CFLAGS)
DEP_LIBS += $(LLAMA_LIBS)
else ifneq ($(LLAMA_PREFIX),)
$(error LLAMA_PREFIX=$(LLAMA_PREFIX) holds no lib/pkgconfig/llama.pc (sh tools/install-llamacpp.sh $(LLAMA_PREFIX) builds one))
endif

CFLAGS ?= -O2 -g
WARN := -Wall -Wextra -Wshadow -Wstrict-prototypes -Wmissing-prototypes -Wno-unused-parameter
# Every object goes into both libraries: position-independent, and hidden
# unless include/lorahub.h marks it LH_API, so the shared library exports
# the public API only while the static one still serves cmd/, tests/, bench/.
ALL_CFLAGS = -std=c11 -D_GNU_SOURCE -DLH_VERSION='"$(VERSION)"' $(WARN) -I. $(DEP_CFLAGS) \
             -fPIC -fvisibility=hidden $(CFLAGS)
ALL_LDFLAGS = $(LDFLAGS)
ifdef SANITIZE
ALL_CFLAGS += -fsanitize=$(SANITIZE) -fno-sanitize-recover=all -fno-omit-frame-pointer
ALL_LDFLAGS += -fsanitize=$(SANITIZE)
endif

LIB_SRC := $(sort $(wildcard lib/*.c compose/*.c model/*.c model/*/*.c adapt/*.c adapt/*/*.c api/*.c))
CMD_SRC := $(sort $(wildcard cmd/*.c))
TEST_SRC := $(sort $(wildcard tests/check_*.c))
TOOL_SRC := $(sort $(wildcard tests/tools/*.c))
BENCH_SRC := $(sort $(wildcard bench/*.c))

LIB_OBJ := $(LIB_SRC:%.c=$(O)/%.o)
CMD_OBJ := $(CMD_SRC:%.c=$(O)/%.o)
TEST_BIN := $(TEST_SRC:%.c=$(O)/%)
TOOL_BIN := $(TOOL_SRC:%.c=$(O)/%)
BENCH_BIN := $(BENCH_SRC:%.c=$(O)/%)
LIB_A := $(O)/liblorahub.a
# liblorahub.so -> liblorahub.so.0 (the soname) -> liblorahub.so.0.1.0
LIB_SO := $(O)/liblorahub.so
LIB_SONAME := liblorahub.so.$(SOVERSION)
LIB_SO_REAL := liblorahub.so.$(VERSION)
PROG := $(O)/lorahub
MANPAGES := $(sort $(wildcard man/*.[1-8]))

.PHONY: all deps check check-run check-embed check-llamacpp asan demo demo-run table zoo zoo-t5 table-t5 bench bench-run fuzz fuzz-build fuzz-long \
        install clean lint-man FORCE
.SECONDARY:

all: $(PROG) $(LIB_A) $(LIB_SO)

deps:
	@sh tools/install-deps.sh

# Rebuild everything when the compiler or flags change (git's GIT-CFLAGS trick).
$(O)/.flags: FORCE
	@mkdir -p $(O)
	@echo '$(CC) $(ALL_CFLAGS) $(ALL_LDFLAGS)' | cmp -s - $@ || echo '$(CC) $(ALL_CFLAGS) $(ALL_LDFLAGS)' > $@

$(O)/%.o: %.c $(O)/.flags
	@mkdir -p $(@D)
	$(CC) $(CPPFLAGS) $(ALL_CFLAGS) -MMD -MP -c $< -o $@

$(O)/tests/%.o: ALL_CFLAGS += $(CHECK_CFLAGS)

$(LIB_A): $(LIB_OBJ)
	@rm -f $@
	$(AR) rcs $@ $^

# --no-undefined: a dependency missing from DEP_LIBS fails here, not in a user's link.
$(LIB_SO): $(LIB_OBJ)
	$(CC) $(ALL_LDFLAGS) -shared -Wl,-soname,$(LIB_SONAME) -Wl,--no-undefined \
	  -o $(O)/$(LIB_SO_REAL) $^ $(DEP_LIBS)
	ln -sf $(LIB_SO_REAL) $(O)/$(LIB_SONAME)
	ln -sf $(LIB_SONAME) $@

$(PROG): $(CMD_OBJ) $(LIB_A)
	$(CC) $(ALL_LDFLAGS) -o $@ $(CMD_OBJ) $(LIB_A) $(DEP_LIBS)

$(O)/tests/check_%: $(O)/tests/check_%.o $(LIB_A)
	$(CC) $(ALL_LDFLAGS) -o $@ $< $(LIB_A) $(DEP_LIBS) $(CHECK_LIBS)

$(O)/tests/tools/%: $(O)/tests/tools/%.o $(LIB_A)
	$(CC) $(ALL_LDFLAGS) -o $@ $< $(LIB_A) $(DEP_LIBS)

# The plot test's PNG reader (test-time only; lorahub links no image library).
$(O)/tests/tools/png_ink.o: ALL_CFLAGS += $(shell $(PKG_CONFIG) --cflags libpng 2>/dev/null)
$(O)/tests/tools/png_ink: DEP_LIBS += $(shell $(PKG_CONFIG) --libs libpng 2>/dev/null)
# The write-fault shim (LD_PRELOAD) of tests/cli/test-write-faults.sh: no
# sanitizer (it is preloaded ahead of the program, ASan's runtime included).
WRITE_FAULTS := $(O)/tests/tools/write_faults.so
$(WRITE_FAULTS): tests/tools/shim/write_faults.c $(O)/.flags
	@mkdir -p $(@D)
	$(CC) -std=c11 $(WARN) -O2 -g -fPIC -shared -o $@ $< -ldl

$(O)/bench/%: $(O)/bench/%.o $(LIB_A)
	$(CC) $(ALL_LDFLAGS) -o $@ $< $(LIB_A) $(DEP_LIBS)

check: deps
	@$(MAKE) --no-print-directory check-run

# Unit suites, then CLI tests, then the library as a user sees it, then the
# man pages. Each suite prints Check's summary line; tests/cli/run.sh prints
# "N passed, N failed".
check-run: $(PROG) $(TEST_BIN) $(TOOL_BIN) $(WRITE_FAULTS)
	@set -e; for t in $(TEST_BIN); do echo "== $$t"; LLAMA_BINDIR='$(LLAMA_BINDIR)' $$t; done
	@O=$(O) LORAHUB=$(abspath $(PROG)) LORAHUB_LLAMACPP='$(LLAMA_FOUND)' LLAMA_BINDIR='$(LLAMA_BINDIR)' \
	  sh tests/cli/run.sh
	@$(MAKE) --no-print-directory check-llamacpp
	@$(MAKE) --no-print-directory check-embed
	@$(MAKE) --no-print-directory lint-man

# examples/embed.c built against the installed library (a staged install,
# found through pkg-config alone), run, and its losses checked against
# `lorahub eval`. Under SANITIZE it links the sanitizer runtime too.
STAGE := $(abspath $(O))/stage
check-embed: all
	@rm -rf '$(STAGE)'
	@$(MAKE) --no-print-directory install DESTDIR='$(STAGE)' PREFIX=/usr BINDIR=/usr/bin \
	  LIBDIR=/usr/lib INCLUDEDIR=/usr/include MANDIR=/usr/share/man PKGCONFIGDIR=/usr/lib/pkgconfig >/dev/null
	@O=$(O) STAGE='$(STAGE)' CC='$(CC)' LDFLAGS='$(ALL_LDFLAGS)' PKG_CONFIG='$(PKG_CONFIG)' \
	  LORAHUB=$(abspath $(PROG)) sh tests/embed/run.sh

# The llamacpp tests run inside the suites above when libllama is linked;
# without it, one line says so (and CI, which sets LORAHUB_REQUIRE_LLAMACPP,
# fails instead).
check-llamacpp:
ifeq ($(LLAMA_FOUND),yes)
	@echo "llamacpp: tests ran against $(LLAMA_LIBDIR)"
else
	@if [ -n "$$LORAHUB_REQUIRE_LLAMACPP" ]; then \
	  echo "llamacpp tests cannot be skipped here (LORAHUB_REQUIRE_LLAMACPP): lorahub was built without llama.cpp" >&2; exit 1; \
	else echo "llamacpp tests skipped: built without llama.cpp (sh tools/install-llamacpp.sh, then make LLAMA_PREFIX=build/llamacpp check)"; fi
endif

lint-man:
	@if command -v mandoc >/dev/null 2>&1; then \
	  mandoc -Tlint -Wwarning $(MANPAGES) && echo "man pages: $(words $(MANPAGES)) lint-clean"; \
	else echo "mandoc missing: run 'make deps'" >&2; exit 1; fi

asan: deps
	@$(MAKE) --no-print-directory O=$(O)-asan SANITIZE=address,undefined CFLAGS='-O1 -g' check-run

demo: deps
	@$(MAKE) --no-print-directory demo-run

demo-run: $(PROG)
	@O=$(O) LORAHUB=$(abspath $(PROG)) sh examples/demo.sh

# docs/results.md and docs/results.json from the bundled zoo (tools/table.sh; about 21 min on 2 cores).
table: deps
	@$(MAKE) --no-print-directory $(PROG)
	@O=$(O) LORAHUB=$(abspath $(PROG)) sh tools/table.sh

# Rebuilds examples/zoo, the bundled LLaMA-style zoo, from fixed seeds
# (developer-time: Debian's python3-torch; about 40 min on 2 idle cores, see
# examples/zoo/README.md). ZOO_JOBS module trainers run side by side;
# ZOO_OUT=DIR builds elsewhere.
ZOO_JOBS ?= 2
ZOO_OUT ?= examples/zoo
zoo:
	@/usr/bin/python3 -c 'import torch' 2>/dev/null || \
	  { echo "make zoo needs Debian's python3-torch: apt-get install python3-torch" >&2; exit 1; }
	/usr/bin/python3 tools/zoo/build.py --out $(ZOO_OUT) --jobs $(ZOO_JOBS)
	/usr/bin/python3 tools/zoo_gguf.py $(ZOO_OUT)/base $(ZOO_OUT)/base.gguf --type f16

# Rebuilds examples/zoo-t5, the Flan-T5-architecture zoo, from fixed seeds
# (developer-time: Debian's python3-torch and python3-sentencepiece; about 20 min).
zoo-t5:
	@/usr/bin/python3 -c 'import torch, sentencepiece' 2>/dev/null || \
	  { echo "make zoo-t5 needs Debian's python3-torch and python3-sentencepiece" >&2; exit 1; }
	nice -n 19 /usr/bin/python3 tools/zoo_t5/build.py --out examples/zoo-t5

# docs/results-t5.md and docs/results-t5.json: tools/table.sh on the T5 zoo.
# Every method of tools/table.sh but auto: its budget of 40 cannot score the
# 8 modules alone in each of its 5 folds (lorahub adapt asks for 64); auto-240 can.
T5_METHODS ?= zero-shot icl-5 best-single best-single-all uniform lorahub-cobyla lorahub-cmaes \
  lorahub-nelder-mead lorahub-bobyqa cat-cobyla lorahub-cobyla-200 pre3-lorahub-cobyla pre5-lorahub-cobyla \
  pre8-lorahub-cobyla pre3-cat-cobyla pre5-cat-cobyla pre8-cat-cobyla pre5-lorahub-cobyla-200 \
  pre5-cat-cobyla-200 pre5-lorahub-cmaes pre5-cat-cmaes pre5-cat-cmaes-200 pre3-cat-cobyla-fromsingle \
  pre5-cat-cobyla-fromsingle pre5-lorahub-cobyla-fromsingle pre5-cat-cobyla-fromsingle-200 auto-240 \
  default-search default-search-100
table-t5: deps
	@$(MAKE) --no-print-directory $(PROG)
	@rm -rf $(O)/table-t5-out && mkdir -p $(O)/table-t5-out
	@if [ -f docs/results-t5.md ]; then cp docs/results-t5.md $(O)/table-t5-out/results.md; fi
	@O=$(O) LORAHUB=$(abspath $(PROG)) ZOO=examples/zoo-t5 OUT=$(O)/table-t5-out WORK=$(O)/table-t5 \
	  METHODS='$(T5_METHODS)' sh tools/table.sh
	@mv $(O)/table-t5-out/results.md docs/results-t5.md
	@mv $(O)/table-t5-out/results.json docs/results-t5.json

bench: deps
	@$(MAKE) --no-print-directory bench-run

bench-run: $(PROG) $(BENCH_BIN)
	@O=$(O) LORAHUB=$(abspath $(PROG)) LLAMA_BINDIR='$(LLAMA_BINDIR)' sh bench/run.sh

# libFuzzer needs clang. The library is built once with fuzzer coverage and
# ASan+UBSan in $(O)-fuzz/ and each tests/fuzz/fuzz_*.c links against it.
# `make fuzz` runs each target FUZZ_SECONDS; `make fuzz-long` runs each to
# FUZZ_RUNS executions (docs/reliability.md has the counts and rates), one
# target at a time under nice; each keeps its corpus in $(O)-fuzz/corpus-NAME
# and starts from the committed seeds in tests/fuzz/seeds/NAME (without the
# fuzz_ prefix; the whole seeds tree for a target without its own folder).
FUZZ_SECONDS ?= 60
FUZZ_RUNS ?= 10000000
FUZZ_O := $(O)-fuzz
FUZZ_SRC := $(sort $(wildcard tests/fuzz/fuzz_*.c))
FUZZ_BIN := $(FUZZ_SRC:tests/fuzz/%.c=$(FUZZ_O)/%)
FUZZ_SAN := address,undefined
FUZZ_TARGETS ?= $(FUZZ_BIN)
# the seeds folder of target binary $(1), a shell expression
fuzz_seeds = $$(s=tests/fuzz/seeds/$$(basename $(1) | sed 's/^fuzz_//'); [ -d $$s ] || s=tests/fuzz/seeds; echo $$s)

fuzz-build: deps
	@$(MAKE) --no-print-directory O=$(FUZZ_O) CC=clang SANITIZE=fuzzer-no-link,$(FUZZ_SAN) \
	  CFLAGS='-O1 -g' $(FUZZ_O)/liblorahub.a
	@set -e; for f in $(FUZZ_SRC); do b=$(FUZZ_O)/$$(basename $$f .c); \
	  clang -std=c11 -D_GNU_SOURCE -g -O1 -I. $(DEP_CFLAGS) -fsanitize=fuzzer,$(FUZZ_SAN) \
	    -o $$b $$f $(FUZZ_O)/liblorahub.a $(DEP_LIBS); done

fuzz: fuzz-build
	@set -e; for b in $(FUZZ_TARGETS); do mkdir -p $$(dirname $$b)/corpus-$$(basename $$b); \
	  $$b -max_total_time=$(FUZZ_SECONDS) -print_final_stats=1 $$(dirname $$b)/corpus-$$(basename $$b) \
	    $(call fuzz_seeds,$$b); done

fuzz-long: fuzz-build
	@set -e; for b in $(FUZZ_TARGETS); do mkdir -p $$(dirname $$b)/corpus-$$(basename $$b); \
	  echo "== $$b: $(FUZZ_RUNS) runs"; \
	  nice -n 15 $$b -runs=$(FUZZ_RUNS) -print_final_stats=1 $$(dirname $$b)/corpus-$$(basename $$b) \
	    $(call fuzz_seeds,$$b); done

# include/lorahub.h is the only header installed: everything else is internal.
install: all
	install -d '$(DESTDIR)$(BINDIR)' '$(DESTDIR)$(LIBDIR)' '$(DESTDIR)$(PKGCONFIGDIR)' \
	  '$(DESTDIR)$(INCLUDEDIR)'
	install -m 755 $(PROG) '$(DESTDIR)$(BINDIR)/lorahub'
	install -m 644 $(LIB_A) '$(DESTDIR)$(LIBDIR)/liblorahub.a'
	install -m 755 $(O)/$(LIB_SO_REAL) '$(DESTDIR)$(LIBDIR)/$(LIB_SO_REAL)'
	ln -sf $(LIB_SO_REAL) '$(DESTDIR)$(LIBDIR)/$(LIB_SONAME)'
	ln -sf $(LIB_SONAME) '$(DESTDIR)$(LIBDIR)/liblorahub.so'
	install -m 644 include/lorahub.h '$(DESTDIR)$(INCLUDEDIR)/lorahub.h'
	@for s in 1 3 5 7; do ls man/*.$$s >/dev/null 2>&1 || continue; \
	  install -d '$(DESTDIR)$(MANDIR)/man'$$s; install -m 644 man/*.$$s '$(DESTDIR)$(MANDIR)/man'$$s/; done
	sed -e 's|@PREFIX@|$(PREFIX)|' -e 's|@LIBDIR@|$(LIBDIR)|' -e 's|@INCLUDEDIR@|$(INCLUDEDIR)|' \
	  -e 's|@VERSION@|$(VERSION)|' -e 's|@DEP_PKGS@|$(PKGS)|' \
	  -e 's|@LLAMA_LIBS@|$(LLAMA_LIBS)|' lorahub.pc.in \
	  > '$(DESTDIR)$(PKGCONFIGDIR)/lorahub.pc'

clean:
	rm -rf $(O) $(O)-asan $(O)-fuzz

-include $(LIB_OBJ:.o=.d) $(CMD_OBJ:.o=.d) $(TEST_BIN:=.d) $(TOOL_BIN:=.d) $(BENCH_BIN:=.d)

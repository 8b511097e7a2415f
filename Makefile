# Wyvern top-level Makefile: builds every daemon, the common library, the unit
# tests and the test tools into $(BUILD)/. Sources are found by wildcard, so a
# new module in libs/common or a new test file needs no edit here.
#
#   make            build all six daemons into build/
#   make run        install what is missing, build, start the local stack + daemons
#   make test       install what is missing, build, run every test tier
#   make asan       the same tests against an AddressSanitizer + UBSan build
#   make tsan       unit tests of the threaded modules under ThreadSanitizer
#   make bench      benchmarks that print figures
#   make lint       clang-format check + cppcheck

BUILD    ?= build
SAN      ?=
CC       ?= cc
OPT      ?= -O2
Q        ?= @
SERVICES := auth lobby game world actor chat

PKGS     := grpc gpr libprotobuf-c rdkafka hiredis libpq libuv jansson libcrypto libssl libargon2 libcurl
CFLAGS   := -std=c11 -Wall -Wextra -Werror -D_GNU_SOURCE -g $(OPT) $(SAN) -MMD -MP \
            -I$(BUILD)/gen -Ilibs/common -Ilibs \
            $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
LDLIBS   := $(shell pkg-config --libs $(PKGS) 2>/dev/null) -lwslay -lhttp_parser -lunistring -lpthread -lm
LDFLAGS  := $(SAN)

# protoc-c output is generated at build time, never committed.
PROTOS     := $(wildcard proto/*.proto)
PROTO_C    := $(patsubst proto/%.proto,$(BUILD)/gen/%.pb-c.c,$(PROTOS))
PROTO_H    := $(PROTO_C:.c=.h)
PROTO_O    := $(PROTO_C:.c=.o)

COMMON_SRC := $(wildcard libs/common/*.c)
COMMON_O   := $(patsubst %.c,$(BUILD)/obj/%.o,$(COMMON_SRC))
COMMON_A   := $(BUILD)/libwycommon.a

CLIENT_SRC := $(wildcard libs/client/*.c)
CLIENT_O   := $(patsubst %.c,$(BUILD)/obj/%.o,$(CLIENT_SRC))
CLIENT_A   := $(BUILD)/libwyclient.a

DAEMONS    := $(patsubst %,$(BUILD)/wy-%,$(SERVICES))

UNIT_SRC   := $(wildcard tests/unit/*/test_*.c)
UNIT_BIN   := $(patsubst tests/unit/%.c,$(BUILD)/tests/unit/%,$(UNIT_SRC))
TOOL_SRC   := $(wildcard tests/tools/*.c)
TOOL_BIN   := $(patsubst tests/tools/%.c,$(BUILD)/tests/tools/%,$(TOOL_SRC))
CTOOL_SRC  := $(wildcard tools/*.c)
CTOOL_BIN  := $(patsubst tools/%.c,$(BUILD)/tools/%,$(CTOOL_SRC))

.PHONY: all daemons tests ctools deps run test asan tsan tsan-build bench lint format clean
.DEFAULT_GOAL := all

all: daemons tests ctools
ctools: $(CTOOL_BIN)
daemons: $(DAEMONS)
tests: $(UNIT_BIN) $(TOOL_BIN)

$(BUILD)/gen/%.pb-c.c $(BUILD)/gen/%.pb-c.h: proto/%.proto
	@mkdir -p $(BUILD)/gen
	@echo "  PROTOC  $<"
	$(Q)protoc-c -Iproto --c_out=$(BUILD)/gen $<

$(BUILD)/gen/%.pb-c.o: $(BUILD)/gen/%.pb-c.c
	@echo "  CC      $<"
	$(Q)$(CC) $(CFLAGS) -c -o $@ $<

# Every object may include generated headers: generate them first.
$(BUILD)/obj/%.o: %.c | $(PROTO_H)
	@mkdir -p $(dir $@)
	@echo "  CC      $<"
	$(Q)$(CC) $(CFLAGS) -c -o $@ $<

$(COMMON_A): $(COMMON_O) $(PROTO_O)
	@echo "  AR      $@"
	$(Q)rm -f $@ && ar rcs $@ $^

$(CLIENT_A): $(CLIENT_O)
	@mkdir -p $(dir $@)
	@echo "  AR      $@"
	$(Q)rm -f $@ && ar rcs $@ $^

# Generated sources are kept (make would delete them as intermediates).
.SECONDARY: $(PROTO_C) $(PROTO_H)

# A ThreadSanitizer build links the gRPC tag annotations and C11 <threads.h>
# on pthreads (librdkafka's threads) into the tests and the daemons
# (tests/tsan/grpc_tags.c and tests/tsan/c11_threads.c say why).
ifneq ($(findstring thread,$(SAN)),)
TSAN_SHIM_O := $(BUILD)/obj/tests/tsan/grpc_tags.o $(BUILD)/obj/tests/tsan/c11_threads.o
endif

define DAEMON_RULE
$(BUILD)/wy-$(1): $(patsubst %.c,$(BUILD)/obj/%.o,$(wildcard services/$(1)/*.c)) $(COMMON_A) $(TSAN_SHIM_O)
	@echo "  LD      $$@"
	$$(Q)$$(CC) $$(LDFLAGS) -o $$@ $$^ $$(LDLIBS)
endef
$(foreach s,$(SERVICES),$(eval $(call DAEMON_RULE,$(s))))

$(BUILD)/tests/unit/%: $(BUILD)/obj/tests/unit/%.o $(COMMON_A) $(TSAN_SHIM_O)
	@mkdir -p $(dir $@)
	@echo "  LD      $@"
	$(Q)$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS) -lcmocka

$(BUILD)/tests/tools/%: $(BUILD)/obj/tests/tools/%.o $(COMMON_A)
	@mkdir -p $(dir $@)
	@echo "  LD      $@"
	$(Q)$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)

$(BUILD)/tools/%: $(BUILD)/obj/tools/%.o $(if $(CLIENT_O),$(CLIENT_A)) $(COMMON_A)
	@mkdir -p $(dir $@)
	@echo "  LD      $@"
	$(Q)$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)

deps:
	tools/deps

run: deps
	$(MAKE) all
	tools/run

# ThreadSanitizer: only the unit tests of the modules that run threads or are
# updated from several (wy_metrics); the other tests are single-threaded or use
# a thread only as a blocking test client, and gain nothing. tests/tsan.supp lists the
# reports from inside uninstrumented libraries that are not ours, each with why.
TSAN_BUILD := build-tsan
TSAN_UNITS := mailbox tick worker daemon grpc metrics
TSAN_BINS  := $(patsubst %,$(TSAN_BUILD)/tests/unit/common/test_wy_%,$(TSAN_UNITS))
# wy-game's partitions on two threads with sim.c's hand-off discipline.
TSAN_BINS  += $(TSAN_BUILD)/tests/unit/game/test_threads
# librdkafka's C11 threads on tests/tsan/c11_threads.c.
TSAN_BINS  += $(TSAN_BUILD)/tests/unit/common/test_c11_threads

tsan-build:
	$(MAKE) BUILD=$(TSAN_BUILD) OPT=-O1 SAN="-fsanitize=thread" $(TSAN_BINS)

tsan: deps tsan-build
	tests/run --tier tsan --tsan-build $(TSAN_BUILD)

test: deps
	$(MAKE) all tsan-build
	tests/run --build $(BUILD) --tsan-build $(TSAN_BUILD)

asan: deps
	$(MAKE) BUILD=build-asan OPT=-O1 SAN="-fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined" all
	tests/run --build build-asan --tier unit --tier integration --tier cluster --tier e2e --tier interop --tier deploy

bench: deps
	$(MAKE) all
	tools/bench --build $(BUILD)

LINT_FILES = $(shell git ls-files '*.c' '*.h')
lint:
	@echo "  FORMAT  check ($(words $(LINT_FILES)) files)"
	@clang-format --dry-run --Werror $(LINT_FILES)
	@echo "  CPPCHECK"
	@cppcheck --quiet --error-exitcode=1 --enable=warning,portability --inline-suppr \
	  --suppress=missingIncludeSystem --suppress=varFuncNullUB --std=c11 -D__GNUC__ -Ilibs/common $(LINT_FILES)

format:
	clang-format -i $(LINT_FILES)

clean:
	rm -rf build build-asan build-tsan

-include $(shell find $(BUILD)/obj -name '*.d' 2>/dev/null)

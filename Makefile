# SPDX-License-Identifier: Apache-2.0
# nave: one Makefile for the whole tree. See README.md.
#   make            build the binaries into build/ (the four programs and nave-pki, navectl pki's helper)
#   make SAN=1      ASan + UBSan build into build-san/
#   make V=1        show commands
#   make deps | run [CONFIG=FILE] | demo | test | bench | bench-splice | bench-tcpbuf | lint | fuzz | clean
#   make ktls-test [KTLS=on|auto|off]   the kTLS suite in a QEMU guest (tests/ktls/)
#   make install [DESTDIR=DIR] [PREFIX=/usr/local] | uninstall | deb   (packaging/README.md)
#   make check-boringssl  every binary: BoringSSL only, never beside OpenSSL 3 (tests/check-no-openssl.sh)
#   make appliance-test   the .deb installed under systemd in a QEMU guest (tests/appliance/)

SAN ?= 0
V ?= 0
ifeq ($(V),1)
Q :=
else
Q := @
endif

BSSL_INC := /usr/include/android
BSSL_LIB := /usr/lib/x86_64-linux-gnu/android

ifeq ($(SAN),1)
B := build-san
SANFLAGS := -fsanitize=address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer
OPT := -O1 -g
JEMALLOC :=
else
B := build
SANFLAGS :=
# the datapath's hot path crosses modules (stream.c, xprt*.c, worker.c): LTO inlines across them
OPT := -O2 -g -flto=auto
# --no-as-needed: under LTO malloc is a builtin the linker does not see as undefined when it
# decides which --as-needed libraries are used, and jemalloc was dropped silently
JEMALLOC := -Wl,--no-as-needed -ljemalloc -Wl,--as-needed
endif

CC ?= cc
WARN := -Wall -Wextra -Werror -Wshadow -Wstrict-prototypes -Wmissing-prototypes -Wno-unused-parameter
CPPFLAGS := -I. -Icommon -Ibpf -I$(B)/bpf -I$(BSSL_INC) -I/usr/include/libnl3 -D_GNU_SOURCE
CFLAGS := -std=gnu11 $(OPT) $(WARN) $(SANFLAGS) -pthread -MMD -MP
LDFLAGS := $(OPT) $(SANFLAGS) -pthread
SSL_LIBS := $(BSSL_LIB)/libssl.so $(BSSL_LIB)/libcrypto.so -Wl,-rpath,$(BSSL_LIB)
# navectl's HTTP client: libcurl's GnuTLS flavour (libcurl4-gnutls-dev), never the OpenSSL one
CURL_LIBS := $(shell pkg-config --libs libcurl)

COMMON := common/log.c common/msg.c common/frame.c common/util.c common/valid.c common/sock.c \
	  common/proxy.c common/portlist.c common/cidr.c common/tlspeek.c common/domain.c common/http.c \
	  common/rulemsg.c common/mesh.c
CFG := config/cfg.c
# scrypt password hashes (BoringSSL): kept out of COMMON (navectl links no BoringSSL at all)
PASSWD := common/passwd.c
# support tunnels' end-to-end layer and values (BoringSSL): the client and the daemons; navectl
# needs only the inline sup_id_valid of support.h
SUPPORT := common/support.c common/supmsg.c
TLS := tls/tls.c tls/ktls.c tls/pki.c
ENGINE := datapath/worker.c datapath/stream.c datapath/relay.c datapath/dial.c \
	  datapath/xprt.c datapath/xprt_tls.c datapath/edge.c datapath/routes.c datapath/acme_chal.c \
	  datapath/meshopen.c datapath/resolve.c datapath/udp.c datapath/socksd.c \
	  datapath/supportd.c

# BPF programs (bpf/NAME.bpf.c): clang -target bpf with BTF, then a libbpf skeleton
# ($(B)/bpf/NAME.skel.h) that the loaders (BPF_SRC) include. Nothing shells out at run time.
BPF_PROGS := sk_lookup reuseport xdp
BPF_SRC := bpf/steer.c bpf/xdp.c
BPF_SKELS := $(patsubst %,$(B)/bpf/%.skel.h,$(BPF_PROGS))
BPF_LIBS := -lbpf -lelf -lz -lnl-route-3 -lnl-3
BPF_CLANG ?= clang
BPF_CFLAGS := -g -O2 -target bpf -D__TARGET_ARCH_x86 -Wall -Werror -Ibpf \
	      -I/usr/include/$(shell $(CC) -dumpmachine)

# readiness, stopping and the watchdog for a service manager (libsystemd): the daemons and the client
SVC := common/svc.c
# started as root: run as [server] user, keep named capabilities, seccomp (libseccomp)
SANDBOX := common/sandbox.c
# the client's SOCKS5 proxy (nave proxies socks): the protocol's messages (the engine's
# client role speaks it, so relayd links it too)
SOCKS5 := common/socks5.c
RELAYD_SRC := datapath/relayd.c datapath/ctlthread.c datapath/kern.c $(ENGINE) $(BPF_SRC) $(TLS) \
	      $(CFG) $(COMMON) $(PASSWD) $(SUPPORT) $(SVC) $(SANDBOX) $(SOCKS5)
CONTROLD_SRC := ctl/controld.c ctl/store.c ctl/api.c ctl/relaylink.c ctl/reload.c ctl/acme.c \
		ctl/acme_http.c ctl/jws.c ctl/restrict.c ctl/ruleops.c ctl/totp.c ctl/auth.c ctl/records.c \
		ctl/metrics.c ctl/mhdpoll.c ctl/support.c ctl/api_support.c $(TLS) $(CFG) $(COMMON) \
		$(PASSWD) $(SUPPORT) $(SVC) $(SANDBOX)
# navectl: libcurl (GnuTLS), never BoringSSL: libcurl's libssh2 brings OpenSSL's libcrypto.so.3, and
# both in one process resolve each other's symbols. Its pki commands run in nave-pki (ctl/pki_main.c):
# tls/pki.c over BoringSSL's libcrypto (never libssl), no libcurl.
CLI := ctl/cli.c
NAVECTL_SRC := ctl/navectl.c $(CLI) $(CFG) $(COMMON)
PKI_SRC := ctl/pki_main.c $(CLI) tls/pki.c $(CFG) $(COMMON)
NAVE_SRC := client/nave.c client/client.c client/webroot.c client/supgw.c client/supstream.c client/supconnect.c $(ENGINE) $(TLS) $(CFG) $(COMMON) \
	    $(PASSWD) $(SUPPORT) $(SVC) $(SOCKS5)

obj = $(patsubst %.c,$(B)/obj/%.o,$(1))

BINS := $(B)/nave-relayd $(B)/nave-controld $(B)/navectl $(B)/nave-pki $(B)/nave

.PHONY: all deps run demo test unit integration ktls-test fuzz bench bench-splice bench-tcpbuf lint clean check-boringssl \
	install uninstall deb appliance-test
all: $(BINS)

$(B)/obj/%.o: %.c
	@mkdir -p $(dir $@)
	@$(if $(Q),echo "  CC      $<")
	$(Q)$(CC) $(CPPFLAGS) $(CFLAGS) -c $< -o $@

$(B)/bpf/%.bpf.o: bpf/%.bpf.c bpf/maps.h
	@mkdir -p $(dir $@)
	@$(if $(Q),echo "  BPF     $<")
	$(Q)$(BPF_CLANG) $(BPF_CFLAGS) -c $< -o $@

$(B)/bpf/%.skel.h: $(B)/bpf/%.bpf.o
	@$(if $(Q),echo "  SKEL    $@")
	$(Q)bpftool gen skeleton $< name nave_$* > $@.tmp && mv $@.tmp $@

# the dashboard (ctl/ui/) embedded by ctl/ui-embed.sh into a generated source, served by ctl/ui.c
UI_FILES := $(sort $(wildcard ctl/ui/*.html ctl/ui/*.css ctl/ui/*.js ctl/ui/*.svg))
UI_GEN := $(B)/gen/ui_files.c
CONTROLD_SRC += ctl/ui.c $(UI_GEN)
$(UI_GEN): ctl/ui-embed.sh $(UI_FILES)
	@mkdir -p $(dir $@)
	@$(if $(Q),echo "  EMBED   $@")
	$(Q)./ctl/ui-embed.sh $@ $(UI_FILES)

# the loaders include the skeletons
$(call obj,$(BPF_SRC) datapath/kern.c): $(BPF_SKELS)

$(B)/nave-controld: $(call obj,$(CONTROLD_SRC))
	@$(if $(Q),echo "  LD      $@")
	$(Q)$(CC) $(LDFLAGS) -o $@ $^ $(SSL_LIBS) -liniparser -lsqlite3 -lmicrohttpd -lgnutls -ljansson -lhttp_parser -lsystemd -lseccomp $(JEMALLOC)
	$(Q)./tests/check-no-openssl.sh $@

$(B)/navectl: $(call obj,$(NAVECTL_SRC))
	@$(if $(Q),echo "  LD      $@")
	$(Q)$(CC) $(LDFLAGS) -o $@ $^ -liniparser -ljansson -lhttp_parser $(CURL_LIBS)
	$(Q)./tests/check-no-openssl.sh $@

$(B)/nave-pki: $(call obj,$(PKI_SRC))
	@$(if $(Q),echo "  LD      $@")
	$(Q)$(CC) $(LDFLAGS) -o $@ $^ -liniparser -ljansson -lhttp_parser \
		$(BSSL_LIB)/libcrypto.so -Wl,-rpath,$(BSSL_LIB)
	$(Q)./tests/check-no-openssl.sh $@

$(B)/nave: $(call obj,$(NAVE_SRC))
	@$(if $(Q),echo "  LD      $@")
	$(Q)$(CC) $(LDFLAGS) -o $@ $^ $(SSL_LIBS) -luring -liniparser -ljansson -lhttp_parser -lsystemd
	$(Q)./tests/check-no-openssl.sh $@

$(B)/nave-relayd: $(call obj,$(RELAYD_SRC))
	@$(if $(Q),echo "  LD      $@")
	$(Q)$(CC) $(LDFLAGS) -o $@ $^ $(SSL_LIBS) -luring -liniparser -ljansson -lhttp_parser $(BPF_LIBS) -lsystemd -lseccomp $(JEMALLOC)
	$(Q)./tests/check-no-openssl.sh $@

deps:
	$(Q)./tests/deps.sh

# make run CONFIG=FILE: the same with a server config instead of the embedded default.
run: deps all
	$(Q)./tests/run.sh $(B) $(if $(CONFIG),--config '$(CONFIG)')

# make demo: a whole nave in a temp dir, a web service behind demo.localhost on
# the HTTP edge, one request through it; Ctrl-C stops it (tests/demo.sh).
demo: deps all
	$(Q)./tests/demo.sh $(B)

# Unit tests (cmocka): each tests/unit/test_X.c is one binary.
UNIT_SRC := $(wildcard tests/unit/test_*.c)
UNIT_BIN := $(patsubst tests/unit/%.c,$(B)/tests/%,$(UNIT_SRC))
UNIT_LIBS := $(SSL_LIBS) -luring -liniparser -ljansson -lhttp_parser -lsqlite3 -lmicrohttpd -lcmocka \
	     -lseccomp

$(B)/tests/%: tests/unit/%.c $(call obj,$(COMMON) $(CFG) $(TLS) $(PASSWD) $(SUPPORT) ctl/store.c)
	@mkdir -p $(dir $@)
	@$(if $(Q),echo "  CC      $<")
	$(Q)$(CC) $(CPPFLAGS) $(CFLAGS) -Wno-missing-prototypes -o $@ $^ $(LDFLAGS) $(UNIT_LIBS)

# test_webroot tests the client's static file server too
$(B)/tests/test_webroot: $(call obj,client/webroot.c)
$(B)/tests/test_sandbox: $(call obj,common/sandbox.c)
# the dashboard's file server, with the files embedded as controld has them
$(B)/tests/test_ui: $(call obj,ctl/ui.c $(UI_GEN))
# the ACME client's pieces and relayd's challenge table
$(B)/tests/test_acme: $(call obj,ctl/jws.c ctl/acme.c ctl/acme_http.c ctl/relaylink.c ctl/ruleops.c ctl/support.c \
	ctl/records.c datapath/acme_chal.c ctl/restrict.c)
# token restrictions: parsing and matching
$(B)/tests/test_restrict: $(call obj,ctl/restrict.c)
$(B)/tests/test_totp: $(call obj,ctl/totp.c)
$(B)/tests/test_socks5: $(call obj,$(SOCKS5))
$(B)/tests/test_support: $(call obj,$(SUPPORT))
# the device's support gateway and the supporter's end of a stream, joined without an edge
$(B)/tests/test_supgw: $(call obj,client/supgw.c client/supstream.c)
# relayd's record ring (datapath/recring.h) and controld's check of the records
$(B)/tests/test_records: $(call obj,ctl/records.c)

# the Prometheus text and the metrics listener
$(B)/tests/test_metrics: $(call obj,ctl/metrics.c ctl/mhdpoll.c ctl/relaylink.c ctl/ruleops.c ctl/records.c ctl/restrict.c ctl/support.c)

# The XDP filter's test driver (tests/xdp/): the loader without relayd, for test_xdp.py.
$(B)/tests/xdp_probe: tests/xdp/xdp_probe.c $(call obj,bpf/xdp.c common/cidr.c common/log.c common/util.c)
	@mkdir -p $(dir $@)
	@$(if $(Q),echo "  CC      $<")
	$(Q)$(CC) $(CPPFLAGS) $(CFLAGS) -o $@ $^ $(LDFLAGS) $(BPF_LIBS)

unit: $(UNIT_BIN)
	$(Q)set -e; for t in $(UNIT_BIN); do echo "== $$t"; $$t; done

# STEERING=bpf|listeners: [datapath] steering of every test server (default: auto)
STEERING ?= $(NAVE_STEERING)
integration: all $(B)/tests/xdp_probe
	$(Q)NAVE_STEERING=$(STEERING) NAVE_BUILD=$(CURDIR)/$(B) /usr/bin/python3 -m pytest -q -p no:cacheprovider --durations=12 tests/integration

# The kTLS suite inside a QEMU guest with Debian's kernel (tests/ktls/README.md).
# KTLS: the ktls mode of both ends (default on; NAVE_KTLS works too). A machine
# that cannot run the guest skips it with the reason (guest.sh exit 77).
KTLS ?= $(or $(NAVE_KTLS),on)
KTLS_TIMEOUT ?= 600
# The guest runs the BPF suites too: Debian 12's 6.1 kernel must load and run
# the steering and XDP programs as the host's does. GUEST_BPF=0 leaves them out
# (make test's sanitizer run in the guest: the programs are the same objects,
# and the normal run checked the kernel takes them) and keeps the edge's kTLS.
GUEST_BPF ?= 1
# In the guest, the tests whose outcome the kernel decides: the programs load and
# run (the whole XDP probe suite), sk_lookup's steering against other sockets, and
# relayd end to end with both; relayd's own logic around them (locks, fallbacks,
# refusals) is the host's run.
STEER := tests/integration/test_steering.py
GUEST_BPF_TESTS := $(if $(filter 1,$(GUEST_BPF)),tests/integration/test_xdp.py \
		   $(STEER)::test_bpf_one_listener_per_worker_whatever_the_ports \
		   $(STEER)::test_bpf_release_takes_effect_within_100ms \
		   $(STEER)::test_bpf_carries_traffic $(STEER)::test_bpf_holds_its_ports_against_other_binds \
		   $(STEER)::test_bpf_does_not_take_a_port_someone_listens_on \
		   tests/integration/test_firewall.py::test_xdp_deny_allow_and_counters) \
		   tests/integration/test_http.py::test_https_terminated_at_the_edge
ktls-test: all $(B)/tests/test_ktls $(B)/tests/xdp_probe
	$(Q)rc=0; NAVE_KTLS=$(KTLS) NAVE_BUILD=$(CURDIR)/$(B) ./tests/ktls/guest.sh \
		--timeout $(KTLS_TIMEOUT) sh -c '$(B)/tests/test_ktls && \
		/usr/bin/python3 -m pytest -q -s -p no:cacheprovider -rs tests/ktls/ && \
		/usr/bin/python3 -m pytest -q -p no:cacheprovider -rs $(GUEST_BPF_TESTS)' || rc=$$?; \
	if [ $$rc = 77 ]; then echo "ktls-test: SKIPPED (the reason is above)"; exit 0; fi; \
	exit $$rc

# The Debian package under systemd in a QEMU guest (tests/appliance/): the host's
# systemd as PID 1 over a read-only view of this machine's root, so installing
# the package changes nothing here. A machine that cannot boot the guest skips.
APPLIANCE_TIMEOUT ?= 900
appliance-test: deb
	$(Q)rc=0; NAVE_BUILD=$(CURDIR)/$(B) ./tests/ktls/guest.sh --systemd --timeout $(APPLIANCE_TIMEOUT) \
		--env NAVE_APPLIANCE_GUEST=1 \
		/usr/bin/python3 -m pytest -q -s -p no:cacheprovider -rs tests/appliance/ || rc=$$?; \
	if [ $$rc = 77 ]; then echo "appliance-test: SKIPPED (the reason is above)"; exit 0; fi; \
	exit $$rc

fuzz:
	$(Q)./tests/fuzz/run.sh

test: deps
	$(Q)./tests/test.sh

bench: deps all
	$(Q)./bench/run.sh $(B)

# The splice vs provided-buffer-ring measurement (bench/README.md): one binary,
# run on this host with --no-ktls and in the kTLS guest (tests/ktls/guest.sh).
$(B)/bench/ktls_splice: bench/ktls_splice.c $(call obj,$(TLS) common/util.c common/log.c)
	@mkdir -p $(dir $@)
	@$(if $(Q),echo "  CC      $<")
	$(Q)$(CC) $(CPPFLAGS) $(CFLAGS) -o $@ $^ $(LDFLAGS) $(SSL_LIBS) -luring
	$(Q)./tests/check-no-openssl.sh $@

bench-splice: $(B)/bench/ktls_splice
	$(Q)./bench/ktls_splice.sh $(B)/bench/ktls_splice

# Do the TCP buffer maxima matter for relayed throughput over delayed links
# (bench/README.md)? In the Debian-kernel guest, about 20 minutes; not in make bench.
bench-tcpbuf: all
	$(Q)./bench/tcpbuf.sh $(B)

# ---------- install, deb (packaging/README.md) ----------
# make install DESTDIR=... PREFIX=...: the binaries, man pages, the appliance
# config (never over an existing one), systemd units with these paths in them,
# and the sysctl, tmpfiles and sysusers snippets.
PREFIX ?= /usr/local
BINDIR ?= $(PREFIX)/bin
SBINDIR ?= $(PREFIX)/sbin
# nave-pki, run by navectl pki; navectl finds it at ../lib/nave from its own directory
LIBEXECDIR ?= $(PREFIX)/lib/nave
MANDIR ?= $(PREFIX)/share/man
SYSCONFDIR ?= $(if $(filter /usr,$(PREFIX)),/etc,$(PREFIX)/etc)
UNITDIR ?= $(PREFIX)/lib/systemd/system
SYSCTLDIR ?= $(PREFIX)/lib/sysctl.d
TMPFILESDIR ?= $(PREFIX)/lib/tmpfiles.d
SYSUSERSDIR ?= $(PREFIX)/lib/sysusers.d
UNITS := nave-controld.service nave-relayd.service nave-client@.service
MAN_PAGES := $(wildcard man/*.[158])

install: all
	$(Q)install -d $(DESTDIR)$(BINDIR) $(DESTDIR)$(SBINDIR) $(DESTDIR)$(LIBEXECDIR) \
		$(DESTDIR)$(SYSCONFDIR)/nave \
		$(DESTDIR)$(UNITDIR) $(DESTDIR)$(SYSCTLDIR) $(DESTDIR)$(TMPFILESDIR) \
		$(DESTDIR)$(SYSUSERSDIR) $(DESTDIR)$(MANDIR)/man1 $(DESTDIR)$(MANDIR)/man5 \
		$(DESTDIR)$(MANDIR)/man8
	$(Q)install -m 0755 $(B)/nave $(B)/navectl $(DESTDIR)$(BINDIR)/
	$(Q)install -m 0755 $(B)/nave-relayd $(B)/nave-controld $(DESTDIR)$(SBINDIR)/
	$(Q)install -m 0755 $(B)/nave-pki $(DESTDIR)$(LIBEXECDIR)/
	$(Q)for m in $(MAN_PAGES); do \
		install -m 0644 $$m $(DESTDIR)$(MANDIR)/man$${m##*.}/; done
	$(Q)[ -e $(DESTDIR)$(SYSCONFDIR)/nave/nave.ini ] || \
		install -m 0640 appliance/nave.ini $(DESTDIR)$(SYSCONFDIR)/nave/nave.ini
	$(Q)for u in $(UNITS); do \
		sed -e 's|@BINDIR@|$(BINDIR)|g' -e 's|@SBINDIR@|$(SBINDIR)|g' \
		    -e 's|@SYSCONFDIR@|$(SYSCONFDIR)|g' packaging/systemd/$$u.in \
		    > $(DESTDIR)$(UNITDIR)/$$u && chmod 0644 $(DESTDIR)$(UNITDIR)/$$u; done
	$(Q)install -m 0644 packaging/sysctl.d/50-nave.conf $(DESTDIR)$(SYSCTLDIR)/
	$(Q)install -m 0644 packaging/tmpfiles.d/nave.conf $(DESTDIR)$(TMPFILESDIR)/
	$(Q)install -m 0644 packaging/sysusers.d/nave.conf $(DESTDIR)$(SYSUSERSDIR)/
	@echo "installed under $(DESTDIR)$(PREFIX) (config: $(DESTDIR)$(SYSCONFDIR)/nave/nave.ini)"

# the config and the state (/var/lib/nave) stay
uninstall:
	$(Q)rm -f $(DESTDIR)$(BINDIR)/nave $(DESTDIR)$(BINDIR)/navectl \
		$(DESTDIR)$(SBINDIR)/nave-relayd $(DESTDIR)$(SBINDIR)/nave-controld \
		$(DESTDIR)$(LIBEXECDIR)/nave-pki \
		$(addprefix $(DESTDIR)$(UNITDIR)/,$(UNITS)) $(DESTDIR)$(SYSCTLDIR)/50-nave.conf \
		$(DESTDIR)$(TMPFILESDIR)/nave.conf $(DESTDIR)$(SYSUSERSDIR)/nave.conf \
		$(foreach m,$(MAN_PAGES),$(DESTDIR)$(MANDIR)/man$(subst .,,$(suffix $(m)))/$(notdir $(m)))
	$(Q)rmdir $(DESTDIR)$(LIBEXECDIR) 2>/dev/null || true

# make deb: build/nave_VERSION_ARCH.deb, dpkg-deb from a tree staged by make
# install (packaging/mkdeb.sh); never with SAN=1.
deb: all
	$(Q)[ "$(SAN)" != 1 ] || { echo "make deb: not from the sanitizer build"; exit 2; }
	$(Q)./packaging/mkdeb.sh $(B)

# every binary: no OpenSSL 3 linked, nor loaded beside BoringSSL (each link runs it too)
check-boringssl: all
	$(Q)./tests/check-no-openssl.sh $(BINS)

lint:
	$(Q)clang-format --dry-run --Werror $$(git ls-files '*.c' '*.h')
	$(Q)$(MAKE) --no-print-directory all

clean:
	rm -rf build build-san build-fuzz

-include $(shell find $(B)/obj -name '*.d' 2>/dev/null)

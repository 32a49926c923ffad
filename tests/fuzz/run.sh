#!/bin/sh
# SPDX-License-Identifier: Apache-2.0
# Builds every tests/fuzz/fuzz_*.c into build-fuzz/ with clang's libFuzzer,
# ASan and UBSan, then runs each for FUZZ_SECONDS (default 20) over a scratch
# copy of its seed corpus, so new inputs never land in the repository. Any
# crash, leak, sanitizer report or build error fails the run (exit 1); a
# reproducer is left in build-fuzz/artifacts/. One summary line per target.
# `make fuzz` runs this; FUZZ_SECONDS=0 only builds and replays the seeds;
# FUZZ_JOBS=N runs N targets at a time (default: the number of CPUs).
set -eu

cd "$(dirname "$0")/../.."
SECONDS_EACH=${FUZZ_SECONDS:-20}
CC=${FUZZ_CC:-clang}
OUT=build-fuzz
CFLAGS="-g -O1 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined
-fno-omit-frame-pointer -Wall -Wextra -Werror -Wshadow -Wstrict-prototypes
-Wmissing-prototypes -Wno-unused-parameter -I. -Icommon -D_GNU_SOURCE"

# The sources and libraries each target links besides itself.
deps()
{
	case "$1" in
	frame | msg)
		echo "common/frame.c common/domain.c common/msg.c common/util.c common/log.c -ljansson" ;;
	config)
		echo "config/cfg.c common/util.c common/log.c common/domain.c common/cidr.c common/mesh.c
-liniparser -ljansson" ;;
	portlist)
		echo "common/portlist.c" ;;
	rulemsg)
		echo "common/rulemsg.c config/cfg.c common/valid.c common/domain.c common/cidr.c
common/mesh.c common/util.c common/log.c common/msg.c -ljansson -liniparser" ;;
	cidr)
		echo "common/cidr.c" ;;
	mesh)
		echo "common/mesh.c common/cidr.c common/domain.c -ljansson" ;;
	restrict)
		echo "ctl/restrict.c common/cidr.c common/domain.c" ;;
	tlspeek)
		echo "common/tlspeek.c common/domain.c" ;;
	socks5)
		echo "common/socks5.c common/domain.c" ;;
	http | http_resp)
		echo "common/http.c common/domain.c -lhttp_parser" ;;
	escape)
		echo "common/log.c common/util.c common/valid.c -ljansson" ;;
	records)
		echo "ctl/records.c common/valid.c common/domain.c common/util.c common/log.c -ljansson" ;;
	passwd)
		echo "common/passwd.c -I/usr/include/android
/usr/lib/x86_64-linux-gnu/android/libcrypto.so -Wl,-rpath,/usr/lib/x86_64-linux-gnu/android" ;;
	supmsg)
		echo "common/supmsg.c common/valid.c common/util.c common/log.c -ljansson
-I/usr/include/android" ;;
	support)
		echo "common/support.c -I/usr/include/android
/usr/lib/x86_64-linux-gnu/android/libcrypto.so -Wl,-rpath,/usr/lib/x86_64-linux-gnu/android" ;;
	supstream)
		echo "client/supstream.c common/support.c common/frame.c common/domain.c common/util.c
common/log.c -ljansson -I/usr/include/android /usr/lib/x86_64-linux-gnu/android/libssl.so
/usr/lib/x86_64-linux-gnu/android/libcrypto.so -Wl,-rpath,/usr/lib/x86_64-linux-gnu/android" ;;
	totp)
		echo "ctl/totp.c -I/usr/include/android
/usr/lib/x86_64-linux-gnu/android/libcrypto.so -Wl,-rpath,/usr/lib/x86_64-linux-gnu/android" ;;
	acme_http)
		echo "ctl/acme_http.c common/util.c common/log.c -ljansson -lhttp_parser -I/usr/include/android
/usr/lib/x86_64-linux-gnu/android/libssl.so /usr/lib/x86_64-linux-gnu/android/libcrypto.so
-Wl,-rpath,/usr/lib/x86_64-linux-gnu/android" ;;
	pki)
		echo "tls/pki.c common/valid.c common/util.c common/log.c -ljansson -I/usr/include/android
/usr/lib/x86_64-linux-gnu/android/libcrypto.so -Wl,-rpath,/usr/lib/x86_64-linux-gnu/android" ;;
	ktls)
		echo "tls/ktls.c common/util.c common/log.c -ljansson -I/usr/include/android
/usr/lib/x86_64-linux-gnu/android/libssl.so /usr/lib/x86_64-linux-gnu/android/libcrypto.so
-Wl,-rpath,/usr/lib/x86_64-linux-gnu/android" ;;
	support_ctl)
		echo "ctl/support.c common/support.c ctl/store.c ctl/relaylink.c ctl/ruleops.c ctl/records.c ctl/restrict.c
config/cfg.c common/util.c common/log.c common/valid.c common/domain.c common/cidr.c
common/mesh.c common/msg.c common/rulemsg.c -lsqlite3 -ljansson -liniparser
-I/usr/include/android /usr/lib/x86_64-linux-gnu/android/libcrypto.so
-Wl,-rpath,/usr/lib/x86_64-linux-gnu/android" ;;
	*)
		echo "run.sh: no link rule for fuzz_$1.c; add one to deps()" >&2
		return 1 ;;
	esac
}

mkdir -p "$OUT/artifacts"
export ASAN_OPTIONS="${ASAN_OPTIONS:-detect_leaks=1}:abort_on_error=0"
export UBSAN_OPTIONS="${UBSAN_OPTIONS:-print_stacktrace=1}:halt_on_error=1"

failed=0
# Build every target first, then run FUZZ_JOBS of them at a time (default: one per
# CPU); each run's summary is printed in the targets' order once all have run.
JOBS=${FUZZ_JOBS:-$(nproc)}
if [ "$SECONDS_EACH" -gt 0 ]; then
	RUN_ARGS="-max_total_time=$SECONDS_EACH"
else
	RUN_ARGS="-runs=0"
fi

# run_one NAME: runs build-fuzz/NAME over a scratch copy of its seeds and writes its
# summary to build-fuzz/NAME.result (FAILED on its first line when it failed)
run_one()
{
	name=$1
	t=${name#fuzz_}
	bin="$OUT/$name"
	log="$OUT/$name.log"
	work="$OUT/corpus-$t"
	if "$bin" "$RUN_ARGS" -max_len=4096 -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
		-artifact_prefix="$OUT/artifacts/$name-" "$work" >"$log" 2>&1; then
		status=ok
	else
		status=FAILED
	fi
	runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n 1)
	cov=$(sed -n 's/^#[0-9]*.*cov: \([0-9]*\).*/\1/p' "$log" | tail -n 1)
	{
		echo "fuzz: $name: $status, ${runs:-?} runs in ${SECONDS_EACH}s, cov ${cov:-?}," \
			"corpus $(ls "$work" | wc -l) files"
		if [ "$status" = FAILED ]; then
			grep -E 'ERROR|SUMMARY|runtime error|fuzz_[a-z]*: |Test unit written' "$log" |
				head -n 20 | sed 's/^/    /'
			echo "    full log: $log"
		fi
	} >"$OUT/$name.result"
}

built=""
for src in tests/fuzz/fuzz_*.c; do
	name=$(basename "$src" .c)
	t=${name#fuzz_}
	link=$(deps "$t")
	rm -f "$OUT/$name.result"
	# shellcheck disable=SC2086
	if ! $CC $CFLAGS -o "$OUT/$name" "$src" $link; then
		echo "fuzz: $name: build FAILED"
		failed=1
		continue
	fi
	work="$OUT/corpus-$t"
	rm -rf "$work"
	mkdir -p "$work"
	if [ -d "tests/fuzz/corpus/$t" ]; then
		cp -R "tests/fuzz/corpus/$t/." "$work/"
	fi
	built="$built $name"
done

n=0
for name in $built; do
	run_one "$name" &
	n=$((n + 1))
	if [ "$n" -ge "$JOBS" ]; then
		wait
		n=0
	fi
done
wait
for name in $built; do
	if [ -s "$OUT/$name.result" ]; then
		cat "$OUT/$name.result"
		head -n 1 "$OUT/$name.result" | grep -q ": FAILED," && failed=1
	else
		echo "fuzz: $name: FAILED, no result"
		failed=1
	fi
done
exit "$failed"

#!/bin/sh
# SPDX-License-Identifier: Apache-2.0
# make run: nave-controld and nave-relayd in the foreground with the embedded
# default config (state in ./var, sockets in ./var/run, tunnels on
# 127.0.0.1:8443, TCP ports 22000-22999), then a registration token and the
# exact client commands to connect. Ctrl-C stops both daemons.
set -eu
B=${1:-build}
BIN=$(cd "$B" && pwd)
mkdir -p var/run
for d in nave-controld nave-relayd; do
	if [ -S var/run/control.sock ] && [ "$d" = nave-controld ] &&
		"$BIN/navectl" status >/dev/null 2>&1; then
		echo "run: a nave-controld already answers on var/run/control.sock; stop it first" >&2
		exit 1
	fi
done
"$BIN/nave-controld" &
CPID=$!
"$BIN/nave-relayd" &
RPID=$!
stop() {
	trap - INT TERM EXIT
	kill -TERM "$RPID" "$CPID" 2>/dev/null || true
	wait "$RPID" 2>/dev/null || true
	wait "$CPID" 2>/dev/null || true
}
trap 'stop; exit 0' INT TERM
trap stop EXIT
i=0
FP=""
while [ $i -lt 100 ]; do
	FP=$("$BIN/navectl" --json status 2>/dev/null |
		/usr/bin/python3 -c 'import json,sys; d=json.load(sys.stdin); print(d.get("tls_fingerprint") or "")' 2>/dev/null || true)
	[ -n "$FP" ] && break
	i=$((i + 1))
	sleep 0.1
done
if [ -z "$FP" ]; then
	echo "run: the daemons did not come up (see the log lines above)" >&2
	exit 1
fi
TOKEN=$("$BIN/navectl" registration create --description "make run" | head -n 1)
cat <<MSG

nave is running: tunnels on 127.0.0.1:8443, public TCP ports 22000-22999.
On the device (here, in another terminal), connect a client:

  export PATH=$BIN:\$PATH
  nave configure --server 127.0.0.1:8443 --registration $TOKEN --fingerprint $FP
  nave start

and in a third terminal expose a local service (it prints the public port):

  nave tunnel tcp add --to 127.0.0.1:22

Admin: navectl status | navectl tunnels ls | navectl ports ls   (Ctrl-C here stops the server)
MSG
wait "$RPID" "$CPID"

#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# make demo: a whole nave on this machine, end to end through the HTTP edge.
#
#   tests/demo.sh [BUILD_DIR] [--once]
#
# In a temp dir of its own (mktemp, under $TMPDIR): nave-controld and
# nave-relayd with a config of their own (free ports for the HTTP edge, HTTPS
# and the tunnel listener, a free 10-port range window, reserve = off), a
# registration, a client configured with it (`nave configure --server
# --registration --fingerprint`) and running (`nave start`), a small web
# service (python3 -m http.server on a generated index.html), and
# `nave tunnel http add --domain demo.localhost --to` that service. It prints
# the URL and a curl line, runs that curl once and shows the answer, then
# waits. Ctrl-C (SIGINT, SIGTERM, SIGHUP) stops everything and removes the
# temp dir, exit 0.
#
# --once (or NAVE_DEMO_ONCE=1): stop and exit 0 after that first request
# went through (what tests/integration/test_demo.py runs).
#
# Any failure is one line "demo: ..." naming the log files, everything started
# is stopped, the temp dir is kept for those logs, and the exit status is 1
# (2 for bad usage).
set -u

usage()
{
	echo "usage: tests/demo.sh [BUILD_DIR] [--once]" >&2
	exit 2
}

B=build
ONCE=${NAVE_DEMO_ONCE:-0}
have_b=0
for a in "$@"; do
	case $a in
	--once) ONCE=1 ;;
	-*) usage ;;
	*)
		[ "$have_b" = 0 ] || usage
		B=$a
		have_b=1
		;;
	esac
done
[ "$ONCE" = 1 ] || ONCE=0

DOMAIN=demo.localhost

# bash reports a background job killed by a signal on its own stderr: keep the
# real stderr on fd 3 for our messages and silence the shell's own.
exec 3>&2 2>/dev/null

say()
{
	printf 'demo: %s\n' "$*" >&3
}

if ! BIN=$(cd "$B" && pwd) || [ ! -x "$BIN/nave-relayd" ] || [ ! -x "$BIN/nave-controld" ] ||
	[ ! -x "$BIN/navectl" ] || [ ! -x "$BIN/nave" ]; then
	say "no nave binaries in '$B' (run make first)"
	exit 1
fi
for tool in python3 curl; do
	if ! command -v $tool >/dev/null; then
		say "$tool is not installed (make deps installs it)"
		exit 1
	fi
done

# controld's sockets live in T/run: a Unix socket path has at most 107 bytes,
# so a TMPDIR too deep for that gives way to /tmp
TD=${TMPDIR:-/tmp}
[ ${#TD} -le 60 ] || TD=/tmp
if ! T=$(mktemp -d "$TD/nave-demo.XXXXXX"); then
	say "cannot make a temp dir in $TD"
	exit 1
fi
INI=$T/server.ini
CINI=$T/client.ini
LOGS="$T/controld.log $T/relayd.log $T/nave.log $T/web.log"

CPID=
RPID=
NPID=
WPID=

alive()
{
	[ -n "$1" ] && kill -0 "$1"
}

# stop PID: SIGTERM, up to 20 s (relayd drains for up to 5 s), then SIGKILL
stop()
{
	local pid=$1 i=0

	alive "$pid" || return 0
	kill -TERM "$pid"
	while alive "$pid" && [ $i -lt 200 ]; do
		sleep 0.1
		i=$((i + 1))
	done
	alive "$pid" && kill -KILL "$pid"
	wait "$pid"
	return 0
}

stop_all()
{
	local pid

	# the client first (it would only reconnect), the daemons last
	for pid in $NPID $WPID $RPID $CPID; do
		stop "$pid"
	done
}

# fail MESSAGE: one line with the logs, everything stopped, the temp dir kept
fail()
{
	trap '' INT TERM HUP
	stop_all
	say "$* (logs: ${LOGS// /, })"
	exit 1
}

# shellcheck disable=SC2317 # called by the trap
on_signal()
{
	trap '' INT TERM HUP
	stop_all
	rm -rf "$T"
	say "stopped; removed $T"
	exit 0
}
trap on_signal INT TERM HUP

# Free ports for the HTTP edge, HTTPS, the tunnel listener and the web service,
# and a free 10-port window for the TCP range (30000-32699: apart from the
# default range, the tests' 23000-29999 and the bench's 10000-19999, below the
# kernel's ephemeral ports).
if ! read -r HTTP HTTPS TUNNEL WEB LOW HIGH < <(python3 - <<'PY'
import random, socket
socks = []
for _ in range(4):
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    socks.append(s)
ports = [s.getsockname()[1] for s in socks]
for s in socks:
    s.close()

def free(p):
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", p))
        except OSError:
            return False
        return True

rnd = random.SystemRandom()
for _ in range(200):
    low = rnd.randrange(30000, 32690)
    if all(free(p) for p in range(low, low + 10)) and not set(ports) & set(range(low, low + 10)):
        print(*ports, low, low + 9)
        break
PY
) || [ -z "$HIGH" ]; then
	fail "cannot find free ports on 127.0.0.1"
fi

cat >"$INI" <<INI
[server]
state_dir = $T/var
runtime_dir = $T/run
log_level = info
[listen]
http = $HTTP
https = $HTTPS
tunnel = $TUNNEL
address = 127.0.0.1
[ports]
range = $LOW-$HIGH
reserve = off
INI

if ! "$BIN/nave-relayd" --config "$INI" --check >"$T/relayd.log" 2>&1; then
	fail "the demo's server config is not valid"
fi

"$BIN/nave-controld" --config "$INI" >"$T/controld.log" 2>&1 3>&- &
CPID=$!
"$BIN/nave-relayd" --config "$INI" >>"$T/relayd.log" 2>&1 3>&- &
RPID=$!

# up: this relayd is connected to controld (its listeners are open) and the
# certificate fingerprint is known
relay_fp()
{
	"$BIN/navectl" --config "$INI" --json status | python3 -c '
import json, sys
d = json.load(sys.stdin)
r = d.get("relay") or {}
ok = r.get("connected") and r.get("pid") == int(sys.argv[1]) and d.get("tls_fingerprint")
print(d["tls_fingerprint"] if ok else "")' "$RPID"
}

FP=
deadline=$((SECONDS + 30))
while [ -z "$FP" ]; do
	alive "$CPID" || fail "nave-controld exited before the server came up"
	alive "$RPID" || fail "nave-relayd exited before the server came up"
	[ $SECONDS -lt $deadline ] || fail "the server did not come up within 30 s"
	sleep 0.1
	FP=$(relay_fp)
done

if ! TOKEN=$("$BIN/navectl" --config "$INI" registration create --description "make demo" \
	--max-uses 1 --expires 1h 2>>"$T/controld.log" | head -n 1) || [ -z "$TOKEN" ]; then
	fail "cannot create a registration token"
fi
if ! "$BIN/nave" configure --server "127.0.0.1:$TUNNEL" --registration "$TOKEN" \
	--fingerprint "$FP" --config "$CINI" >>"$T/nave.log" 2>&1; then
	fail "nave configure failed"
fi

"$BIN/nave" start --config "$CINI" >>"$T/nave.log" 2>&1 3>&- &
NPID=$!

client_state()
{
	"$BIN/nave" --json status --config "$CINI" | python3 -c '
import json, sys
d = json.load(sys.stdin)
print(d.get("state", ""), d.get("tunnel_id", ""))'
}

STATE=
TID=
deadline=$((SECONDS + 30))
while [ "$STATE" != online ]; do
	alive "$NPID" || fail "nave start exited before the client came online"
	[ $SECONDS -lt $deadline ] || fail "the client did not come online within 30 s"
	sleep 0.1
	read -r STATE TID < <(client_state)
done

# The demo web service: a generated page, served from the temp dir (never the
# repository, whose var/ holds a server's private key).
mkdir -p "$T/www"
cat >"$T/www/index.html" <<HTML
<!doctype html>
<html>
<head><meta charset="utf-8"><title>nave demo</title></head>
<body>
<h1>Hello from behind nave</h1>
<p id="how">This page came through nave.</p>
<p>nave-relayd's HTTP edge routed the request for <b>$DOMAIN</b> to tunnel
$TID, and the nave client carried it to a python3 http.server on
127.0.0.1:$WEB.</p>
</body>
</html>
HTML
python3 -m http.server "$WEB" --bind 127.0.0.1 --directory "$T/www" >"$T/web.log" 2>&1 3>&- &
WPID=$!
deadline=$((SECONDS + 15))
until curl -s -o /dev/null --max-time 2 "http://127.0.0.1:$WEB/"; do
	alive "$WPID" || fail "the demo web service (python3 -m http.server $WEB) exited"
	[ $SECONDS -lt $deadline ] || fail "the demo web service did not answer within 15 s"
	sleep 0.1
done

if ! "$BIN/nave" tunnel http add --domain "$DOMAIN" --to "127.0.0.1:$WEB" \
	--config "$CINI" >>"$T/nave.log" 2>&1; then
	fail "nave tunnel http add --domain $DOMAIN failed"
fi

URL="http://$DOMAIN:$HTTP/"
CURL=(curl --resolve "$DOMAIN:$HTTP:127.0.0.1" "$URL")
# the grant reaches relayd's workers a moment after the command returns
deadline=$((SECONDS + 15))
until [ "$(curl -s -o /dev/null -w '%{http_code}' --max-time 2 --resolve "$DOMAIN:$HTTP:127.0.0.1" \
	"$URL")" = 200 ]; do
	[ $SECONDS -lt $deadline ] || fail "$URL did not answer 200 through the edge within 15 s"
	sleep 0.1
done

cat <<MSG

nave demo: controld + relayd (HTTP edge on 127.0.0.1:$HTTP, tunnels on 127.0.0.1:$TUNNEL),
a client online as tunnel $TID, and python3 -m http.server on 127.0.0.1:$WEB
behind it as $DOMAIN. Everything lives in $T (removed on exit).

Open in a browser on this machine (*.localhost is loopback):

  $URL

or with curl (--resolve: no DNS needed):

  ${CURL[*]}

MSG

# once, here and now: the status line and the page's line that says how it came
ANSWER=$("${CURL[@]}" -sS -i --max-time 10 2>&1)
rc=$?
ANSWER=$(printf '%s\n' "$ANSWER" | tr -d '\r')
[ $rc = 0 ] || fail "curl $URL failed: $(printf '%s\n' "$ANSWER" | head -n 1)"
STATUS=$(printf '%s\n' "$ANSWER" | head -n 1)
case $STATUS in
"HTTP/1."?" 200"*) ;;
*) fail "curl $URL answered '$STATUS', not 200" ;;
esac
LINE=$(printf '%s\n' "$ANSWER" | grep -m 1 'came through nave')
[ -n "$LINE" ] || fail "curl $URL answered 200 without the demo page"
printf 'That curl, run once now:\n\n  %s\n  %s\n\n' "$STATUS" "$LINE"

if [ "$ONCE" = 1 ]; then
	trap '' INT TERM HUP
	stop_all
	rm -rf "$T"
	echo "--once: the request went through; stopped everything and removed $T"
	exit 0
fi

echo "Admin: navectl --config $INI domains ls    Ctrl-C here stops everything."

# Runs until a signal (the trap exits) or until a process exits on its own.
WHO=
wait -n -p WHO "$CPID" "$RPID" "$NPID" "$WPID"
case ${WHO:-} in
"$CPID") fail "nave-controld exited on its own" ;;
"$RPID") fail "nave-relayd exited on its own" ;;
"$NPID") fail "nave start exited on its own" ;;
*) fail "the demo web service exited on its own" ;;
esac

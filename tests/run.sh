#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# make run: nave-controld and nave-relayd in the foreground, then a one-time
# registration token (valid for 24 hours) and the exact client commands to
# connect.
#
#   tests/run.sh [BUILD_DIR] [--config FILE]
#
# Without --config the daemons use the embedded default (state in ./var,
# sockets in ./var/run, tunnels on 127.0.0.1:8443, TCP ports 22000-22999);
# with it, the daemons and navectl get the same --config FILE, and the banner
# shows the addresses of that config (read from `nave-relayd --check`).
#
# Ctrl-C (or SIGTERM, SIGHUP) stops both daemons and exits 0. When either
# daemon exits on its own, one line says which and how, the other is stopped
# and the exit status is 1. If the daemons do not come up, the reason is
# printed, whatever started is stopped, and the exit status is 1. Bad usage
# exits 2.
set -u

usage()
{
	echo "usage: tests/run.sh [BUILD_DIR] [--config FILE]" >&2
	exit 2
}

B=build
CONFIG=
have_b=0
while [ $# -gt 0 ]; do
	case $1 in
	--config)
		if [ $# -lt 2 ] || [ -z "$2" ]; then
			usage
		fi
		CONFIG=$2
		shift 2
		;;
	--config=?*)
		CONFIG=${1#--config=}
		shift
		;;
	-*) usage ;;
	*)
		[ "$have_b" = 0 ] || usage
		B=$1
		have_b=1
		shift
		;;
	esac
done

# bash reports a background job killed by a signal ("Killed") on its own
# stderr: keep the real stderr on fd 3 for the daemons and our messages, and
# silence the shell's own.
exec 3>&2 2>/dev/null

say()
{
	printf 'run: %s\n' "$*" >&3
}

if ! BIN=$(cd "$B" && pwd) || [ ! -x "$BIN/nave-relayd" ] || [ ! -x "$BIN/nave-controld" ] ||
	[ ! -x "$BIN/navectl" ]; then
	say "no nave binaries in '$B' (run make first)"
	exit 1
fi

ARGS=()
SHOWCFG=
if [ -n "$CONFIG" ]; then
	if [ ! -r "$CONFIG" ]; then
		say "cannot read the config '$CONFIG'"
		exit 1
	fi
	case $CONFIG in
	/*) ;;
	*) CONFIG=$(pwd)/$CONFIG ;;
	esac
	ARGS=(--config "$CONFIG")
	SHOWCFG=" --config $CONFIG"
fi

# The effective config, as the daemons will see it.
if ! EFF=$("$BIN/nave-relayd" "${ARGS[@]}" --check 2>&3); then
	say "the server config is not valid (see above); nothing started"
	exit 1
fi

# ini_get SECTION KEY: a value of the effective config (quotes removed).
ini_get()
{
	printf '%s\n' "$EFF" | awk -v s="$1" -v k="$2" '
		/^\[/ { sec = substr($0, 2, index($0, "]") - 2); next }
		sec == s && index($0, "=") {
			i = index($0, "=")
			key = substr($0, 1, i - 1)
			gsub(/[ \t]/, "", key)
			if (key != k)
				next
			v = substr($0, i + 1)
			sub(/^[ \t]+/, "", v)
			sub(/[ \t]+$/, "", v)
			if (v ~ /^".*"$/ || v ~ /^\x27.*\x27$/)
				v = substr(v, 2, length(v) - 2)
			print v
			exit
		}'
}

ADDR=$(ini_get listen address)
HTTPS=$(ini_get listen https)
TUNNEL=$(ini_get listen tunnel)
[ -n "$TUNNEL" ] || TUNNEL=$HTTPS
RANGE=$(ini_get ports range)
RUNDIR=$(ini_get server runtime_dir)
if [ -z "$ADDR" ] || [ -z "$TUNNEL" ] || [ -z "$RANGE" ]; then
	say "cannot read [listen] address, https/tunnel or [ports] range from nave-relayd --check"
	exit 1
fi
PORT_MIN=${RANGE%%-*}
# A client on this machine reaches a wildcard listener on loopback.
case $ADDR in
0.0.0.0) HOST=127.0.0.1 ;;
::) HOST=::1 ;;
*) HOST=$ADDR ;;
esac
case $HOST in
*:*) HOSTPORT="[$HOST]" ;;
*) HOSTPORT=$HOST ;;
esac
case $ADDR in
*:*) LISTEN="[$ADDR]:$TUNNEL" ;;
*) LISTEN="$ADDR:$TUNNEL" ;;
esac

if [ -S "$RUNDIR/control.sock" ] && "$BIN/navectl" "${ARGS[@]}" status >/dev/null; then
	say "a nave-controld already answers on $RUNDIR/control.sock; stop it first"
	exit 1
fi

CPID=
RPID=

# alive PID: the daemon has not exited (bash reaps its children as they end)
alive()
{
	[ -n "$1" ] && kill -0 "$1"
}

name_of()
{
	if [ "$1" = "$CPID" ]; then
		echo nave-controld
	else
		echo nave-relayd
	fi
}

# how STATUS: "with status N" or "(killed by signal N, SIGNAME)", from wait's status
how()
{
	if [ "$1" -gt 128 ]; then
		printf '(killed by signal %d, SIG%s)' $(($1 - 128)) "$(kill -l $(($1 - 128)))"
	else
		printf 'with status %d' "$1"
	fi
}

# stop_daemon PID: SIGTERM, wait up to 20 s (relayd drains for up to 5 s),
# then SIGKILL. Returns the daemon's exit status.
stop_daemon()
{
	local pid=$1 i=0 st

	kill -TERM "$pid"
	while alive "$pid" && [ $i -lt 200 ]; do
		sleep 0.1
		i=$((i + 1))
	done
	if alive "$pid"; then
		say "$(name_of "$pid") did not stop within 20 s of SIGTERM; killing it"
		kill -KILL "$pid"
	fi
	wait "$pid"
	st=$?
	return $st
}

# stop_all: stops the daemons still running; 1 if one of them did not exit 0.
stop_all()
{
	local rc=0 pid st

	for pid in $RPID $CPID; do
		alive "$pid" || continue
		stop_daemon "$pid"
		st=$?
		if [ $st != 0 ]; then
			say "$(name_of "$pid") exited $(how $st) while stopping"
			rc=1
		fi
	done
	return $rc
}

# shellcheck disable=SC2317 # called by the trap
on_signal()
{
	trap '' INT TERM HUP
	stop_all
	exit $?
}
trap on_signal INT TERM HUP

# a daemon exited: say which and how, stop the other, exit 1
one_died()
{
	local pid=$1 st=$2 when=$3 other

	trap '' INT TERM HUP
	if [ "$pid" = "$CPID" ]; then
		other=nave-relayd
	else
		other=nave-controld
	fi
	say "$(name_of "$pid") exited $(how "$st")$when; stopping $other"
	stop_all
	exit 1
}

"$BIN/nave-controld" "${ARGS[@]}" 2>&3 3>&- &
CPID=$!
"$BIN/nave-relayd" "${ARGS[@]}" 2>&3 3>&- &
RPID=$!

# Up means: relayd (this one) is connected to controld, so its listeners are
# open and the certificate fingerprint is the one it serves.
ready()
{
	"$BIN/navectl" "${ARGS[@]}" --json status | /usr/bin/python3 -c '
import json, sys
d = json.load(sys.stdin)
r = d.get("relay") or {}
ok = r.get("connected") and r.get("pid") == int(sys.argv[1]) and d.get("tls_fingerprint")
print(d["tls_fingerprint"] if ok else "")' "$RPID"
}

FP=
deadline=$((SECONDS + 30))
while :; do
	for pid in $CPID $RPID; do
		if ! alive "$pid"; then
			wait "$pid"
			one_died "$pid" $? " before the server came up"
		fi
	done
	FP=$(ready)
	[ -n "$FP" ] && break
	if [ $SECONDS -ge $deadline ]; then
		say "the daemons did not come up within 30 s (see the log lines above); stopping them"
		trap '' INT TERM HUP
		stop_all
		exit 1
	fi
	sleep 0.1
done

if ! TOKEN=$("$BIN/navectl" "${ARGS[@]}" registration create --description "make run" \
	--max-uses 1 --expires 24h 2>&3 | head -n 1) || [ -z "$TOKEN" ]; then
	say "cannot create a registration token (see above); stopping the daemons"
	trap '' INT TERM HUP
	stop_all
	exit 1
fi

cat <<MSG

nave is running: tunnels on $LISTEN, public TCP ports $RANGE.
On the device (here, in another terminal), connect a client with this
one-time registration token, valid for 24 hours:

  export PATH=$BIN:\$PATH
  nave configure --server $HOSTPORT:$TUNNEL --registration $TOKEN --fingerprint $FP
  nave start

and in a third terminal expose a harmless local service (the tunnel command
prints the public port, $PORT_MIN for the first rule):

  mkdir -p /tmp/nave-demo && echo 'hello from nave' > /tmp/nave-demo/index.html
  python3 -m http.server 8000 --bind 127.0.0.1 --directory /tmp/nave-demo &
  nave tunnel tcp add --to 127.0.0.1:8000
  curl http://$HOSTPORT:$PORT_MIN/

Admin: navectl$SHOWCFG status (and tunnels ls, ports ls, tokens ls)   Ctrl-C here stops the server.
MSG

# Runs until a signal (the trap exits) or until a daemon exits on its own.
WHO=
wait -n -p WHO "$CPID" "$RPID"
st=$?
if [ -z "$WHO" ]; then # not expected: find the one that is gone
	for pid in $CPID $RPID; do
		alive "$pid" || WHO=$pid
	done
fi
one_died "${WHO:-$RPID}" "$st" ""

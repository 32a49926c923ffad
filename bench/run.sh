#!/bin/sh
# SPDX-License-Identifier: Apache-2.0
# make bench: throughput, memory, connection rate, HTTP and the hold on loopback.
# Usage: run.sh [BUILD_DIR] [--quick]. See bench/README.md.
set -eu
exec /usr/bin/python3 "$(dirname "$0")/bench.py" "$@"

#!/bin/sh
# SPDX-License-Identifier: Apache-2.0
# make bench: throughput and memory per connection on loopback. See bench/README.md.
set -eu
exec /usr/bin/python3 "$(dirname "$0")/bench.py" "${1:-build}"

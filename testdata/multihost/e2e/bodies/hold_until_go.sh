#!/bin/sh
# Holds the test's nodes until the file $E2E_GO exists (at most 120 s), so
# that the queue test can line other jobs up behind it; then records its
# use of the nodes like the other bodies.
i=0
while [ ! -e "$E2E_GO" ]; do
	i=$((i + 1))
	if [ "$i" -gt 1200 ]; then
		echo "E2E_GO ($E2E_GO) never appeared" >&2
		exit 1
	fi
	sleep 0.1
done
exec "$(dirname "$0")/record_usage.py"

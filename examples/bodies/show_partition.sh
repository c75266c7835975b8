#!/bin/sh
# Shell tests need no XML-RPC code: vtcluster exec and call resolve the
# partition's tags through $VTCLUSTER_PARTITION_FILE.
set -eu
echo "partition $VTCLUSTER_PARTITION_ID: $VTCLUSTER_NODES"
for tag in $VTCLUSTER_NODES; do
  "$VTCLUSTER_BIN" call "$tag" examples.hello.ping
  "$VTCLUSTER_BIN" exec "$tag" -- uname -r
done

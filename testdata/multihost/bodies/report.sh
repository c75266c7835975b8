#!/bin/sh
# Prints what a multihost body gets from the runner.
echo "args: $*"
echo "greeting: $GREETING"
echo "nodes: [$VTCLUSTER_NODES]"
echo "partition file: $VTCLUSTER_PARTITION_FILE"
cat "$VTCLUSTER_PARTITION_FILE"
echo "output dir: $VTCLUSTER_OUTPUT_DIR"
echo "cwd: $(pwd)"
echo "to stderr" >&2
echo "kwarg: $KW"

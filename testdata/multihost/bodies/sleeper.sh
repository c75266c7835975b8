#!/bin/sh
# Leaves a child in its process group and records both pids, so tests can
# check the runner kills the whole group.
sleep 300 &
echo "$$ $!" > "$VTCLUSTER_OUTPUT_DIR/pids"
echo "sleeping"
wait

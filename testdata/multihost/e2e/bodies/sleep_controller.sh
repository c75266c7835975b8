#!/bin/sh
# Sleeps with a child in its process group and records both pids, so the
# tests can check the runner kills the whole group when interrupted.
sleep 7907 &
echo "$$ $!" > "$VTCLUSTER_OUTPUT_DIR/pids"
wait

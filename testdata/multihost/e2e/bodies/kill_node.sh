#!/bin/sh
# Takes the network link of the lab node holding tag $1 down, then waits to
# be stopped. Lab hosts are network namespaces named like their hostname, so
# the node's "hostname" property names the namespace to reach into.
set -eu
tag=$1
netns=$(python3 -c 'import json, os, sys
p = json.load(open(os.environ["VTCLUSTER_PARTITION_FILE"]))
print(p["nodes"][sys.argv[1]]["properties"]["hostname"])' "$tag")
ip netns list | grep -qw -- "$netns" || { echo "no network namespace $netns for tag $tag" >&2; exit 2; }
echo "$netns" > "$VTCLUSTER_OUTPUT_DIR/victim-netns"
echo "taking $tag's link down in $netns"
ip netns exec "$netns" ip link set eth0 down
sleep 7901 &
echo "$$ $!" > "$VTCLUSTER_OUTPUT_DIR/pids"
wait

#!/usr/bin/env bash
# scripts/vm-lab.sh up DIR | down DIR
#
# A two-host lab for the VM examples (docs/vms.md): `vtcluster lab up`,
# then in each host a bridge br0 holding its uplink and address (a guest on
# a tap there is on the lab's network), and a cluster config DIR/cluster.json
# with a filesystem pool both hosts reach (lab hosts share this machine's
# filesystem) and a linux_bridge pool on br0. The caller registers it
# (avocado vt-bootstrap --vt-cluster-config DIR/cluster.json). Needs root and
# vtcluster on PATH; down removes the lab, its bridges included.
set -euo pipefail
cmd=${1:-}
dir=${2:-}
[ -n "$cmd" ] && [ -n "$dir" ] || { echo "usage: $0 up|down DIR" >&2; exit 2; }
case $cmd in
up)
  vtcluster lab up --hosts 2 --dir "$dir/lab" --cluster-config "$dir/cluster.json" >&2
  python3 - "$dir" <<'PY'
import json, subprocess, sys
d = sys.argv[1]
lab = json.load(open(f"{d}/lab/lab.json"))
for h in lab["hosts"]:
    ns, addr = h["netns"], h["address"] + "/24"
    for argv in (["link", "add", "br0", "type", "bridge"], ["link", "set", "eth0", "master", "br0"],
                 ["addr", "del", addr, "dev", "eth0"], ["addr", "add", addr, "dev", "br0"],
                 ["link", "set", "br0", "up"]):
        subprocess.run(["ip", "-n", ns] + argv, check=True)
cfg = json.load(open(f"{d}/cluster.json"))
cfg["pools"] = {
    "storage": {"shared": {"type": "filesystem", "path": f"{d}/pool"}},
    "net": {"br": {"type": "linux_bridge", "switch": {h["name"]: {"ifname": "br0"} for h in lab["hosts"]}}},
}
json.dump(cfg, open(f"{d}/cluster.json", "w"), indent=2)
PY
  echo "$dir/cluster.json"
  ;;
down)
  vtcluster lab down --dir "$dir/lab"
  ;;
*)
  echo "usage: $0 up|down DIR" >&2
  exit 2
  ;;
esac

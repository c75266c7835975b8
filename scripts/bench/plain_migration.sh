#!/usr/bin/env bash
# The baseline of scripts/bench/vm_migration.sh: the steps of
# examples/vm-migration.json done by hand with QEMU, ip netns and a QMP
# client in Python's standard library, no vtcluster: two network
# namespaces each with a bridge br0 (uplink + tap), a qcow2 volume, the
# guest booted in the first, pinged from both, live-migrated to the second
# (destination running, source postmigrate), its counter checked on the
# destination's console, pinged again, its volume read, and everything torn
# down. Usage: plain_migration.sh GUEST_DIR. Needs root.
set -euo pipefail
guest=${1:?usage: $0 GUEST_DIR}
p=vpb$(od -An -N2 -tx1 /dev/urandom | tr -d ' \n')
net=10.86.$((RANDOM % 200 + 20))
work=$(mktemp -d /tmp/vtcluster-plainmig.XXXXXX)
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill -9 "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  ip netns del "${p}1" 2>/dev/null || true
  ip netns del "${p}2" 2>/dev/null || true
  ip link del "${p}br" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT INT TERM

ip link add "${p}br" type bridge
ip link set "${p}br" up
for i in 1 2; do
  ip netns add "$p$i"
  ip link add "${p}v$i" type veth peer name eth0 netns "$p$i"
  ip link set "${p}v$i" master "${p}br" up
  ip -n "$p$i" link add br0 type bridge
  ip -n "$p$i" link set eth0 master br0 up
  ip -n "$p$i" addr add "$net.1$i/24" dev br0
  ip -n "$p$i" link set br0 up
  ip -n "$p$i" link set lo up
  ip -n "$p$i" tuntap add dev tap0 mode tap
  ip -n "$p$i" link set tap0 master br0 up
done
qemu-img create -q -f qcow2 "$work/disk.qcow2" 64M

qemu() { # NS NAME [EXTRA...]
  local ns=$1 name=$2
  shift 2
  ip netns exec "$ns" qemu-system-x86_64 -name "$name" -accel tcg -machine q35 -m 256 -smp 1 \
    -nodefaults -no-user-config -display none \
    -chardev "socket,id=qmp,path=$work/$name.qmp,server=on,wait=off" -mon chardev=qmp,mode=control \
    -chardev "file,id=con0,path=$work/$name.console" -serial chardev:con0 \
    -kernel "$guest/vmlinux" -initrd "$guest/initramfs.cpio.gz" -append "console=ttyS0 quiet panic=-1 vmip=$net.50/24" \
    -blockdev "{\"driver\":\"qcow2\",\"node-name\":\"disk0\",\"cache\":{\"direct\":true},\"file\":{\"driver\":\"file\",\"filename\":\"$work/disk.qcow2\",\"aio\":\"threads\",\"cache\":{\"direct\":true}}}" \
    -device virtio-blk-pci,drive=disk0,id=vd0 \
    -netdev tap,id=net0,ifname=tap0,script=no,downscript=no \
    -device virtio-net-pci,netdev=net0,mac=52:54:00:86:00:50,id=nic0,romfile= "$@" 2>"$work/$name.err" &
  pids+=($!)
}
wait_console() { # FILE PATTERN TIMEOUT
  local end=$((SECONDS + $3))
  until grep -qE "$2" "$1" 2>/dev/null; do
    [ $SECONDS -lt $end ] || { echo "plain: $2 not on $1" >&2; exit 1; }
    sleep 0.05
  done
}
ping_from() { for i in "$@"; do ip netns exec "$p$i" ping -q -c 1 -w 20 -i 0.2 "$net.50" >/dev/null; done; }

qemu "${p}1" src
wait_console "$work/src.console" "vtguest: net up" 120
wait_console "$work/src.console" "tick 2 " 30
ping_from 1 2
qemu "${p}2" dst -incoming tcp:0.0.0.0:4444
python3 - "$work" "$net.12" <<'PY'
import json, socket, sys, time
work, dst = sys.argv[1:]
def qmp(path):
    for _ in range(200):
        try:
            s = socket.socket(socket.AF_UNIX); s.connect(path); break
        except OSError:
            time.sleep(0.02)
    f = s.makefile("rw"); f.readline()
    def cmd(name, **args):
        f.write(json.dumps({"execute": name, "arguments": args}) + "\n"); f.flush()
        while True:
            r = json.loads(f.readline())
            if "return" in r or "error" in r:
                if "error" in r:
                    sys.exit(f"plain: {name}: {r['error']}")
                return r["return"]
    cmd("qmp_capabilities")
    return cmd
src, dstq = qmp(f"{work}/src.qmp"), qmp(f"{work}/dst.qmp")
src("migrate-set-parameters", **{"max-bandwidth": 10**9, "downtime-limit": 300})
src("migrate", uri=f"tcp:{dst}:4444")
while True:
    m = src("query-migrate")
    if m["status"] in ("completed", "failed", "cancelled") and (m["status"] != "completed" or m.get("total-time")):
        break
    time.sleep(0.02)
if m["status"] != "completed":
    sys.exit(f"plain: migration {m['status']}: {m.get('error-desc')}")
for _ in range(1500):
    if dstq("query-status")["status"] == "running":
        break
    time.sleep(0.02)
else:
    sys.exit("plain: destination not running")
assert src("query-status")["status"] == "postmigrate"
print(f"plain: migration total {m['total-time']} ms, downtime {m.get('downtime')} ms, {m['ram']['transferred']} bytes", file=sys.stderr)
src("quit")
PY
wait_console "$work/dst.console" "tick [0-9]+ " 30
ping_from 2 1
ip netns exec "${p}2" qemu-io -r -U -f qcow2 -c "read -v 0 48" "$work/disk.qcow2" | grep -q '74 69 63 6b'
python3 -c "import json,socket,sys; s=socket.socket(socket.AF_UNIX); s.connect(sys.argv[1]); f=s.makefile('rw'); f.readline(); [f.write(json.dumps({'execute': c})+'\n') or f.flush() or f.readline() for c in ('qmp_capabilities','quit')]" "$work/dst.qmp"

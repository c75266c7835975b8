#!/usr/bin/env bash
# make guest: the tiny guest that the VM tests and the demo boot.
#
# Debian's stock kernel, fetched with `apt-get download` and unpacked with
# dpkg-deb (never installed: installing linux-image pulls udev and upgrades
# systemd), booted as the uncompressed ELF vmlinux through QEMU's PVH entry
# (under TCG a bzImage costs about 5 s of xz decompression,
# docs/vms.md), and a busybox-static initramfs whose /init loads the virtio
# modules, brings eth0 up at the vmip= address of the kernel command line and
# then, once a second, prints "tick N up=UPTIME" on the console and writes the
# same line to sector 0 of /dev/vda.
#
# The result is cached under build/guest/<key>/ (vmlinux, initramfs.cpio.gz,
# kernel-version; build/guest/current points to it), key = hash of this script, the kernel package's version
# and the busybox binary, so a second run costs nothing. The last line of
# stdout is that directory; tests take it from there.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
out_base=${VTCLUSTER_GUEST_DIR:-$root/build/guest}

die() { echo "guest: $*" >&2; exit 1; }
command -v apt-get >/dev/null 2>&1 || die "apt-get not found: the guest kernel is Debian's linux-image-*-amd64 package"
command -v dpkg-deb >/dev/null 2>&1 || die "dpkg-deb not found"
command -v python3 >/dev/null 2>&1 || die "python3 not found (it unpacks the xz kernel)"
busybox=$(command -v busybox 2>/dev/null || true)
[ -n "$busybox" ] || die "busybox not found: install busybox-static (scripts/system-packages.txt)"
file -L "$busybox" 2>/dev/null | grep -q 'statically linked' ||
  ldd "$busybox" 2>&1 | grep -q 'not a dynamic' ||
  die "$busybox is not static: install busybox-static"

# The kernel package the metapackage points to today, e.g. linux-image-6.1.0-57-amd64.
kernel_package() { apt-cache depends linux-image-amd64 2>/dev/null | awk '/Depends: linux-image-[0-9]/ {print $2; exit}'; }
kpkg=$(kernel_package)
if [ -z "$kpkg" ] && [ "$(id -u)" = 0 ]; then
  # A fresh machine (a CI container) may have no package lists yet.
  echo "guest: apt-get update (apt does not know linux-image-amd64 yet)" >&2
  apt-get update -qq >&2 || true
  kpkg=$(kernel_package)
fi
[ -n "$kpkg" ] || die "apt-cache does not know linux-image-amd64 (run apt-get update as root)"
kver=$(apt-cache policy "$kpkg" | awk '/Candidate:/ {print $2}')
key=$( { sha256sum "$0" | cut -c1-64; echo "$kpkg $kver"; sha256sum "$busybox" | cut -c1-64; } | sha256sum | cut -c1-16)
out=$out_base/$key
if [ -s "$out/vmlinux" ] && [ -s "$out/initramfs.cpio.gz" ]; then
  echo "guest: cached ($kpkg $kver)" >&2
  ln -sfn "$key" "$out_base/current"
  echo "$out"
  exit 0
fi

mkdir -p "$out_base"
work=$(mktemp -d "$out_base/.work.XXXXXX")
trap 'rm -rf "$work"' EXIT
echo "guest: apt-get download $kpkg=$kver" >&2
# apt's sandbox user must be able to write the download directory.
chmod 0755 "$work"
(cd "$work" && apt-get download -q "$kpkg=$kver" >&2) || die "apt-get download $kpkg failed"
deb=$(ls "$work"/*.deb)
dpkg-deb -x "$deb" "$work/pkg"
vmlinuz=$(ls "$work"/pkg/boot/vmlinuz-*)
krel=${vmlinuz##*/vmlinuz-}

echo "guest: extracting the ELF vmlinux from $krel's bzImage" >&2
python3 - "$vmlinuz" "$work/vmlinux" <<'PY'
# The bzImage carries the kernel as an xz stream; the ELF inside is what
# QEMU's PVH entry boots (the extract-vmlinux method, in Python's stdlib).
import lzma, sys
data = open(sys.argv[1], "rb").read()
magic = b"\xfd7zXZ\x00"
pos = data.find(magic)
while pos >= 0:
    try:
        elf = lzma.LZMADecompressor(format=lzma.FORMAT_XZ).decompress(data[pos:])
    except lzma.LZMAError:
        elf = b""
    if elf[:4] == b"\x7fELF":
        open(sys.argv[2], "wb").write(elf)
        sys.exit(0)
    pos = data.find(magic, pos + 1)
sys.exit("no xz-compressed ELF found in " + sys.argv[1])
PY

echo "guest: building the initramfs" >&2
ir=$work/initramfs
mkdir -p "$ir"/{bin,dev,proc,sys,lib/modules}
cp "$busybox" "$ir/bin/busybox"
mods="virtio_ring virtio virtio_pci_modern_dev virtio_pci_legacy_dev virtio_pci failover net_failover virtio_net virtio_blk"
for m in $mods; do
  f=$(find "$work/pkg/lib/modules/$krel" -name "$m.ko*" | head -n1)
  [ -n "$f" ] || die "module $m not in $kpkg"
  case $f in
  *.ko.xz) python3 -c 'import lzma,sys; open(sys.argv[2],"wb").write(lzma.open(sys.argv[1]).read())' "$f" "$ir/lib/modules/$m.ko" ;;
  *.ko) cp "$f" "$ir/lib/modules/$m.ko" ;;
  *) die "module $f: unknown compression" ;;
  esac
done
cat >"$ir/init" <<EOF
#!/bin/busybox sh
/bin/busybox --install -s /bin
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
for m in $mods; do insmod /lib/modules/\$m.ko || echo "vtguest: insmod \$m failed"; done
vmip=
for a in \$(cat /proc/cmdline); do case \$a in vmip=*) vmip=\${a#vmip=} ;; esac; done
ip link set lo up
n=0
while [ ! -e /sys/class/net/eth0 ] && [ \$n -lt 50 ]; do sleep 0.1; n=\$((n+1)); done
if [ -n "\$vmip" ]; then ip addr add "\$vmip" dev eth0; fi
ip link set eth0 up
echo "vtguest: net up ip=\$vmip"
n=0
while true; do
  n=\$((n+1))
  line="tick \$n up=\$(cut -d' ' -f1 /proc/uptime)"
  echo "\$line"
  if [ -b /dev/vda ]; then echo "\$line" | dd of=/dev/vda bs=512 count=1 conv=sync,fsync 2>/dev/null; fi
  sleep 1
done
EOF
chmod 0755 "$ir/init"
(cd "$ir" && find . | "$busybox" cpio -o -H newc 2>/dev/null | gzip -9 >"$work/initramfs.cpio.gz")

echo "$krel" >"$work/kernel-version"
mkdir -p "$out"
mv "$work/vmlinux" "$work/initramfs.cpio.gz" "$work/kernel-version" "$out/"
# build/guest/current: what examples/ name, whatever the key. Guests of
# other keys are stale: only one is kept.
ln -sfn "$key" "$out_base/current"
for d in "$out_base"/*/; do
  d=${d%/}
  case ${d##*/} in "$key" | current) ;; *) [ ${#d} -gt 0 ] && rm -rf "$d" ;; esac
done
echo "guest: built $out ($kpkg $kver)" >&2
echo "$out"

#!/bin/sh
# Build what a kiln microVM boots: the guest kernel and a small initramfs.
#
#   rootfs/build-vm.sh OUTDIR KILN_AGENT_STATIC
#
# OUTDIR/vmlinux          Debian's linux-image-amd64 kernel as an uncompressed
#                         ELF (QEMU microvm and Firecracker boot it directly;
#                         decompressing the bzImage under TCG costs ~3 s)
# OUTDIR/initramfs.cpio   /init = a static kiln-agent, and the kernel modules
#                         it loads (in /lib/kiln-modules, listed in load order)
# OUTDIR/kernel-release   the guest's `uname -r`
# OUTDIR/vm.env           KILN_VM_KERNEL and KILN_VM_INITRD, to source
#
# The runtime itself is not here: the agent mounts the runtime image's
# squashfs (build-image.sh) read-only from the first virtio disk, with a
# tmpfs overlay on top, and runs jobs in that root. Nothing is rebuilt when
# the inputs (this script, the kernel package, the agent) are unchanged.
set -eu

# load order: a module after everything it needs (modules.dep of 6.1)
MODULES="virtio_ring virtio virtio_mmio virtio_console virtio_blk squashfs overlay
vsock vmw_vsock_virtio_transport_common vmw_vsock_virtio_transport
failover net_failover virtio_net"

out=${1:?usage: build-vm.sh OUTDIR KILN_AGENT_STATIC}
agent=${2:?static kiln-agent binary}
mkdir -p "$out"
out=$(cd "$out" && pwd)

pkg=$(dpkg-query -W -f='${Depends}' linux-image-amd64 2>/dev/null | sed -n 's/.*linux-image-\([0-9][^ ,]*-amd64\).*/\1/p')
if [ -z "$pkg" ]; then
    echo "build-vm: linux-image-amd64 is not installed (ops/install-deps.sh)" >&2
    exit 1
fi
kver=$pkg
moddir=/usr/lib/modules/$kver
kernel=/boot/vmlinuz-$kver
[ -f "$kernel" ] && [ -d "$moddir" ] || { echo "build-vm: $kernel or $moddir missing" >&2; exit 1; }

inputs=$( { cat "$0"; dpkg-query -W -f='${Version}\n' "linux-image-$kver"; sha256sum < "$agent"; } | sha256sum | cut -d' ' -f1)
if [ -f "$out/inputs" ] && [ "$(cat "$out/inputs")" = "$inputs" ] && [ -f "$out/vmlinux" ] && [ -f "$out/initramfs.cpio" ] && [ -f "$out/vm.env" ]; then
    echo "build-vm: up to date ($out)"
    exit 0
fi
rm -f "$out/inputs"

# ---- vmlinux: the xz payload of the bzImage ------------------------------
/usr/bin/python3 - "$kernel" "$out/vmlinux.new" <<'PY'
import lzma, sys
data = open(sys.argv[1], "rb").read()
at = data.find(b"\xfd7zXZ\x00")
if at < 0:
    sys.exit("build-vm: no xz payload in " + sys.argv[1])
# the payload is followed by the bzImage's trailer: decompress one stream
elf = lzma.LZMADecompressor(format=lzma.FORMAT_XZ).decompress(data[at:])
if elf[:4] != b"\x7fELF":
    sys.exit("build-vm: the xz payload is not an ELF kernel")
open(sys.argv[2], "wb").write(elf)
PY
mv "$out/vmlinux.new" "$out/vmlinux"

# ---- initramfs ---------------------------------------------------------
root="$out/initramfs.d"
rm -rf "$root"
mkdir -p "$root/dev" "$root/proc" "$root/sys" "$root/newroot" "$root/lib/kiln-modules"
install -m 0755 -s "$agent" "$root/init"
mknod -m 600 "$root/dev/console" c 5 1
: > "$root/lib/kiln-modules/order"
for m in $MODULES; do
    f=$(find "$moddir/kernel" -name "$m.ko" -o -name "$m.ko.xz" | head -n 1)
    if [ -z "$f" ]; then
        grep -q "/$m.ko" "$moddir/modules.builtin" && continue
        echo "build-vm: module $m not found in $moddir" >&2
        exit 1
    fi
    case "$f" in *.xz) xz -dc "$f" > "$root/lib/kiln-modules/$m.ko" ;; *) cp "$f" "$root/lib/kiln-modules/$m.ko" ;; esac
    echo "$m.ko" >> "$root/lib/kiln-modules/order"
done
(cd "$root" && find . | LC_ALL=C sort | cpio -o -H newc --quiet -R 0:0) > "$out/initramfs.cpio"
rm -rf "$root"
echo "$kver" > "$out/kernel-release"
printf 'KILN_VM_KERNEL=%s\nKILN_VM_INITRD=%s\n' "$out/vmlinux" "$out/initramfs.cpio" > "$out/vm.env"
echo "$inputs" > "$out/inputs"
echo "build-vm: $out/vmlinux ($kver), initramfs $(du -h "$out/initramfs.cpio" | cut -f1)"

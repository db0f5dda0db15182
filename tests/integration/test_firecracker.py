"""The firecracker backend for real, where it can run: KVM that runs guests
and a `firecracker` binary (neither is on the machines this project's CI
uses; Debian packages no Firecracker). Otherwise it says why and is skipped.
Its API requests are checked against the specification's shapes in
tests/unit/test_fc_api.c either way."""
import fcntl
import os
import shutil
import sys

from kilntest import BUILD, SKIP, KilnCase, main, read_env, rootfs_args, skip_unless_jail_works

skip_unless_jail_works()
rootfs_args()


def kvm_runs_guests():
    try:
        fd = os.open("/dev/kvm", os.O_RDWR)
    except OSError as e:
        return "no /dev/kvm (%s)" % e.strerror
    try:
        fcntl.ioctl(fd, 0xAE01, 0)  # KVM_CREATE_VM
    except OSError as e:
        return "/dev/kvm cannot create a VM (%s)" % e.strerror
    finally:
        os.close(fd)
    flags = [l for l in open("/proc/cpuinfo") if l.startswith("flags")]
    if not flags or not any(f in flags[0].split() for f in ("vmx", "svm")):
        return "/dev/kvm opens but the CPU has no vmx/svm (its vCPUs cannot run guests)"
    return None


why = kvm_runs_guests()
FC = os.environ.get("KILN_FIRECRACKER") or shutil.which("firecracker")
if why is None and FC is None:
    why = "no firecracker binary (set KILN_FIRECRACKER or put it on PATH)"
if why is not None:
    print("SKIPPED: the firecracker backend needs KVM and Firecracker: " + why)
    sys.exit(SKIP)

ENV = read_env(os.path.join(BUILD, "vm", "vm.env"), os.path.join(BUILD, "rootfs", "kiln.env"))
GUEST_RELEASE = open(os.path.join(BUILD, "vm", "kernel-release")).read().strip()


class Firecracker(KilnCase):
    def test_jobs_in_firecracker_vms(self):
        state = os.path.join(self.tmp, "state")
        w = self.worker("fc", "--backend", "firecracker", "--firecracker", FC,
                        "--vm-kernel", ENV["KILN_VM_KERNEL"], "--vm-initrd", ENV["KILN_VM_INITRD"],
                        "--vm-image", ENV["KILN_VM_IMAGE"], "--state-dir", state, "--pool", "1")
        ex, out, _ = self.run_job("uname -r", timeout=60)
        self.assertEqual((ex["status"], out.decode().strip()), ("ok", GUEST_RELEASE), ex)
        ex, out, _ = self.run_job("print(6 * 7)", plugin="python", timeout=60)
        self.assertEqual((ex["status"], out), ("ok", b"42\n"), ex)
        ex, _, _ = self.run_job("sleep 30", limits={"timeout_ms": 1000}, timeout=60)
        self.assertEqual(ex["status"], "timeout")
        self.assertTrue(w.alive())
        w.stop()
        left = [os.path.join(d, f) for d, _, fs in os.walk(state) for f in fs]
        self.assertEqual(left, [])


if __name__ == "__main__":
    main()

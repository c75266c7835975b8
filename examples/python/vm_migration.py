"""The live migration of examples/vm-migration.json as a MultiHostTest.

Needs `make guest` and a lab whose hosts have a bridge br0 with a
filesystem pool both reach and a linux_bridge pool on br0
(scripts/vm-lab.sh; docs/vms.md). The runner starts vm1 on src before
setUp and stops every VM of the test after tearDown.
"""

import re

from avocado_multihost import MultiHostTest

TICK = re.compile(r"tick (\d+) up=([0-9.]+)")


class Migration(MultiHostTest):
    """:avocado: tags=vm,migration"""

    nodes = {"src": None, "dst": None}
    timeout = 300
    resources = [
        {"name": "disk", "type": "volume", "on": ["src", "dst"], "allocate": "src",
         "params": {"image_size": "64M", "image_format": "qcow2",
                    "volume_pool_selectors": "[{'key': 'type', 'operator': '==', 'values': 'filesystem'}]"}},
        {"name": "net", "type": "port", "on": "*", "params": {"network_type": "linux_bridge"}},
    ]
    vms = [
        {"name": "vm1", "on": "src", "migrate_to": "dst", "memory_mib": 256, "machine": "q35",
         "kernel": "../../build/guest/current/vmlinux",
         "initrd": "../../build/guest/current/initramfs.cpio.gz",
         "cmdline": "console=ttyS0 quiet panic=-1 vmip={vm1.cidr}",
         "address": {"from": "src", "host": 201},
         "disks": [{"resource": "disk"}], "nics": [{"port": "net"}]},
    ]

    def ping_from(self, *tags):
        guest = self.vm_address
        for tag in tags:
            res = self.get_node(tag).proxy.process.run(["ping", "-c", "1", "-w", "20", "-i", "0.2", guest], {"timeout": 30})
            self.assertEqual(res["exit_code"], 0, f"{tag} cannot ping the guest at {guest}")

    def disk_tick(self, tag):
        """The counter the guest last wrote to sector 0 of its volume, read on tag."""
        node = self.get_node(tag)
        path = self._partition["resources"]["disk"]["nodes"][tag]
        res = node.proxy.process.run(["qemu-io", "-r", "-U", "-f", "qcow2", "-c", "read -v 0 48", path], {"timeout": 30})
        self.assertEqual(res["exit_code"], 0)
        out = getattr(res["stdout"], "data", res["stdout"])  # bytes, or xmlrpc Binary
        raw = bytes.fromhex("".join(line[10:58] for line in out.decode().splitlines()[:3]))
        return int(TICK.search(raw.decode(errors="replace")).group(1))

    def test_migrate(self):
        vm = self.vms["vm1"]
        self.vm_address = self.get_node("src").address.rsplit(".", 1)[0] + ".201"
        vm.wait_console("vtguest: net up", timeout=120)
        before = TICK.search(vm.wait_console("tick 2 ", timeout=30))
        self.ping_from("src", "dst")

        figures = self.migrate("vm1", max_bandwidth=10**9, downtime_limit_ms=300)
        self.assertEqual(figures["status"], "completed")
        self.assertEqual(vm.tag, "dst")
        self.assertEqual(vm.status()["status"], "running")

        after = TICK.search(vm.wait_console(r"tick \d+ ", timeout=30))
        self.assertGreater(int(after.group(1)), int(before.group(1)))
        self.assertGreater(float(after.group(2)), float(before.group(2)))
        self.ping_from("dst", "src")
        # The guest prints a tick, then writes it: once the next one is
        # printed, the first tick after the migration is on the volume.
        vm.wait_console(r"tick \d+ ", timeout=30)
        self.assertGreaterEqual(self.disk_tick("dst"), int(after.group(1)))

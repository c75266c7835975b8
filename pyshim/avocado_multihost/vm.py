"""The test's VMs, for ``MultiHostTest``: ``self.vms[name]``.

A class declares its VMs in a ``vms`` attribute, as a JSON spec's
``"vms"`` section (docs/vms.md); the runner starts them on their nodes
before ``setUp`` and stops every VM of the test after ``tearDown``,
before the resources go. Each ``VM`` here drives the node's agent through
``vtcluster vm ... --json`` (the partition file in the environment
resolves the tags), so a migration is the same code as a spec's migrate
step: the destination is started listening, the migration runs, the
destination must run and the source be paused, then the source is stopped.
"""

import json

from .vt_cluster import _binary


class VMError(Exception):
    """A vm command failed; str() is vtcluster's message (VM, nodes, QMP's error)."""


def _vm(args, timeout):
    try:
        return _binary.check_json(["vm"] + list(args) + ["--json"], timeout=timeout)
    except _binary.CommandError as exc:
        fault = None
        try:
            fault = json.loads(exc.stdout).get("fault")
        except ValueError:
            pass
        if fault:
            raise VMError(f"{fault['exc_type']}: {fault['exc_value']}") from None
        raise VMError(str(exc)) from None


class VM:
    """One VM of the test: where it runs (``tag``) and what to do with it."""

    def __init__(self, name, tag, migrate_to=None):
        self.name = name
        #: The tag of the node the VM runs on now.
        self.tag = tag
        #: The default destination of migrate().
        self.migrate_to = migrate_to
        #: Console offset after the last wait_console match.
        self._offset = 0

    def __repr__(self):
        return f"<VM {self.name} on {self.tag}>"

    def status(self, timeout=30):
        """``{'status': 'running'|'paused'|'postmigrate'|..., 'pid', 'accel', ...}``."""
        return _vm(["status", self.tag, self.name], timeout)

    def qmp(self, command, timeout=60, **arguments):
        """Run a QMP command; return its ``return`` value (dict or list)."""
        args = ["qmp", self.tag, self.name, command]
        if arguments:
            args.append(json.dumps(arguments))
        return _vm(args, timeout)

    def console(self, offset=0, timeout=60):
        """The serial console's text from ``offset``."""
        return _vm(["console", self.tag, self.name, "--offset", str(offset)], timeout)["data"]

    def wait_console(self, pattern, timeout=60):
        """Wait for ``pattern`` (RE2) on the console after the previous
        match; return the matching line. VMError when it does not come."""
        res = _binary.run(["vm", "wait-console", self.tag, self.name, pattern, "--wait", str(timeout),
                           "--offset", str(self._offset), "--json"], timeout=timeout + 30)
        code, out, err = res
        try:
            match = json.loads(out)
        except ValueError:
            raise VMError(err.strip() or f"vtcluster vm wait-console exited {code}") from None
        if "fault" in match:
            raise VMError(f"{match['fault']['exc_type']}: {match['fault']['exc_value']}")
        if not match.get("matched"):
            raise VMError(f"vm {self.name} on {self.tag}: {pattern!r} did not appear on the console within {timeout} s")
        self._offset = match["offset"]
        return match["line"]

    def migrate(self, to=None, max_bandwidth=None, downtime_limit_ms=None, timeout=120, port=None):
        """Live-migrate to the node tagged ``to`` (default: the VM's
        migrate_to). Returns QMP's figures: ``{'status': 'completed',
        'total_time_ms', 'downtime_ms', 'transferred', 'from', 'to', ...}``;
        VMError (naming the VM, both nodes and QMP's error) when it fails."""
        to = to or self.migrate_to
        if not to:
            raise VMError(f"vm {self.name}: migrate() needs a destination tag (or migrate_to in the declaration)")
        args = ["vm", "migrate", self.name, "--from", self.tag, "--to", to, "--wait", str(timeout)]
        if max_bandwidth:
            args += ["--max-bandwidth", str(int(max_bandwidth))]
        if downtime_limit_ms:
            args += ["--downtime-limit-ms", str(int(downtime_limit_ms))]
        if port:
            args += ["--port", str(int(port))]
        code, out, err = _binary.run(args + ["--json"], timeout=timeout + 60)
        try:
            doc = json.loads(out)
        except ValueError:
            raise VMError(err.strip() or f"vtcluster vm migrate exited {code}") from None
        if code != 0 or "error" in doc:
            raise VMError(doc.get("error") or err.strip())
        self.tag, self._offset = to, 0
        return doc["result"]


def load(partition):
    """``{name: VM}`` from the partition file's ``vms`` section."""
    return {name: VM(name, entry["on"], entry.get("migrate_to") or None)
            for name, entry in (partition.get("vms") or {}).items()}

"""Avocado plugins that hand multi-host tests to the vtcluster binary.

Every plugin here is a thin adapter: the work (reading specs, bootstrapping
nodes, starting agents, running tests) is done by ``vtcluster``, located by
:mod:`avocado_multihost.binary`. The runnable kind is ``multihost``, run by
the Go executable ``avocado-runner-multihost`` on PATH.
"""

#: The Runnable kind produced by the resolver and run by avocado-runner-multihost.
KIND = "multihost"


def __getattr__(name):
    # Lazy, so the Avocado plugins importing this package do not load the
    # test API (and the test API never needs Avocado).
    if name == "MultiHostTest":
        from .test import MultiHostTest  # pylint: disable=import-outside-toplevel

        return MultiHostTest
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

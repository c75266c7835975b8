"""Avocado plugins that hand multi-host tests to the vtcluster binary.

Every plugin here is a thin adapter: the work (reading specs, bootstrapping
nodes, starting agents, running tests) is done by ``vtcluster``, located by
:mod:`avocado_multihost.binary`. The runnable kind is ``multihost``, run by
the Go executable ``avocado-runner-multihost`` on PATH.
"""

#: The Runnable kind produced by the resolver and run by avocado-runner-multihost.
KIND = "multihost"

"""Packaging for the Avocado plugins that hand multi-host tests to vtcluster.

Avocado 113.0 discovers plugins through pkg_resources entry points, so this
must be installed as a distribution (pip install ./pyshim); putting the
directory on PYTHONPATH is not enough.
"""

import os

from setuptools import setup

HERE = os.path.abspath(os.path.dirname(__file__))


def get_version():
    with open(os.path.join(HERE, "VERSION"), encoding="utf-8") as version_file:
        return version_file.read().strip()


setup(
    name="avocado-framework-plugin-multihost",
    version=get_version(),
    description="Avocado plugins for multi-host tests run by vtcluster",
    long_description=open(os.path.join(HERE, "README.rst"), encoding="utf-8").read(),
    long_description_content_type="text/x-rst",
    license="GPLv2",
    packages=["avocado_multihost", "avocado_multihost.vt_cluster", "avocado_multihost.vt_resmgr"],
    python_requires=">=3.8",
    install_requires=["avocado-framework==113.0"],
    # Deliberately no console_scripts: a Python avocado-runner-multihost on
    # PATH would shadow the Go runner of the same name.
    entry_points={
        "avocado.plugins.init": [
            "multihost = avocado_multihost.init:MultihostInit",
        ],
        "avocado.plugins.resolver": [
            "multihost = avocado_multihost.resolver:MultihostResolver",
        ],
        "avocado.plugins.cli.cmd": [
            "vt-bootstrap = avocado_multihost.bootstrap:VTBootstrap",
        ],
        "avocado.plugins.cli": [
            "multihost = avocado_multihost.bootstrap:VTBootstrapHook",
            "multihost-run = avocado_multihost.cli_run:MultihostRunOptions",
        ],
        "avocado.plugins.result_events": [
            "multihost = avocado_multihost.hooks:MultihostJobHooks",
        ],
    },
)

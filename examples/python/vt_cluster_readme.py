# The usage example of avocado-vt's virttest/vt_cluster/README.md
# (avocado-vt 113.0, GPLv2, Red Hat Inc.), with `virttest.` replaced by
# `avocado_multihost.` and nothing else changed except the lines marked
# "vtcluster:", which put in the node addresses and credentials and the
# logger's address: they are read from the JSON file named by
# $VTCLUSTER_EXAMPLE_CONFIG, {"logger_host": ..., "logger_port": ...,
# "hosts": {"node1": {params}, "node2": {params}}}, e.g. the "hosts" of a
# cluster config written by `vtcluster lab up --cluster-config`.
"""
Example of how to use the vt_cluster framework with centralized logging.

This example demonstrates:
1.  Configuring a logger and starting the logger server.
2.  Initializing the cluster.
3.  Defining and registering two remote nodes.
4.  Creating a partition and allocating nodes to it.
5.  Setting up the agent environment on each node.
6.  Starting the agent servers.
7.  Interacting with the agents via the proxy.
8.  Stopping the agents and cleaning up the environment.
"""
import logging
from avocado_multihost.vt_cluster import cluster
from avocado_multihost.vt_cluster.node import Node
from avocado_multihost.vt_cluster.logger import LoggerServer
import json, os  # vtcluster: addresses and credentials aside
_SITE = json.load(open(os.environ["VTCLUSTER_EXAMPLE_CONFIG"]))  # vtcluster

# 1. Configure logging
logging.basicConfig(level=logging.INFO, format='%(asctime)s - %(message)s')
logger = logging.getLogger()

# Start the centralized logger server
# Agents will be configured to send their logs here.
LOGGER_HOST = _SITE["logger_host"]  # vtcluster: was "192.168.122.100"
LOGGER_PORT = _SITE["logger_port"]  # vtcluster: was 8888
logger_server = LoggerServer((LOGGER_HOST, LOGGER_PORT), logger=logger)
logger_server.start()
logger.info(f"Logger server started at {LOGGER_HOST}:{LOGGER_PORT}")

# 2. Define node configurations
# In a real scenario, this would come from a config file.
# The agent on the node would be configured to connect to the logger server.
node1_params = _SITE["hosts"]["node1"]  # vtcluster: was a dict of address, hostname, username, password, ports
node2_params = _SITE["hosts"]["node2"]  # vtcluster: likewise

# 3. Instantiate and register nodes
node1 = Node(params=node1_params, name="node1")
node2 = Node(params=node2_params, name="node2")

cluster.register_node(name="node1", node=node1)
cluster.register_node(name="node2", node=node2)

# 4. Create a partition and add nodes to it
partition = cluster.create_partition()
partition.add_node(node1)
partition.add_node(node2)

# 5. Setup and manage nodes in the partition
try:
    for node in partition.nodes:
        try:
            logger.info(f"Setting up agent on {node.name}...")
            node.setup_agent_env()

            logger.info(f"Starting agent server on {node.name}...")
            node.start_agent_server()

            logger.info(f"Starting logger client on {node.name}...")
            node.proxy.core.start_log_redirection(LOGGER_HOST, LOGGER_PORT)

            # 6. Interact with the remote agent
            if node.proxy.core.is_alive():
                logger.info(f"Agent on {node.name} is alive.")
                # Example of a remote call
                greeting = node.proxy.examples.hello.ping()
                logger.info(f"Service Response: {greeting}")
            else:
                logger.warning(f"Agent on {node.name} failed to start.")

        except Exception as e:
            logger.error(f"An error occurred on {node.name}: {e}")

        finally:
            logger.info(f"Stopping logger client on {node.name}...")
            node.proxy.core.stop_log_redirection()

            # 7. Clean up the node
            logger.info(f"Stopping agent on {node.name}...")
            node.stop_agent_server()
            logger.info(f"Cleaning up environment on {node.name}...")
            node.cleanup_agent_env()
finally:
    logger.info("Stopping logger server...")
    logger_server.stop()

    # 8. Clear the partition when done
    cluster.remove_partition(partition)

    # 9. Unregister the nodes when done
    cluster.unregister_node(name="node1")
    cluster.unregister_node(name="node2")

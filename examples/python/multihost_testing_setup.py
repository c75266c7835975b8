# The "Complete Multi-Host Test Setup" example of avocado-vt's
# docs/source/MultiHostTesting.rst (avocado-vt 113.0, GPLv2, Red Hat Inc.),
# with `virttest.` replaced by `avocado_multihost.` and nothing else
# changed except the lines marked "vtcluster:", which put in the node
# addresses and credentials and the logger's address, read from the JSON
# file named by $VTCLUSTER_EXAMPLE_CONFIG (see vt_cluster_readme.py).
import logging
from avocado_multihost.vt_cluster import cluster, node_properties
from avocado_multihost.vt_cluster.node import Node
from avocado_multihost.vt_cluster.logger import LoggerServer
from avocado_multihost.vt_cluster.selector import select_node
import json, os  # vtcluster: addresses and credentials aside
_SITE = json.load(open(os.environ["VTCLUSTER_EXAMPLE_CONFIG"]))  # vtcluster
_LOGGER = (_SITE["logger_host"], _SITE["logger_port"])  # vtcluster: was ("192.168.122.100", 8888)

# 1. Setup centralized logging
logger = logging.getLogger()
logger_server = LoggerServer(_LOGGER, logger=logger)  # vtcluster: address
logger_server.start()

# 2. Define node configurations  
node_configs = {
    "node1": _SITE["hosts"]["node1"],  # vtcluster: was a dict of address, username, password, ports
    "node2": _SITE["hosts"]["node2"],  # vtcluster: likewise
}

# 3. Setup and register nodes
for name, params in node_configs.items():
    try:
        node = Node(params=params, name=name)
        node.setup_agent_env()
        node.start_agent_server() 
        cluster.register_node(name=name, node=node)
        logging.info(f"Node {name} registered successfully")
    except Exception as e:
        logging.error(f"Failed to setup node {name}: {e}")

# 4. Save node properties for selection
node_properties.save_properties()

# 5. Test execution with node selection
partition = cluster.create_partition()
try:
    # Select node based on criteria
    selectors = '[{"key": "cpu_vendor_id", "operator": "eq", "values": "GenuineIntel"}]'
    selected_node = select_node(cluster.get_all_nodes(), selectors=selectors)
    
    if selected_node:
        partition.add_node(selected_node)
        
        # Start log redirection
        selected_node.proxy.core.start_log_redirection(*_LOGGER)  # vtcluster: address

    # Execute test operations
    for node in partition.nodes:
        result = node.proxy.examples.hello.ping()
        logging.info(f"Test result: {result}")
        
finally:
    # Cleanup
    for node in partition.nodes:
        node.proxy.core.stop_log_redirection()
    cluster.remove_partition(partition)

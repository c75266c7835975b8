# The "Resource Management Example" of avocado-vt's
# docs/source/MultiHostTesting.rst (avocado-vt 113.0, GPLv2, Red Hat Inc.),
# with `virttest.` replaced by `avocado_multihost.` and nothing else changed
# but the line marked "vtcluster:". It drives vtcluster's resource manager
# (`vtcluster resource ...`) and needs nodes registered as node1 and node2
# and a volume pool both reach, attached (tests/python/test_pyapi.py sets
# that up). The params' "size"/"format" are ignored, as upstream, whose
# volumes read image_size/image_format: the volume is a 20G qcow2 file.
import logging  # vtcluster: the original uses logging without importing it
from avocado_multihost.vt_resmgr import resmgr

# 1. Create storage resource
volume_params = {
    "size": "10G",
    "format": "qcow2", 
    "storage_type": "filesystem"
}

resource_id = resmgr.create_resource_from_params(
    resource_name="test_disk",
    resource_type="volume",
    resource_params=volume_params
)

# 2. Bind to worker nodes
resmgr.bind_resource(resource_id, node_names=["node1", "node2"])

# 3. Allocate on specific node  
resmgr.update_resource(resource_id, "allocate", arguments={"node": "node1"})

# 4. Use resource in test
resource_info = resmgr.get_resource_info(resource_id, request="spec")
logging.info(f"Resource info: {resource_info}")

# 5. Cleanup
resmgr.update_resource(resource_id, "release")
resmgr.unbind_resource(resource_id)
resmgr.destroy_resource(resource_id)

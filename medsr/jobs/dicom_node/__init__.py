"""``medsr dicom-node``: a DICOM storage node that upscales each series it receives and sends it on.

spool.py (folders, atomic spooling, series completion), scp.py (the storage SCP's handlers),
forward.py (C-STORE SCU with backoff), node.py (worker loop, restart recovery). pynetdicom and torch are
imported only when the node runs.
"""

from medsr.jobs.dicom_node.forward import Destination
from medsr.jobs.dicom_node.node import NodeConfig, run_node

__all__ = ["Destination", "NodeConfig", "run_node"]

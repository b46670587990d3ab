"""netledger-cni: a CNI IPAM plugin whose addresses come from the ledger.

- ``cni.plugin``: the executable's entry point;
- ``cni.request`` and ``cni.inputs``: read the CNI environment and network
  configuration;
- ``cni.commands``: run ADD, DEL, CHECK, GC and STATUS against the ledger;
- ``cni.result``: write the result JSON;
- ``cni.hostlocal``: migrate the data directory of the ``host-local`` IPAM
  plugin into the ledger.
"""

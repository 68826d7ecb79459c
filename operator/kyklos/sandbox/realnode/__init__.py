"""The sandbox's real node: kubelet, kube-proxy, containerd + runc and CoreDNS on this machine.

``kyklos sandbox serve --node real`` runs them beside the same control plane the process node
agent uses. ``config`` renders every configuration file (pure), ``build`` compiles the Go tools
and the pause image into the cache, ``host`` records and restores what the node changes on the
machine, and ``node`` starts and stops the processes. docs/real-node.md has the facts this is
built on.
"""

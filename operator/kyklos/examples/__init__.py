"""Tiny real programs for the churn walkthrough in examples/: a trainer and a model server.

They ship inside the Kyklos package (and so inside the Kyklos image) so that the example
manifests need no image of their own: ``command: [python, -m, kyklos.examples.train]`` runs
the same code in a cluster and in the sandbox, whose kubelet runs ``*kyklos*`` images as
local processes. They depend on the standard library and NumPy only -- no Kubernetes
client, no kopf, nothing else from Kyklos -- so they read as what a data scientist would
write against Kyklos's contract (the KYKLOS_* environment and the termination message).
"""

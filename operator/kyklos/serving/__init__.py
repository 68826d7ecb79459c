"""The serving data plane: ``kyklos proxy``, the sidecar in front of every model server."""

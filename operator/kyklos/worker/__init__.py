"""kyklos.worker."""

"""kyklos.sandbox."""

"""kyklos.api."""

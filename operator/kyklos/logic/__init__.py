"""kyklos.logic."""

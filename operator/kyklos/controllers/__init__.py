"""kyklos.controllers."""

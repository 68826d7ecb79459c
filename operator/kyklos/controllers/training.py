"""kopf handlers for the training controller (being written)."""

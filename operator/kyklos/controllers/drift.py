"""kopf handlers for the drift controller (being written)."""

"""kopf handlers for the dataset controller (being written)."""

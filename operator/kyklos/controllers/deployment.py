"""kopf handlers for the deployment controller (being written)."""

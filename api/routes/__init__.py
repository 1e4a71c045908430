"""The routes of REST v1, one module per resource."""

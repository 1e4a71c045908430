"""Example contracts and services."""

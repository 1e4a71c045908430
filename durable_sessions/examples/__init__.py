"""Example contracts and services: the calculator of WCF's "Using Sessions" sample."""

from durable_sessions.examples.calculator import Calculator, CalculatorService

__all__ = ["Calculator", "CalculatorService"]

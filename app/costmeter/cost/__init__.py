"""Prices, energy accounting and the cost of devices and hosts over a period."""

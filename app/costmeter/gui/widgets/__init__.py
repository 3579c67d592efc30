"""Reusable widgets: cards, banners, live plots."""

"""Durable storage shared by programs."""

"""Stores keep the rules' per-user and per-account state."""

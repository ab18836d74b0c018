"""PLACEHOLDER: being written by a helper (see the brief). Replaced before commit."""

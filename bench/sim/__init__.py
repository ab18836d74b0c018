"""The cluster simulator behind bench/simulate.py (see its docstring)."""

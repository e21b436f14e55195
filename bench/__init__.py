"""Benchmarks of the real pipeline against ceilings measured in the same run.

`python -m bench` (or `make bench`) prints one table: figure, value, ceiling, ratio, target.
`python -m bench --quick` runs the same on 10,000 records per resource (CI runs it and
asserts no timing).
"""

"""trioring.fuzz: a seeded, shrinking fault-injection harness (``python -m trioring fuzz``).

See docs/reliability.md.
"""

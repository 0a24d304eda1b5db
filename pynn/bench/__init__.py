"""``pynn bench``: pynn against the alternatives, end to end, each contender in its own fresh
process (the options live with the command line, pynn/cli/bench.py).

harness.py runs the comparison (:func:`run`), _process.py starts one contender's process,
_report.py records the machine and makes the tables and chart; inside each process the worker
(_worker.py, loaded by path: the process must not import pynn first) runs one contender of
_contender_*.py on one case of _cases.py.
"""
from .harness import (APPLIES, CASE_NAMES, CONTENDERS, DESCRIPTIONS, USES_PYNN,
                      child_environment, run)

__all__ = ["APPLIES", "CASE_NAMES", "CONTENDERS", "DESCRIPTIONS", "USES_PYNN",
           "child_environment", "run"]

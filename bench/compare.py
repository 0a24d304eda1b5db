"""End-to-end speed comparison: pynn, its NumPy backend, a hand-written NumPy loop, torch eager,
scikit-learn's MLPClassifier, pynn after torch, and the bare-GEMM floor, each contender in its
own fresh process. The same as ``pynn bench``; the code lives in ``pynn/bench/`` (the harness and
the worker, so it works from an installed wheel) and ``pynn/cli/bench.py`` (its options).

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python3 bench/compare.py --out bench-out
    python3 bench/compare.py --help
"""
import sys

from pynn.cli.bench import main

if __name__ == "__main__":
    sys.exit(main())

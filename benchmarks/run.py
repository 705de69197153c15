"""Run xpconv's benchmark suite: ``python benchmarks/run.py [ARGS]`` (``--help`` for the options).

The same as ``xpconv bench ARGS``. The reference CPU run that produced
``benchmarks/results/cpu-numpy.json``::

    python benchmarks/run.py --backend numpy --compare torch \
        --json benchmarks/results/cpu-numpy.json

The GPU run (on a machine with a CUDA GPU, CuPy and PyTorch with CUDA)::

    python benchmarks/run.py --backend cupy --compare torch-cuda --batch 256 \\
        --json benchmarks/results/gpu-cupy.json
"""

from __future__ import annotations

import sys

from xpconv.bench import main

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

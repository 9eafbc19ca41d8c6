"""The benchmark (python -m bench); gRPC's I/O engine chosen as the programs choose it."""

import os

from policy import io_engine

# As the operator set it, before the choice below: what `--against`'s other
# checkout starts from, to choose for itself as it would when run alone.
OPERATOR_ENGINE = os.environ.get(io_engine.ENVIRONMENT)
io_engine.choose()

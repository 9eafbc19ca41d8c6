"""The test suite. gRPC's I/O engine is chosen here as the programs choose it,
before anything imports grpc, so tests in process run what production runs."""

from policy import io_engine

io_engine.choose()

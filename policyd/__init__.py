"""policyd: a gRPC daemon that evaluates KumoMTA-style Lua policies for SMTP edges."""

from policy import io_engine

io_engine.choose()

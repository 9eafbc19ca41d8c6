"""policyd: a gRPC daemon that evaluates KumoMTA-style Lua policies for SMTP edges."""

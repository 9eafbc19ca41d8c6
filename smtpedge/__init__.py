"""smtpedge: a thin SMTP server that asks a policy daemon for a verdict at every stage."""

from policy import io_engine

io_engine.choose()

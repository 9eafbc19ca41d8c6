"""The shared kernel of policyd and smtpedge; it imports neither.

- `policy.v1`: the gRPC contract (generated from proto/) and what its messages mean
  (`headers`: header changes), with the service names;
- `events`: one table of the SMTP events a policy handles, read by every part
  that deals with events;
- `verdicts`: the names of actions and disconnect modes, both ways;
- `addresses`: HOST:PORT, [v6]:PORT, unix:PATH, loopback;
- `ids`: session, message and decision ids;
- process scaffolding: `io_engine` (gRPC core's I/O engine, chosen before grpc
  loads), `loop` (starting the event loop), `logs` (JSON lines),
  `workers` (one supervisor for `--workers N`), `options` (command-line options
  that are also environment variables).
"""

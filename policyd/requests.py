"""Which requests the daemon can make sense of: the checks a request passes
before it is evaluated (an unknown event, missing arguments, an oversized
message get INVALID_ARGUMENT, never a verdict)."""

from __future__ import annotations

from policy.events import BY_NAME, Event
from policy.v1 import policy_pb2 as pb


class RequestError(ValueError):
    """A request the daemon cannot make sense of."""


def check_request(request: pb.EvaluateRequest, max_message_size: int) -> Event:
    """The request's event, once the request is fit to evaluate."""
    event = BY_NAME.get(request.event)
    if event is None:
        raise RequestError(f"unknown event {request.event!r}; expected one of {sorted(BY_NAME)}")
    if request.WhichOneof("args") != event.field:
        raise RequestError(f"event {event.name} needs args.{event.field}")
    arguments = getattr(request, event.field)
    for name in event.required:
        if not getattr(arguments, name):
            raise RequestError(f"args.{event.field}.{name} is empty")
    if event.field == "message" and len(request.message.data) > max_message_size:
        raise RequestError(
            f"args.message.data is {len(request.message.data)} bytes, "
            f"more than this daemon's limit of {max_message_size}"
        )
    return event

"""Version 1 of the policy contract: generated bindings (`policy_pb2`,
`policy_pb2_grpc`), what header changes do (`headers`), and the service names
health checks, reflection and admin authorisation refer to."""

from policy.v1 import policy_pb2 as _pb

POLICY_SERVICE = _pb.DESCRIPTOR.services_by_name["PolicyService"].full_name
ADMIN_SERVICE = _pb.DESCRIPTOR.services_by_name["PolicyAdmin"].full_name

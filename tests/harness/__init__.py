"""Shared helpers of the Python test tiers (integration, e2e, interop): the
stack, daemons as real processes, free ports, generated protobuf/gRPC stubs."""
import os

TOP = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

"""vmportal: VM self-service and lifecycle management under the center's VM service agreement."""

__version__ = "0.1.0"

"""The source file functions-framework loads: it only names the gateway function."""

from devstack.gateway import gateway  # noqa: F401

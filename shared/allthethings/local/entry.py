"""The source file functions-framework loads: it only names the gateway function."""

from allthethings.local.gateway import gateway  # noqa: F401

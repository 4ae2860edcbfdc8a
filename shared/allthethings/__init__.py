"""allthethings: index anything with a public URL and search it by meaning.

The package is the Lambda layer shared by every function: a pure domain, the
ports it owns, one service per use case, adapters for the real world, settings
and the bootstrap that wires them together.
"""

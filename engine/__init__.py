"""Hookline's runtime: serves compiled pipelines over HTTP (Tornado).

Public entry points: ``engine.cli.main`` (the ``hookline`` command) and
``engine.server.App`` (a Tornado connection delegate for tests and embedding).
"""

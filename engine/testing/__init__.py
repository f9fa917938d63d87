"""Pipelines tested, run and fuzzed offline: ``hookline test``, ``run`` and ``fuzz``.

A request goes through the server's own request path (``engine.server.App``,
driven through a stand-in for Tornado's connection: :mod:`.inprocess`), with
outbound calls answered by mocks (:mod:`.mocks`) and async branches delivered
from the ``memory:`` store on a simulated clock (:mod:`.deliver`). Nothing
listens on a socket, writes a store file or waits for a retry.

Modules: ``spec`` (the test-file format's schema), ``load`` (test files →
cases, or diagnostics), ``inprocess``, ``mocks``, ``deliver``, ``expect``
(comparisons and their per-field diff), ``runner`` (``hookline test``),
``junit``, ``trace`` (``hookline run``), ``fuzz`` (``hookline fuzz``).
"""

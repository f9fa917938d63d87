"""``hookline test --junit FILE``: the results as JUnit XML, which CI systems
(GitHub Actions reporters, GitLab, Jenkins) show per test.

One ``<testsuite>`` per test file, one ``<testcase>`` per test (``classname``
is the test file, ``time`` in seconds); a failed test has a ``<failure>``
holding its differences; a broken test file is a suite with an ``<error>``.
"""
from __future__ import annotations

import xml.etree.ElementTree as ET


def junit_xml(run) -> bytes:
    """The XML document for a :class:`engine.testing.runner.Run`."""
    root = ET.Element("testsuites", name="hookline test", tests=str(len(run.results)),
                      failures=str(run.failed), errors=str(len(run.broken)))
    for file, results in run.files.items():
        suite = ET.SubElement(root, "testsuite", name=file, tests=str(len(results)),
                              failures=str(sum(not r.passed for r in results)), errors="0",
                              time=f"{sum(r.seconds for r in results):.3f}")
        for result in results:
            case = ET.SubElement(suite, "testcase", classname=file, name=result.case.name,
                                 file=file, line=str(result.case.line), time=f"{result.seconds:.3f}")
            if not result.passed:
                failure = ET.SubElement(case, "failure", message=result.failures[0][:500])
                failure.text = "\n".join(result.failures + result.notes)
    for diagnostic in run.broken:
        suite = ET.SubElement(root, "testsuite", name=diagnostic.file, tests="0", failures="0", errors="1")
        ET.SubElement(suite, "error", message=str(diagnostic)[:500]).text = str(diagnostic)
    return ET.tostring(root, encoding="utf-8", xml_declaration=True) + b"\n"

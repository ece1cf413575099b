"""The demo is what new users run first: it must keep working and keep telling the truth."""

from __future__ import annotations

import pytest

from itsmcore import demo


def test_demo_prints_the_tour(capsys: pytest.CaptureFixture[str]) -> None:
    demo.main()
    out = capsys.readouterr().out
    assert "Thu 17 Apr 15:00 + 8 business hours = Tue 22 Apr 15:00" in out
    assert "counts 23:00:00" in out
    assert "| High | P1 Critical | P2 High | P3 Moderate |" in out
    assert "incident.resolved        -> resolved" in out
    assert "resolved after 2:00:00 of business time (4 days, 17:00:00 on the wall clock)" in out
    assert "at Tue 09:00: in_progress, 1:30:00 used, due Tue 22 Apr 16:30" in out
    assert "finally: completed, breached: no" in out
    assert "resolved P1/P2 incidents: ['INC0001']" in out
    assert "5 events stored; reloaded equal: True" in out

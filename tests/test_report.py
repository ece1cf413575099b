"""The HTML report: its figures are the analytics' own, and it renders in a real browser."""

from __future__ import annotations

import os
import re
import shutil
from datetime import timedelta
from pathlib import Path

import pytest

from itsmcore import Priority, SLADefinition, ValidationError
from itsmcore import analytics as kpi
from itsmcore._svg import _scale
from itsmcore.report import html_report
from itsmcore.sample import OFFICE, sample_month

H = timedelta(hours=1)
MONTH = sample_month(seed=5, incidents=150)
CLOCK = SLADefinition.incident_resolution(dict.fromkeys(Priority, 8 * H), OFFICE)


def page(**kwargs: object) -> str:
    spec = {"at": MONTH.end, "calendar": OFFICE, "clocks": [CLOCK]} | kwargs
    return html_report(MONTH.incidents, **spec)  # type: ignore[arg-type]


def test_the_figures_are_the_analytics_own() -> None:
    html = page()
    (mttr,) = kpi.mttr(MONTH.incidents, at=MONTH.end, calendar=OFFICE)
    assert f"{mttr.business_mean / H:.1f} h" in html
    compliance = kpi.sla_compliance(
        MONTH.incidents, [CLOCK], at=MONTH.end,
        by=lambda r: (r.priority.name, f"{r.opened_at.astimezone(MONTH.end.tzinfo):%Y-%m}"),
    )  # fmt: skip
    for row in compliance:
        if row.count:
            assert f"<td>{row.met}/{row.count}</td>" in html
    # The backlog line has one point per day of the month, the last one the open count now.
    (points,) = re.findall(r'<polyline points="([^"]+)"', html)
    assert len(points.split()) == (MONTH.end - MONTH.start).days + 1
    assert html.count("<svg") == 3
    assert html.count("<h2>") == 5


def test_text_is_escaped_and_nothing_is_fetched() -> None:
    html = page(title='Desk <script>alert("x")</script>')
    assert "<script" not in html
    assert "&lt;script&gt;" in html
    assert not re.search(r'(src|href)="?https?:', html)


def test_bad_input_is_refused() -> None:
    with pytest.raises(ValidationError, match="at least one incident"):
        html_report([], at=MONTH.end, calendar=OFFICE, clocks=[CLOCK])
    with pytest.raises(ValidationError, match="at least one SLA definition"):
        html_report(MONTH.incidents, at=MONTH.end, calendar=OFFICE, clocks=[])


@pytest.mark.parametrize("top", [0.3, 1, 7, 99, 100, 101, 1999, 12_345])
def test_axes_end_at_a_round_number_just_above_the_data(top: float) -> None:
    bound, ticks = _scale(top)
    assert ticks[0] == 0
    assert ticks[-1] == bound >= top
    assert 2 <= len(ticks) <= 6
    assert bound < 2.5 * top


def _browser() -> object:
    """A headless Chromium driven by Selenium, if this machine has them."""
    required = os.environ.get("ITSMCORE_REQUIRE_BROWSER") == "1"
    try:
        from selenium import webdriver  # noqa: PLC0415
        from selenium.webdriver.chrome.service import Service  # noqa: PLC0415
    except ImportError:
        if required:
            raise
        pytest.skip("selenium is not installed (the test extra has it)")
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    driver = shutil.which("chromedriver")
    if chromium is None or driver is None:
        if required:
            pytest.fail("ITSMCORE_REQUIRE_BROWSER=1 but chromium or chromedriver is missing")
        pytest.skip("no chromium and chromedriver here (Debian: chromium chromium-driver)")
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    return webdriver.Chrome(service=Service(driver), options=options)


def test_the_report_renders_in_a_headless_browser_without_console_errors(
    tmp_path: Path,
) -> None:
    report = tmp_path / "report.html"
    report.write_text(page(), encoding="utf-8")
    browser: object = _browser()
    try:
        browser.get(report.as_uri())  # type: ignore[attr-defined]
        charts = browser.find_elements("css selector", "svg.chart")  # type: ignore[attr-defined]
        assert len(charts) == 3
        for chart in charts:
            assert chart.size["width"] > 300
            assert chart.size["height"] > 100
            assert chart.find_elements("css selector", "rect, polyline")
        headings = [h.text for h in browser.find_elements("css selector", "h2")]  # type: ignore[attr-defined]
        assert headings == [
            "Key figures", "SLA compliance by priority and month", "Backlog", "Time to resolve",
            "Recurring-incident candidates",
        ]  # fmt: skip
        problems = [e for e in browser.get_log("browser") if e["level"] != "INFO"]  # type: ignore[attr-defined]
        assert problems == []
    finally:
        browser.quit()  # type: ignore[attr-defined]

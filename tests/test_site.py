"""``vpbench site``: a static leaderboard, read back as files and driven in a real browser."""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

import pandas as pd
import pytest

from tests import cli_helpers
from vpbench.site import build_site, find_sources, report_provenance

REPORTS = Path(__file__).resolve().parents[1] / "reports"
FAST = ["--preset", "smoke", "--set", "eval.metrics=mse,ssim", "--set", "eval.speed=false", "--set", "eval.profile=false",
        "--set", "eval.examples=2"]


def invoke(args: list[str], expect: int = 0):
    result = cli_helpers.invoke(*args)
    assert result.exit_code == expect, result.output
    return result


@pytest.fixture(scope="module")
def sources(tmp_path_factory) -> dict[str, Path]:
    """A real comparison and a real run on the embedded digits, and a run on fewer clips (another protocol)."""
    tmp = tmp_path_factory.mktemp("site")
    invoke(["compare", "copylast", "blank", "meanframe", *FAST, "--set", "eval.max_clips=100", "--out", str(tmp / "cmp")])
    invoke(["run", "copylast", *FAST, "--set", "eval.max_clips=40", "--out", str(tmp / "few")])
    return {"cmp": tmp / "cmp", "few": tmp / "few"}


def page_rows(page: str) -> list[tuple[str, str]]:
    body = page.split('<table id="leaderboard"', 1)[1].split("</table>", 1)[0]
    return re.findall(r'<tr data-model="([^"]*)" data-budget="([^"]*)">', body)


def test_protocols_are_never_mixed(sources, tmp_path):
    out = tmp_path / "site"
    protocols = build_site([sources["cmp"], sources["few"], REPORTS], out)
    by_clips = {(p.dataset, p.clips): rows for p, rows in protocols.items()}
    assert set(by_clips) == {("digits", 100), ("digits", 40), ("mmnist", 500)}
    assert sorted(r.model for r in by_clips[("digits", 100)]) == ["blank", "copylast", "meanframe"]
    assert [r.model for r in by_clips[("digits", 40)]] == ["copylast"]
    # every committed report is one protocol: the same mmnist clips, budgets told apart by the filter
    mmnist = by_clips[("mmnist", 500)]
    report_of = {r.source.path.name if r.source.path.parent == REPORTS else r.source.path.parent.name for r in mmnist}
    assert report_of == {p.name for p in REPORTS.iterdir() if p.is_dir()}  # a ladder: its budget-<B>/ comparisons
    assert {"budget 4e14", "no training"} <= {r.budget for r in mmnist}
    index = (out / "index.html").read_text()
    pages = re.findall(r'href="([^"]+\.html)"', index)
    assert len(pages) == 3
    for protocol, rows in protocols.items():
        page = (out / f"{protocol.slug}.html").read_text()
        assert sorted(m for m, _ in page_rows(page)) == sorted(r.model for r in rows)


def test_rows_carry_the_values_of_their_results_csv(sources, tmp_path):
    out = tmp_path / "site"
    protocols = build_site([sources["cmp"]], out)
    (protocol, rows), = protocols.items()
    table = pd.read_csv(sources["cmp"] / "results.csv", dtype={"horizon": str})
    for row in rows:
        want = table[(table.model == row.model) & (table.metric == "mse") & (table.horizon == "all")].value.item()
        assert row.metrics["mse"][0] == want
    page = (out / f"{protocol.slug}.html").read_text()
    assert page.count('data-sort="') > 0 and "How this was made" in page
    assert (out / rows[0].source.slug / "report.html").is_file()
    assert protocol.frames == "10 -> 10" and protocol.split == "test"


def test_report_provenance_reads_the_made_section():
    prov = report_provenance(REPORTS / "mmnist-cpu-matched" / "report.md")
    assert prov["git revision"] == "0f5bfcc4f457da05ecad3753502433ef92d80309"
    assert prov["command"].startswith("vpbench compare shrvqvae")


def test_bad_sources_are_one_line(tmp_path, sources):
    (tmp_path / "empty").mkdir()
    result = invoke(["site", str(tmp_path / "empty"), "--out", str(tmp_path / "s")], expect=2)
    assert "holds no results.csv" in result.output
    broken = tmp_path / "broken"
    shutil.copytree(sources["cmp"], broken)
    (broken / "results.json").write_text("[1, 2]")
    result = invoke(["site", str(broken), "--out", str(tmp_path / "s2")], expect=2)
    assert "not a mapping" in result.output and "Traceback" not in result.output
    with pytest.raises(Exception, match="no comparison"):
        find_sources([])


def test_site_refuses_a_foreign_out_dir(tmp_path, sources):
    mine = tmp_path / "notes"
    mine.mkdir()
    (mine / "index.html").write_text("mine")
    result = invoke(["site", str(sources["cmp"]), "--out", str(mine)], expect=2)
    assert "choose another --out" in result.output
    assert (mine / "index.html").read_text() == "mine"
    ok = invoke(["site", str(sources["cmp"]), "--out", str(tmp_path / "fresh")])
    assert "1 protocol(s), 3 row(s)" in ok.output
    again = invoke(["site", str(sources["cmp"]), str(sources["few"]), "--out", str(tmp_path / "fresh")])
    assert "2 protocol(s), 4 row(s)" in again.output


# -- in a real browser -------------------------------------------------------------------
CHROMIUM, DRIVER = shutil.which("chromium"), shutil.which("chromedriver")


@pytest.fixture(scope="module")
def browser():
    webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed (pip install -e '.[test]')")
    if not (CHROMIUM and DRIVER):
        pytest.skip("Debian's chromium and chromium-driver are not installed (.ci/run installs them)")
    from selenium.webdriver.chrome.service import Service

    os.environ.setdefault("SE_OFFLINE", "true")  # never let selenium fetch a browser or driver of its own
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--window-size=1400,1000"):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(DRIVER), options=options)
    yield driver
    driver.quit()


def visible_rows(driver) -> list[tuple[str, float]]:
    out = []
    for tr in driver.find_elements("css selector", "#leaderboard tbody tr"):
        if tr.is_displayed():
            out.append((tr.get_attribute("data-model"), tr.find_elements("tag name", "td")[3].get_attribute("data-sort")))
    return out


def test_site_in_chromium(browser, sources, tmp_path):
    out = tmp_path / "site"
    protocols = build_site([sources["cmp"], sources["few"], REPORTS], out)
    browser.get((out / "index.html").as_uri())
    links = browser.find_elements("css selector", "#protocols tbody a")
    assert len(links) == 3
    mmnist = next(p for p in protocols if p.dataset == "mmnist")
    browser.get((out / f"{mmnist.slug}.html").as_uri())
    headers = browser.find_elements("css selector", "#leaderboard thead th")
    assert headers[3].text.startswith("mse")
    headers[3].click()  # ascending MSE
    values = [float(v) for _, v in visible_rows(browser) if v != "n/a"]
    assert values == sorted(values) and len(values) == len(protocols[mmnist])
    assert headers[3].get_attribute("aria-sort") == "ascending"
    headers[3].click()  # descending
    assert [float(v) for _, v in visible_rows(browser)] == sorted(values, reverse=True)
    from selenium.webdriver.support.ui import Select

    Select(browser.find_element("id", "filter-model")).select_by_value("predrnn")
    shown = visible_rows(browser)
    predrnn = [r for r in protocols[mmnist] if r.model == "predrnn"]  # mmnist-cpu, the matched run, the ladder's 4
    assert {m for m, _ in shown} == {"predrnn"} and len(shown) == len(predrnn) >= 2
    images = browser.find_elements("tag name", "img")
    assert images and all(browser.execute_script("return arguments[0].complete && arguments[0].naturalWidth", i) > 0
                          for i in images)
    errors = [e for e in browser.get_log("browser") if e["level"] == "SEVERE"]
    assert errors == []
    shot = tmp_path / "site.png"
    browser.save_screenshot(str(shot))
    assert shot.stat().st_size > 10_000

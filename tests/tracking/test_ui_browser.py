"""The MLflow UI as users see it (issue 14.5): `lightning-privacy ui` serves two finished runs of different defenses
and headless Chromium (Debian's chromium + chromium-driver, through selenium) reads the run list, the compare view
and a run's audit plots. Screenshots are kept under the test's tmp_path (the path is printed)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import mlflow
import pytest

from lightning_privacy.cli import main
from tests.conftest import REPO, free_port

CHROMIUM, CHROMEDRIVER = Path("/usr/bin/chromium"), Path("/usr/bin/chromedriver")
QUICKSTART = str(REPO / "conf" / "experiments" / "quickstart.yaml")
METRICS = ("test/acc", "mia/best/auc", "privacy/aop_lambda_2")
DEFENSES = {"reg": ("hp.l2", "0.05", ["--model.init_args.l2", "0.05"]),
            "relaxloss": ("hp.alpha", "0.7", ["--model.init_args.alpha", "0.7"])}
AUDIT_PLOTS = ("loss_histogram.png", "mia_roc_loglog.png")

# The compare view's metric table is two react-virtualized grids (names, values; the mouse wheel on the values grid
# scrolls both) that render only the rows in view. VALUES_GRID finds the values grid; ROW_JS reads the row whose name
# is `arguments[0]` (null until it and `arguments[1]` value cells are rendered; cells share the name's `top`).
VALUES_GRID_JS = """
const grids = [...document.querySelectorAll('.ReactVirtualized__Grid')];
const names = grids.find(g => g.querySelector('a[title="Plot chart"]'));
return grids[grids.indexOf(names) + 1];
"""
ROW_JS = """
const grids = [...document.querySelectorAll('.ReactVirtualized__Grid')];
const names = grids.find(g => g.querySelector('a[title="Plot chart"]'));
const values = grids[grids.indexOf(names) + 1];
const a = [...names.querySelectorAll('a[title="Plot chart"]')].find(e => e.textContent.trim() === arguments[0]);
if (!a) return null;
const top = a.parentElement.style.top;
const cells = [...values.querySelectorAll('div[style]')].filter(c => c.style.position === 'absolute' && c.style.top === top);
if (cells.length < arguments[1]) return null;
cells.sort((x, y) => parseFloat(x.style.left) - parseFloat(y.style.left));
return cells.map(c => c.textContent.trim());
"""


def _browser_missing() -> str | None:
    if not CHROMIUM.is_file() or not CHROMEDRIVER.is_file():
        return (f"Chromium or its driver is absent ({CHROMIUM}, {CHROMEDRIVER}): apt-get install chromium "
                "chromium-driver (scripts/test.sh does it as root)")
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "selenium is not installed (pip install -e '.[test]')"
    return None


def _start_ui(store: Path, port: int) -> tuple[subprocess.Popen, str]:
    """`lightning-privacy ui --no-browser` on the store; returns it and the runs view's address it prints."""
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    env["PYTHONPATH"] = str(REPO)
    proc = subprocess.Popen([sys.executable, "-m", "lightning_privacy.cli", "ui", "--port", str(port), "--no-browser",
                             "--tracking.uri", str(store)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, env=env, start_new_session=True)
    line = ""
    while not line.startswith("MLflow UI:") and proc.poll() is None:  # printed once /health answers
        line = proc.stdout.readline()
    assert line.startswith("MLflow UI:"), f"lightning-privacy ui did not start: {line}{proc.stdout.read()[-2000:]}"
    return proc, line.split()[2]


def _stop(proc: subprocess.Popen) -> None:
    os.killpg(proc.pid, signal.SIGINT)
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)


@pytest.mark.slow
def test_mlflow_ui_in_chromium_lists_compares_and_shows_the_audit_plots(in_tmp):
    missing = _browser_missing()
    if missing:
        pytest.skip(missing)
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.common.exceptions import TimeoutException
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.actions.wheel_input import ScrollOrigin
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support import expected_conditions as EC
    from selenium.webdriver.support.ui import WebDriverWait

    short = ["--trainer.max_epochs", "1", "--trainer.limit_train_batches", "2", "--audit.membership.bootstrap", "10"]
    for defense, (_, _, values) in DEFENSES.items():
        main(["fit", "--config", QUICKSTART, "--config", str(REPO / "conf" / "defense" / f"{defense}.yaml"),
              *values, *short])
    client = mlflow.MlflowClient(f"sqlite:///{in_tmp / 'mlruns' / 'mlflow.db'}")
    runs = client.search_runs([client.get_experiment_by_name("lightning-privacy").experiment_id])
    assert len(runs) == 2 and all(r.info.status == "FINISHED" for r in runs)
    by_name = {r.info.run_name: r for r in runs}
    assert set(by_name) == {"quickstart Reg", "quickstart RelaxLoss"}

    shots = in_tmp / "screenshots"
    shots.mkdir()
    print(f"\nMLflow UI screenshots: {shots}")
    proc, url = _start_ui(in_tmp / "mlruns", free_port())
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)  # selenium's driver manager would try to download a browser
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu", "--window-size=2400,1200"):
        options.add_argument(arg)
    driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)
    wait = WebDriverWait(driver, 90)

    def visible_text(text: str) -> object:
        return wait.until(EC.presence_of_element_located((By.XPATH, f"//*[normalize-space(text())={json.dumps(text)}]")))

    def click(xpath: str, ready: object = EC.element_to_be_clickable) -> None:
        element = wait.until(ready((By.XPATH, xpath)))
        driver.execute_script("arguments[0].scrollIntoView({block: 'center'});", element)
        element.click()

    try:
        # 1. The experiment's runs view lists both runs; the metrics and the key-hyperparameter tags are columns.
        driver.get(url)
        for name in by_name:
            visible_text(name)
        for close in driver.find_elements(By.XPATH, "//button[@aria-label='Close']"):  # the assistant's side panel
            if close.is_displayed():
                close.click()
        for column in (*METRICS, *(tag for tag, _, _ in DEFENSES.values())):
            click("//button[normalize-space()='Columns']")
            click(f"//span[contains(@class, 'tree-title') and normalize-space()={json.dumps(column)}]")
            driver.find_element(By.TAG_NAME, "body").send_keys(Keys.ESCAPE)
            kind = "tags" if column.startswith("hp.") else "metrics"
            wait.until(EC.presence_of_element_located((By.XPATH, f"//*[@col-id='{kind}.`{column}`']")))
        driver.save_screenshot(str(shots / "runs.png"))
        for name, run in by_name.items():
            row = driver.find_element(By.XPATH, f"//a[normalize-space()={json.dumps(name)}]/ancestor::div[@role='row']")
            row_id = row.get_attribute("row-id")
            assert row_id == run.info.run_id

            def cell(col: str) -> str:
                return driver.find_element(By.XPATH, f"//div[@role='row' and @row-id='{row_id}']"
                                                     f"//div[@col-id='{col}']").text.strip()

            for metric in METRICS:
                assert float(cell(f"metrics.`{metric}`")) == pytest.approx(run.data.metrics[metric], rel=1e-6), metric
            for tag, value, _ in DEFENSES.values():
                expected = value if tag in run.data.tags else "-"  # each run shows its own defense's key
                assert cell(f"tags.`{tag}`") == expected, (name, tag)

        # 2. The compare view of the two: the metrics side by side, in the order of its run columns.
        click("//input[@aria-label='Select all runs']", EC.presence_of_element_located)  # ag-grid's styled checkbox
        click("//button[normalize-space()='Compare']")
        visible_text("Comparing 2 Runs from 1 Experiment")
        header = "//tr[th[normalize-space()='Run ID:']]/th/a"  # the run columns, left to right
        wait.until(EC.presence_of_element_located((By.XPATH, header)))
        order = [a.text.strip() for a in driver.find_elements(By.XPATH, header)]
        assert sorted(order) == sorted(r.info.run_id for r in runs)
        wait.until(EC.presence_of_element_located((By.XPATH, "//a[@title='Plot chart']")))

        def compare_row(metric: str) -> list[str] | None:
            """Wheel down the metric table from its top until the metric's row shows with a cell per run."""
            driver.refresh()  # back to the table's top
            wait.until(EC.presence_of_element_located((By.XPATH, "//a[@title='Plot chart']")))
            values = driver.execute_script(VALUES_GRID_JS)
            for _ in range(int(values.get_attribute("scrollHeight")) // 250 + 6):  # + a few at the bottom
                time.sleep(0.3)  # the grids render the rows scrolled into view
                if driver.execute_script(ROW_JS, metric, 0) is not None:  # the name is in view: wait for its cells
                    return WebDriverWait(driver, 10).until(lambda d: d.execute_script(ROW_JS, metric, len(runs)))
                ActionChains(driver).scroll_from_origin(ScrollOrigin.from_element(values), 0, 250).perform()
            return None

        runs_by_id = {r.info.run_id: r for r in runs}
        for metric in METRICS:
            found = compare_row(metric)
            assert found is not None, f"{metric} is not in the compare view"
            shown = [float(v) for v in found]
            assert shown == [pytest.approx(runs_by_id[i].data.metrics[metric], abs=6e-4) for i in order], metric
        time.sleep(1)  # the names grid follows the values grid's scroll
        driver.save_screenshot(str(shots / "compare.png"))

        # 3. A run's artifacts list the audit plots, and the plot previews as an image.
        run = by_name["quickstart Reg"]
        driver.get(url.replace("/runs", f"/runs/{run.info.run_id}/artifacts"))
        click("//*[normalize-space(text())='audit']")
        for plot in AUDIT_PLOTS:
            visible_text(plot)
        click(f"//*[normalize-space(text())='{AUDIT_PLOTS[1]}']")
        wait.until(lambda d: any(d.execute_script("return arguments[0].complete && arguments[0].naturalWidth", img)
                                 for img in d.find_elements(By.XPATH, "//img[starts-with(@src, 'blob:')]")))
        driver.save_screenshot(str(shots / "artifacts.png"))
    except Exception:
        driver.save_screenshot(str(shots / "failure.png"))
        (shots / "failure.html").write_text(driver.page_source)
        raise
    finally:
        driver.quit()
        _stop(proc)
    assert {p.name for p in shots.iterdir()} == {"runs.png", "compare.png", "artifacts.png"}

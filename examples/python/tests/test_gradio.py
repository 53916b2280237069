"""The Gradio code runner driving sandpit, opened and used in headless
Chromium (Debian's chromium and chromedriver, through selenium): type code
into the page, click Run, read the sandbox's output on the page."""

import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from urllib.parse import urlparse

import pytest
from conftest import EXAMPLES, WORK, free_port

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"


@pytest.fixture
def browser(gradio_app):
    """Chromium on the Gradio app's page, in a network namespace of its own
    (netns_browser.py says why), through Debian's chromedriver."""
    if not (os.access(CHROMIUM, os.X_OK) and os.access(CHROMEDRIVER, os.X_OK)):
        pytest.fail("Debian's chromium and chromium-driver are missing: run `make setup`")
    from selenium import webdriver

    import netns_browser

    profile = tempfile.mkdtemp(prefix="pyex-chromium-")
    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--disable-dev-shm-usage", f"--user-data-dir={profile}", "--window-size=1200,1400",
                 # The page may name web fonts or CDNs: nothing but loopback is reached.
                 "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1"):
        opts.add_argument(flag)
    opts.page_load_strategy = "eager"
    # The page's console, for the report when something does not come up.
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    bridges = tempfile.mkdtemp(prefix="pyex-netns-")
    try:
        with netns_browser.start(Path(bridges), urlparse(gradio_app).port, CHROMEDRIVER) as url:
            driver = webdriver.Remote(command_executor=url, options=opts)
            try:
                yield driver
            finally:
                driver.quit()
    finally:
        shutil.rmtree(profile, ignore_errors=True)
        shutil.rmtree(bridges, ignore_errors=True)


@pytest.fixture
def gradio_app(server):
    port = free_port()
    env = server.env(GRADIO_SERVER_NAME="127.0.0.1", GRADIO_SERVER_PORT=str(port),
                     GRADIO_ANALYTICS_ENABLED="False", PYTHONUNBUFFERED="1")
    log = open(WORK / "gradio.log", "w+")
    proc = subprocess.Popen([sys.executable, str(EXAMPLES / "gradio_runner.py")], env=env, cwd=EXAMPLES,
                            stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}/"
    deadline = time.monotonic() + 120
    while True:
        if proc.poll() is not None:
            log.seek(0)
            pytest.fail(f"gradio_runner.py exited {proc.returncode}:\n{log.read()}")
        try:
            with urllib.request.urlopen(url, timeout=2):
                break
        except OSError:
            pass
        if time.monotonic() > deadline:
            proc.kill()
            log.seek(0)
            pytest.fail(f"gradio_runner.py did not serve {url} within 120s:\n{log.read()}")
        time.sleep(0.2)
    yield url
    proc.terminate()
    try:
        proc.wait(20)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
    log.close()


def test_gradio_code_runner_in_chromium(server, gradio_app, browser):
    from selenium.common.exceptions import TimeoutException
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    from conftest import assert_no_sandboxes

    def until(condition, what, timeout=300):
        try:
            return WebDriverWait(browser, timeout).until(condition)
        except TimeoutException:
            browser.save_screenshot(str(WORK / "gradio-failed.png"))
            (WORK / "gradio-failed.html").write_text(browser.page_source)
            log = (WORK / "gradio.log").read_text(errors="replace")
            console = browser.execute("getLog", {"type": "browser"})["value"]
            pytest.fail(f"waited {timeout}s for {what}; page: {WORK}/gradio-failed.png\n"
                        f"--- the page's console ---\n{console}\n--- gradio log ---\n{log}")

    def run_and_read(expect):
        """Clicks Run and returns the output once it contains expect. A click
        that lands before the page's handlers are wired changes nothing on
        the page: click again then."""
        output = browser.find_element(By.ID, "output")
        for _ in range(3):
            before = output.get_attribute("innerHTML")
            browser.find_element(By.ID, "run").click()
            try:
                WebDriverWait(browser, 20).until(lambda d: output.get_attribute("innerHTML") != before)
                break
            except TimeoutException:
                continue
        area = output.find_element(By.TAG_NAME, "textarea")
        until(lambda d: expect in area.get_attribute("value"), f"{expect!r} in the output")
        return area.get_attribute("value")

    browser.get(gradio_app)
    code = until(lambda d: d.find_element(By.CSS_SELECTOR, "#code textarea"), "the code box")

    # The example already in the box: a matplotlib chart comes back as a PNG.
    assert run_and_read("plotted") == "plotted\n"
    until(lambda d: d.find_element(By.CSS_SELECTOR, "#chart img"), "the chart")
    # Gradio renders the chart as <img loading="lazy">: the browser fetches
    # it only once it is near the viewport, which depends on the page's
    # layout, so bring it into view as a reader would. Look the element up
    # on each poll: Gradio may render it again.
    loaded = """const img = document.querySelector('#chart img');
                if (!img) return null;
                img.scrollIntoView({block: 'center'});
                return img.complete && img.naturalWidth > 0 ? img.naturalWidth : null;"""
    try:
        until(lambda d: d.execute_script(loaded), "the chart image to load", 60)
    except BaseException:
        img = browser.find_elements(By.CSS_SELECTOR, "#chart img")
        src = img[0].get_attribute("src") if img else None
        print("chart image:", img[0].get_attribute("outerHTML") if img else "gone", file=sys.stderr)
        if src:
            try:
                with urllib.request.urlopen(src, timeout=10) as resp:
                    print(f"GET {src}: {resp.status}, {len(resp.read())} bytes", file=sys.stderr)
            except OSError as err:
                print(f"GET {src}: {err}", file=sys.stderr)
        raise
    browser.save_screenshot(str(WORK / "gradio-chart.png"))

    # Type new code, run it, read the sandbox's output on the page. Code
    # runs as root, as in E2B's code-interpreter template.
    code.clear()
    code.send_keys("import os, platform\n"
                   "print('hello from', platform.system(), 'as', os.environ['USER'])\n"
                   "sum(range(10))")
    assert run_and_read("hello from") == "hello from Linux as root\n\nresult: 45"
    browser.save_screenshot(str(WORK / "gradio.png"))

    # An error shows on the page too.
    code.clear()
    code.send_keys("1 / 0")
    assert run_and_read("ZeroDivisionError") == "ZeroDivisionError: division by zero"

    assert_no_sandboxes(server)

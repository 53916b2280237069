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

import pytest
from conftest import EXAMPLES, WORK, free_port

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"


@pytest.fixture
def browser():
    if not (os.access(CHROMIUM, os.X_OK) and os.access(CHROMEDRIVER, os.X_OK)):
        pytest.fail("Debian's chromium and chromium-driver are missing: run `make setup`")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

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
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=opts)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


@pytest.fixture
def gradio_app(server):
    port = free_port()
    env = server.env(GRADIO_SERVER_NAME="127.0.0.1", GRADIO_SERVER_PORT=str(port),
                     GRADIO_ANALYTICS_ENABLED="False")
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
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    from conftest import assert_no_sandboxes

    browser.get(gradio_app)
    wait = WebDriverWait(browser, 120)
    code = wait.until(lambda d: d.find_element(By.CSS_SELECTOR, "#code textarea"))
    output = browser.find_element(By.CSS_SELECTOR, "#output textarea")

    # The example already in the box: a matplotlib chart comes back as a PNG.
    browser.find_element(By.ID, "run").click()
    wait.until(lambda d: "plotted" in output.get_attribute("value"))
    img = wait.until(lambda d: d.find_element(By.CSS_SELECTOR, "#chart img"))
    assert img.get_attribute("naturalWidth") not in (None, "0"), "the chart image did not load"
    browser.save_screenshot(str(WORK / "gradio-chart.png"))

    # Type new code, run it, read the sandbox's output on the page.
    code.clear()
    code.send_keys("import os, platform\n"
                   "print('hello from', platform.system(), 'as', os.environ['USER'])\n"
                   "sum(range(10))")
    browser.find_element(By.ID, "run").click()
    wait.until(lambda d: "hello from" in output.get_attribute("value"))
    browser.save_screenshot(str(WORK / "gradio.png"))
    assert output.get_attribute("value") == "hello from Linux as user\n\nresult: 45"

    # An error shows on the page too.
    code.clear()
    code.send_keys("1 / 0")
    browser.find_element(By.ID, "run").click()
    wait.until(lambda d: "ZeroDivisionError" in output.get_attribute("value"))
    assert output.get_attribute("value") == "ZeroDivisionError: division by zero"

    assert_no_sandboxes(server)

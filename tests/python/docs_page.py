"""The /docs page in a real browser (Debian's chromium through WebDriver):
it lists every operation of /openapi.json, breaks no rule of its content
security policy, and runs one request from the page ("Try it out") with
an API key, getting 200.

    python docs_page.py <gateway base url> <api key>
"""

import json
import sys
import urllib.request

from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

METHODS = {"get", "post", "put", "patch", "delete"}


def browser():
    options = webdriver.ChromeOptions()
    options.binary_location = "/usr/bin/chromium"
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1400,1000"):
        options.add_argument(argument)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    return webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=options)


def main(base, key):
    document = json.load(urllib.request.urlopen(base + "/openapi.json"))
    expected = {
        (method, path) for path, item in document["paths"].items() for method in item if method in METHODS
    }
    driver = browser()
    try:
        driver.get(base + "/docs")
        wait = WebDriverWait(driver, 60)
        wait.until(lambda d: len(d.find_elements(By.CSS_SELECTOR, ".opblock")) >= len(expected))
        listed = set()
        for block in driver.find_elements(By.CSS_SELECTOR, ".opblock"):
            method = block.find_element(By.CSS_SELECTOR, ".opblock-summary-method").text.strip().lower()
            path = block.find_element(By.CSS_SELECTOR, ".opblock-summary-path").get_attribute("data-path")
            listed.add((method, path))
        missing = expected - listed
        if missing:
            sys.exit(f"the page does not list {sorted(missing)}")

        # Authorize as a user would, with the API key scheme.
        driver.find_element(By.CSS_SELECTOR, ".auth-wrapper .authorize").click()
        wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, ".modal-ux .auth-container"))
        for container in driver.find_elements(By.CSS_SELECTOR, ".modal-ux .auth-container"):
            if "ApiKey" in container.text:
                container.find_element(By.CSS_SELECTOR, "input").send_keys(key)
                container.find_element(By.CSS_SELECTOR, "button.authorize").click()
                break
        else:
            sys.exit("the Authorize dialog offers no ApiKey scheme")
        driver.find_element(By.CSS_SELECTOR, ".modal-ux .btn-done").click()

        operation = driver.find_element(By.ID, "operations-ConversationService-ListConversations")
        operation.find_element(By.CSS_SELECTOR, ".opblock-summary-control").click()
        wait.until(lambda d: operation.find_elements(By.CSS_SELECTOR, ".try-out__btn"))
        operation.find_element(By.CSS_SELECTOR, ".try-out__btn").click()
        wait.until(lambda d: operation.find_elements(By.CSS_SELECTOR, ".execute"))
        operation.find_element(By.CSS_SELECTOR, ".execute").click()
        status = wait.until(
            lambda d: [
                cell.text.strip()
                for cell in operation.find_elements(By.CSS_SELECTOR, ".live-responses-table tbody .response-col_status")
                if cell.text.strip()
            ]
        )
        if status[0] != "200":
            sys.exit(f"Try it out answered {status[0]}")
        refused = [
            entry["message"]
            for entry in driver.get_log("browser")
            if "Content Security Policy" in entry["message"] or entry["level"] == "SEVERE"
        ]
        if refused:
            sys.exit("the page broke in the browser:\n" + "\n".join(refused))
        print(f"/docs lists {len(listed)} operations; Try it out on ListConversations answered {status[0]}")
    finally:
        driver.quit()


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])

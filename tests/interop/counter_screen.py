"""The counter screen in a real headless browser (Debian's chromium, driven
through chromedriver by Selenium): scan a product, see the line and the
total, pay cash, see the change and the receipt listed.

Environment: AGENT_URL (the agent's http://127.0.0.1:PORT), SKU, EAN,
EXPECT_TOTAL (the basket total after one SKU and one EAN, e.g. "5.50"),
CHROMIUM (default /usr/bin/chromium), CHROMEDRIVER (default /usr/bin/chromedriver).
"""
import os
import sys

from selenium import webdriver
from selenium.common.exceptions import StaleElementReferenceException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions as EC
from selenium.webdriver.support.ui import WebDriverWait

url = os.environ["AGENT_URL"]
sku = os.environ["SKU"]
ean = os.environ["EAN"]
expect_total = os.environ["EXPECT_TOTAL"]

opts = webdriver.ChromeOptions()
opts.binary_location = os.environ.get("CHROMIUM", "/usr/bin/chromium")
for a in ["--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu"]:
    opts.add_argument(a)
service = Service(executable_path=os.environ.get("CHROMEDRIVER", "/usr/bin/chromedriver"))
driver = webdriver.Chrome(service=service, options=opts)
# Generous: CI machines are shared and a cold chromium is slow.
wait = WebDriverWait(driver, 30)


def check(cond, what):
    if not cond:
        print("FAILED:", what)
        print(driver.page_source[:4000])
        driver.quit()
        sys.exit(1)


try:
    driver.get(url + "/")
    wait.until(EC.text_to_be_present_in_element((By.ID, "gateway-state"), "online"))

    # A keyboard-wedge scanner types the code and Enter into the focused field.
    scan = driver.find_element(By.ID, "scan")
    scan.send_keys(sku + "\n")
    wait.until(EC.presence_of_element_located((By.CSS_SELECTOR, f'#basket tr[data-sku="{sku}"]')))
    scan = driver.find_element(By.ID, "scan")
    scan.send_keys(ean + "\n")
    wait.until(EC.presence_of_element_located((By.CSS_SELECTOR, f'#basket tr[data-sku="{ean}"]')))
    wait.until(EC.text_to_be_present_in_element((By.ID, "total"), "¥" + expect_total))
    rows = driver.find_elements(By.CSS_SELECTOR, "#basket tr")
    check(len(rows) == 2, f"two basket lines, saw {len(rows)}")

    # A bad code is refused on screen, the basket unchanged.
    scan = driver.find_element(By.ID, "scan")
    scan.send_keys("NO SUCH THING!\n")
    wait.until(lambda d: d.find_element(By.ID, "message").get_attribute("class") == "error")
    check(len(driver.find_elements(By.CSS_SELECTOR, "#basket tr")) == 2, "basket unchanged")

    driver.find_element(By.ID, "tendered").send_keys("20")
    driver.find_element(By.ID, "pay-cash").click()
    wait.until(EC.text_to_be_present_in_element((By.ID, "message"), "找零"))
    msg = driver.find_element(By.ID, "message").text
    change = "%.2f" % (20 - float(expect_total))  # display check only; money is never float in the product
    check(change in msg, f"change {change} in {msg!r}")
    wait.until(EC.presence_of_element_located((By.CSS_SELECTOR, '#sales tr[data-local-no="1"]')))
    sale_row = driver.find_element(By.CSS_SELECTOR, '#sales tr[data-local-no="1"]').text
    check(expect_total in sale_row, f"total in the receipt row {sale_row!r}")
    wait.until(EC.text_to_be_present_in_element((By.ID, "total"), "¥0.00"))
    check(not driver.find_elements(By.CSS_SELECTOR, "#basket tr"), "basket emptied")

    # The reprint button answers (a reprint of a receipt the ledger holds).
    # The sales table is redrawn as the sale's state changes (queued →
    # uploaded): find the button again if it was replaced under the click.
    for attempt in range(20):
        try:
            driver.find_element(By.CSS_SELECTOR, '#sales tr[data-local-no="1"] button').click()
            break
        except StaleElementReferenceException:
            if attempt == 19:
                raise
    wait.until(EC.text_to_be_present_in_element((By.ID, "message"), "reprint"))
    print("counter screen: all checks passed")
finally:
    driver.quit()

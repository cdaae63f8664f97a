"""The store board in a real headless browser (Debian's chromium, driven
through chromedriver by Selenium), run by tests/tests/board.rs: the key is
asked once, a platform order appears, accepting it moves it, a platform
cancellation shows at once, and after a gateway restart the board catches up
with an order that arrived while it was cut off.

The test acts as the platform and runs the gateway: a line `CMD <command>` on
standard output, answered by one JSON line on standard input.

Environment: BOARD_URL (http://127.0.0.1:PORT/board/S001), KEY (a terminal
key of the store), SCREENSHOT (where to write the PNG), CHROMIUM (default
/usr/bin/chromium), CHROMEDRIVER (default /usr/bin/chromedriver).
"""
import json
import os
import sys
import time

from selenium import webdriver
from selenium.common.exceptions import StaleElementReferenceException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions as EC
from selenium.webdriver.support.ui import WebDriverWait

url = os.environ["BOARD_URL"]
key = os.environ["KEY"]
screenshot = os.environ["SCREENSHOT"]


def say(*a):
    print(*a, flush=True)


def cmd(*words):
    say("CMD", *words)
    answer = json.loads(sys.stdin.readline())
    if "error" in answer:
        raise SystemExit("the test refused: " + answer["error"])
    return answer


opts = webdriver.ChromeOptions()
opts.binary_location = os.environ.get("CHROMIUM", "/usr/bin/chromium")
for a in ["--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
          "--window-size=1280,720", "--lang=zh-CN"]:
    opts.add_argument(a)
service = Service(executable_path=os.environ.get("CHROMEDRIVER", "/usr/bin/chromedriver"))
driver = webdriver.Chrome(service=service, options=opts)


def check(cond, what):
    if not cond:
        say("FAILED:", what)
        say(driver.page_source[:20000])
        for entry in driver.get_log("browser"):
            say("console:", entry)
        driver.quit()
        sys.exit(1)


def card(order_id):
    return f'.card[data-channel-order-id="{order_id}"]'


def in_column(status, order_id):
    return (By.CSS_SELECTOR, f"#col-{status} {card(order_id)}")


def conn_state(state):
    return lambda d: d.find_element(By.ID, "conn").get_attribute("data-state") == state


def press(selector):
    """Clicks the button at `selector`, found again if the board redrew it meanwhile."""
    for _ in range(20):
        try:
            driver.find_element(By.CSS_SELECTOR, selector).click()
            return
        except StaleElementReferenceException:
            time.sleep(0.05)
    check(False, f"{selector} kept being redrawn")


def until(cond, what, timeout=15):
    try:
        # A card the board redrew between finding and reading it: look again.
        WebDriverWait(driver, timeout, poll_frequency=0.02,
                      ignored_exceptions=[StaleElementReferenceException]).until(cond)
    except Exception:
        check(False, what)


try:
    # Thresholds short enough to see the timer change colour in the test.
    driver.get(url + "?warn=2&late=4")
    until(EC.visibility_of_element_located((By.ID, "login")), "the key is asked for")

    # A wrong key is refused on screen and asked for again.
    driver.find_element(By.ID, "key").send_keys("gk_not_a_key\n")
    until(EC.text_to_be_present_in_element((By.ID, "login-msg"), "密钥无效"), "a wrong key refused")
    driver.find_element(By.ID, "key").send_keys(key + "\n")
    until(conn_state("online"), "online with the terminal key")
    check(not driver.find_element(By.ID, "login").is_displayed(), "the key dialog closed")

    # The key is kept: a reload goes straight back online.
    driver.refresh()
    until(conn_state("online"), "online again after a reload, no key asked")
    check(not driver.find_element(By.ID, "login").is_displayed(), "no key asked after a reload")

    # Sound is off until a tap, and says so.
    sound = driver.find_element(By.ID, "sound")
    check(sound.get_attribute("data-state") == "off", "sound off before a tap")
    sound.click()
    until(lambda d: d.find_element(By.ID, "sound").get_attribute("data-state") == "on", "sound on after a tap")

    # 1. A platform order appears, flagged loudly.
    t0 = time.monotonic()
    first = cmd("push")
    check(first["status"] == 200, f"push answered {first}")
    until(EC.presence_of_element_located(in_column("created", first["order_id"])), "the pushed order on the board")
    seen_ms = (time.monotonic() - t0) * 1000
    say(f"board: platform order on screen {seen_ms:.0f} ms after the push was sent")
    check(seen_ms < 5000, f"on screen within 5 s (took {seen_ms:.0f} ms)")
    # The board may redraw the card at any moment (a later feed event):
    # read it through until(), which looks again at a stale element.
    until(lambda d: "美团" in d.find_element(By.CSS_SELECTOR, card(first["order_id"])).text,
          "the platform's label on the card")
    label = f"美团 #{first['day_seq']}"
    until(lambda d: label in d.find_element(By.CSS_SELECTOR, card(first["order_id"])).text,
          f"the platform's own number {label!r} on the card")
    seen = {}
    until(lambda d: seen.update(no=d.find_element(By.CSS_SELECTOR, f"{card(first['order_id'])} .no").text)
          or seen["no"], "the card's display number")
    no = seen["no"]
    until(EC.visibility_of_element_located((By.ID, "alert")), "the unconfirmed-order alert")
    check(no in driver.find_element(By.ID, "alert").text, "the alert names the order")
    until(lambda d: "age-warn" in d.find_element(By.CSS_SELECTOR, card(first["order_id"])).get_attribute("class")
          or "age-late" in d.find_element(By.CSS_SELECTOR, card(first["order_id"])).get_attribute("class"),
          "the timer turns colour past ?warn=2", 10)

    # 2. Accept: the card moves, the alert goes, the platform hears of it.
    t0 = time.monotonic()
    press(f"{card(first['order_id'])} button.accept")
    until(EC.presence_of_element_located(in_column("accepted", first["order_id"])), "accepted on the board")
    until(EC.invisibility_of_element_located((By.ID, "alert")), "the alert gone once accepted")
    deadline = time.monotonic() + 10
    while "order/confirm" not in cmd("calls")["calls"]:
        check(time.monotonic() < deadline, "the platform got order/confirm within 10 s")
        time.sleep(0.1)
    say(f"board: accept pressed to platform confirm {(time.monotonic() - t0) * 1000:.0f} ms")

    # 3. A platform cancellation shows at once.
    second = cmd("push")
    until(EC.presence_of_element_located(in_column("created", second["order_id"])), "the second order")
    t0 = time.monotonic()
    check(cmd("cancel", second["order_id"])["status"] == 200, "cancel push answered")
    until(EC.presence_of_element_located(in_column("cancelled", second["order_id"])), "cancelled on the board")
    until(EC.visibility_of_element_located((By.ID, "notice")), "the cancellation notice")
    check("美团平台已取消" in driver.find_element(By.ID, "notice").text, "the notice says who cancelled")
    say(f"board: platform cancellation on screen {(time.monotonic() - t0) * 1000:.0f} ms after the push")

    # 4. The gateway restarts; an order arrives while the board is cut off
    # (the browser held offline until the order is in, so it can only come
    # from resuming the feed).
    cmd("stop")
    until(lambda d: d.find_element(By.ID, "conn").get_attribute("data-state") != "online", "offline shown", 20)
    say("board: shows", driver.find_element(By.ID, "conn").text)
    driver.set_network_conditions(offline=True, latency=0, download_throughput=-1, upload_throughput=-1)
    down = cmd("push")
    check(down["status"] == 0, f"nobody answers while the gateway is down: {down}")
    cmd("start")
    retry = cmd("push", down["order_id"])  # the platform sends it again
    check(retry["status"] == 200, f"the retried push accepted: {retry}")
    time.sleep(1.0)
    check(not driver.find_elements(By.CSS_SELECTOR, card(down["order_id"])), "not seen while offline")
    driver.set_network_conditions(offline=False, latency=0, download_throughput=-1, upload_throughput=-1)
    t0 = time.monotonic()
    until(EC.presence_of_element_located(in_column("created", down["order_id"])), "caught up after the restart", 20)
    until(conn_state("online"), "online after the restart")
    say(f"board: caught up {(time.monotonic() - t0) * 1000:.0f} ms after the network came back")
    check(driver.find_elements(*in_column("accepted", first["order_id"])), "the first order still accepted")
    check(driver.find_elements(*in_column("cancelled", second["order_id"])), "the second still cancelled")

    # 5. Ready, complete, recall.
    press(f"{card(first['order_id'])} button.ready")
    until(EC.presence_of_element_located(in_column("ready", first["order_id"])), "ready")
    press(f"{card(first['order_id'])} button.complete")
    until(EC.presence_of_element_located(in_column("completed", first["order_id"])), "completed")
    press("#recall")
    until(EC.presence_of_element_located(in_column("ready", first["order_id"])), "recalled next to the ready ones")
    until(lambda d: "已召回" in d.find_element(By.CSS_SELECTOR, card(first["order_id"])).text, "marked recalled")

    # 6. The gateway's unconfirmed-order alert (after 3 s here) flags the waiting order.
    until(lambda d: "超时未接单" in d.find_element(By.CSS_SELECTOR, card(down["order_id"])).text,
          "the unconfirmed alert on the waiting order", 10)
    check("超时未接单" in driver.find_element(By.ID, "alert").text, "the banner says it waits too long")

    # 7. Cut off again while the feed is pruned past the board's position:
    # the stream refuses to resume (cursor_expired) and the board reloads
    # the queue instead, missing nothing.
    cmd("stop")
    until(lambda d: d.find_element(By.ID, "conn").get_attribute("data-state") != "online", "offline again", 20)
    driver.set_network_conditions(offline=True, latency=0, download_throughput=-1, upload_throughput=-1)
    cmd("start")
    fifth = cmd("push")
    check(fifth["status"] == 200, f"pushed: {fifth}")
    check(cmd("prune")["pruned"] > 0, "feed events pruned")
    driver.set_network_conditions(offline=False, latency=0, download_throughput=-1, upload_throughput=-1)
    t0 = time.monotonic()
    until(EC.presence_of_element_located(in_column("created", fifth["order_id"])), "reloaded after cursor_expired", 20)
    say(f"board: reloaded after cursor_expired {(time.monotonic() - t0) * 1000:.0f} ms after the network came back")
    until(conn_state("online"), "online after the reload")
    check(driver.find_elements(*in_column("created", down["order_id"])), "the waiting order still there")
    check(driver.find_elements(*in_column("ready", first["order_id"])), "the recalled order still shown")

    # One more in the kitchen, for the screenshot.
    fourth = cmd("push")
    until(EC.presence_of_element_located(in_column("created", fourth["order_id"])), "a fourth order")
    press(f"{card(fourth['order_id'])} button.accept")
    until(EC.presence_of_element_located(in_column("accepted", fourth["order_id"])), "the fourth accepted")

    driver.execute_script("document.querySelectorAll('.col').forEach((c) => { c.scrollTop = 0; })")
    time.sleep(0.3)
    driver.save_screenshot(screenshot)
    check(os.path.getsize(screenshot) > 10000, "a screenshot with something on it")
    say("board: all checks passed")
finally:
    driver.quit()

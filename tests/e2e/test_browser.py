"""The web UI in a real browser: headless Chromium (Debian's) driven by Selenium. Submit a fixture
from the form, watch it become searchable, search, click the result; screenshots are kept in
tests/artifacts/."""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.e2e

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"
ARTIFACTS = Path(__file__).resolve().parents[1] / "artifacts"


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    if not (Path(CHROMIUM).exists() and Path(CHROMEDRIVER).exists()):
        pytest.skip("Chromium and ChromeDriver are not installed (apt-get install chromium chromium-driver)")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-quic",
                 "--window-size=1280,1000", f"--user-data-dir={tmp_path_factory.mktemp('chromium')}"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(30)
    ARTIFACTS.mkdir(exist_ok=True)
    yield driver
    driver.quit()


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    """A stack of the browser tests' own, so that what they index does not change other tests' answers."""
    from tests.e2e.conftest import RunningStack

    running = RunningStack(tmp_path_factory.mktemp("ui"))
    yield running
    running.stop()


def wait_until(check, timeout_s: float = 120, every_s: float = 0.5):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        found = check()
        if found:
            return found
        time.sleep(every_s)
    raise AssertionError("the page never showed what the test waited for")


def sign_in(browser, stack, key: str) -> None:
    from selenium.webdriver.common.by import By

    browser.get(stack.url + "/")
    if browser.find_elements(By.NAME, "key"):
        field = browser.find_element(By.NAME, "key")
        field.send_keys(key)
        field.submit()

        def answered():  # signed in (no key field any more), or refused (the sign-in page with an alert)
            loaded = browser.execute_script("return document.readyState") == "complete"
            return loaded and (not browser.find_elements(By.NAME, "key")
                               or browser.find_elements(By.CSS_SELECTOR, "[role=alert]"))

        wait_until(answered)


def test_the_home_page_asks_for_an_api_key_and_refuses_a_wrong_one(browser, stack):
    from selenium.webdriver.common.by import By

    browser.delete_all_cookies()
    browser.get(stack.url + "/")
    assert "Sign in" in browser.page_source and not browser.find_elements(By.NAME, "url")
    sign_in(browser, stack, "not-the-key-" + "x" * 20)
    assert "not valid" in wait_until(lambda: browser.find_elements(By.CSS_SELECTOR, "[role=alert]"))[0].text
    browser.save_screenshot(str(ARTIFACTS / "signin.png"))
    sign_in(browser, stack, stack.api_key)
    wait_until(lambda: browser.find_elements(By.NAME, "url"))  # signed in: the form to index a URL
    cookie = browser.get_cookie("allthethings_key")
    assert cookie["httpOnly"] and cookie["sameSite"] == "Strict"


def test_submit_watch_search_and_open_a_result(browser, stack, fixture_server):
    from selenium.webdriver.common.by import By

    url = f"{fixture_server}/html/wikipedia/source.html?from=browser"
    sign_in(browser, stack, stack.api_key)
    browser.get(stack.url + "/")
    field = browser.find_element(By.NAME, "url")
    field.send_keys(url)
    field.submit()  # returns once the form is sent, not when its answer (a redirect home) has loaded
    wait_until(lambda: browser.execute_script("return document.readyState") == "complete"
               and url in browser.page_source)
    assert browser.current_url.rstrip("/") == stack.url

    def searchable_row():  # no reload: the page's script updates the status in place
        for row in browser.find_elements(By.CSS_SELECTOR, "tbody tr"):
            if url in row.get_attribute("innerHTML") and "SEARCHABLE" in row.text:
                return row
        return None

    page = browser.find_element(By.TAG_NAME, "html")
    wait_until(searchable_row)
    assert page.is_displayed(), "the same page, not a reloaded one (a stale element would raise)"
    browser.save_screenshot(str(ARTIFACTS / "home.png"))

    box = browser.find_element(By.NAME, "query")
    box.send_keys("Which organisation makes the Firefox browser?")
    box.submit()
    wait_until(lambda: "Results for" in browser.page_source)
    results = browser.find_elements(By.CSS_SELECTOR, ".result")
    assert results, "the results page lists results"
    first_link = results[0].find_element(By.TAG_NAME, "a")
    assert "wikipedia" in first_link.get_attribute("href")
    assert results[0].find_elements(By.CSS_SELECTOR, "mark"), "the query's words are marked"
    browser.save_screenshot(str(ARTIFACTS / "search.png"))
    first_link.click()
    wait_until(lambda: "wikipedia/source.html" in browser.current_url)
    assert "Mozilla" in browser.title


def test_a_recording_result_has_a_player_that_starts_at_the_matching_second(browser, stack, fixture_server):
    from selenium.webdriver.common.by import By

    asset = stack.http.post("/api/assets", json={"url": f"{fixture_server}/jfk.flac"}).json()
    stack.wait_for(asset["id"])
    sign_in(browser, stack, stack.api_key)
    browser.get(f"{stack.url}/search?query=ask+what+you+can+do+for+your+country&kind=audio")
    player = wait_until(lambda: browser.find_elements(By.CSS_SELECTOR, "audio.player"))[0]
    assert "jfk.flac#t=" in player.get_attribute("src")
    assert browser.find_element(By.CSS_SELECTOR, "input[name=kind][value=audio]").is_selected()
    browser.save_screenshot(str(ARTIFACTS / "audio-result.png"))


def test_an_asset_is_deleted_from_its_row(browser, stack, fixture_server):
    from selenium.webdriver.common.by import By

    sign_in(browser, stack, stack.api_key)
    doc = stack.http.post("/api/assets", json={"url": f"{fixture_server}/text/sourdough.md?row=1"}).json()
    stack.wait_for(doc["id"])
    browser.get(stack.url + "/")
    row = browser.find_element(By.CSS_SELECTOR, f"tr[data-id='{doc['id']}']")
    assert not row.find_elements(By.XPATH, ".//button[text()='Retry']"), "a searchable asset has nothing to retry"
    browser.execute_script("window.confirm = function () { return true; };")
    row.find_element(By.XPATH, ".//button[text()='Delete']").click()
    wait_until(lambda: not browser.find_elements(By.CSS_SELECTOR, f"tr[data-id='{doc['id']}']"))
    assert stack.http.get(f"/api/assets/{doc['id']}").status_code == 404


def test_the_list_filters_by_text_and_a_row_opens_its_asset_page(browser, stack, fixture_server):
    from selenium.webdriver.common.by import By

    sign_in(browser, stack, stack.api_key)
    doc = stack.http.post("/api/assets", json={"url": f"{fixture_server}/text/sourdough.md?row=2"}).json()
    stack.wait_for(doc["id"])
    browser.get(stack.url + "/")
    box = browser.find_element(By.NAME, "q")
    box.send_keys("SOURDOUGH.MD?ROW=2")
    box.submit()
    wait_until(lambda: "q=SOURDOUGH" in browser.current_url
               and browser.execute_script("return document.readyState") == "complete")
    rows = browser.find_elements(By.CSS_SELECTOR, "tbody tr[data-id]")
    assert [r.get_attribute("data-id") for r in rows] == [doc["id"]], "only the matching asset is listed"
    rows[0].find_element(By.CSS_SELECTOR, f"a[href='/assets/{doc['id']}']").click()
    wait_until(lambda: browser.current_url.endswith(f"/assets/{doc['id']}"))
    assert browser.find_element(By.TAG_NAME, "h2").text == "Keeping a sourdough starter alive"
    assert "Feed the starter once a day" in browser.page_source and "## Feeding" not in browser.page_source
    browser.save_screenshot(str(ARTIFACTS / "asset.png"))


def test_a_document_result_shows_where_it_is_and_an_image_result_its_thumbnail(browser, stack, fixture_server):
    from selenium.webdriver.common.by import By

    pdf = stack.http.post("/api/assets", json={"url": f"{fixture_server}/pdf/multi-column-2p.pdf"}).json()
    image = stack.http.post("/api/assets", json={"url": f"{fixture_server}/images/tesseract-eurotext.png"}).json()
    assert stack.wait_for(pdf["id"])["status"] == "SEARCHABLE"
    assert stack.wait_for(image["id"], timeout_s=300)["status"] == "SEARCHABLE"
    sign_in(browser, stack, stack.api_key)

    browser.get(f"{stack.url}/search?query=dense+passage+retrieval+for+open-domain+question+answering&kind=pdf")
    where = wait_until(lambda: browser.find_elements(By.CSS_SELECTOR, ".result a.where"))[0]
    assert where.text.startswith("page ") and "multi-column-2p.pdf#page=" in where.get_attribute("href")

    browser.get(f"{stack.url}/search?query=spam+from+a+spammer%27s+e-mail+address&kind=image")
    thumb = wait_until(lambda: browser.find_elements(By.CSS_SELECTOR, ".result img.thumb"))[0]
    wait_until(lambda: browser.execute_script("return arguments[0].complete && arguments[0].naturalWidth", thumb))
    assert 0 < browser.execute_script("return arguments[0].naturalWidth", thumb) <= 320
    assert "Text in the image" in browser.find_element(By.CSS_SELECTOR, ".result .where").text
    browser.save_screenshot(str(ARTIFACTS / "image-result.png"))


@pytest.fixture
def feed_origin():
    """An RSS feed of two small pages, served on 127.0.0.1 (the local stack allows private addresses)."""
    from devstack.origin import Origin

    posts = {"/posts/lamp.html": ("Trimming the lamp", "Every evening the keeper of the Skerryvore light trimmed "
                                  "the wicks of the great lamp and polished its lenses until they shone."),
             "/posts/storm.html": ("The winter storm", "In the winter storm the Skerryvore keepers were cut off "
                                   "from the shore for six weeks, living on salted herring and ship biscuit.")}
    with Origin() as origin:
        links = [origin.put(path, (f"<!doctype html><html><head><title>{title}</title></head><body><h1>{title}</h1>"
                                   f"<p>{text}</p></body></html>").encode(), "text/html; charset=utf-8")
                 for path, (title, text) in posts.items()]
        items = "".join(f"<item><title>{title}</title><link>{link}</link><pubDate>Mon, 0{n} Jun 2026 08:00:00 GMT"
                        f"</pubDate></item>" for n, ((title, _), link) in enumerate(zip(posts.values(), links), 1))
        feed = origin.put("/feed.xml", (f'<?xml version="1.0"?><rss version="2.0"><channel><title>The Skerryvore '
                                        f"Journal</title><link>{origin.base}/</link>{items}</channel></rss>").encode(),
                          "application/rss+xml")
        yield feed, links


def test_a_feed_added_on_the_sources_page_is_indexed_found_by_its_source_and_deleted_with_its_assets(
        browser, stack, feed_origin):
    from selenium.webdriver.common.by import By

    feed, links = feed_origin
    sign_in(browser, stack, stack.api_key)
    browser.get(stack.url + "/")
    browser.find_element(By.CSS_SELECTOR, "nav a[href='/sources']").click()
    wait_until(lambda: browser.current_url.endswith("/sources")
               and browser.execute_script("return document.readyState") == "complete")
    field = browser.find_element(By.CSS_SELECTOR, "form[action='/sources'] input[name=url]")
    field.send_keys(feed)
    field.submit()
    notice = wait_until(lambda: "notice=added" in browser.current_url
                        and browser.find_elements(By.CSS_SELECTOR, "p.notice"))[0]
    assert "Added “The Skerryvore Journal”" in notice.text
    row_id = browser.find_element(By.CSS_SELECTOR, "#sources tbody tr[data-id]").get_attribute("data-id")

    def row_text() -> str:
        rows = browser.find_elements(By.CSS_SELECTOR, f"#sources tr[data-id='{row_id}']")
        return rows[0].text if rows else ""

    wait_until(lambda: "2 of 2 searchable" in row_text(), timeout_s=240)
    assert "The Skerryvore Journal" in row_text() and "0 pending · 2 submitted · 0 refused" in row_text()
    browser.save_screenshot(str(ARTIFACTS / "sources.png"))

    box = browser.find_element(By.NAME, "query")
    box.send_keys("Skerryvore keepers cut off from the shore by a winter storm")
    box.submit()
    wait_until(lambda: "Results for" in browser.page_source)
    ours = [r for r in browser.find_elements(By.CSS_SELECTOR, ".result")
            if r.find_element(By.TAG_NAME, "a").get_attribute("href") in links]
    assert ours, "the feed's pages are found"
    named = ours[0].find_element(By.CSS_SELECTOR, "a.source")
    assert named.text == "The Skerryvore Journal" and named.get_attribute("href").endswith(f"/sources#{row_id}")

    named.click()
    row = wait_until(lambda: browser.find_elements(By.CSS_SELECTOR, f"#sources tr[data-id='{row_id}']"))[0]
    row.find_element(By.CSS_SELECTOR, "input[name=assets]").click()
    browser.execute_script("window.confirm = function () { return true; };")
    row.find_element(By.XPATH, ".//button[text()='Delete']").click()
    wait_until(lambda: "notice=deleted" in browser.current_url
               and not browser.find_elements(By.CSS_SELECTOR, f"#sources tr[data-id='{row_id}']"))
    assert "The source is deleted." in browser.find_element(By.CSS_SELECTOR, "p.notice").text
    assert stack.http.get(f"/api/sources/{row_id}").status_code == 404
    assert stack.http.get("/api/assets", params={"source": row_id}).json()["assets"] == []
    assert not [a for a in stack.http.get("/api/assets", params={"q": "/posts/"}).json()["assets"]
                if a["url"] in links], "its assets are deleted too"

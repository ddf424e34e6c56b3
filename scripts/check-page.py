#!/usr/bin/env python3
"""The search page (`GET /`) in a real browser: headless Debian chromium driven by Selenium.

`write-dump PATH` writes a small Posts.xml of hostile posts (markup, javascript: links,
KaTeX's dangerous commands, huge sizes, deep nesting, a megabyte of `$`), all about "zebra".
`run` checks the page against the three servers that scripts/check-page.sh starts, and prints
one line per check, then "N passed, M failed". It exits non-zero when any check fails.
"""

import argparse
import json
import os
import sys
import tempfile
import time
import traceback
import urllib.request
from xml.sax.saxutils import quoteattr
from html import escape

from selenium import webdriver
from selenium.common.exceptions import TimeoutException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

WAIT = 30  # seconds any single page condition may take

# ---- The hostile dump.

# Each becomes the text of an answer (escaped into its HTML body, so the text shows it literally).
HOSTILE_TEXTS = {
    11: "zebra <script>window.__pwned='script'</script> and <img src=x onerror=\"window.__pwned='img'\"> "
    "and <a href=\"javascript:window.__pwned='a'\">a link</a>, with $x^2$ typeset",
    12: "zebra $\\href{javascript:window.__pwned='href'}{click me}$ and $\\url{javascript:window.__pwned='url'}$ "
    "and $\\htmlClass{x}{y}$ $\\htmlStyle{color:red}{z}$ $\\htmlData{a=b}{w}$ $\\includegraphics{/assets/favicon.svg}$",
    13: "zebra huge rules $\\rule{100000em}{100000em}$ and $$\\rule{99999pt}{1em}\\kern{99999em}$$ "
    "and $\\Huge\\sqrt[\\rule{0pt}{9999em}]{x}$ done",
    14: "zebra nested $" + "{" * 1500 + "x" + "}" * 1500 + "$ and $" + "{" * 30000 + "y" + "}" * 30000
    + "$ and $" + "\\sqrt{" * 400 + "z" + "}" * 400 + "$ end",
    15: "zebra a megabyte of dollars: " + "$" * (1 << 20),
    16: "zebra macro bombs $\\def\\a{\\a\\a}\\a$ and $\\def\\b#1{#1#1}" + "\\b{" * 12 + "x" + "}" * 12
    + "$ and $\\newcommand{\\c}{\\c}\\c$ and then $\\alpha + \\beta$",
}
# An answer whose HTML itself holds markup: the dump's HTML-to-text drops it.
RAW_HTML_ANSWER = (
    "<p>zebra raw markup <script>window.__pwned='raw-script'</script>"
    "<img src=\"x\" onerror=\"window.__pwned='raw-img'\"> and $y^3$</p>"
)
HOSTILE_TITLE = (
    "Zebra <img src=x onerror=\"window.__pwned='title'\"> <script>window.__pwned='title'</script> "
    "$\\href{javascript:window.__pwned='title-href'}{t}$ and $\\frac{1}{2}$"
)


def row(**attributes):
    return "  <row " + " ".join(f"{name}={quoteattr(str(value))}" for name, value in attributes.items()) + " />"


def write_dump(path):
    rows = [
        row(Id=10, PostTypeId=1, AcceptedAnswerId=11, CreationDate="2015-03-01T10:00:00.000", Score=5,
            Body="<p>zebra question</p>", Title=escape(HOSTILE_TITLE, quote=False), Tags="|zebra|xss|",
            AnswerCount=7, ContentLicense="CC BY-SA 4.0"),
    ]
    for number, (answer_id, text) in enumerate(sorted(HOSTILE_TEXTS.items())):
        rows.append(row(Id=answer_id, PostTypeId=2, ParentId=10, CreationDate=f"2015-03-0{2 + number % 7}T10:00:00.000",
                        Score=9 - number, Body="<p>" + escape(text, quote=False) + "</p>", ContentLicense="CC BY-SA 4.0"))
    rows.append(row(Id=17, PostTypeId=2, ParentId=10, CreationDate="2015-03-09T10:00:00.000", Score=1,
                    Body=RAW_HTML_ANSWER, ContentLicense="CC BY-SA 4.0"))
    with open(path, "w", encoding="utf-8") as out:
        out.write('<?xml version="1.0" encoding="utf-8"?>\n<posts>\n' + "\n".join(rows) + "\n</posts>\n")


# ---- The browser.

def browser():
    options = webdriver.ChromeOptions()
    options.binary_location = os.environ.get("CHROMIUM", "/usr/bin/chromium")
    for flag in ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--disable-dev-shm-usage", "--user-data-dir=" + tempfile.mkdtemp(prefix="check-page-")]:
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    service = Service(os.environ.get("CHROMEDRIVER", "/usr/bin/chromedriver"))
    driver = webdriver.Chrome(options=options, service=service)
    driver.set_window_size(1280, 1000)
    driver.set_script_timeout(WAIT)
    return driver


class Page:
    """One browser tab on one server."""

    def __init__(self, driver, base):
        self.driver = driver
        self.base = base

    def open(self, width=1280, height=1000):
        self.driver.set_window_size(width, height)
        self.driver.get(self.base + "/")
        self.until(lambda d: d.execute_script("return document.body.dataset.ready === 'true'"), "the page starts")
        return self

    def until(self, condition, what, timeout=WAIT):
        try:
            return WebDriverWait(self.driver, timeout, poll_frequency=0.1).until(condition)
        except TimeoutException:
            raise AssertionError(f"timed out waiting until {what}") from None

    def js(self, script, *args):
        return self.driver.execute_script(script, *args)

    def by_id(self, name):
        return self.driver.find_element(By.ID, name)

    def set(self, name, value):
        """Sets a field the way typing does (an `input` event), without typing a megabyte."""
        self.js("const e = document.getElementById(arguments[0]); e.value = arguments[1];"
                "e.dispatchEvent(new Event('input', {bubbles: true})); e.dispatchEvent(new Event('change'));",
                name, value)

    def search(self, title, body="", **fields):
        for name, value in fields.items():
            if isinstance(value, bool):
                checkbox = self.by_id(name)
                if checkbox.is_selected() != value:
                    self.js("document.getElementById(arguments[0]).click()", name)
            else:
                self.set(name, str(value))
        self.set("title", title)
        self.set("body", body)
        before = self.js("return document.getElementById('hits').dataset.search || ''")
        self.js("document.getElementById('search').click()")
        # Done when the page says which search its list shows, and it is a new one.
        self.until(lambda d: d.execute_script(
            "const h = document.getElementById('hits');"
            "return !h.hasAttribute('aria-busy') && (h.dataset.search || '') !== arguments[0]", before),
            f"the search for {title[:40]!r} answers")
        return self.hits()

    def hits(self):
        return self.js("""return [...document.querySelectorAll('#hits > li')].map(li => ({
            id: li.dataset.answerId,
            href: li.querySelector('h2 a') ? li.querySelector('h2 a').getAttribute('href') : null,
            title: li.querySelector('h2').textContent,
            relevance: li.querySelector('.relevance').textContent,
            bm25: li.querySelector('.bm25-rank').textContent,
            rank: li.querySelector('.rank').textContent,
            accepted: !!li.querySelector('.accepted'),
            votes: Number(li.querySelector('.votes').textContent.replace(/[^0-9-]/g, '')),
            date: li.querySelector('.date') ? li.querySelector('.date').textContent : null,
            tags: [...li.querySelectorAll('.tag')].map(t => t.textContent),
            answer: li.querySelector('.answer').textContent,
            katex: li.querySelectorAll('.answer .katex').length,
        }))""")

    def text(self, name):
        return self.js("const e = document.getElementById(arguments[0]); return e.hidden ? '' : e.textContent", name)

    def console_errors(self, allowed=()):
        """Console entries at level SEVERE, less those that mention one of `allowed`."""
        entries = self.driver.get_log("browser")
        return [e["message"] for e in entries if e["level"] == "SEVERE"
                and not any(allow in e["message"] for allow in allowed)]


def api(base, path, body=None, token=None):
    request = urllib.request.Request(base + path, data=None if body is None else json.dumps(body).encode())
    request.add_header("Content-Type", "application/json")
    if token:
        request.add_header("Authorization", "Bearer " + token)
    with urllib.request.urlopen(request, timeout=WAIT) as response:
        return json.load(response)


# ---- The checks. Each opens what it needs and raises AssertionError when the page is wrong.

QUESTION_TITLE = "Evaluate the integral of x^2 from 0 to 6"
QUESTION_BODY = "How do I compute $\\int_0^6 x^2\\,dx$? The antiderivative involves $\\frac{x^3}{3}$."
# A question whose first hits are answers longer than a snippet (the sample's topology threads),
# so that expanding one has something to show.
LONG_ANSWERS_QUESTION = "Is the topologist's sine curve connected or path-connected?"


def check_headers(args, driver):
    with urllib.request.urlopen(args.main + "/", timeout=WAIT) as response:
        policy = response.headers["Content-Security-Policy"]
        assert "script-src 'self'" in policy and "unsafe" not in policy, policy
        assert response.headers["X-Content-Type-Options"] == "nosniff"
        assert response.headers["Content-Type"].startswith("text/html")


def check_hits_and_math(args, driver):
    page = Page(driver, args.main).open()
    assert page.by_id("token-form").get_attribute("hidden") is not None, "the token form shows without auth"
    assert page.by_id("rerank").is_selected(), "rerank is off on a server with a model"
    page.set("title", QUESTION_TITLE)
    page.set("body", QUESTION_BODY)
    page.until(lambda d: d.execute_script("return document.querySelectorAll('#preview .katex').length >= 2"),
               "the preview typesets the question's math")
    hits = page.search(QUESTION_TITLE, QUESTION_BODY)
    assert len(hits) == 10, f"{len(hits)} hits"
    assert sum(hit["katex"] for hit in hits) > 0, "no answer has typeset math"
    assert page.js("return document.querySelectorAll('#hits .katex .katex-html').length") > 0
    assert all(hit["relevance"].startswith("relevance ") for hit in hits), [h["relevance"] for h in hits]
    assert all(hit["bm25"].startswith("BM25 #") for hit in hits)
    assert page.js("return document.querySelectorAll('#hits .math-error').length") == 0, "a formula failed"
    timings = page.text("timings")
    assert "retrieve" in timings and "infer" in timings and "round trip" in timings, timings
    assert page.text("notice") == "", page.text("notice")
    assert page.console_errors() == [], page.console_errors()


def check_links_and_expand(args, driver):
    page = Page(driver, args.main).open()
    hits = page.search(LONG_ANSWERS_QUESTION)
    expected = api(args.main, "/v1/search", {"query": LONG_ANSWERS_QUESTION})["hits"]
    assert [h["id"] for h in hits] == [str(h["answerId"]) for h in expected], "the page's hits differ from the API's"
    for hit, truth in zip(hits, expected):
        assert hit["href"] == f"https://math.stackexchange.com/a/{truth['answerId']}", hit["href"]
    # The first hit whose snippet was cut: expanding shows the whole answer from /v1/answers/{id}.
    cut = next((i for i, hit in enumerate(hits) if hit["answer"].rstrip().endswith("…")), None)
    assert cut is not None, "no snippet was cut; pick a question with longer answers"
    answer_id = hits[cut]["id"]
    full = api(args.main, f"/v1/answers/{answer_id}")["answer"]["body"]
    button = driver.find_elements(By.CSS_SELECTOR, "#hits > li .expand")[cut]
    button.click()
    page.until(lambda d: button.get_attribute("aria-expanded") == "true", "the answer expands")
    shown = page.hits()[cut]["answer"]
    assert not shown.rstrip().endswith("…") and len(shown) > len(hits[cut]["answer"]), (shown, hits[cut]["answer"])
    last_words = [w for w in full.split() if "$" not in w and "\\" not in w][-3:]
    assert all(word in shown for word in last_words), (last_words, shown[-200:])
    button.click()
    page.until(lambda d: button.get_attribute("aria-expanded") == "false", "the answer collapses")
    assert page.console_errors() == [], page.console_errors()


def check_filters(args, driver):
    page = Page(driver, args.main).open()
    query = "integral derivative matrix prime"
    everything = page.search(query)
    accepted = page.search(query, **{"accepted": True})
    assert accepted and all(hit["accepted"] for hit in accepted), accepted
    assert [h["id"] for h in accepted] != [h["id"] for h in everything], "accepted-only changed nothing"
    page.search(query, **{"accepted": False})
    tagged = page.search(query, **{"tags-any": "linear-algebra"})
    assert tagged and all("linear-algebra" in hit["tags"] for hit in tagged), [h["tags"] for h in tagged]
    voted = page.search(query, **{"tags-any": "", "min-votes": 20})
    assert voted and all(hit["votes"] >= 20 for hit in voted), [h["votes"] for h in voted]
    assert [h["id"] for h in voted] != [h["id"] for h in everything], "min votes changed nothing"
    dated = page.search(query, **{"min-votes": "", "from": "2013-01-01"})
    assert dated and all(hit["date"] >= "2013-01-01" for hit in dated), [h["date"] for h in dated]
    page.set("from", "")
    plain = page.search(query, **{"rerank": False})
    assert "Reranking is off" in page.text("notice"), page.text("notice")
    assert all(hit["relevance"] == "not reranked" for hit in plain)
    assert [int(h["bm25"].split("#")[1]) for h in plain] == list(range(1, len(plain) + 1)), "not in BM25 order"
    assert page.console_errors() == [], page.console_errors()


def check_narrow_window(args, driver):
    page = Page(driver, args.main).open(width=390, height=844)
    width = page.js("return window.innerWidth")
    assert width <= 400, f"the window is {width} px wide"
    page.js("document.getElementById('options').open = true")
    hits = page.search(QUESTION_TITLE, QUESTION_BODY)
    assert len(hits) == 10
    overflow = page.js("return document.documentElement.scrollWidth - window.innerWidth")
    assert overflow <= 1, f"the page scrolls sideways by {overflow} px at 390 px"
    outside = page.js("""return [...document.querySelectorAll('input, select, textarea, button, #hits > li')]
        .filter(e => e.offsetParent && e.getBoundingClientRect().right > window.innerWidth + 1)
        .map(e => e.id || e.className)""")
    assert outside == [], f"beyond the right edge: {outside}"
    assert page.by_id("search").is_displayed()
    assert page.console_errors() == [], page.console_errors()


def check_screenshot(args, driver):
    page = Page(driver, args.main).open(width=1280, height=1080)
    page.search(QUESTION_TITLE, QUESTION_BODY)
    page.js("window.scrollTo(0, 0); document.activeElement.blur()")
    assert driver.save_screenshot(args.screenshot), "no screenshot"
    assert os.path.getsize(args.screenshot) > 10_000


def check_auth_token(args, driver):
    token = os.environ["MATHRANK_PAGE_TOKEN"]
    page = Page(driver, args.slow).open()
    assert page.by_id("token-form").is_displayed() and not page.by_id("search-form").is_displayed()
    page.set("token", "wrong-token")
    page.by_id("token-submit").click()
    page.until(lambda d: "refused" in page.text("token-error"), "a wrong token is refused")
    page.set("token", token)
    page.by_id("token-submit").click()
    page.until(lambda d: page.by_id("search-form").is_displayed(), "the right token opens the form")
    assert page.js("return sessionStorage.getItem('mathrank-token')") == token
    assert page.js("return localStorage.length") == 0, "the token outlives the tab"
    driver.refresh()
    page.until(lambda d: d.execute_script("return document.body.dataset.ready === 'true'"), "the page restarts")
    assert page.by_id("search-form").is_displayed(), "the token was not kept for the tab"
    # A new tab does not get it.
    first = driver.current_window_handle
    driver.switch_to.new_window("tab")
    Page(driver, args.slow).open()
    assert driver.find_element(By.ID, "token-form").is_displayed(), "a new tab got the token"
    driver.close()
    driver.switch_to.window(first)
    errors = page.console_errors(allowed=["status of 401"])
    assert errors == [], errors


def check_partial_notice(args, driver):
    page = Page(driver, args.slow).open()
    if page.by_id("token-form").is_displayed():
        page.set("token", os.environ["MATHRANK_PAGE_TOKEN"])
        page.by_id("token-submit").click()
        page.until(lambda d: page.by_id("search-form").is_displayed(), "the token is taken")
    page.js("document.getElementById('options').open = true")
    hits = page.search("Prove that the square root of two is irrational", deadline=1000)
    assert len(hits) == 10, f"{len(hits)} hits"
    notice = page.text("notice")
    assert "Partial answer" in notice and "deadline" in notice and "0 of the top 30" in notice, notice
    assert all(hit["relevance"] == "not reranked" for hit in hits)
    page.by_id("forget-token").click()
    page.until(lambda d: page.by_id("token-form").is_displayed(), "forgetting the token asks again")
    assert page.js("return sessionStorage.getItem('mathrank-token')") is None
    assert page.console_errors() == [], page.console_errors()


INERT = """
    const hits = document.getElementById(arguments[0]);
    const bad = [...hits.querySelectorAll('*')].filter(e =>
        ['SCRIPT', 'IMG', 'IFRAME', 'OBJECT', 'EMBED', 'IMAGE'].includes(e.tagName.toUpperCase())
        || [...e.attributes].some(a => a.name.startsWith('on') || /javascript:/i.test(a.value)));
    return {pwned: window.__pwned === undefined ? null : String(window.__pwned),
            bad: bad.map(e => e.outerHTML.slice(0, 120))};
"""


def assert_inert(page, container):
    state = page.js(INERT, container)
    assert state["pwned"] is None, f"a hostile post ran: {state['pwned']}"
    assert state["bad"] == [], state["bad"]


def check_hostile_posts(args, driver):
    page = Page(driver, args.hostile).open()
    assert "BM25 only" in page.text("notice"), page.text("notice")
    assert page.by_id("rerank").get_attribute("disabled") is not None
    hits = page.search("zebra", **{"top-k": 20})
    assert {h["id"] for h in hits} == {str(i) for i in [*HOSTILE_TEXTS, 17]}, [h["id"] for h in hits]
    assert "BM25 only" in page.text("notice"), page.text("notice")
    assert all(h["href"].startswith(args.hostile_site + "/a/") for h in hits), [h["href"] for h in hits]
    by_id = {h["id"]: h for h in hits}
    assert "<script>window.__pwned='script'</script>" in by_id["11"]["answer"], by_id["11"]["answer"]
    assert "<img src=x onerror=" in by_id["11"]["title"], by_id["11"]["title"]
    assert by_id["11"]["katex"] >= 1, "the math beside the markup is not typeset"
    assert_inert(page, "hits")
    # Expand every answer, the megabyte included: all stay inert and the page answers.
    for index in range(len(hits)):
        button = driver.find_elements(By.CSS_SELECTOR, "#hits > li .expand")[index]
        button.click()
        page.until(lambda d: button.get_attribute("aria-expanded") == "true", f"answer {hits[index]['id']} expands")
    assert_inert(page, "hits")
    sizes = page.js("""return [...document.querySelectorAll('#hits .katex')].map(k => {
        const r = k.getBoundingClientRect(); return Math.max(r.width, r.height); })""")
    assert max(sizes) < 2000, f"a formula is {max(sizes)} px across"
    megabyte = page.js("""const li = document.querySelector('#hits > li[data-answer-id="15"]');
        return {text: li.querySelector('.answer').textContent.length, katex: li.querySelectorAll('.katex').length}""")
    assert megabyte["text"] < 70_000 and megabyte["katex"] <= 400, megabyte
    links = page.js("return [...document.querySelectorAll('#hits a')].map(a => a.getAttribute('href'))")
    assert all(link.startswith(args.hostile_site + "/a/") for link in links), links
    assert page.console_errors() == [], page.console_errors()


def check_hostile_queries(args, driver):
    page = Page(driver, args.hostile).open()
    title = "zebra <img src=x onerror=\"window.__pwned='q-img'\"> $\\href{javascript:window.__pwned='q'}{x}$"
    body = "<script>window.__pwned='q-script'</script> $\\rule{99999em}{99999em}$ $" + "{" * 3000 + "$ $\\url{javascript:alert(1)}$"
    page.set("title", title)
    page.set("body", body)
    page.until(lambda d: "<img src=x onerror=" in page.text("preview"), "the preview shows the markup as text")
    assert_inert(page, "preview")
    hits = page.search(title, body)
    assert hits, "the hostile query found nothing"
    assert_inert(page, "hits")
    assert_inert(page, "preview")
    # A megabyte of `$`: the preview stays bounded and the server's refusal is shown plainly.
    started = time.monotonic()
    page.set("body", "$" * (1 << 20))
    page.until(lambda d: d.execute_script(
        "return document.querySelector('#preview .preview-body') && "
        "document.querySelector('#preview .preview-body').textContent.length > 1000"), "the preview takes a megabyte")
    assert page.js("return document.querySelectorAll('#preview .katex').length") <= 400
    page.search(title, "$" * (1 << 20))
    error = page.text("error")
    assert "Search failed" in error and "query" in error, error
    assert time.monotonic() - started < WAIT, "the page hung on a megabyte of $"
    assert_inert(page, "preview")
    errors = page.console_errors(allowed=["status of 400"])
    assert errors == [], errors


CHECKS = [
    check_headers,
    check_hits_and_math,
    check_links_and_expand,
    check_filters,
    check_narrow_window,
    check_screenshot,
    check_auth_token,
    check_partial_notice,
    check_hostile_posts,
    check_hostile_queries,
]


def run(args):
    driver = browser()
    passed = failed = 0
    try:
        for check in CHECKS:
            driver.get_log("browser")  # start each check with an empty console
            try:
                check(args, driver)
                passed += 1
                print(f"check-page: {check.__name__} ... ok", flush=True)
            except Exception:  # noqa: BLE001 - every failure is reported, then the next check runs
                failed += 1
                print(f"check-page: {check.__name__} ... FAILED\n{traceback.format_exc()}", flush=True)
    finally:
        driver.quit()
    print(f"{passed} passed, {failed} failed")
    return 1 if failed else 0


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    dump = commands.add_parser("write-dump")
    dump.add_argument("path")
    checks = commands.add_parser("run")
    checks.add_argument("--main", required=True, help="server over the sample with a model")
    checks.add_argument("--slow", required=True, help="server with --auth-token whose reranking takes 5 s at least")
    checks.add_argument("--hostile", required=True, help="BM25-only server over the hostile dump")
    checks.add_argument("--hostile-site", required=True, help="the hostile server's --site-url")
    checks.add_argument("--screenshot", required=True)
    args = parser.parse_args()
    if args.command == "write-dump":
        write_dump(args.path)
        return 0
    return run(args)


if __name__ == "__main__":
    sys.exit(main())

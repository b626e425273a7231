"""The "Token hygiene" page in a real browser: headless Chromium through Selenium.

Needs Debian's ``chromium`` and ``chromium-driver``. Runs on the database TOKENOPS_TEST_DB
names. Saves the README's screenshots (English and Russian, 1280 px and 400 px) in docs/.
"""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from datetime import timedelta

import pytest
from django.contrib.auth.models import Permission, User
from django.contrib.staticfiles.testing import StaticLiveServerTestCase
from django.db import connection, connections
from django.test import override_settings
from rest_framework_simplejwt.token_blacklist.models import BlacklistedToken, OutstandingToken
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions
from selenium.webdriver.support.wait import WebDriverWait

from tests.utils import ROOT, make_tokens, stored, utcnow, wait_until
from tokenops.admin import background_purge, confirmed_cutoff
from tokenops.dbtime import as_utc
from tokenops.models import PurgeRun

DOCS = ROOT / "docs"
# Enough rows, in small batches, for a purge of several seconds on each backend.
LARGE = {"sqlite": 20_000, "postgresql": 200_000, "mysql": 100_000}
SMALL_BATCHES = {"ADMIN_PURGE": "thread", "BATCH_SIZE": 250}
CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
PAGE = "/admin/tokenops/tokenhygiene/"

# (days from now, how many, blacklisted): spread over every bucket of the chart.
TOKENS = [
    (-45, 6, True),
    (-12, 9, False),
    (-3, 14, True),
    (-3, 4, False),
    (-0.3, 7, False),
    (0.4, 11, False),
    (4, 15, False),
    (4, 3, True),
    (10, 8, False),
    (60, 2, False),
]


def browser() -> webdriver.Chrome:
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for argument in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-dev-shm-usage",
        "--window-size=1280,1000",
        "--lang=en-US",
    ):
        options.add_argument(argument)
    return webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)


@contextmanager
def row_held(pk: int) -> Iterator[None]:
    """Hold an outstanding row locked from another connection (PostgreSQL, MariaDB).

    A purge reaching it waits there, so the page can be seen mid-purge however fast the
    server deletes. SQLite needs none: the purge pauses 0.1 s after each batch there.
    """
    if connection.vendor == "sqlite":
        yield
        return
    holder = connections.create_connection("default")
    holder.set_autocommit(False)
    try:
        with holder.cursor() as cursor:
            cursor.execute(
                "SELECT id FROM token_blacklist_outstandingtoken WHERE id = %s FOR UPDATE", [pk]
            )
        yield
    finally:
        holder.rollback()
        holder.close()


@pytest.mark.slow
@override_settings(TOKENOPS={"ADMIN_PURGE": "thread"})
class TokenHygieneInBrowser(StaticLiveServerTestCase):
    driver: webdriver.Chrome

    @classmethod
    def setUpClass(cls) -> None:
        super().setUpClass()
        cls.driver = browser()
        cls.driver.implicitly_wait(5)

    @classmethod
    def tearDownClass(cls) -> None:
        cls.driver.quit()
        super().tearDownClass()

    def tearDown(self) -> None:
        # A purge this test started in a thread must not write into the next test's tables.
        thread = background_purge("default")
        if thread is not None:
            thread.join(120)
        super().tearDown()

    def setUp(self) -> None:
        self.olga = self.staff("olga", "view_token_hygiene", "run_purge")
        self.ivan = self.staff("ivan", "view_token_hygiene")
        customer = User.objects.create_user("customer")
        for days, count, blacklisted in TOKENS:
            expires = stored(utcnow() + timedelta(days=days))
            for _ in range(count):
                token = OutstandingToken.objects.create(
                    user=customer,
                    jti=uuid.uuid4().hex,
                    token="t",
                    created_at=expires,
                    expires_at=expires,
                )
                if blacklisted:
                    BlacklistedToken.objects.create(token=token)

    def staff(self, username: str, *codenames: str) -> User:
        user = User.objects.create_user(username, password="secret-pw", is_staff=True)
        user.user_permissions.add(*Permission.objects.filter(codename__in=codenames))
        return user

    def log_in(self, username: str) -> None:
        self.driver.delete_all_cookies()
        self.driver.get(f"{self.live_server_url}/admin/login/")
        self.driver.find_element(By.NAME, "username").send_keys(username)
        self.driver.find_element(By.NAME, "password").send_keys("secret-pw")
        self.driver.find_element(By.CSS_SELECTOR, "input[type=submit]").click()
        WebDriverWait(self.driver, 10).until(expected_conditions.title_contains("Site admin"))

    def text(self, selector: str) -> str:
        return self.driver.find_element(By.CSS_SELECTOR, selector).text

    def screenshot(self, name: str, width: int = 1280) -> None:
        """The whole page at ``width`` px into docs/; nothing may stick out sideways."""
        self.driver.set_window_size(width, 1000)
        self.driver.refresh()
        inner = self.driver.execute_script("return window.innerWidth")
        scroll = self.driver.execute_script("return document.documentElement.scrollWidth")
        self.assertLessEqual(scroll, inner, f"{name}: the page scrolls sideways")
        height = self.driver.execute_script("return document.documentElement.scrollHeight")
        self.driver.set_window_size(width, height + 140)
        self.driver.save_screenshot(str(DOCS / name))
        self.driver.set_window_size(1280, 1000)

    def rows(self, selector: str) -> list[list[str]]:
        return [
            [cell.text for cell in row.find_elements(By.CSS_SELECTOR, "th, td")]
            for row in self.driver.find_elements(By.CSS_SELECTOR, selector)
        ]

    def wait_for_page(self, timeout: float = 30) -> None:
        WebDriverWait(self.driver, timeout).until(
            expected_conditions.url_to_be(f"{self.live_server_url}{PAGE}")
        )

    def test_figures_chart_dry_run_and_purge(self) -> None:
        self.log_in("olga")
        self.driver.find_element(By.LINK_TEXT, "Token hygiene").click()
        WebDriverWait(self.driver, 10).until(
            expected_conditions.url_to_be(f"{self.live_server_url}{PAGE}")
        )
        summary = [
            [cell.text for cell in row.find_elements(By.CSS_SELECTOR, "th, td")]
            for row in self.driver.find_elements(By.CSS_SELECTOR, "#summary tbody tr")
        ]
        self.assertEqual(
            summary,
            [["outstanding", "79", "39", "40", "40"], ["blacklisted", "23", "3", "20", "20"]],
        )
        self.assertEqual(self.text("#last-purge"), "Last successful purge: none recorded.")
        self.assertTrue(
            self.text("#cutoff").endswith(
                " UTC are purgeable. The setting TOKENOPS['OLDER_THAN'] sets it "
                "(TOKENOPS['OLDER_THAN'] = 0m; SIMPLE_JWT['LEEWAY'] = 0m)."
            ),
            self.text("#cutoff"),
        )

        bars = self.driver.find_elements(By.CSS_SELECTOR, "#expiry-chart rect.bar")
        self.assertEqual(
            [bar.get_attribute("data-tokens") for bar in bars],
            ["6", "9", "18", "7", "11", "18", "8", "2"],
        )
        heights = [bar.rect["height"] for bar in bars]  # as drawn by the browser
        self.assertEqual(max(heights), heights[2])
        self.assertTrue(all(height > 0 for height in heights))
        self.assertAlmostEqual(heights[7] / heights[2], 2 / 18, delta=0.02)
        self.assertEqual(
            len(self.driver.find_elements(By.CSS_SELECTOR, "#expiry-chart rect.blacklisted")), 3
        )

        self.driver.find_element(By.ID, "dry-run").click()
        self.wait_for_page()
        # The result is a message at the top of the page, where the eye is after a click.
        self.assertEqual(
            self.text("ul.messagelist li.info"),
            "Dry run: nothing was deleted. Would delete 40 outstanding tokens and "
            "20 blacklisted tokens from database 'default'.",
        )
        self.assertEqual(OutstandingToken.objects.count(), 79)
        first_run = self.driver.find_elements(By.CSS_SELECTOR, "#runs tr.run td")
        self.assertEqual([cell.text for cell in first_run[1:3]], ["ok dry run", "Admin page: olga"])

        self.driver.find_element(By.ID, "purge-now").click()
        WebDriverWait(self.driver, 10).until(
            expected_conditions.presence_of_element_located((By.ID, "purge-question"))
        )
        self.assertIn(
            "40 outstanding tokens (of which 20 blacklisted) will be deleted",
            self.text("#purge-question"),
        )
        self.driver.find_element(By.ID, "confirm-purge").click()
        self.wait_for_page()
        WebDriverWait(self.driver, 30).until(
            expected_conditions.presence_of_element_located(
                (By.CSS_SELECTOR, "ul.messagelist li.success")
            )
        )
        self.assertTrue(
            self.text("ul.messagelist li.success").startswith(
                "Deleted 40 outstanding tokens and 20 blacklisted tokens from database "
                "“default” in 0:00:0"
            )
        )
        runs = self.rows("#runs tr.run")
        self.assertEqual(len(runs), 2)
        self.assertEqual(runs[0][1:5], ["ok", "Admin page: olga", "40", "20"])
        self.assertTrue(self.text("#last-purge").startswith("Last successful purge: "))
        self.assertEqual(
            (OutstandingToken.objects.count(), BlacklistedToken.objects.count()), (39, 3)
        )
        run = PurgeRun.objects.get(dry_run=False)
        self.assertEqual((run.started_by, run.trigger, run.outcome), ("olga", "admin", "ok"))

        # The README's screenshots: a long user name in the list, English and Russian.
        User.objects.create_user("a-very-long-user-name-that-would-push-a-table-sideways")
        for language, suffix in (("en", ""), ("ru", "-ru")):
            self.driver.add_cookie({"name": "django_language", "value": language})
            self.screenshot(f"admin-token-hygiene{suffix}.png")
            self.screenshot(f"admin-token-hygiene{suffix}-400.png", width=400)
            if width_of_chart_text := self.driver.execute_script(
                "return document.querySelector('#expiry-chart text.label')"
                ".getBoundingClientRect().height"
            ):
                self.assertGreaterEqual(width_of_chart_text, 10)
        self.driver.delete_cookie("django_language")

    @override_settings(TOKENOPS=SMALL_BATCHES)
    def test_large_purge_runs_in_the_background_with_progress(self) -> None:
        """The click returns at once; the page follows the run; a second click does nothing."""
        make_tokens([utcnow() - timedelta(days=2)] * LARGE[connection.vendor], user="customer")
        total = OutstandingToken.objects.count()
        self.log_in("olga")
        self.driver.get(f"{self.live_server_url}{PAGE}purge/")
        first = self.driver.current_window_handle
        signed = self.driver.find_element(By.NAME, "cutoff").get_attribute("value")
        cutoff = confirmed_cutoff("default", signed)
        self.assertIsNotNone(cutoff)
        # A second confirmation page, open in another tab, for the second click.
        self.driver.switch_to.new_window("tab")
        self.driver.get(f"{self.live_server_url}{PAGE}purge/")
        second = self.driver.current_window_handle
        self.driver.switch_to.window(first)
        # Expires after the confirmed cutoff, before the click: kept.
        [late] = make_tokens([cutoff + timedelta(milliseconds=5)], user="late")
        wait_until(lambda: utcnow() > cutoff + timedelta(milliseconds=50), timeout=1, what="expiry")

        # The purge stops at a row held here until the page has shown it running.
        purgeable_ids = OutstandingToken.objects.filter(expires_at__lte=stored(cutoff)).order_by(
            "pk"
        )
        middle = purgeable_ids.values_list("pk", flat=True)[purgeable_ids.count() // 2]
        hold = ExitStack()
        self.addCleanup(hold.close)
        hold.enter_context(row_held(middle))

        clicked = time.monotonic()
        self.driver.find_element(By.ID, "confirm-purge").click()
        self.wait_for_page()
        # The answer came while the purge runs: the page shows its progress. (The time from
        # click to response is measured by scripts/bench_admin.py, not asserted here.)
        self.driver.find_element(By.ID, "purge-progress")
        answered = time.monotonic() - clicked

        # The second click, at once: the purge has only begun.
        self.driver.switch_to.window(second)
        self.driver.find_element(By.ID, "confirm-purge").click()
        self.wait_for_page()
        self.assertTrue(
            self.text("ul.messagelist li.warning").startswith("A purge is already "),
            self.text("ul.messagelist li.warning"),
        )
        self.assertTrue(
            self.text("ul.messagelist li.warning").endswith("nothing else was started.")
        )
        self.driver.close()
        self.driver.switch_to.window(first)

        figures = re.compile(r"(\d+) of (\d+) outstanding tokens deleted so far")

        def progress() -> tuple[int, int, bool] | None:
            # Read in one script call: the page reloads itself between two calls.
            text, button = self.driver.execute_script(
                "const p = document.getElementById('progress-figures');"
                "return [p ? p.textContent : '', !!document.getElementById('purge-now')];"
            )
            match = figures.search(" ".join((text or "").split()))
            return (int(match[1]), int(match[2]), button) if match else None

        deleted, purgeable, button = wait_until(
            lambda: (seen := progress()) and seen[0] > 0 and seen,
            timeout=30,
            what="the progress figures",
            every=0.1,
        )
        self.assertLess(deleted, purgeable)
        self.assertEqual(purgeable, total - 79 + 40)
        self.assertFalse(button, "a page showing progress offers no Purge now button")
        hold.close()

        WebDriverWait(self.driver, 120, poll_frequency=0.2).until(
            expected_conditions.presence_of_element_located(
                (By.CSS_SELECTOR, "ul.messagelist li.success")
            )
        )
        outcome = self.text("ul.messagelist li.success")
        self.assertIn(f"Deleted {purgeable} outstanding tokens ", outcome)
        self.assertIn(", with the cutoff you confirmed: ", outcome)
        self.assertEqual(self.driver.find_elements(By.ID, "purge-progress"), [])
        run = PurgeRun.objects.get(dry_run=False)  # the second click wrote no row
        self.assertEqual((run.outcome, run.outstanding_deleted), ("ok", purgeable))
        self.assertEqual(as_utc(run.cutoff), cutoff)
        self.assertTrue(OutstandingToken.objects.filter(pk=late.pk).exists())
        took = (run.finished_at - run.started_at).total_seconds()
        print(f"\n[tokenops] click -> page with progress: {answered:.2f} s; purge: {took:.1f} s")

    def test_without_the_permission_no_button_and_403(self) -> None:
        self.log_in("ivan")
        self.driver.get(f"{self.live_server_url}{PAGE}")
        self.assertEqual(self.driver.find_elements(By.ID, "purge-now"), [])
        self.assertTrue(self.driver.find_elements(By.ID, "dry-run"))
        # A hand-made POST with a valid CSRF token: refused for want of the permission.
        status = self.driver.execute_async_script(
            """
            const done = arguments[arguments.length - 1];
            const token = document.querySelector("input[name=csrfmiddlewaretoken]").value;
            fetch(arguments[0], {
                method: "POST",
                headers: {"X-CSRFToken": token},
                body: new URLSearchParams({confirm: "yes"}),
            }).then((response) => done(response.status));
            """,
            "/admin/tokenops/tokenhygiene/purge/",
        )
        self.assertEqual(status, 403)
        self.assertEqual(OutstandingToken.objects.count(), 79)
        self.assertEqual(PurgeRun.objects.count(), 0)

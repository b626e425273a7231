"""The "Token hygiene" page in a real browser: headless Chromium through Selenium.

Needs Debian's ``chromium`` and ``chromium-driver``. Leaves a screenshot of the page in
tests/artifacts/admin-token-hygiene.png.
"""

from __future__ import annotations

import uuid
from datetime import timedelta

import pytest
from django.contrib.auth.models import Permission, User
from django.contrib.staticfiles.testing import StaticLiveServerTestCase
from rest_framework_simplejwt.token_blacklist.models import BlacklistedToken, OutstandingToken
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions
from selenium.webdriver.support.wait import WebDriverWait

from tests.utils import ROOT, stored, utcnow
from tokenops.models import PurgeRun

ARTIFACTS = ROOT / "tests" / "artifacts"
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


@pytest.mark.slow
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

    def screenshot(self, name: str) -> None:
        ARTIFACTS.mkdir(exist_ok=True)
        height = self.driver.execute_script("return document.documentElement.scrollHeight")
        self.driver.set_window_size(1280, height + 200)
        self.driver.save_screenshot(str(ARTIFACTS / name))
        self.driver.set_window_size(1280, 1000)

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
                " UTC are purgeable (set by TOKENOPS['OLDER_THAN']; "
                "TOKENOPS['OLDER_THAN'] 0m, LEEWAY 0m)."
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
        WebDriverWait(self.driver, 10).until(
            expected_conditions.presence_of_element_located((By.ID, "dry-run-result"))
        )
        self.assertEqual(
            self.text("#dry-run-result"),
            "Dry run: nothing was deleted. Would delete 40 outstanding tokens and "
            "20 blacklisted tokens from database 'default'.",
        )
        self.assertEqual(OutstandingToken.objects.count(), 79)
        first_run = self.driver.find_elements(By.CSS_SELECTOR, "#runs tr.run td")
        self.assertEqual([cell.text for cell in first_run[1:5]], ["ok", "yes", "admin", "olga"])
        self.screenshot("admin-token-hygiene.png")

        self.driver.find_element(By.ID, "purge-now").click()
        WebDriverWait(self.driver, 10).until(
            expected_conditions.presence_of_element_located((By.ID, "purge-question"))
        )
        self.assertIn(
            "40 outstanding tokens (of which 20 blacklisted) will be deleted",
            self.text("#purge-question"),
        )
        self.screenshot("admin-token-hygiene-confirmation.png")
        self.driver.find_element(By.ID, "confirm-purge").click()
        # The purge and its redirect take a moment: wait for the page, not a fixed time.
        WebDriverWait(self.driver, 30).until(
            expected_conditions.url_to_be(f"{self.live_server_url}{PAGE}")
        )
        self.assertTrue(
            self.text("ul.messagelist li.success").startswith(
                "Deleted 40 outstanding tokens and 20 blacklisted tokens from database "
                "'default' in "
            )
        )
        runs = self.driver.find_elements(By.CSS_SELECTOR, "#runs tr.run")
        self.assertEqual(len(runs), 2)
        newest = [cell.text for cell in runs[0].find_elements(By.TAG_NAME, "td")]
        self.assertEqual(newest[1:7], ["ok", "no", "admin", "olga", "40", "20"])
        self.assertTrue(self.text("#last-purge").startswith("Last successful purge: "))
        self.assertEqual(
            (OutstandingToken.objects.count(), BlacklistedToken.objects.count()), (39, 3)
        )
        run = PurgeRun.objects.get(dry_run=False)
        self.assertEqual((run.started_by, run.trigger, run.outcome), ("olga", "admin", "ok"))

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

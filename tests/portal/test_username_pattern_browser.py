"""The portal's user name fields carry the core's rule as their `pattern` (osiris.app.schemas.USERNAME),
and the browser (Debian's chromium, which reads `pattern` with the v flag) takes and refuses the same
names the server does: a typo is caught before the form is sent; the server still decides."""

from __future__ import annotations

from osiris.app.schemas import USERNAME
from tests.root.test_username_rule import ACCEPTED, REFUSED

from .browser_helpers import BROWSER_TEST, signed_in_page

pytestmark = BROWSER_TEST

# A text input drops line breaks from its value, so these never reach the pattern (the server
# refuses them: tests/root/test_username_rule.py).
SANITIZED = ("\n", "\r")


async def test_the_new_user_field_checks_the_same_rule(browser, live, person):
    admin = await person("admin")
    errors: list[str] = []
    context, page = await signed_in_page(browser, live, admin.username, errors)
    await page.goto(f"{live.url}/admin/users")
    field = page.locator("#nu-name")
    assert await field.get_attribute("pattern") == USERNAME.pattern
    names = [n for n in ACCEPTED + REFUSED if n and not any(c in n for c in SANITIZED)]
    verdicts = await field.evaluate(
        "(el, names) => names.map(n => { el.value = n; return el.checkValidity(); })", names
    )
    wrong = [n for n, ok in zip(names, verdicts, strict=True) if ok != (n in ACCEPTED)]
    assert wrong == [], wrong
    await context.close()
    assert errors == [], errors

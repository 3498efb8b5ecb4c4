"""Every comparison of a secret is constant-time: no `==` or `!=` between a secret and a value."""

from __future__ import annotations

import ast
import re
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[2] / "osiris"
SECRET = re.compile(r"secret|signature|password|csrf|auth_token|api_key|token_hash|hmac|digest", re.I)


def _secret_comparisons(source: str) -> list[tuple[int, str]]:
    found = []
    for node in ast.walk(ast.parse(source)):
        if not isinstance(node, ast.Compare) or not any(isinstance(o, ast.Eq | ast.NotEq) for o in node.ops):
            continue
        sides = [node.left, *node.comparators]
        if any(isinstance(s, ast.Constant) for s in sides):  # `x == None`, `kind == "secret"`: no secret
            continue
        if any(_is_column(s) for s in sides):  # SQL (`ApiToken.token_hash == h`): an index lookup
            continue
        text = ast.unparse(node)
        if SECRET.search(text):
            found.append((node.lineno, text))
    return found


def _is_column(node: ast.expr) -> bool:
    """`Model.column`: a SQLAlchemy expression the database evaluates, not a Python comparison."""
    return (
        isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id[:1].isupper()
    )


def test_no_secret_is_compared_with_equality(record_property):
    """Every module of the package is parsed; an `==`/`!=` whose operands name a secret, signature,
    password, CSRF token or digest fails (hmac.compare_digest is the way)."""
    modules = sorted(PACKAGE.rglob("*.py"))
    offenders = {
        f"{path.relative_to(PACKAGE.parent)}:{line}": text
        for path in modules
        for line, text in _secret_comparisons(path.read_text())
    }
    record_property("modules parsed", len(modules))
    assert not offenders, offenders


def test_the_check_catches_a_plain_comparison():
    assert _secret_comparisons("ok = given == settings.webhook_secret.get_secret_value()")
    assert not _secret_comparisons("ok = hmac.compare_digest(given, secret)")

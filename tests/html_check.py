"""One HTML tag-balance checker for the tests of the HTML pages (the eval report, the review page):
subclasses collect what they look for; `Balanced.check(text)` parses and asserts every tag closes."""
from __future__ import annotations

from html.parser import HTMLParser

VOID = {"meta", "br", "hr", "img", "input", "link", "col", "wbr", "area", "base", "source"}


class Balanced(HTMLParser):
    """Records the open elements (`stack`) and every end tag that does not close the innermost one."""

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.stack: list[str] = []
        self.errors: list[str] = []

    def handle_starttag(self, tag, attrs):
        if tag not in VOID:
            self.stack.append(tag)
        self.start(tag, dict(attrs))

    def handle_endtag(self, tag):
        if tag in VOID:
            return
        if not self.stack or self.stack[-1] != tag:
            self.errors.append(f"</{tag}> closes {self.stack[-1:] or 'nothing'} at {self.getpos()}")
        else:
            self.stack.pop()
        self.end(tag)

    def start(self, tag: str, attrs: dict) -> None:
        """A start tag (after it is on the stack)."""

    def end(self, tag: str) -> None:
        """An end tag (after it left the stack)."""

    @classmethod
    def check(cls, text: str):
        parser = cls()
        parser.feed(text)
        parser.close()
        assert not parser.errors, parser.errors
        assert not parser.stack, f"unclosed: {parser.stack}"
        return parser

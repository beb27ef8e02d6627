"""A struct field's description: the comment block right above it, or the comment at the end of its
line, in the class body. Read from the source, so that the comment a maintainer sees beside a field is
the text users read in the reference (one place, no copy to drift)."""

from __future__ import annotations

import ast
import inspect
import io
import textwrap
import tokenize
from functools import cache


@cache
def field_descriptions(cls: type) -> dict[str, str]:
    """Field name -> description (comment lines joined with spaces); fields without a comment are absent."""
    source = textwrap.dedent(inspect.getsource(cls))
    comments: dict[int, str] = {}  # line number -> comment text
    code_lines: set[int] = set()  # lines that hold something other than a comment
    for token in tokenize.generate_tokens(io.StringIO(source).readline):
        if token.type == tokenize.COMMENT:
            comments[token.start[0]] = token.string.lstrip("#").strip()
        elif token.type not in (tokenize.NL, tokenize.NEWLINE, tokenize.INDENT, tokenize.DEDENT):
            code_lines.add(token.start[0])
    body = ast.parse(source).body[0]
    assert isinstance(body, ast.ClassDef)
    found: dict[str, str] = {}
    for node in body.body:
        if not (isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name)):
            continue
        lines: list[str] = []
        above = node.lineno - 1
        while above in comments and above not in code_lines:  # a comment block, no blank line between
            lines.insert(0, comments[above])
            above -= 1
        trailing = [
            comments[n] for n in range(node.lineno, (node.end_lineno or node.lineno) + 1) if n in comments
        ]
        text = " ".join(lines + trailing).strip()
        if text:
            found[node.target.id] = text
    return found

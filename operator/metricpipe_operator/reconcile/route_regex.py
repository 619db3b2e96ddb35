"""Regular expressions for Fluentd (Ruby's Onigmo engine), written from the spec's RE2 filters.

The consumer applies `spec.source.filters` with RE2; Fluentd's grep and parser run Onigmo.
`translate_re2` rewrites an RE2 pattern into an Onigmo source that matches the same strings, or
raises `UntranslatableError` when it cannot be sure (an RE2 feature without an exact Onigmo twin) or
when the pattern could backtrack for long in Onigmo (Fluentd has no regex timeout, and one
pipeline's filter must not stall the log agent every pipeline shares). The route then leaves that
filter to the consumer: Fluentd forwards a superset, the consumer selects exactly.

Every output is plain ASCII without `#`, spaces before `#`, or line breaks, so it survives both
renderings unquoted: a `pattern /.../` line of fluent.conf and a fluent-operator CRD field.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

MAX_UNBOUNDED_REPEATS = 2  # more `*`/`+`/`{n,}` in one pattern: polynomial backtracking
FIELD_PREFIX = "metricpipe_"  # names of the parsed Apache fields inside Fluentd's record

# The consumer's Apache combined grammar (metricpipe_consumers.apache.APACHE_COMBINED) for
# Onigmo, with the same field names behind FIELD_PREFIX. Python's \\s and \\S are Unicode
# (str.isspace); Onigmo's are ASCII, so the whitespace set is spelled out. The consumer drops a
# referrer or agent whose closing quote is missing after matching; here an alternation does it:
# a quoted field is captured only with its closing quote, one cut off ends the line uncaptured.
_WS = (
    "\\t\\n\\v\\f\\r\\u{1c}-\\u{20}\\u{85}\\u{a0}\\u{1680}\\u{2000}-\\u{200a}"
    "\\u{2028}\\u{2029}\\u{202f}\\u{205f}\\u{3000}"
)
_FIELD = '(?:[^"\\\\]|\\\\.)*+\\\\?'  # Python's . and Onigmo's . both stop at \n
# the path: anything up to the request's closing quote but a final " HTTP/x.y"
_PATH = '(?:[^"\\\\ ]++|\\\\.| (?!HTTP\\/[0-9.]++"))*+'
APACHE_FIELDS = (
    "host", "ident", "user", "time", "method", "path", "protocol", "status", "bytes",
    "referrer", "agent",
)  # fmt: skip
APACHE_EXPRESSION = (
    f"\\A(?<{FIELD_PREFIX}host>[^{_WS}]++) (?<{FIELD_PREFIX}ident>[^{_WS}]++)"
    f" (?<{FIELD_PREFIX}user>[^{_WS}]++) \\[(?<{FIELD_PREFIX}time>[^\\]]++)\\]"
    f' "(?<{FIELD_PREFIX}method>[A-Z]++|-) ?+(?<{FIELD_PREFIX}path>{_PATH})'
    f'(?: (?<{FIELD_PREFIX}protocol>HTTP\\/[0-9.]++))?"'
    f" (?<{FIELD_PREFIX}status>[0-9]{{3}}) (?<{FIELD_PREFIX}bytes>[0-9]++|-)"
    f'(?: "(?:(?<{FIELD_PREFIX}referrer>{_FIELD})"'
    f'(?: "(?:(?<{FIELD_PREFIX}agent>{_FIELD})"|{_FIELD}))?|{_FIELD}))?'
    f"[{_WS}]*+\\z"
)
# Python's int(): "-" bytes count 0, "050" is 50 (Ruby's to_i reads both alike).
APACHE_TYPES = f"{FIELD_PREFIX}status:integer,{FIELD_PREFIX}bytes:integer"

_REPEAT = re.compile(r"\{(\d+)(,(\d*))?\}")
_NAMED_GROUP = re.compile(r"\(\?P?<[A-Za-z0-9_]+>")
_FLAGS_GROUP = re.compile(r"\(\?([imsU-]*)(:|\))")
_POSIX_CLASS = re.compile(
    r"\[:\^?(alnum|alpha|ascii|blank|cntrl|digit|graph|lower|print|punct|space|upper|word|xdigit):\]"
)
_HEX = re.compile(r"x\{([0-9A-Fa-f]{1,6})\}|x([0-9A-Fa-f]{2})")
_OCTAL = re.compile(r"[0-7]{1,3}")
_UNICODE_CLASS = re.compile(r"([pP])(\{\^?[A-Za-z_]+\}|[A-Za-z])")
# RE2's \d \w \s are ASCII (\s without \v); spelled out so Onigmo's own classes play no part.
_PERL_CLASSES = {"d": "0-9", "w": "0-9A-Za-z_", "s": "\\t\\n\\f\\r\\x20"}
_SIMPLE_ESCAPES = {"a": "\\a", "f": "\\f", "t": "\\t", "n": "\\n", "r": "\\r", "v": "\\v"}


class UntranslatableError(ValueError):
    """The pattern is left to the consumer; the message says why."""


def ruby_char(char: str) -> str:
    """One character as Onigmo source that means exactly that character."""
    if char.isascii() and char.isalnum():
        return char
    if char.isascii() and 0x20 < ord(char) < 0x7F:
        return "\\" + char  # an escaped ASCII punctuation mark is itself in Onigmo
    return f"\\u{{{ord(char):x}}}"  # space, controls and non-ASCII as code points


def build_equals_regexp(value: str) -> str:
    """Onigmo source matching exactly `value` (the consumer's str(value) == equals)."""
    return "\\A" + "".join(ruby_char(c) for c in value) + "\\z"


@dataclass
class _Group:
    risky: bool = False  # holds a repetition or an alternation


def translate_re2(pattern: str) -> str:  # noqa: PLR0912 - one branch per kind of RE2 token
    """Onigmo source matching what RE2 matches with `pattern` (unanchored search)."""
    out = ["(?a)"]  # ASCII \b and POSIX classes, as in RE2; \p{..} and (?i) stay Unicode
    stack = [_Group()]
    last_group: _Group | None = None  # the group an immediately following repetition applies to
    unbounded = 0
    group_start = True
    i = 0
    while i < len(pattern):
        char = pattern[i]
        atom_group: _Group | None = None
        group_start, was_group_start = False, group_start
        if char == "\\":
            text, i = _escape(pattern, i, in_class=False)
        elif char == "[":
            text, i = _char_class(pattern, i)
        elif char == "(":
            text, i, opens = _group_open(pattern, i, was_group_start)
            if opens:
                stack.append(_Group())
            group_start = True  # a flag group may follow a group opener or another flag group
        elif char == ")":
            if len(stack) == 1:
                raise UntranslatableError("unbalanced ')'")
            inner = stack.pop()
            stack[-1].risky |= inner.risky
            text, i, atom_group = ")", i + 1, inner
        elif char in "*+?" or (char == "{" and _REPEAT.match(pattern, i)):
            text, i, high = _repeat(pattern, i)
            if high is None or high > 1:
                if last_group is not None and last_group.risky:
                    raise UntranslatableError("a repeated group holds a repetition or alternation")
                unbounded += high is None
                if unbounded > MAX_UNBOUNDED_REPEATS:
                    raise UntranslatableError(f"over {MAX_UNBOUNDED_REPEATS} unbounded repeats")
            stack[-1].risky = True
        elif char == "|":
            stack[-1].risky = True
            text, i = "|", i + 1
        elif char == "^":
            text, i = "\\A", i + 1  # RE2 without (?m): start of text, not of a line
        elif char == "$":
            text, i = "\\z", i + 1  # RE2 without (?m): end of text, not before a newline
        elif char == ".":
            text, i = ".", i + 1  # neither engine matches \n with . unless (?s)/(?m)
        else:
            text, i = ruby_char(char), i + 1  # a literal, including { } and #
        out.append(text)
        last_group = atom_group
    if len(stack) != 1:
        raise UntranslatableError("unbalanced '('")
    return "".join(out)


def _repeat(pattern: str, i: int) -> tuple[str, int, int | None]:
    """A repetition operator: (source, next index, maximum count or None for unbounded)."""
    char = pattern[i]
    if char == "{":
        match = _REPEAT.match(pattern, i)
        assert match is not None
        low, comma, high_text = match.groups()
        high = int(low) if comma is None else (int(high_text) if high_text else None)
        text, i = match.group(0), match.end()
    else:
        text, i, high = char, i + 1, (1 if char == "?" else None)
    if i < len(pattern) and pattern[i] == "?":
        text, i = text + "?", i + 1  # lazy: the same set of matches
    if i < len(pattern) and (pattern[i] in "*+?" or _REPEAT.match(pattern, i)):
        raise UntranslatableError("a repetition of a repetition")
    return text, i, high


def _group_open(pattern: str, i: int, at_group_start: bool) -> tuple[str, int, bool]:
    """A group opener or a flag group: (source, next index, whether a group was opened)."""
    if not pattern.startswith("(?", i):
        return "(", i + 1, True
    if named := _NAMED_GROUP.match(pattern, i):
        return "(?:", named.end(), True  # names do not change what matches
    flags = _FLAGS_GROUP.match(pattern, i)
    if flags is None:
        raise UntranslatableError(f"unknown group syntax at {pattern[i : i + 4]!r}")
    letters, end = flags.groups()
    if "m" in letters or "U" in letters:
        raise UntranslatableError("flags m (multi-line) and U (ungreedy) have no Onigmo twin here")
    ruby = letters.replace("s", "m")  # RE2's s (dot matches newline) is Onigmo's m
    if end == ":":
        return f"(?{ruby}:", flags.end(), True
    if not at_group_start:
        # RE2 reads a(?i)b|c as a(?i:b)|(?i:c), Onigmo as a(?i:b|c): only safe up front.
        raise UntranslatableError("flags set in the middle of a group")
    return f"(?{ruby})", flags.end(), False


def _escape(pattern: str, i: int, in_class: bool) -> tuple[str, int]:  # noqa: PLR0911 - per escape
    """An RE2 escape at pattern[i] == '\\' as Onigmo source."""
    if i + 1 >= len(pattern):
        raise UntranslatableError("trailing backslash")
    char = pattern[i + 1]
    if char == "Q" and not in_class:
        end = pattern.find("\\E", i + 2)
        literal = pattern[i + 2 :] if end < 0 else pattern[i + 2 : end]
        after = len(pattern) if end < 0 else end + 2
        return "".join(ruby_char(c) for c in literal), after
    if char in _PERL_CLASSES or char.lower() in _PERL_CLASSES:
        members = _PERL_CLASSES[char.lower()]
        if char.islower():
            return (members if in_class else f"[{members}]"), i + 2
        return f"[^{members}]", i + 2  # Onigmo nests a class inside a class as a union
    if char in _SIMPLE_ESCAPES:
        return _SIMPLE_ESCAPES[char], i + 2
    if char in "bBAz" and not in_class:
        return "\\" + char, i + 2
    if hexa := _HEX.match(pattern, i + 1):
        return f"\\u{{{int(hexa.group(1) or hexa.group(2), 16):x}}}", hexa.end()
    if octal := _OCTAL.match(pattern, i + 1):
        if len(octal.group(0)) == 1 and octal.group(0) != "0":
            raise UntranslatableError("backreferences are not RE2")
        return f"\\u{{{int(octal.group(0), 8):x}}}", octal.end()
    if unicode := _UNICODE_CLASS.match(pattern, i + 1):
        kind, name = unicode.groups()
        return f"\\{kind}{name if name.startswith('{') else '{' + name + '}'}", unicode.end()
    if char.isascii() and not char.isalnum() and 0x20 < ord(char) < 0x7F:
        return "\\" + char, i + 2
    raise UntranslatableError(f"escape \\{char} has no exact Onigmo twin")


def _char_class(pattern: str, i: int) -> tuple[str, int]:
    out = ["["]
    i += 1
    if i < len(pattern) and pattern[i] == "^":
        out.append("^")
        i += 1
    first = True
    while i < len(pattern):
        char = pattern[i]
        if char == "]" and not first:
            out.append("]")
            return "".join(out), i + 1
        if char == "\\":
            text, i = _escape(pattern, i, in_class=True)
        elif posix := _POSIX_CLASS.match(pattern, i):
            text, i = posix.group(0), posix.end()  # ASCII under (?a), as in RE2
        elif char == "-":
            text, i = "-", i + 1
        else:
            text, i = ruby_char(char), i + 1  # also escapes [ & ^ ] (Onigmo nests, intersects)
        out.append(text)
        first = False
    raise UntranslatableError("unterminated character class")

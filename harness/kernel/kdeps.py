"""Kconfig: the options to ask for so that a set of symbols can be on, and the fragment asking.

index(texts) parses Kconfig files ({relpath: text}; only the x86 arch folder is read from a tree)
into entries: prompt or not, 'depends on' (with the enclosing 'if' and 'menu' conditions),
'select', and a hidden symbol's def_bool expression. closure() walks from the wanted symbols to
what they need: a user-visible symbol's positive 'depends on' terms (for A || B the first
alternative, unless one is wanted already; '!X' terms are left to olddefconfig), a hidden
def_bool's terms, and for a hidden symbol only ever selected, a visible symbol selecting it.
ARCH_*/HAVE_* symbols are the architecture's to set: they are asked for but not expanded.
The fragment goes through the build's usual check (kconfig.verify): an option olddefconfig drops
is named with its 'depends on' lines.
"""
import re
from dataclasses import dataclass, field
from pathlib import Path

KEYWORD = re.compile(r"^(config|menuconfig|choice|endchoice|menu|endmenu|if|endif|source|comment|"
                     r"mainmenu)\b")
MAX_SYMBOLS = 80


@dataclass
class Entry:
    symbol: str
    where: str
    prompt: bool = False
    depends: list = field(default_factory=list)
    selects: list = field(default_factory=list)
    def_bool: str = None


def _lines(text):
    current = ""
    for number, raw in enumerate(text.splitlines(), 1):
        if raw.endswith("\\"):
            current += raw[:-1] + " "
            continue
        yield number, current + raw
        current = ""


def _entry_line(entry, line):
    s = line.strip()
    m = re.match(r"^(bool|tristate|string|int|hex)\s*(\"|')", s) or re.match(r"^prompt\s", s)
    if m:
        entry.prompt = True
    m = re.match(r"^def_(bool|tristate)\s+(.*?)(\s+if\s+.*)?$", s)
    if m:
        entry.def_bool = m[2]
    m = re.match(r"^depends\s+on\s+(.*)$", s)
    if m:
        entry.depends.append(m[1].strip())
    m = re.match(r"^select\s+(\w+)", s)
    if m:
        entry.selects.append(m[1])


def parse(text, where, entries):
    """Add the entries of one Kconfig file's text to entries {symbol: [Entry, ...]}."""
    conds, entry, help_indent, menu_pending = [], None, None, False
    for number, line in _lines(text):
        stripped = line.strip()
        indent = len(line.expandtabs(8)) - len(line.expandtabs(8).lstrip())
        if help_indent is not None:
            if not stripped or indent > help_indent:
                continue                      # help text: indented deeper than 'help'
            help_indent = None
        if not stripped or stripped.startswith("#"):
            continue
        if re.match(r"^(help|---help---)\s*$", stripped):
            help_indent = indent
            continue
        m = re.match(r"^(menu)?config\s+(\w+)", stripped)
        if m:
            entry = Entry(m[2], f"{where}:{number}", depends=[c for c in conds if c])
            entries.setdefault(m[2], []).append(entry)
            menu_pending = False
            continue
        if KEYWORD.match(stripped):
            entry = None
            word = stripped.split()[0]
            if word == "if":
                conds.append(stripped[2:].strip())
            elif word == "menu":
                conds.append("")
                menu_pending = True
            elif word in ("endif", "endmenu") and conds:
                conds.pop()
            continue
        if menu_pending and stripped.startswith("depends on") and conds:
            conds[-1] = stripped[len("depends on"):].strip()
            continue
        if entry:
            _entry_line(entry, line)
    return entries


def index(texts):
    """{symbol: [Entry]} from {relpath: Kconfig text}."""
    entries = {}
    for where, text in sorted(texts.items()):
        parse(text, where, entries)
    return entries


def tree_texts(srctree, arch="x86"):
    """{relpath: text} of the tree's Kconfig files, other architectures' folders left out."""
    root = Path(srctree)
    out = {}
    for path in root.rglob("Kconfig*"):
        rel = path.relative_to(root).as_posix()
        if re.match(r"arch/[^/]+/", rel) and not rel.startswith(f"arch/{arch}/"):
            continue
        if rel.startswith(("tools/", "Documentation/", "scripts/")) or not path.is_file():
            continue
        out[rel] = path.read_text(errors="replace")
    return out


def _split(expr, op):
    """Top-level parts of expr split on op ('&&' or '||'), parentheses respected."""
    parts, depth, current, i = [], 0, "", 0
    while i < len(expr):
        c = expr[i]
        depth += c == "("
        depth -= c == ")"
        if depth == 0 and expr.startswith(op, i):
            parts.append(current.strip())
            current, i = "", i + len(op)
            continue
        current += c
        i += 1
    parts.append(current.strip())
    return [p for p in parts if p]


def _unwrap(term):
    while term.startswith("(") and term.endswith(")") and _split(term[1:-1], "&&") is not None:
        inner = term[1:-1]
        if inner.count("(") != inner.count(")"):
            break
        term = inner.strip()
    return term


def wanted_terms(expr, chosen):
    """The symbols an expression needs on: && parts, the first || alternative (unless one is
    chosen already), nothing under '!' or in comparisons."""
    out = []
    for part in _split(_unwrap(expr.strip()), "&&"):
        part = _unwrap(part)
        alternatives = _split(part, "||")
        if len(alternatives) > 1:
            if any(_unwrap(a) in chosen for a in alternatives):
                continue
            part = _unwrap(alternatives[0])
            if "&&" in part or "||" in part:
                out += wanted_terms(part, chosen)
                continue
        m = re.fullmatch(r"(\w+)(\s*=\s*[ym])?", part)
        if m and m[1] not in ("y", "m", "n"):
            out.append(m[1])
    return out


def _selector(entries, symbol):
    """A visible symbol that selects symbol (mm/ first), or None."""
    found = [e for es in entries.values() for e in es if symbol in e.selects and e.prompt]
    found.sort(key=lambda e: (not e.where.startswith("mm/"), e.where))
    return found[0].symbol if found else None


def closure(entries, symbols):
    """(chosen {symbol: why}, unknown [symbols]) starting from symbols (without CONFIG_; or
    (symbol, why) pairs)."""
    chosen, unknown = {}, []
    queue = [(s, "gates the series' code") if isinstance(s, str) else tuple(s) for s in symbols]
    while queue and len(chosen) < MAX_SYMBOLS:
        symbol, why = queue.pop(0)
        if symbol in chosen:
            continue
        defs = entries.get(symbol)
        if not defs:
            unknown.append(symbol)
            continue
        chosen[symbol] = why
        if symbol.startswith(("ARCH_", "HAVE_")):
            continue
        needs = []
        for e in defs:
            for dep in e.depends:
                needs += wanted_terms(dep, chosen)
        visible = any(e.prompt for e in defs)
        if not visible:
            expr = next((e.def_bool for e in defs if e.def_bool not in (None, "y", "n")), None)
            if expr:
                needs += wanted_terms(expr, chosen)
            elif not any(e.def_bool == "y" for e in defs):
                selector = _selector(entries, symbol)
                if selector:
                    needs.append(selector)
        queue += [(n, f"needed by {symbol}") for n in needs if n not in chosen]
    return chosen, unknown


def fragment_text(chosen, title):
    """A kernel-config/-style fragment asking for every chosen symbol, with why."""
    lines = [f"# {title}", "# Derived by the harness; every option is checked in the final .config."]
    for symbol, why in chosen.items():
        lines.append(f"# {why}")
        lines.append(f"CONFIG_{symbol}=y")
    return "\n".join(lines) + "\n"

"""What gates a series' changed code: Kbuild lines for its files, #if blocks around its hunks.

Pure logic on text (a patch, a Makefile, a C file, a .config), so it is unit-tested on excerpts of
real kernel files:

  changed_lines(diff)        {path: [new-side line numbers a patch adds or changes]}
  hunks(diff)                [(path, first new line, last new line)] one per hunk
  makefile_gates(read, path) the CONFIG_ symbols whose =y puts path's object into the build, read
                             from obj-$(CONFIG_X) lines in its folder (through composite objects
                             and variables such as mm/'s mmu-$(CONFIG_MMU)) and the parent
                             folders' obj-$(CONFIG_Y) += dir/ lines
  regions(text)              every #if/#ifdef/#ifndef/#elif/#else block with its line span and the
                             condition under which its lines are compiled
  enclosing(regions, line)   the blocks around one line (outermost first)
  evaluate(cond, config)     True / False / None (not decidable from .config) for one condition

Hand-written rather than borrowed: the kernel's own tools answer these questions only by running
make in a configured tree (make path/f.i), which needs a build per config and patch; no Python
library parses Kbuild makefiles, and pcpp-style preprocessors need every header and macro.
"""
import re

CONFIG = re.compile(r"\bCONFIG_([A-Za-z0-9_]+)\b")
HUNK = re.compile(r"^@@ -\d+(?:,\d+)? \+(\d+)(?:,(\d+))? @@")
DIRECTIVE = re.compile(r"^\s*#\s*(if|ifdef|ifndef|elif|else|endif)\b(.*)$")


# --- the patch ---------------------------------------------------------------------------------

def _files(diff):
    """(path, [diff lines]) per file of a unified git diff (the new path; deleted files skipped)."""
    path, lines = None, []
    for line in diff.splitlines():
        if line.startswith("diff --git "):
            if path:
                yield path, lines
            path, lines = None, []
        elif line.startswith("+++ "):
            target = line[4:].strip()
            path = None if target == "/dev/null" else re.sub(r"^b/", "", target)
        elif path is not None or line.startswith("@@"):
            lines.append(line)
    if path:
        yield path, lines


def _walk(lines):
    """(kind, new line number) per diff line: kind '+', ' ', '-' or '@' (a hunk's start)."""
    new = None
    for line in lines:
        m = HUNK.match(line)
        if m:
            new = int(m[1])
            yield "@", new
            continue
        if new is None or line.startswith("\\"):
            continue
        kind = line[:1] or " "
        if kind == "+":
            yield "+", new
            new += 1
        elif kind == "-":
            yield "-", new          # a removed line sits before the new line of that number
        elif kind == " ":
            yield " ", new
            new += 1


def changed_lines(diff):
    """{path: sorted new-side lines} the patch adds, or next to which it removes lines."""
    out = {}
    for path, lines in _files(diff):
        changed, removed = set(), set()
        for kind, number in _walk(lines):
            if kind == "+":
                changed.add(number)
            elif kind == "-":
                removed.add(number)
        for number in removed:           # a pure removal: the surviving line above it
            if number not in changed and number - 1 not in changed:
                changed.add(max(number - 1, 1))
        if changed:
            out[path] = sorted(changed)
    return out


def hunks(diff):
    """[(path, first, last)] new-side span of each hunk's added/changed lines."""
    out = []
    for path, numbers in changed_lines(diff).items():
        start = prev = numbers[0]
        for n in numbers[1:] + [None]:
            if n is not None and n - prev <= 3:       # a few context lines apart: one hunk
                prev = n
                continue
            out.append((path, start, prev))
            if n is not None:
                start = prev = n
    return out


def diff_of(patch_text):
    """The diff part of a patch mail (from the first 'diff --git')."""
    at = patch_text.find("\ndiff --git ")
    return patch_text[at + 1:] if at >= 0 else ""


# --- Kbuild ------------------------------------------------------------------------------------

ASSIGN = re.compile(r"^\s*([A-Za-z0-9_.]+?)-(y|objs|\$\(CONFIG_([A-Za-z0-9_]+)\))\s*(?::=|\+=|=)\s*(.*)$")


def _logical_lines(text):
    """Makefile lines with backslash continuations joined and comments dropped."""
    out, current = [], ""
    for raw in text.splitlines():
        line = raw.split("#", 1)[0] if not raw.lstrip().startswith("#") else ""
        if raw.rstrip().endswith("\\") and not raw.lstrip().startswith("#"):
            current += line.rstrip()[:-1] + " "
            continue
        out.append(current + line)
        current = ""
    if current:
        out.append(current)
    return out


MAKE_IF = re.compile(r"^\s*(ifdef|ifndef|ifeq|ifneq|else|endif)\b(.*)$")


def _make_condition(kind, rest):
    """The symbol a Makefile conditional wants on (ifdef CONFIG_X, ifeq ($(CONFIG_X),y),
    ifneq ($(CONFIG_X),)), or None for any other condition."""
    m = CONFIG.search(rest)
    if not m:
        return None
    if kind == "ifdef" or (kind == "ifeq" and re.search(r",\s*y\s*\)", rest)) or (
            kind == "ifneq" and re.search(r",\s*(n\s*)?\)", rest)):
        return m[1]
    return None


def _assignments(text):
    """[(name, {symbols}, [words])] for every NAME-y / NAME-$(CONFIG_X) / NAME-objs line, with
    the symbols of the ifdef/ifeq blocks around it."""
    out, stack = [], []
    for line in _logical_lines(text):
        m = MAKE_IF.match(line)
        if m:
            if m[1] == "endif":
                stack = stack[:-1]
            elif m[1] == "else":
                stack = stack[:-1] + [None]
            else:
                stack.append(_make_condition(m[1], m[2]))
            continue
        m = ASSIGN.match(line)
        if m:
            symbols = {s for s in stack if s} | ({m[3]} if m[3] else set())
            out.append((m[1], symbols, m[4].split()))
    return out


def _gates_in(assigns, word, depth=0):
    """Symbols gating `word` (an object 'f.o' or a folder 'dir/') within one Makefile, and
    whether a chain from it reaches obj-: (symbols, reached)."""
    if depth > 6:
        return set(), False
    for name, symbols, words in assigns:
        if word not in words:
            continue
        gates = set(symbols)
        if name in ("obj", "lib", "core", "drivers"):
            return gates, True
        # a composite object (name.o made of name-y parts) or a variable used as $(name-y)
        for ref in (f"{name}.o", f"$({name}-y)", f"$({name}-objs)"):
            more, reached = _gates_in(assigns, ref, depth + 1)
            if reached:
                return gates | more, True
    return set(), False


def makefile_gates(read, path):
    """(symbols, why) for a .c file: the CONFIG_ symbols that must be y for its object to be
    built, up the folder chain. read(relpath) returns a file's text or None. why lists the
    Makefile lines' findings, or says where the chain could not be followed."""
    parts = path.split("/")
    folder, word = parts[:-1], re.sub(r"\.[cS]$", ".o", parts[-1])
    symbols, why = set(), []
    while folder:
        here = "/".join(folder)
        text = read(f"{here}/Makefile") or read(f"{here}/Kbuild")
        if text is None:
            why.append(f"{here}: no Makefile")
            return symbols, why
        gates, reached = _gates_in(_assignments(text), word)
        if not reached:
            why.append(f"{here}/Makefile: {word} not found in an obj- line")
            return symbols, why
        symbols |= gates
        why.append(f"{here}/Makefile: {word} " + (" ".join(sorted(f'CONFIG_{g}' for g in gates)) or "obj-y"))
        word, folder = folder[-1] + "/", folder[:-1]
    return symbols, why


# --- #if blocks ---------------------------------------------------------------------------------

def _strip_comment(expr):
    return re.sub(r"/\*.*?(\*/|$)|//.*$", "", expr).strip()


def regions(text):
    """[(first, last, condition)] one per branch of every #if chain; condition is a C
    preprocessor expression ('defined(X)' for #ifdef, '!(...)' parts for #else / #elif)."""
    out, stack = [], []          # stack: [start line, [previous conditions], current condition]
    lines = text.splitlines()
    for number, line in enumerate(lines, 1):
        m = DIRECTIVE.match(line)
        if not m:
            continue
        kind, expr = m[1], _strip_comment(m[2])
        if kind in ("if", "ifdef", "ifndef"):
            cond = {"if": f"({expr})", "ifdef": f"defined({expr})", "ifndef": f"!defined({expr})"}[kind]
            stack.append([number, [], cond])
        elif not stack:
            continue
        elif kind in ("elif", "else"):
            start, previous, cond = stack[-1]
            out.append((start, number, cond))
            previous = previous + [cond]
            negated = " && ".join(f"!{c}" for c in previous)
            stack[-1] = [number, previous, f"({negated} && ({expr}))" if kind == "elif" else f"({negated})"]
        else:
            start, _, cond = stack.pop()
            out.append((start, number, cond))
    return out


def enclosing(blocks, line):
    """The conditions of the blocks that contain line, outermost first."""
    inside = [(start, end, cond) for start, end, cond in blocks if start < line < end]
    return [cond for _, _, cond in sorted(inside, key=lambda b: (b[0], -b[1]))]


# --- evaluating against a .config ---------------------------------------------------------------

# header guards and the like: macros the C compiler of a kernel object defines or not
KNOWN = {"__KERNEL__": "1", "__ASSEMBLY__": "0", "__ASSEMBLER__": "0", "__GENKSYMS__": "0",
         "__CHECKER__": "0", "__cplusplus": "0", "MODULE": "0", "__GNUC__": "1"}
TOKEN = re.compile(r"\s*(defined\s*\(\s*\w+\s*\)|defined\s+\w+|IS_(?:ENABLED|BUILTIN|MODULE|REACHABLE)"
                   r"\s*\(\s*\w+\s*\)|&&|\|\||[!<>=]=|[()!<>+\-*/]|\w+)")


def _value(name, config, guard):
    if name.startswith("CONFIG_"):
        return config.get(name, "n")
    if name in KNOWN:
        return KNOWN[name]
    if guard and re.fullmatch(r"_*[A-Z0-9_]+_H_*|_*[A-Z0-9_]*_H_[A-Z0-9_]*", name):
        return "guard"
    return None


def _num(value):
    if value in ("y", "m"):
        return "1"
    if value == "n" or value == "guard":
        return "0"
    return value if re.fullmatch(r"-?(0x[0-9a-fA-F]+|\d+)", value or "") else None


def evaluate(cond, config):
    """True/False for a condition from regions() against {CONFIG_X: value}; None when its value
    depends on a macro .config does not decide (a header guard counts as not yet defined):
    the condition is worked out with every such macro 0 and again with it 1, and only a result
    both agree on is given (so `!defined(GUARD_H) || defined(OTHER)` is True)."""
    results = {_evaluate(cond, config, unknown) for unknown in ("0", "1")}
    return results.pop() if len(results) == 1 else None


def _evaluate(cond, config, unknown):
    out = []
    for tok in TOKEN.findall(cond):
        tok = tok.strip()
        m = re.match(r"(defined|IS_(ENABLED|BUILTIN|MODULE|REACHABLE))\s*\(?\s*(\w+)", tok)
        if m and (m[1] == "defined" or m[2]):
            value = _value(m[3], config, guard=True)
            if value is None:
                out.append(unknown)
            elif m[2] == "MODULE":
                out.append("1" if value == "m" else "0")
            elif m[2] == "BUILTIN":
                out.append("1" if value == "y" else "0")
            else:
                out.append("0" if value in ("n", "0", "guard") else "1")
        elif re.fullmatch(r"[A-Za-z_]\w*", tok):
            number = _num(_value(tok, config, guard=False))
            out.append(unknown if number is None else number)
        else:
            out.append({"&&": " and ", "||": " or ", "!": " not "}.get(tok, tok))
    try:
        return bool(eval(" ".join(out), {"__builtins__": {}}))    # digits and operators only
    except (SyntaxError, ZeroDivisionError, TypeError, NameError):
        return None


def compiled_under(conditions, config):
    """True when every enclosing condition holds, False when one fails, None if undecidable."""
    results = [evaluate(c, config) for c in conditions]
    if False in results:
        return False
    return None if None in results else True


def positive_symbols(cond):
    """CONFIG_ symbols (without the prefix) a condition wants on: those not under a '!'."""
    if cond.startswith("!") or cond.startswith("(!"):
        return set()
    # drop negated terms: !defined(X), !IS_ENABLED(X), !X
    kept = re.sub(r"!\s*(defined\s*\(\s*\w+\s*\)|IS_\w+\s*\(\s*\w+\s*\)|\w+|\([^()]*\))", "", cond)
    return set(CONFIG.findall(kept))

# SPDX-License-Identifier: Apache-2.0
"""The man pages in man/ stay true to the binaries and the config tables.

1. Every page formats with groff (-man -ww) without a single warning, is
   plain ASCII, and has the sections a page of its kind needs.
2. Every option a binary's --help prints (and its commands' --help), long
   and short, is a tagged item (.TP) of that binary's page; every navectl
   command and every nave command its help lists is one too.
3. Every key of config/cfg.c's tables (server, client, [tcp.NAME],
   [http.NAME]) is a tagged item "key = default" under the .SS of its
   section in nave.ini.5, with cfg.c's default. The server keys parsed from
   cfg.c must be the ones `nave-relayd --check` prints, so that the parser
   cannot go stale unnoticed.

Only the --help and --check of the binaries run; no daemon is started.
"""
import re
import shutil
import subprocess

import pytest

import navetest as nt

MAN = nt.ROOT / "man"
CFG_C = nt.ROOT / "config" / "cfg.c"

PAGES = {
    "nave.1": nt.NAVE,
    "navectl.1": nt.NAVECTL,
    "nave-relayd.8": nt.RELAYD,
    "nave-controld.8": nt.CONTROLD,
    "nave.ini.5": None,
}

# Sections every page has, and those of a page about a program.
SECTIONS_ALL = ["NAME", "SYNOPSIS", "DESCRIPTION", "FILES", "SEE ALSO"]
SECTIONS_PROGRAM = ["OPTIONS", "SIGNALS", "EXIT STATUS"]


# ---------------------------------------------------------------- roff


def plain(roff):
    """A roff text line without its macro name, font escapes and quotes:
    '.BR \\-\\-config " FILE"' -> '--config FILE'."""
    s = re.sub(r"^\.[A-Za-z]+\s?", "", roff.strip())
    s = re.sub(r"\\f(\[[^\]]*\]|\(..|.)", "", s)  # \fB \fR \fP \f(CW \f[B]
    s = s.replace("\\-", "-").replace("\\&", "").replace("\\%", "").replace("\\c", "")
    s = s.replace("\\ ", " ").replace("\\~", " ")
    s = s.replace('"', "")
    return re.sub(r"\s+", " ", s).strip()


def tags(path):
    """[(subsection, tag)]: the tag line of every .TP item, with the .SS
    heading it falls under ('' before any)."""
    lines = path.read_text().splitlines()
    out, sub = [], ""
    for i, line in enumerate(lines):
        if line.startswith(".SH"):
            sub = ""
        elif line.startswith(".SS"):
            sub = plain(line)
        elif line.strip() == ".TP" and i + 1 < len(lines):
            out.append((sub, plain(lines[i + 1])))
    return out


def has_word(text, word):
    """word in text, not as part of a longer option or name."""
    return re.search(r"(?<![\w-])" + re.escape(word) + r"(?![\w-])", text) is not None


# ---------------------------------------------------------------- help


def help_text(binary, *args):
    r = nt.run([binary, *args, "--help"])
    assert r.returncode == 0, f"{binary.name} {' '.join(args)} --help: exit {r.returncode}\n{r.stderr}"
    return r.stdout


def options(text):
    """The long (--x, --xy-z) and short (-x) options a help text names. Short
    ones only from lines that describe options ("  -h, --help  ...")."""
    found = set(re.findall(r"(?<![\w-])--[a-z][a-z0-9]*(?:-[a-z0-9]+)*", text))
    for line in text.splitlines():
        if line.lstrip().startswith("-"):
            found |= set(re.findall(r"(?<![\w-])-[A-Za-z](?![\w-])", line))
    return found


def commands(text):
    """The commands of a help's "Commands:" block: for each line indented by
    two spaces, its leading words up to the first argument, option or bracket."""
    out, inside = [], False
    for line in text.splitlines():
        if line.startswith("Commands:"):
            inside = True
            continue
        if inside and not line.strip():
            break
        if inside and re.match(r"  \S", line):
            words = []
            for w in line.split():
                if not re.fullmatch(r"[a-z]+", w):
                    break
                words.append(w)
            # nave's lines are "  NAME  description": the name is the first word
            out.append(" ".join(words) if text.startswith("usage: navectl") else words[0])
    return out


def nave_help():
    """nave's help and each of its commands' (tunnel's covers tcp add and http add)."""
    top = help_text(nt.NAVE)
    return top, [top] + [help_text(nt.NAVE, c) for c in commands(top)]


def navectl_help():
    top = help_text(nt.NAVECTL)
    return top, [top] + [help_text(nt.NAVECTL, *c.split()) for c in commands(top)]


def all_help(page):
    if page == "nave.1":
        return nave_help()
    if page == "navectl.1":
        return navectl_help()
    top = help_text(PAGES[page])
    return top, [top]


# ---------------------------------------------------------------- cfg.c

ROW = re.compile(r'^\s*(SRV|CLI|TCP|HTTP|PMAP|SOCKS)\(\s*(.*)$', re.M)
STR = re.compile(r'"((?:[^"\\]|\\.)*)"')
SECTION_OF = {"CLI": "client", "TCP": "tcp.NAME", "HTTP": "http.NAME",
              "PMAP": "portmap.LOCALPORT", "SOCKS": "socks.PORT"}


def cfg_rows():
    """[(kind, section, key, default)] from cfg.c's key tables: SRV("section",
    "key", "default", ...), CLI/TCP/HTTP("key", "default", ...)."""
    rows = []
    for m in ROW.finditer(CFG_C.read_text()):
        kind, rest = m.groups()
        strs = STR.findall(rest)
        if kind == "SRV":
            if len(strs) < 3:
                continue  # the #define
            rows.append(("server", strs[0], strs[1], strs[2]))
        else:
            if len(strs) < 2:
                continue
            rows.append(("client", SECTION_OF[kind], strs[0], strs[1]))
    return rows


def check_keys():
    """[(section, key)] that `nave-relayd --check` prints for the embedded default."""
    r = nt.run([nt.RELAYD, "--check"])
    assert r.returncode == 0, f"nave-relayd --check: exit {r.returncode}\n{r.stderr}"
    out, sec = [], None
    for line in r.stdout.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        m = re.fullmatch(r"\[([^\]]+)\]", line)
        if m:
            sec = m.group(1)
        else:
            out.append((sec, line.split("=", 1)[0].strip()))
    return out


# ---------------------------------------------------------------- tests


@pytest.fixture(scope="module")
def binaries():
    for b in PAGES.values():
        if b is not None and not b.exists():
            pytest.fail(f"{b} is not built (make)")


def test_every_page_is_there():
    assert MAN.is_dir(), f"{MAN} is missing"
    missing = [p for p in PAGES if not (MAN / p).is_file()]
    assert not missing, f"pages missing from man/: {missing}"
    extra = sorted(p.name for p in MAN.iterdir()
                   if re.search(r"\.[1-8]$", p.name) and p.name not in PAGES)
    assert not extra, f"pages this test does not know (add them to PAGES): {extra}"


@pytest.mark.parametrize("page", sorted(PAGES))
def test_page_formats_without_warnings(page):
    groff = shutil.which("groff")
    if not groff:
        pytest.fail("groff is not installed (apt-get install groff)")
    path = MAN / page
    r = subprocess.run([groff, "-man", "-ww", "-Tutf8", "-z", str(path)],
                       capture_output=True, text=True, timeout=60)
    if r.returncode or r.stderr.strip():
        pytest.fail(f"groff -man -ww on {page}: exit {r.returncode}, warnings:\n{r.stderr}",
                    pytrace=False)
    data = path.read_bytes()
    bad = [i + 1 for i, line in enumerate(data.split(b"\n")) if any(c > 0x7e for c in line)]
    assert not bad, f"{page}: non-ASCII bytes on lines {bad} (use roff escapes)"


@pytest.mark.parametrize("page", sorted(PAGES))
def test_page_has_its_sections(page):
    text = (MAN / page).read_text()
    th = re.search(r"^\.TH\s+(\S+)\s+(\d)", text, re.M)
    name, sect = page.rsplit(".", 1)
    assert th, f"{page}: no .TH line"
    assert plain(th.group(1)) == name.upper() and th.group(2) == sect, \
        f"{page}: .TH says {plain(th.group(1))}({th.group(2)}), the file is {name}({sect})"
    have = [plain(l) for l in text.splitlines() if l.startswith(".SH")]
    want = SECTIONS_ALL + (SECTIONS_PROGRAM if PAGES[page] else [])
    if page == "navectl.1":
        want = [s for s in want if s != "SIGNALS"]  # one request, nothing to stop
    missing = [s for s in want if s not in have]
    assert not missing, f"{page}: sections missing: {missing} (has {have})"


@pytest.mark.parametrize("page", [p for p in sorted(PAGES) if PAGES[p]])
def test_every_help_option_is_in_the_page(binaries, page):
    _, helps = all_help(page)
    opts = set()
    for h in helps:
        opts |= options(h)
    assert "--help" in opts, f"no options parsed from {PAGES[page].name} --help"
    tagged = " | ".join(t for _, t in tags(MAN / page))
    missing = sorted(o for o in opts if not has_word(tagged, o))
    assert not missing, (f"{page}: options {PAGES[page].name} --help prints that no .TP "
                         f"item of the page names: {missing}")


@pytest.mark.parametrize("page", ["nave.1", "navectl.1"])
def test_every_command_is_in_the_page(binaries, page):
    top, _ = all_help(page)
    cmds = commands(top)
    assert len(cmds) >= 5, f"no commands parsed from the help: {cmds}"
    tagged = [t for _, t in tags(MAN / page)]
    missing = [c for c in cmds if not any(has_word(t, c) for t in tagged)]
    assert not missing, f"{page}: commands the help lists that no .TP item names: {missing}"


def test_every_config_key_is_in_nave_ini_5(binaries):
    rows = cfg_rows()
    server = [(s, k) for kind, s, k, _ in rows if kind == "server"]
    client = [(s, k) for kind, s, k, _ in rows if kind == "client"]
    assert len(server) >= 30 and len(client) >= 15, \
        f"too few keys parsed from {CFG_C}: {len(server)} server, {len(client)} client"
    # the parser reads the same server keys relayd prints
    printed = check_keys()
    assert sorted(server) == sorted(printed), (
        "config/cfg.c parsed here and nave-relayd --check disagree: only in cfg.c "
        f"{sorted(set(server) - set(printed))}, only in --check {sorted(set(printed) - set(server))}")

    items = {}
    for sub, tag in tags(MAN / "nave.ini.5"):
        m = re.fullmatch(r"\[([^\]]+)\]", sub)
        if m:
            items.setdefault(m.group(1), []).append(tag)
    problems = []
    for kind, section, key, default in rows:
        got = [t for t in items.get(section, []) if t.split(" ")[0] == key]
        want = f"{key} = {default}".strip()
        if not got:
            where = [s for s, ts in items.items() if any(t.split(" ")[0] == key for t in ts)]
            problems.append(f"[{section}] {key}: no .TP item under .SS [{section}]"
                            + (f" (found under {where})" if where else ""))
        elif want not in got:
            problems.append(f"[{section}] {key}: the page says {got[0]!r}, cfg.c's default "
                            f"gives {want!r}")
    known = {s for _, s, _, _ in rows}
    extra = sorted(set(items) - known)
    if extra:
        problems.append(f"sections in nave.ini.5 that cfg.c does not have: {extra}")
    assert not problems, "nave.ini.5:\n" + "\n".join(problems)
